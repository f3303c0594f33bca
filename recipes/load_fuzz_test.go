package recipes

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// FuzzLoad loads arbitrary recipe bytes (and a var file and a -var value)
// through the real Loader, at every scope. It must never panic, every
// error diagnostic must have a position (a Subject naming a file, line
// 1 or later) so the user is told where, and a recipe that loads must
// have a canonical form. The seeds are the example recipes and the test
// fixtures; the recipe is written beside copies of the fixtures' files,
// so layer sources and file() calls of the seeds resolve.
func FuzzLoad(f *testing.F) {
	for _, p := range []string{
		"hello.bake.hcl",
		"web-ami.bake.hcl",
		"base-ami.bake.hcl",
		"../testdata/recipes/full/full.bake.hcl",
		"../testdata/recipes/ami/ami.bake.hcl",
	} {
		src, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src, []byte(nil), "", uint8(ScopeAll))
		f.Add(src, []byte(nil), "", uint8(ScopeCatalog))
	}
	prod, err := os.ReadFile("../testdata/recipes/full/prod.vars.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(issueRecipe), prod, "2.0.0", uint8(ScopeAll))
	f.Add([]byte(issueRecipe), []byte("version = [1"), "", uint8(ScopeBases))
	f.Add([]byte("recipe \"x\" {\n  version = var.nope\n}\n"), []byte(nil), "${", uint8(ScopeCatalog))

	// The fixtures' files, once per fuzzing process: the seeds name them.
	dir := f.TempDir()
	for _, src := range []string{"../testdata/recipes/full", "../testdata/recipes/ami", "."} {
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil && !os.IsExist(err) {
			f.Fatal(err)
		}
	}
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

	f.Fuzz(func(t *testing.T, src, varFile []byte, version string, scope uint8) {
		path := filepath.Join(dir, "fuzz.bake.hcl")
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		opts := Options{Now: now, Scope: Scope(scope % 3)}
		files := map[string]bool{path: true}
		if len(varFile) > 0 {
			vp := filepath.Join(dir, "fuzz.vars.hcl")
			if err := os.WriteFile(vp, varFile, 0o644); err != nil {
				t.Fatal(err)
			}
			opts.VarFiles = []string{vp}
			files[vp] = true
		}
		if version != "" {
			opts.Vars = map[string]string{"version": version}
			files["<-var version>"] = true
		}
		l := NewLoader()
		r, diags := l.Load(path, opts)
		checkPositions(t, diags, files)
		if r == nil && !diags.HasErrors() {
			t.Fatalf("no recipe and no error")
		}
		var buf bytes.Buffer
		if err := l.WriteDiagnostics(&buf, diags, false); err != nil {
			t.Fatalf("writing diagnostics: %v", err)
		}
		checkPositions(t, l.CheckVars(opts), files)
		if r == nil {
			return
		}
		for _, c := range r.Containers {
			if len(Canonical(r, c)) == 0 {
				t.Errorf("container %s: empty canonical form", c.Name)
			}
		}
		for _, m := range r.MachineImages {
			if len(CanonicalMachineImage(r, m)) == 0 {
				t.Errorf("machine image %s: empty canonical form", m.Name)
			}
		}
	})
}

// checkPositions fails t for an error diagnostic that does not say
// where: no Subject, no file name, a file that is not one of files, or
// no line.
func checkPositions(t *testing.T, diags hcl.Diagnostics, files map[string]bool) {
	t.Helper()
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		switch {
		case d.Subject == nil:
			t.Errorf("error without a position: %s — %s", d.Summary, d.Detail)
		case d.Subject.Filename == "" || d.Subject.Start.Line < 1:
			t.Errorf("error at %q line %d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Summary)
		case !files[d.Subject.Filename] && !strings.HasPrefix(d.Subject.Filename, "<env "):
			t.Errorf("error in %q, not a file of the load: %s", d.Subject.Filename, d.Summary)
		}
	}
}
