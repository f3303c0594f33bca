package cli

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestForeignImageUnderTheVersionTag: a version tag that holds an image
// bakery did not bake is refused with a message that says so, without
// an empty bake key.
func TestForeignImageUnderTheVersionTag(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/team/hello"
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(repo + ":1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	r := run(t, []string{"BAKERY_HOME=" + t.TempDir()}, "-q", "bake", helloProject(t, repo))
	if r.code != exitFailure || !strings.Contains(r.stderr, repo+":1.0.0 already holds an image bakery did not bake") ||
		strings.Contains(r.stderr, "bake key ,") || strings.Contains(r.stderr, "(bake key )") {
		t.Errorf("bake over a foreign image: exit %d:\n%s", r.code, r.stderr)
	}
}

// repeatedContext returns a part of msg that repeats the context of the
// part before it ("looking up X: looking up X", "reading the catalog of
// container x: reading the catalog of x in layout y"), or "".
func repeatedContext(msg string) string {
	parts := strings.Split(msg, ": ")
	for i := 1; i < len(parts); i++ {
		a, b := strings.Fields(parts[i-1]), strings.Fields(parts[i])
		if len(parts[i]) > 3 && parts[i] == parts[i-1] || len(a) >= 3 && len(b) >= 3 && slices.Equal(a[:3], b[:3]) {
			return parts[i]
		}
	}
	return ""
}

// TestNoRepeatedContextInMessages: a failure is wrapped once per layer,
// each adding what it was doing, never the same context twice (the
// registry lookup of a bake used to say "looking up X: looking up X:").
func TestNoRepeatedContextInMessages(t *testing.T) {
	if got := repeatedContext("a: looking up x: looking up x: down"); got != "looking up x" {
		t.Fatalf("repeatedContext misses a repeat: %q", got)
	}
	if got := repeatedContext("reading the catalog of container x: reading the catalog of x in layout y: gone"); got == "" {
		t.Fatal("repeatedContext misses a repeated prefix")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	writeFiles(t, dir, map[string]string{
		"recipes/hello.bake.hcl": helloRecipe("127.0.0.1:1/team/hello"),
		"recipes/app/hello":      "x",
	})
	env := []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}
	for _, args := range [][]string{
		{"bake", "recipes/"},
		{"status", "hello"},
		{"promote", "hello@1.0.0", "--to", "dev"},
		{"history", "hello"},
	} {
		r := run(t, env, append([]string{"-q"}, args...)...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "127.0.0.1:1") {
			t.Errorf("bakery %v with the registry down: exit %d:\n%s", args, r.code, r.stderr)
		}
		if rep := repeatedContext(r.stderr); rep != "" {
			t.Errorf("bakery %v says %q twice in a row:\n%s", args, rep, r.stderr)
		}
	}
}

// TestReasonFlags: a missing --reason where one is required is a usage
// error (exit 2) said before anything is read, and the usage messages of
// revoke and unrevoke name only their flags, --reason optional for
// unrevoke.
func TestReasonFlags(t *testing.T) {
	t.Chdir(t.TempDir()) // no ./recipes: nothing may be loaded
	r := run(t, nil, "promote", "web@1.0.0", "--to", "prod", "--force")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--force needs --reason") {
		t.Errorf("promote --force without --reason: exit %d:\n%s", r.code, r.stderr)
	}
	r = run(t, nil, "unrevoke")
	if r.code != exitUsage || !strings.Contains(r.stderr, `bakery unrevoke web@1.4.2 [--reason "..."]`) {
		t.Errorf("unrevoke without an image: exit %d:\n%s", r.code, r.stderr)
	}
	r = run(t, nil, "revoke")
	if r.code != exitUsage || !strings.Contains(r.stderr, `bakery revoke web@1.4.2 --reason "..."`) {
		t.Errorf("revoke without an image: exit %d:\n%s", r.code, r.stderr)
	}
	for _, verb := range []string{"revoke", "unrevoke"} {
		help := mustRun(t, nil, verb, "--help").stdout
		usage := help[strings.Index(help, "USAGE:"):strings.Index(help, "OPTIONS:")]
		for _, f := range strings.Fields(usage) {
			f = strings.Trim(f, "[]")
			if strings.HasPrefix(f, "--") && !strings.Contains(help[strings.Index(help, "OPTIONS:"):], "   "+f+" ") {
				t.Errorf("%s --help: usage names %s, which is not one of its options:\n%s", verb, f, help)
			}
		}
	}
}

// TestStatusOfOneRecipeShowsTaint: status RECIPE marks a version baked
// from another recipe's revoked image as tainted, as plain status does.
func TestStatusOfOneRecipeShowsTaint(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	home := filepath.Join(dir, "home")
	app := strings.NewReplacer(`recipe "hello"`, `recipe "app"`, `container "hello" {`, `container "app" {`,
		`"scratch"`, `"oci:`+home+`:hello:1.0.0"`).Replace(helloRecipe(""))
	writeFiles(t, dir, map[string]string{
		"recipes/hello.bake.hcl": helloRecipe(""),
		"recipes/app.bake.hcl":   app,
		"recipes/app/hello":      "x",
	})
	env := []string{"BAKERY_HOME=" + home}
	mustRun(t, env, "-q", "bake", "recipes/hello.bake.hcl")
	mustRun(t, env, "-q", "bake", "recipes/app.bake.hcl")
	mustRun(t, env, "revoke", "hello@1.0.0", "--reason", "CVE-1")
	all := mustRun(t, env, "status").stdout
	one := mustRun(t, env, "status", "app").stdout
	const want = "TAINTED: baked from revoked hello@1.0.0"
	if !strings.Contains(all, want) || !strings.Contains(one, want) {
		t.Errorf("status, then status app: want both to say %q:\n%s\n%s", want, all, one)
	}
}

// TestValidateAcrossRecipes: validate of a folder reports a recipe name
// defined in two files and a fifo in a layer source folder (which bake
// would stop at), pointing at file:line,col; and a version equal to a
// stage name.
func TestValidateAcrossRecipes(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.bake.hcl": helloRecipe(""),
		"b.bake.hcl": helloRecipe(""),
		"app/hello":  "x",
	})
	if err := syscall.Mkfifo(filepath.Join(dir, "app", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "validate", dir)
	a, b := filepath.Join(dir, "a.bake.hcl"), filepath.Join(dir, "b.bake.hcl")
	for _, want := range []string{b + `:5:1: Error: recipe "hello" is defined twice`, a + `:12:19: Error: layer source "app/" holds a named pipe (fifo): pipe`} {
		if r.code != exitFailure || !strings.Contains(r.stderr, want) || strings.Contains(r.stdout, "valid") {
			t.Errorf("validate: exit %d, stdout %q, stderr lacks %q:\n%s", r.code, r.stdout, want, r.stderr)
		}
	}
	writeFiles(t, dir, map[string]string{"b.bake.hcl": strings.Replace(helloRecipe(""), `default = "1.0.0"`, `default = "prod"`, 1)})
	if err := os.Remove(filepath.Join(dir, "app", "pipe")); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "validate", "-o", "json", b)
	if e := decodeErrorDoc(t, []string{"validate", b}, r); r.code != exitFailure || e.File != b || e.Line != 6 || !strings.Contains(e.Diagnostics[0].Summary, `version "prod" is also a stage name`) {
		t.Errorf("validate of version = \"prod\": exit %d, %+v", r.code, e)
	}
}

// TestNoRepeatedContextForADamagedLayout: a layout missing a manifest
// blob is reported once per layer of context by every catalog verb.
func TestNoRepeatedContextForADamagedLayout(t *testing.T) {
	recipe := helloProject(t, "")
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	res := bakeJSON(t, env, recipe)
	if err := os.Remove(filepath.Join(home, "blobs", "sha256", strings.TrimPrefix(res.Artifacts[0].Digest, "sha256:"))); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status", "-f", recipe, "hello"},
		{"history", "-f", recipe, "hello"},
		{"promote", "-f", recipe, "hello@1.0.0", "--to", "dev"},
	} {
		r := run(t, env, args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "the layout is damaged") {
			t.Errorf("bakery %v on a damaged layout: exit %d:\n%s", args, r.code, r.stderr)
		}
		if rep := repeatedContext(r.stderr); rep != "" {
			t.Errorf("bakery %v repeats %q:\n%s", args, rep, r.stderr)
		}
	}
}
