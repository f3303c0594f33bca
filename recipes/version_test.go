package recipes

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestNextVersion(t *testing.T) {
	for in, want := range map[string]string{
		"1.4.2":        "1.4.3",
		"1.9":          "1.10",
		"2024-06-01_1": "2024-06-01_2",
		"1.0.0-rc1":    "1.0.0-rc2",
		"v7-beta":      "v8-beta",
		"latest":       "latest.1",
	} {
		if got := NextVersion(in); got != want {
			t.Errorf("NextVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestVersionSource: the loader records where the version is written
// and which variables it reads, so a refused rebake can say how to give
// a new version.
func TestVersionSource(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	vars := "variable \"version\" {\n  default = \"1.0.0\"\n}\nvariable \"build\" {\n  default = \"7\"\n}\nlocals {\n  v = \"3.0.0\"\n}\n"
	for _, tc := range []struct {
		version string
		vars    []string
		hint    string
	}{
		{`var.version`, []string{"version"}, "which comes from var.version: give a new one, for example -var version=1.0.1"},
		{`"${var.version}-${var.build}"`, []string{"version", "build"}, "comes from var.version, var.build: give new values with -var"},
		{`"2.0.0"`, nil, `the recipe's version is fixed ("2.0.0" at r.bake.hcl:11:13)`},
		{`local.v`, nil, `the recipe's version is fixed ("3.0.0" at r.bake.hcl:11:13)`},
	} {
		src := vars + "recipe \"r\" {\n  version = " + tc.version + "\n  stages  = [\"dev\"]\n}\ncontainer \"r\" {\n  base = \"scratch\"\n  layer {\n    source      = \"r.bake.hcl\"\n    destination = \"/\"\n  }\n}\n"
		if err := os.WriteFile(filepath.Join(dir, "r.bake.hcl"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		r, diags := NewLoader().Load("r.bake.hcl", Options{})
		if diags.HasErrors() {
			t.Fatalf("version = %s: %s", tc.version, diagText(diags))
		}
		if !reflect.DeepEqual(r.VersionVars, tc.vars) || r.VersionFixed() != (tc.vars == nil) || r.VersionRange.Start.Line != 11 {
			t.Errorf("version = %s: vars %v at %v, want %v on line 11", tc.version, r.VersionVars, r.VersionRange, tc.vars)
		}
		if h := r.NewVersionHint(); !strings.Contains(h, tc.hint) {
			t.Errorf("version = %s: hint %q lacks %q", tc.version, h, tc.hint)
		}
	}
}
