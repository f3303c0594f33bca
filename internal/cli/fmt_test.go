package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFmtCheckAndWrite(t *testing.T) {
	dir := t.TempDir()
	messy := "recipe \"x\" {\nversion=\"1\"\n     stages = [\"dev\"]\n}\n"
	writeFiles(t, dir, map[string]string{"x.bake.hcl": messy, "notes.txt": "not hcl {"})
	path := filepath.Join(dir, "x.bake.hcl")

	r := run(t, nil, "fmt", "-check", dir)
	if r.code != 3 || !strings.Contains(r.stdout, "x.bake.hcl") {
		t.Fatalf("fmt -check on a messy file: exit %d, stdout %q; want 3 naming it", r.code, r.stdout)
	}
	if got, _ := os.ReadFile(path); string(got) != messy {
		t.Fatal("fmt -check changed the file")
	}
	mustRun(t, nil, "fmt", dir)
	got, _ := os.ReadFile(path)
	want := "recipe \"x\" {\n  version = \"1\"\n  stages  = [\"dev\"]\n}\n"
	if string(got) != want {
		t.Fatalf("formatted:\n%s\nwant:\n%s", got, want)
	}
	if r := run(t, nil, "fmt", "-check", path); r.code != 0 {
		t.Fatalf("fmt -check after fmt: exit %d", r.code)
	}
	// The example recipes are formatted.
	if r := run(t, nil, "fmt", "-check", "../../recipes"); r.code != 0 {
		t.Errorf("recipes/ needs formatting: %s", r.stdout)
	}
}

func TestFmtStdin(t *testing.T) {
	var out strings.Builder
	code := Run(t.Context(), []string{"bakery", "fmt", "-"}, strings.NewReader("a=1\nbb = 2\n"), &out, &out, nil)
	if code != 0 || out.String() != "a  = 1\nbb = 2\n" {
		t.Fatalf("fmt -: exit %d, %q", code, out.String())
	}
}

func TestValidateAndVersion(t *testing.T) {
	r := mustRun(t, nil, "validate", "../../recipes")
	if !strings.Contains(r.stdout, "hello.bake.hcl: valid (recipe hello 1.0.0, 1 artifact(s))") {
		t.Errorf("validate = %q", r.stdout)
	}
	r = mustRun(t, nil, "--output", "json", "validate", "-var", "version=3.0.0", "../../recipes/hello.bake.hcl")
	if !strings.Contains(r.stdout, `"valid":true`) || !strings.Contains(r.stdout, `"version":"3.0.0"`) {
		t.Errorf("validate json = %q", r.stdout)
	}
	r = mustRun(t, nil, "version")
	if !strings.HasPrefix(r.stdout, "bakery ") {
		t.Errorf("version = %q", r.stdout)
	}
}
