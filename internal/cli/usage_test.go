package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingRequiredArgumentsExit2: for every verb, a missing required
// argument or flag (or one too many) is a usage error, exit 2, said
// before anything is read.
func TestMissingRequiredArgumentsExit2(t *testing.T) {
	dir := t.TempDir() // no ./recipes: nothing may be loaded
	t.Chdir(dir)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bake"}, "bakery bake recipes/"},
		{[]string{"validate"}, "bakery validate recipes/"},
		{[]string{"promote"}, "promote takes one RECIPE@VERSION"},
		{[]string{"promote", "web@1.0.0"}, "--to STAGE"},
		{[]string{"promote", "web@1.0.0", "--to"}, "--to"},
		{[]string{"promote", "web", "--to", "prod"}, "RECIPE@VERSION"},
		{[]string{"revoke"}, "revoke takes one RECIPE@VERSION"},
		{[]string{"revoke", "web@1.0.0"}, "give a --reason"},
		{[]string{"revoke", "web@1.0.0", "--reason", " "}, "give a --reason"},
		{[]string{"unrevoke"}, "unrevoke takes one RECIPE@VERSION"},
		{[]string{"history"}, "history takes one RECIPE"},
		{[]string{"status", "a", "b"}, "status takes at most one RECIPE"},
		{[]string{"sweep", "us-east-1"}, "sweep takes no arguments"},
		{[]string{"outdated", "-f", "x.bake.hcl"}, "flag provided but not defined: -f"},
		{[]string{"fmt", "--check=maybe"}, "fmt"},
		{[]string{"version", "--nope"}, "version"},
	} {
		r := run(t, nil, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bakery %s: exit %d (want %d), stderr lacks %q:\n%s", strings.Join(tc.args, " "), r.code, exitUsage, tc.want, r.stderr)
		}
	}
}

// TestMessagesSuggestWhatExists: a message suggests only flags and
// commands the verb has.
func TestMessagesSuggestWhatExists(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	// outdated has no -f: it takes recipe files as arguments.
	r := run(t, nil, "outdated", "web")
	if r.code != exitFailure || strings.Contains(r.stderr, "-f") || !strings.Contains(r.stderr, "bakery outdated recipes/NAME.bake.hcl") {
		t.Errorf("outdated web without ./recipes: exit %d:\n%s", r.code, r.stderr)
	}
	writeFiles(t, dir, map[string]string{"recipes/hello.bake.hcl": helloRecipe(""), "recipes/app/hello": "x"})
	r = run(t, nil, "outdated", "web")
	if r.code != exitFailure || strings.Contains(r.stderr, "-f") || !strings.Contains(r.stderr, `unknown recipe "web"; ./recipes has: hello (or name the recipe file as an argument: bakery outdated`) {
		t.Errorf("outdated web: exit %d:\n%s", r.code, r.stderr)
	}
	// status has -f, and says so.
	r = run(t, nil, "status", "web")
	if r.code != exitFailure || !strings.Contains(r.stderr, "name the recipe file with -f FILE") {
		t.Errorf("status web: exit %d:\n%s", r.code, r.stderr)
	}
	// validate suggests validate, not bake.
	r = run(t, nil, "validate")
	if strings.Contains(r.stderr, "bakery bake") || !strings.Contains(r.stderr, "bakery validate recipes/hello.bake.hcl") {
		t.Errorf("validate: %s", r.stderr)
	}
}

// TestUnrevokeWhatIsNotRevokedSaysSo: revoking twice, or unrevoking an
// image that is not revoked, changes nothing and says so (exit 0, as a
// promotion into the stage the image is in).
func TestUnrevokeWhatIsNotRevokedSaysSo(t *testing.T) {
	recipe := helloProject(t, "")
	env := []string{"BAKERY_HOME=" + filepath.Join(t.TempDir(), "home"), "BAKERY_ACTOR=ann"}
	mustRun(t, env, "-q", "bake", recipe)
	if r := mustRun(t, env, "unrevoke", "-f", recipe, "hello@1.0.0"); r.stdout != "hello@1.0.0 is not revoked: nothing to do\n" {
		t.Errorf("unrevoke of a version never revoked printed %q", r.stdout)
	}
	mustRun(t, env, "revoke", "-f", recipe, "hello@1.0.0", "--reason", "CVE-1")
	if r := mustRun(t, env, "revoke", "-f", recipe, "hello@1.0.0", "--reason", "CVE-2"); r.stdout != "hello@1.0.0 is already revoked: nothing to do\n" {
		t.Errorf("second revoke printed %q", r.stdout)
	}
	if r := mustRun(t, env, "unrevoke", "-f", recipe, "hello@1.0.0"); r.stdout != "unrevoked hello@1.0.0\n" {
		t.Errorf("unrevoke printed %q", r.stdout)
	}
	r := mustRun(t, env, "--output", "json", "unrevoke", "-f", recipe, "hello@1.0.0")
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m["noop"] != true || m["revoked"] != false {
		t.Errorf("second unrevoke JSON = %s (%v)", r.stdout, err)
	}
	// The history holds one revocation and one unrevocation.
	var h historyDoc
	if err := json.Unmarshal([]byte(mustRun(t, env, "--output", "json", "history", "-f", recipe, "hello").stdout), &h); err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, ev := range h.Events {
		n[string(ev.Action)]++
	}
	if n["revoke"] != 1 || n["unrevoke"] != 1 {
		t.Errorf("history actions = %v, want one revoke and one unrevoke", n)
	}
}
