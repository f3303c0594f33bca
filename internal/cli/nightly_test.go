package cli

import (
	"net/http/httptest"
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
	pushBase := func() {
		t.Helper()
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := img.ConfigFile()
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture = "linux", "amd64"
		img, _ = mutate.ConfigFile(img, cfg)
		ref, err := name.ParseReference(base)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
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
	if r.code != exitFailure || !strings.Contains(r.stderr, `the recipe's version is fixed ("2.0.0" at `+fixed+`:6,13)`) ||
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
