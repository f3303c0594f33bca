package cli

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFailedStepPrintsItsErrorOnce: off a terminal every progress line
// is dated, and a failed step is marked failed while its error is
// printed once, on the final "bakery: ..." line.
func TestFailedStepPrintsItsErrorOnce(t *testing.T) {
	dir := t.TempDir()
	// Nothing listens on port 1: resolving the base fails at once.
	recipe := strings.Replace(helloRecipe(""), `base       = "scratch"`, `base       = "127.0.0.1:1/nothing/here:1.0"`, 1)
	writeFiles(t, dir, map[string]string{"hello.bake.hcl": recipe, "app/hello": "#!/bin/sh\n"})
	r := run(t, []string{"BAKERY_HOME=" + filepath.Join(t.TempDir(), "home")}, "bake", filepath.Join(dir, "hello.bake.hcl"))
	if r.code != exitFailure {
		t.Fatalf("exit %d, want %d:\n%s", r.code, exitFailure, r.stderr)
	}
	failed := regexp.MustCompile(`(?m)^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ step="hello: resolve base 127.0.0.1:1/nothing/here:1.0" status=failed duration=\S+$`)
	if !failed.MatchString(r.stderr) {
		t.Errorf("no dated failed step line in:\n%s", r.stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.HasPrefix(line, "time=") && !strings.HasPrefix(line, "bakery: ") {
			t.Errorf("line is neither a dated progress line nor the error: %q", line)
		}
	}
	last := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if l := last[len(last)-1]; !strings.HasPrefix(l, "bakery: ") || !strings.Contains(l, "is unreachable") {
		t.Errorf("last line %q is not the error", l)
	}
	if n := strings.Count(r.stderr, "is unreachable"); n != 1 {
		t.Errorf("the error is printed %d times, want once:\n%s", n, r.stderr)
	}
}
