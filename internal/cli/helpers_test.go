package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/bake"
)

// result is what one bakery invocation printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// run runs bakery in-process with a clean environment plus extra.
func run(t *testing.T, extra []string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	environ := append([]string{"PATH=" + os.Getenv("PATH")}, extra...)
	code := Run(context.Background(), append([]string{"bakery"}, args...), strings.NewReader(""), &out, &errb, environ)
	return result{code, out.String(), errb.String()}
}

// mustRun runs bakery and fails the test unless it exits 0.
func mustRun(t *testing.T, extra []string, args ...string) result {
	t.Helper()
	r := run(t, extra, args...)
	if r.code != 0 {
		t.Fatalf("bakery %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// bakeJSON runs a JSON bake and decodes its single result.
func bakeJSON(t *testing.T, extra []string, args ...string) bake.Result {
	t.Helper()
	r := mustRun(t, extra, append([]string{"-q", "--output", "json", "bake"}, args...)...)
	var res bake.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("decoding bake JSON %q: %v", r.stdout, err)
	}
	return res
}

// writeFiles creates files under dir; a name ending in "/" is a folder.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(content, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// helloRecipe is the recipe of the issue, with the repository line
// replaced by repo (empty: the local default).
func helloRecipe(repo string) string {
	repoLine := ""
	if repo != "" {
		repoLine = "  repository = \"" + repo + "\"\n"
	}
	return `variable "version" {
  type    = string
  default = "1.0.0"
}
recipe "hello" {
  version = var.version
  stages  = ["dev", "staging", "prod"]
}
container "hello" {
  base       = "scratch"
` + repoLine + `  layer {
    source      = "app/"
    destination = "/app/"
  }
  entrypoint = ["/app/hello"]
}
`
}

// helloProject writes the hello recipe and its app folder into a new
// temporary folder and returns the recipe path.
func helloProject(t *testing.T, repo string) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"hello.bake.hcl": helloRecipe(repo),
		"app/hello":      "#!/bin/sh\necho hello\n",
		"app/README":     "the hello app\n",
	})
	return filepath.Join(dir, "hello.bake.hcl")
}

// snapshot records every file under dir with its content, to prove a
// failed operation changed nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if info.IsDir() {
			files[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = string(b)
		return nil
	})
	return files
}

// sameTree fails the test if the two snapshots differ (ignoring empty
// staging folders, which hold nothing).
func sameTree(t *testing.T, before, after map[string]string) {
	t.Helper()
	for k := range after {
		if _, ok := before[k]; !ok && !(strings.HasSuffix(k, "/") && strings.HasPrefix(k, "tmp")) {
			t.Errorf("new file left behind: %s", k)
		}
	}
	for k, v := range before {
		if got, ok := after[k]; !ok {
			t.Errorf("file removed: %s", k)
		} else if got != v {
			t.Errorf("file changed: %s", k)
		}
	}
}

// requireTool returns the path of an external tool; without it the test
// fails under CI and is skipped elsewhere.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI (make deps installs it): %v", name, err)
		}
		t.Skipf("%s not installed (make deps installs it)", name)
	}
	return p
}
