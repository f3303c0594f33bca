package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
)

// autoRecipe is a container recipe NAME on base with version = "auto",
// whose layer is files/NAME.
func autoRecipe(name, base string) string {
	return fmt.Sprintf(`recipe %q {
  version = "auto"
  stages  = ["dev"]
}
container %q {
  base = %q
  layer {
    source      = "files/%s"
    destination = "/%s"
  }
}
`, name, name, base, name, name)
}

// TestBakeFolderOfAutoVersionsRebakesExactlyTheDependents is the nightly
// job of issue 14: six recipes with two levels of base links (os ← tools
// ← app2, app3; os ← app1; solo), all version = "auto". The first run
// bakes all, each on its base's image, as DATE.1; the second bakes
// nothing and reports those versions; after tools' file changes, the
// next run bakes tools and exactly the recipes on it, each under a new
// version, and finds the others up to date at theirs.
func TestBakeFolderOfAutoVersionsRebakesExactlyTheDependents(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	files := map[string]string{
		"recipes/a-app1.bake.hcl":  autoRecipe("app1", "recipe:os"),
		"recipes/b-app2.bake.hcl":  autoRecipe("app2", "recipe:tools"),
		"recipes/c-app3.bake.hcl":  autoRecipe("app3", "recipe:tools"),
		"recipes/d-os.bake.hcl":    autoRecipe("os", "scratch"),
		"recipes/e-solo.bake.hcl":  autoRecipe("solo", "scratch"),
		"recipes/f-tools.bake.hcl": autoRecipe("tools", "recipe:os"),
	}
	for _, n := range []string{"app1", "app2", "app3", "os", "solo", "tools"} {
		files["recipes/files/"+n] = n + "\n"
	}
	writeFiles(t, dir, files)
	home := filepath.Join(dir, "home")
	env := []string{"BAKERY_HOME=" + home}
	day := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)

	r := mustRunAt(t, day, env, "-q", "--output", "json", "bake", "--parallel", "2", "recipes/")
	want := "os@2026.11.26.1:baked app1@2026.11.26.1:baked solo@2026.11.26.1:baked tools@2026.11.26.1:baked app2@2026.11.26.1:baked app3@2026.11.26.1:baked"
	if got := outcomes(bakeDocs(t, r.stdout)); got != want {
		t.Fatalf("first night: %s\nwant %s", got, want)
	}
	layout, err := catalogoci.OpenLayout(home)
	if err != nil {
		t.Fatal(err)
	}
	onBase := func(app, base, appVersion, baseVersion string) {
		t.Helper()
		img, err := layout.Lookup(t.Context(), app+":"+appVersion)
		if err != nil || img == nil {
			t.Fatalf("looking up %s:%s: %v", app, appVersion, err)
		}
		b, err := layout.Lookup(t.Context(), base+":"+baseVersion)
		if err != nil || b == nil {
			t.Fatalf("looking up %s:%s: %v", base, baseVersion, err)
		}
		if img.BaseDigest != b.Digest {
			t.Errorf("%s@%s is on %s, want %s@%s (%s)", app, appVersion, img.BaseDigest, base, baseVersion, b.Digest)
		}
	}
	onBase("tools", "os", "2026.11.26.1", "2026.11.26.1")
	onBase("app2", "tools", "2026.11.26.1", "2026.11.26.1")

	r = mustRunAt(t, day.Add(24*time.Hour), env, "-q", "--output", "json", "bake", "recipes/")
	want = strings.ReplaceAll(want, ":baked", ":up-to-date")
	if got := outcomes(bakeDocs(t, r.stdout)); got != want {
		t.Fatalf("second night, nothing changed: %s\nwant %s", got, want)
	}

	writeFiles(t, dir, map[string]string{"recipes/files/tools": "tools, changed\n"})
	r = mustRunAt(t, day.Add(48*time.Hour), env, "-q", "--output", "json", "bake", "recipes/")
	want = "os@2026.11.26.1:up-to-date app1@2026.11.26.1:up-to-date solo@2026.11.26.1:up-to-date tools@2026.11.28.1:baked app2@2026.11.28.1:baked app3@2026.11.28.1:baked"
	if got := outcomes(bakeDocs(t, r.stdout)); got != want {
		t.Fatalf("third night, tools changed: %s\nwant %s", got, want)
	}
	onBase("app3", "tools", "2026.11.28.1", "2026.11.28.1")
	onBase("tools", "os", "2026.11.28.1", "2026.11.26.1")
}
