package cli

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
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

// TestFmtRefusesInvalidHCL: a file that does not parse is left as it is,
// its errors point at file:line,col, and fmt exits 1 (also with -check,
// and for standard input, which then prints nothing).
func TestFmtRefusesInvalidHCL(t *testing.T) {
	dir := t.TempDir()
	broken := "recipe \"x\" {\n  version = \"1\"\n  stages = [\"dev\"\n}\n"
	messy := "recipe \"y\" {\nversion=\"1\"\n}\n"
	writeFiles(t, dir, map[string]string{"broken.bake.hcl": broken, "messy.bake.hcl": messy})
	path := filepath.Join(dir, "broken.bake.hcl")
	for _, args := range [][]string{{"fmt", dir}, {"fmt", "-check", path}} {
		r := run(t, nil, args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, path+":4:1: Error: ") || !strings.Contains(r.stderr, "not valid HCL") {
			t.Errorf("bakery %v: exit %d, stderr:\n%s\nwant exit 1 pointing at %s:4:1", args, r.code, r.stderr, path)
		}
		if got, _ := os.ReadFile(path); string(got) != broken {
			t.Errorf("bakery %v rewrote the invalid file:\n%s", args, got)
		}
	}
	// The valid file next to it was formatted.
	if got, _ := os.ReadFile(filepath.Join(dir, "messy.bake.hcl")); string(got) == messy {
		t.Error("the valid file next to the invalid one was not formatted")
	}
	var out, errb strings.Builder
	code := Run(t.Context(), []string{"bakery", "fmt", "-"}, strings.NewReader("a = [1,\n"), &out, &errb, nil)
	if code != exitFailure || out.String() != "" || !strings.Contains(errb.String(), "<stdin>:") {
		t.Errorf("fmt - on invalid input: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// TestFmtJSON: --output json prints one document listing each file, and
// for invalid HCL an error document with the position.
func TestFmtJSON(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.bake.hcl": "recipe \"a\" {\nversion=\"1\"\n}\n",
		"b.bake.hcl": "recipe \"b\" {\n  version = \"1\"\n}\n",
	})
	r := run(t, nil, "--output", "json", "fmt", "-check", dir)
	var doc fmtDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != exitUnformat {
		t.Fatalf("fmt -check --output json: exit %d, %q: %v", r.code, r.stdout, err)
	}
	a, b := filepath.Join(dir, "a.bake.hcl"), filepath.Join(dir, "b.bake.hcl")
	want := fmtDoc{Check: true, Files: []fmtFile{{File: a, Valid: true}, {File: b, Valid: true, Formatted: true}}}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("fmt -check JSON = %+v, want %+v", doc, want)
	}
	r = mustRun(t, nil, "fmt", "-o", "json", dir)
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || !doc.Files[0].Written || doc.Files[1].Written || doc.Check {
		t.Errorf("fmt --output json = %q (%v), want a written, b not", r.stdout, err)
	}
	var in strings.Builder
	code := Run(t.Context(), []string{"bakery", "fmt", "-o", "json", "-"}, strings.NewReader("a=1\n"), &in, io.Discard, nil)
	if err := json.Unmarshal([]byte(in.String()), &doc); err != nil || code != 0 || doc.Files[0].Output != "a = 1\n" {
		t.Errorf("fmt -o json -: exit %d, %q (%v)", code, in.String(), err)
	}

	writeFiles(t, dir, map[string]string{"c.bake.hcl": "recipe \"c\" {\n  version = \n}\n"})
	c := filepath.Join(dir, "c.bake.hcl")
	r = run(t, nil, "fmt", "--output", "json", c)
	if r.code != exitFailure {
		t.Fatalf("fmt of invalid HCL: exit %d", r.code)
	}
	e := decodeErrorDoc(t, []string{"fmt", c}, r)
	if e.File != c || e.Line != 2 || e.Column != 13 || e.Kind != "recipe" || e.Command != "fmt" || len(e.Diagnostics) == 0 {
		t.Errorf("error document = %+v, want %s:2:13 (after \"version = \")", e, c)
	}
}
