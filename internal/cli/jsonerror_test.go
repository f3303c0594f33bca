package cli

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// decodeErrorDoc parses the last line of stdout as a JSON error document.
func decodeErrorDoc(t *testing.T, args []string, r result) errorBody {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var doc struct {
		Error *errorBody `json:"error"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &doc); err != nil || doc.Error == nil {
		t.Fatalf("bakery %s: stdout's last line is no JSON error document (%v):\n%s\nstderr:\n%s", strings.Join(args, " "), err, r.stdout, r.stderr)
	}
	return *doc.Error
}

// TestJSONErrorDocumentOnEveryVerb: with --output json, a failing verb
// prints {"error": {...}} on stdout, with the same fields for every
// verb, as well as the message on stderr.
func TestJSONErrorDocumentOnEveryVerb(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFiles(t, dir, map[string]string{
		"recipes/hello.bake.hcl": helloRecipe(""),
		"recipes/app/hello":      "#!/bin/sh\necho hi\n",
		"bad/bad.bake.hcl":       strings.Replace(helloRecipe(""), "entrypoint", "entrypont", 1),
		"bad/app/hello":          "x",
	})
	env := []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}
	mustRun(t, env, "-q", "bake", "recipes/hello.bake.hcl")

	for _, tc := range []struct {
		args                   []string
		code                   int
		kind, command, message string
		recipe, version        string
		file                   string
		line, column           int
		diagnostics            bool
	}{
		{args: []string{"--output", "json", "bake", "bad/bad.bake.hcl"}, code: 1, kind: "recipe", command: "bake", message: "recipe files have errors",
			file: "bad/bad.bake.hcl", line: 15, column: 3, diagnostics: true},
		{args: []string{"validate", "-o", "json", "bad/"}, code: 1, kind: "recipe", command: "validate", message: "recipe files have errors",
			file: "bad/bad.bake.hcl", line: 15, column: 3, diagnostics: true},
		{args: []string{"status", "--output=json", "nope"}, code: 1, kind: "failure", command: "status", message: `unknown recipe "nope"`, recipe: "nope"},
		{args: []string{"promote", "hello@1.0.0", "--to", "nope", "-o", "json"}, code: 1, kind: "failure", command: "promote", message: `unknown stage "nope"`,
			recipe: "hello", version: "1.0.0"},
		{args: []string{"-o", "json", "promote", "hello@1.0.0"}, code: 2, kind: "usage", command: "promote", message: "--to STAGE", recipe: "hello", version: "1.0.0"},
		{args: []string{"-o", "json", "revoke", "hello@1.0.0"}, code: 2, kind: "usage", command: "revoke", message: "give a --reason", recipe: "hello", version: "1.0.0"},
		{args: []string{"-o", "json", "adopt", "--recipe", "hello", "--version", "2.0.0", "--ami", "us-east-1:ami-0123456789abcdef0"}, code: 1, kind: "failure", command: "adopt",
			message: "recipe hello has no machine_image block", recipe: "hello", version: "2.0.0"},
		{args: []string{"-o", "json", "retire", "nope"}, code: 1, kind: "failure", command: "retire", message: `unknown recipe "nope"`},
		{args: []string{"-o", "json", "launch", "hello", "--stage", "dev"}, code: 1, kind: "failure", command: "launch", message: `no fleet "dev" block`, recipe: "hello"},
		{args: []string{"-o", "json", "bake", "--nope", "x.bake.hcl"}, code: 2, kind: "usage", command: "bake", message: "flag provided but not defined"},
		{args: []string{"-o", "json", "frobnicate"}, code: 2, kind: "usage", message: `unknown command "frobnicate"`},
	} {
		r := run(t, env, tc.args...)
		if r.code != tc.code {
			t.Errorf("bakery %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), r.code, tc.code, r.stderr)
			continue
		}
		b := decodeErrorDoc(t, tc.args, r)
		if b.ExitCode != tc.code || b.Kind != tc.kind || b.Command != tc.command || !strings.Contains(b.Message, tc.message) ||
			b.Recipe != tc.recipe || b.Version != tc.version || b.File != tc.file || b.Line != tc.line || b.Column != tc.column ||
			(len(b.Diagnostics) > 0) != tc.diagnostics {
			t.Errorf("bakery %s: error document %+v; want exit_code %d, kind %q, command %q, message with %q, recipe %q, version %q, at %s:%d:%d, diagnostics %v",
				strings.Join(tc.args, " "), b, tc.code, tc.kind, tc.command, tc.message, tc.recipe, tc.version, tc.file, tc.line, tc.column, tc.diagnostics)
		}
		if !strings.Contains(r.stderr, "bakery: ") {
			t.Errorf("bakery %s: no message on stderr:\n%s", strings.Join(tc.args, " "), r.stderr)
		}
		if tc.kind == "usage" && b.Hint == "" {
			t.Errorf("bakery %s: a usage error without a hint: %+v", strings.Join(tc.args, " "), b)
		}
	}
	// Without --output json, stdout holds no error document.
	if r := run(t, env, "status", "nope"); r.code != 1 || r.stdout != "" {
		t.Errorf("status nope in text: exit %d, stdout %q", r.code, r.stdout)
	}
	// --output text after --output json wins, as for every flag.
	if r := run(t, env, "-o", "json", "status", "-o", "text", "nope"); r.code != 1 || r.stdout != "" {
		t.Errorf("status -o text after -o json: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestJSONErrorDocumentForAFailingRecipeInStatus: status prints what it
// could read and then the error document naming what it could not.
func TestJSONErrorDocumentForAFailingRecipeInStatus(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFiles(t, dir, map[string]string{
		"recipes/hello.bake.hcl": helloRecipe(""),
		"recipes/app/hello":      "x",
		"recipes/far.bake.hcl":   strings.Replace(strings.Replace(helloRecipe("127.0.0.1:1/team/far"), `"hello"`, `"far"`, 2), "hello", "far", -1),
	})
	r := run(t, []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}, "-o", "json", "status")
	if r.code != 1 {
		t.Fatalf("status with an unreachable registry: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"recipe":"hello"`) {
		t.Fatalf("status stdout = %q, want hello's status and an error document", r.stdout)
	}
	b := decodeErrorDoc(t, []string{"status"}, r)
	if !strings.Contains(b.Message, "could not read 1 of 2 recipes (far)") || b.ExitCode != 1 {
		t.Errorf("error document = %+v", b)
	}
}

// TestStatusJSONNamesTheRefAndTheBakeTime: status's artifacts say "ref"
// (as a bake's result), and a container version's created time is when
// it was baked, not the reproducible config time.
func TestStatusJSONNamesTheRefAndTheBakeTime(t *testing.T) {
	recipe := helloProject(t, "")
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	bakedAt := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	bake := mustRunAt(t, bakedAt, env, "-q", "--output", "json", "bake", recipe)
	var res struct {
		Artifacts []struct {
			Ref string `json:"ref"`
		} `json:"artifacts"`
	}
	if err := json.Unmarshal([]byte(bake.stdout), &res); err != nil || len(res.Artifacts) != 1 {
		t.Fatalf("bake JSON %q: %v", bake.stdout, err)
	}
	r := mustRunAt(t, bakedAt.Add(time.Hour), env, "--output", "json", "status", "-f", recipe)
	var st struct {
		Versions []struct {
			Created   time.Time        `json:"created"`
			Artifacts []map[string]any `json:"artifacts"`
		} `json:"versions"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Versions) != 1 || len(st.Versions[0].Artifacts) != 1 {
		t.Fatalf("status JSON %q: %v", r.stdout, err)
	}
	v := st.Versions[0]
	if !v.Created.Equal(bakedAt) {
		t.Errorf("created = %s, want the bake's time %s", v.Created, bakedAt)
	}
	if _, old := v.Artifacts[0]["reference"]; old || v.Artifacts[0]["ref"] != res.Artifacts[0].Ref {
		t.Errorf("status artifact = %v, want \"ref\": %q as bake says", v.Artifacts[0], res.Artifacts[0].Ref)
	}
}

// TestEveryEventHasTheSameActor: a bake and a promotion made without
// BAKERY_ACTOR record the same actor, from the same fallbacks: the CI's
// user, else $USER, else "unknown"; never an empty one.
func TestEveryEventHasTheSameActor(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "unknown"},
		{[]string{"USER=ann"}, "ann"},
		{[]string{"USER=ann", "GITHUB_ACTOR=bob"}, "bob"},
		{[]string{"USER=ann", "GITHUB_ACTOR=bob", "BAKERY_ACTOR=cy"}, "cy"},
	} {
		recipe := helloProject(t, "")
		env := append([]string{"BAKERY_HOME=" + t.TempDir()}, tc.env...)
		mustRun(t, env, "-q", "bake", recipe)
		mustRun(t, env, "promote", "-f", recipe, "hello@1.0.0", "--to", "dev")
		var h historyDoc
		if err := json.Unmarshal([]byte(mustRun(t, env, "--output", "json", "history", "-f", recipe, "hello").stdout), &h); err != nil {
			t.Fatal(err)
		}
		if len(h.Events) != 2 {
			t.Fatalf("history = %+v, want a bake and a promotion", h.Events)
		}
		for _, ev := range h.Events {
			if ev.Actor != tc.want {
				t.Errorf("env %v: %s event by %q, want %q", tc.env, ev.Action, ev.Actor, tc.want)
			}
		}
	}
}

// jsonKeys collects every object key in the JSON documents of out (one
// per line).
func jsonKeys(t *testing.T, out string) []string {
	t.Helper()
	var keys []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				keys = append(keys, k)
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		walk(v)
	}
	return keys
}

// TestJSONFieldNamesAgreeAcrossVerbs: every verb's JSON names its fields
// in lower snake_case, and the image's reference is "ref" everywhere
// (status used to say "reference").
func TestJSONFieldNamesAgreeAcrossVerbs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFiles(t, dir, map[string]string{"recipes/hello.bake.hcl": helloRecipe(""), "recipes/app/hello": "x"})
	env := []string{"BAKERY_HOME=" + filepath.Join(dir, "home"), "BAKERY_ACTOR=ann"}
	for _, v := range []string{"1.0.0", "1.0.1"} {
		mustRun(t, env, "-q", "bake", "-var", "version="+v, "recipes/hello.bake.hcl")
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	for _, args := range [][]string{
		{"bake", "recipes/"},
		{"validate", "recipes/"},
		{"promote", "hello@1.0.0", "--to", "dev"},
		{"status"},
		{"history", "hello"},
		{"revoke", "hello@1.0.0", "--reason", "CVE-1"},
		{"outdated"},
		{"retire"},
		{"fmt", "recipes/"},
		{"version"},
	} {
		r := run(t, env, append([]string{"-q", "--output", "json"}, args...)...)
		if r.code != 0 && r.code != exitOutdated {
			t.Fatalf("bakery %v: exit %d\n%s", args, r.code, r.stderr)
		}
		for _, k := range jsonKeys(t, r.stdout) {
			if !snake.MatchString(k) || k == "reference" {
				t.Errorf("bakery %v: JSON field %q (want lower snake_case, and ref for an image's reference)", args, k)
			}
		}
	}
}
