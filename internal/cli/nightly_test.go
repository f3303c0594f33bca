package cli

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// nightlyRecipe is a recipe on base whose version is version (an HCL
// expression: var.version or a literal).
func nightlyRecipe(name, base, version string) string {
	return `variable "version" {
  type    = string
  default = "1.0.0"
}
recipe "` + name + `" {
  version = ` + version + `
  stages  = ["dev"]
}
container "` + name + `" {
  base = "` + base + `"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`
}

// TestNightlyJobRebakesAnOutdatedRecipe: the nightly job of the README,
// bakery bake -var version=NEW $(bakery -q outdated --files), rebakes a
// recipe whose base moved on under a new version; without a new version
// bake refuses and says how to give one: with -var when the version is
// var.version, by editing the recipe when it is fixed there.
func TestNightlyJobRebakesAnOutdatedRecipe(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	base := strings.TrimPrefix(srv.URL, "http://") + "/base/os:latest"
	pushBase := func() { pushRandomBase(t, base) }
	pushBase()
	dir := t.TempDir()
	t.Chdir(dir)
	writeFiles(t, dir, map[string]string{
		"recipes/web.bake.hcl":   nightlyRecipe("web", base, "var.version"),
		"recipes/fixed.bake.hcl": nightlyRecipe("fixed", base, `"2.0.0"`),
		"recipes/app/web":        "web\n",
	})
	web, fixed := filepath.Join(dir, "recipes", "web.bake.hcl"), filepath.Join(dir, "recipes", "fixed.bake.hcl")
	env := []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}
	mustRun(t, env, "-q", "bake", "recipes/")
	if r := run(t, env, "-q", "outdated", "--files"); r.code != 0 || r.stdout != "" {
		t.Fatalf("outdated right after the bake: exit %d, %q", r.code, r.stdout)
	}

	pushBase() // the base moved on
	r := run(t, env, "-q", "outdated", "--files")
	files := strings.Fields(r.stdout)
	if r.code != exitOutdated || len(files) != 2 || files[0] != fixed || files[1] != web {
		t.Fatalf("outdated --files after the base moved: exit %d, %q; want both recipe files", r.code, r.stdout)
	}
	// outdated warns that the fixed version cannot be rebaked as it is.
	if r := run(t, env, "outdated", "fixed"); !strings.Contains(r.stderr, `fixed's version "2.0.0" is written in the recipe`) {
		t.Errorf("outdated of a recipe with a fixed version does not say so:\n%s", r.stderr)
	}

	// Without a new version, each is refused with what to do.
	r = run(t, env, "-q", "bake", web)
	if r.code != exitFailure || !strings.Contains(r.stderr, "which comes from var.version: give a new one, for example -var version=1.0.1") {
		t.Errorf("rebake of web@1.0.0 on a new base: exit %d, want a message naming -var version=1.0.1:\n%s", r.code, r.stderr)
	}
	r = run(t, env, "-q", "bake", fixed)
	if r.code != exitFailure || !strings.Contains(r.stderr, `the recipe's version is fixed ("2.0.0" at `+fixed+`:6:13)`) ||
		!strings.Contains(r.stderr, `bump the recipe version (for example to "2.0.1")`) {
		t.Errorf("rebake of fixed@2.0.0 on a new base: exit %d, want a message saying the version is fixed in the recipe:\n%s", r.code, r.stderr)
	}

	// The job as documented: the new version comes from the job.
	job := append([]string{"-q", "bake", "-var", "version=1.0.1"}, web)
	mustRun(t, env, job...)
	if r := run(t, env, "-q", "outdated", "--files", web); r.code != 0 || r.stdout != "" {
		t.Errorf("outdated after the nightly bake: exit %d, %q", r.code, r.stdout)
	}
}

// TestNightlyJobAsTheREADMEWritesIt runs the README's nightly job, as
// written, in a project whose recipe's base moved on: it bakes a new
// version, and run again it does nothing.
func TestNightlyJobAsTheREADMEWritesIt(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "**The nightly job.**")
	_, after, ok2 := strings.Cut(after, "```sh\n")
	job, _, ok3 := strings.Cut(after, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no nightly job snippet after **The nightly job.**")
	}
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	base := strings.TrimPrefix(srv.URL, "http://") + "/base/os:latest"
	pushRandomBase(t, base)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"recipes/web.bake.hcl": nightlyRecipe("web", base, "var.version"), "recipes/app/web": "web\n"})
	bin := bakeryBinary(t)
	home := filepath.Join(dir, "home")
	runJob := func() string {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", job)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "BAKERY_HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the README's nightly job failed: %v\n%s\n%s", err, job, out)
		}
		return string(out)
	}
	mustRun(t, []string{"BAKERY_HOME=" + home}, "-q", "bake", filepath.Join(dir, "recipes", "web.bake.hcl"))
	if out := runJob(); out != "" {
		t.Errorf("the nightly job with nothing outdated printed %q", out)
	}
	pushRandomBase(t, base)
	if out := runJob(); !strings.Contains(out, "web@1.4.") || !strings.Contains(out, ": baked ") {
		t.Errorf("the nightly job after the base moved did not bake web@1.4.*:\n%s", out)
	}
	if r := run(t, []string{"BAKERY_HOME=" + home}, "-q", "outdated", "--files", filepath.Join(dir, "recipes", "web.bake.hcl")); r.code != 0 {
		t.Errorf("outdated after the nightly job: exit %d %q", r.code, r.stdout)
	}
}

// pushRandomBase pushes a new random linux/amd64 image to ref.
func pushRandomBase(t *testing.T, ref string) {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	img, _ = mutate.ConfigFile(img, cfg)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}
