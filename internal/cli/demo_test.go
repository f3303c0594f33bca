package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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
	cmd.Env = append(os.Environ(), "BAKERY="+bakeryBinary(t), "VENV="+venv)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out.String())
	}
	if i := bytes.IndexByte(out.Bytes(), 0x1b); i >= 0 {
		t.Errorf("demo output in a pipe holds an escape code at byte %d: %q", i, out.Bytes()[max(0, i-40):min(out.Len(), i+40)])
	}
	if !bytes.Contains(out.Bytes(), []byte("\n$ ")) {
		t.Errorf("demo output does not show its commands:\n%s", out.String())
	}
}
