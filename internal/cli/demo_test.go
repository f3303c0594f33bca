package cli

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoPrintsNoEscapesOffATerminal runs make demo's script with its
// output in a pipe (a CI log, make demo | tee): it succeeds and prints no
// terminal escape codes.
func TestDemoPrintsNoEscapesOffATerminal(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	venv := filepath.Join(root, ".venv")
	if bin := os.Getenv("MOTO_SERVER"); bin != "" {
		venv = filepath.Dir(filepath.Dir(bin))
	}
	if _, err := os.Stat(filepath.Join(venv, "bin", "moto_server")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the demo needs moto_server in %s (make test installs it): %v", venv, err)
		}
		t.Skipf("moto_server not installed in %s (scripts/moto-venv.sh installs it)", venv)
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "demo.sh"))
	// The dashboard at the end serves long enough to be read once.
	cmd.Env = append(os.Environ(), "BAKERY="+bakeryBinary(t), "VENV="+venv, "DEMO_SERVE_SECONDS=20")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var out bytes.Buffer
	var board string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		// The demo ends by serving the dashboard against its moto.
		if url, ok := strings.CutPrefix(line, "bakery dashboard: "); ok && board == "" {
			resp, err := http.Get(url + "api/status")
			if err != nil {
				t.Errorf("GET the demo's dashboard: %v", err)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			board = string(b)
			if resp.StatusCode != http.StatusOK || !strings.Contains(board, `"recipe": "base"`) || !strings.Contains(board, `"prod"`) {
				t.Errorf("the demo's dashboard answers %d:\n%s", resp.StatusCode, board)
			}
			for _, page := range []string{"", "lineage/base/1.0.0", "history", "outdated", "api/board"} {
				resp, err := http.Get(url + page)
				if err != nil {
					t.Errorf("GET the demo's /%s: %v", page, err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("the demo's /%s answers %d:\n%s", page, resp.StatusCode, b)
				}
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out.String())
	}
	if board == "" {
		t.Errorf("the demo does not end by serving the dashboard:\n%s", out.String())
	}
	if i := bytes.IndexByte(out.Bytes(), 0x1b); i >= 0 {
		t.Errorf("demo output in a pipe holds an escape code at byte %d: %q", i, out.Bytes()[max(0, i-40):min(out.Len(), i+40)])
	}
	if !bytes.Contains(out.Bytes(), []byte("\n$ ")) {
		t.Errorf("demo output does not show its commands:\n%s", out.String())
	}
}
