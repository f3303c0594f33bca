package recipes

import (
	"path/filepath"
	"testing"
	"time"
)

// retainRecipe is a minimal container recipe followed by extra (the
// retain block starts on line 12).
func retainRecipe(extra string) string {
	return `recipe "web" {
  version = "1.0.0"
  stages  = ["dev", "prod"]
}
container "web" {
  base = "scratch"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
` + extra
}

func TestRetainDefaultsWithoutABlock(t *testing.T) {
	dir := writeTree(t, map[string]string{"r.bake.hcl": retainRecipe(""), "app/x": "x"})
	r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{})
	want := Retain{KeepLast: 5, KeepPrevious: 1, KeepRevoked: 7 * 24 * time.Hour}
	if got := r.Retain; got.KeepLast != want.KeepLast || got.KeepPrevious != want.KeepPrevious || got.KeepRevoked != want.KeepRevoked ||
		got.KeepWithin != 0 || got.DeprecateAfter != 0 {
		t.Fatalf("retain without a block = %+v, want %+v", got, want)
	}
}

func TestRetainBlockIsRead(t *testing.T) {
	dir := writeTree(t, map[string]string{"r.bake.hcl": retainRecipe(`retain {
  keep_last       = 3
  keep_within     = "30d"
  keep_previous   = 2
  keep_revoked    = "1d12h"
  deprecate_after = "60d"
}
`), "app/x": "x"})
	r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{})
	day := 24 * time.Hour
	got := r.Retain
	if got.KeepLast != 3 || got.KeepWithin != 30*day || got.KeepPrevious != 2 || got.KeepRevoked != 36*time.Hour || got.DeprecateAfter != 60*day {
		t.Fatalf("retain = %+v", got)
	}
	if p := got.Pos("keep_within"); p != filepath.Join(dir, "r.bake.hcl")+":14:21" {
		t.Errorf("Pos(keep_within) = %s", p)
	}
}

func TestRetainPartialBlockKeepsDefaults(t *testing.T) {
	dir := writeTree(t, map[string]string{"r.bake.hcl": retainRecipe("retain {\n  keep_last = 0\n}\n"), "app/x": "x"})
	r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{})
	if got := r.Retain; got.KeepLast != 0 || got.KeepPrevious != DefaultKeepPrevious || got.KeepRevoked != DefaultKeepRevoked {
		t.Fatalf("retain = %+v, want keep_last 0 and the other defaults", got)
	}
}

func TestRetainDiagnostics(t *testing.T) {
	for name, tc := range map[string]struct {
		block string
		want  []string
	}{
		"bad duration":   {"retain {\n  keep_within = \"30days\"\n}\n", []string{`13:17: invalid duration "30days"`}},
		"negative":       {"retain {\n  keep_revoked = \"-1d\"\n}\n", []string{`13:18: invalid duration "-1d"`}},
		"unquoted":       {"retain {\n  deprecate_after = 60\n}\n", []string{`13:21: invalid type for "deprecate_after"`}},
		"negative count": {"retain {\n  keep_last = -1\n}\n", []string{`13:15: invalid keep_last -1`}},
		"fractional":     {"retain {\n  keep_previous = 1.5\n}\n", []string{`13:19: invalid keep_previous 1.5`}},
		"unknown attr":   {"retain {\n  keep_forever = true\n}\n", []string{`13:3: Unsupported argument`}},
		"two blocks":     {"retain {}\nretain {}\n", []string{`13:1: duplicate retain block`}},
		"every error at once": {"retain {\n  keep_last = \"five\"\n  keep_within = \"1x\"\n}\n",
			[]string{`13:15: invalid type for "keep_last"`, `14:17: invalid duration "1x"`}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"r.bake.hcl": retainRecipe(tc.block), "app/x": "x"})
			p := filepath.Join(dir, "r.bake.hcl")
			_, diags := NewLoader().Load(p, Options{})
			wantDiags(t, diags, p, tc.want)
		})
	}
}
