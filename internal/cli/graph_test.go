package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/bake"
	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
)

// folderRecipe is a container recipe NAME on base whose version is
// var.VERSIONVAR (default 1.0.0), and whose layer is files/NAME. Its
// base value is at line 9, column 10.
func folderRecipe(name, base, versionVar string) string {
	return fmt.Sprintf(`variable %q {
  default = "1.0.0"
}
recipe %q {
  version = var.%s
  stages  = ["dev"]
}
container %q {
  base = %q
  layer {
    source      = "files/%s"
    destination = "/%s"
  }
}
`, versionVar, name, versionVar, name, base, name, name)
}

// sixRecipes is a folder of six recipes with two levels of bases:
// os ← tools ← (app2, app3), os ← app1, and solo on scratch. tools
// takes its version from var.tools_version, app2 and app3 from
// var.apps_version, the others from their own variable.
func sixRecipes(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"recipes/a-app1.bake.hcl":  folderRecipe("app1", "recipe:os", "app1_version"),
		"recipes/b-app2.bake.hcl":  folderRecipe("app2", "recipe:tools", "apps_version"),
		"recipes/c-app3.bake.hcl":  folderRecipe("app3", "recipe:tools/tools", "apps_version"),
		"recipes/d-os.bake.hcl":    folderRecipe("os", "scratch", "os_version"),
		"recipes/e-solo.bake.hcl":  folderRecipe("solo", "scratch", "solo_version"),
		"recipes/f-tools.bake.hcl": folderRecipe("tools", "recipe:os", "tools_version"),
	}
	for _, n := range []string{"app1", "app2", "app3", "os", "solo", "tools"} {
		files["recipes/files/"+n] = n + "\n"
	}
	writeFiles(t, dir, files)
}

// bakeDocs decodes the JSON documents of a bake, one per recipe.
func bakeDocs(t *testing.T, stdout string) []bake.Result {
	t.Helper()
	var out []bake.Result
	dec := json.NewDecoder(strings.NewReader(stdout))
	for dec.More() {
		var r bake.Result
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("decoding %q: %v", stdout, err)
		}
		if r.Recipe != "" { // not the error document of a failed run
			out = append(out, r)
		}
	}
	return out
}

// outcomes renders the documents as "recipe@version:word" in order.
func outcomes(docs []bake.Result) string {
	var out []string
	for _, d := range docs {
		word := "baked"
		switch {
		case d.Outcome != "":
			word = d.Outcome
		case d.Cached:
			word = "up-to-date"
		}
		out = append(out, d.Recipe+"@"+d.Version+":"+word)
	}
	return strings.Join(out, " ")
}

// TestBakeFolderFollowsBaseLinks: a folder bake orders the recipes by
// their base links, bakes each on the image its linked recipe produced
// (and records the link), finds everything up to date the second time,
// and after a change of tools' file bakes tools and exactly the recipes
// on it: with their old versions they are refused, as their bake keys
// follow the new base.
func TestBakeFolderFollowsBaseLinks(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sixRecipes(t, dir)
	home := filepath.Join(dir, "home")
	env := []string{"BAKERY_HOME=" + home}

	r := mustRun(t, env, "-q", "--output", "json", "bake", "--parallel", "2", "recipes/")
	if got := outcomes(bakeDocs(t, r.stdout)); got != "os@1.0.0:baked app1@1.0.0:baked solo@1.0.0:baked tools@1.0.0:baked app2@1.0.0:baked app3@1.0.0:baked" {
		t.Fatalf("first bake: %s", got)
	}
	layout, err := catalogoci.OpenLayout(home)
	if err != nil {
		t.Fatal(err)
	}
	for app, base := range map[string]string{"app1": "os", "tools": "os", "app2": "tools", "app3": "tools"} {
		img, err := layout.Lookup(t.Context(), app+":1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		b, err := layout.Lookup(t.Context(), base+":1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		if img.BaseDigest != b.Digest || !strings.HasPrefix(img.BaseName, "recipe:"+base) || !strings.HasSuffix(img.BaseName, "@1.0.0") {
			t.Errorf("%s was baked on %s (%s), want %s's image %s", app, img.BaseName, img.BaseDigest, base, b.Digest)
		}
	}

	r = mustRun(t, env, "bake", "recipes/")
	for _, n := range []string{"os", "app1", "solo", "tools", "app2", "app3"} {
		if !regexpLine(r.stdout, n+"@1.0.0", "up to date") {
			t.Errorf("second bake: %s is not up to date in the summary:\n%s", n, r.stdout)
		}
	}
	if strings.Contains(r.stdout, " baked ") {
		t.Errorf("second bake baked something:\n%s", r.stdout)
	}

	writeFiles(t, dir, map[string]string{"recipes/files/tools": "tools, changed\n"})
	r = run(t, env, "-q", "--output", "json", "bake", "-var", "tools_version=1.1.0", "recipes/")
	if got := outcomes(bakeDocs(t, r.stdout)); r.code != exitFailure || got != "os@1.0.0:up-to-date app1@1.0.0:up-to-date solo@1.0.0:up-to-date tools@1.1.0:baked" ||
		strings.Count(r.stderr, "already holds other content") != 2 {
		t.Fatalf("bake after tools changed, tools with a new version: exit %d, %s; want app2 and app3 refused on the new base:\n%s", r.code, got, r.stderr)
	}
	r = mustRun(t, env, "-q", "--output", "json", "bake", "-var", "tools_version=1.1.0", "-var", "apps_version=1.1.0", "recipes/")
	if got := outcomes(bakeDocs(t, r.stdout)); got != "os@1.0.0:up-to-date app1@1.0.0:up-to-date solo@1.0.0:up-to-date tools@1.1.0:up-to-date app2@1.1.0:baked app3@1.1.0:baked" {
		t.Fatalf("bake with new versions for tools' dependents: %s", got)
	}
	img, err := layout.Lookup(t.Context(), "app3:1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	tools, err := layout.Lookup(t.Context(), "tools:1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if img.BaseDigest != tools.Digest {
		t.Errorf("app3@1.1.0 is on %s, want tools@1.1.0 %s", img.BaseDigest, tools.Digest)
	}
}

// regexpLine reports whether a line of out holds both a and b.
func regexpLine(out, a, b string) bool {
	return slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { return strings.Contains(l, a) && strings.Contains(l, b) })
}

// TestBakeFolderFailedBaseSkipsDependents: os cannot be baked (its
// registry does not answer); every recipe on it, directly or not, is
// skipped and says so, solo bakes, and the run fails.
func TestBakeFolderFailedBaseSkipsDependents(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sixRecipes(t, dir)
	writeFiles(t, dir, map[string]string{"recipes/d-os.bake.hcl": strings.Replace(folderRecipe("os", "scratch", "os_version"),
		"  layer {", "  repository = \"127.0.0.1:1/os\"\n  layer {", 1)})
	env := []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}
	r := run(t, env, "-q", "bake", "recipes/")
	if r.code != exitFailure {
		t.Fatalf("exit %d, want %d:\n%s\n%s", r.code, exitFailure, r.stdout, r.stderr)
	}
	for n, base := range map[string]string{"app1": "os", "tools": "os", "app2": "tools", "app3": "tools"} {
		if !regexpLine(r.stdout, n+"@1.0.0", "skipped ("+base+" did not bake)") {
			t.Errorf("%s is not skipped for %s in the summary:\n%s", n, base, r.stdout)
		}
	}
	if !regexpLine(r.stdout, "solo@1.0.0", "baked") || !regexpLine(r.stdout, "os@1.0.0", "failed") {
		t.Errorf("summary:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "1 of 6 recipes failed (os); skipped, as their base did not bake: app1, tools, app2, app3") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	r = run(t, env, "-q", "--output", "json", "bake", "recipes/")
	docs := bakeDocs(t, r.stdout)
	if got := outcomes(docs); got != "app1@1.0.0:skipped solo@1.0.0:up-to-date tools@1.0.0:skipped app2@1.0.0:skipped app3@1.0.0:skipped" ||
		docs[0].SkippedFor != "os" || docs[3].SkippedFor != "tools" {
		t.Errorf("JSON of a run with a failed base: %s", got)
	}
}

// TestBakeFolderRefusesCycles: a cycle is refused before anything is
// baked, at the base value of the recipe that closes it, by bake and by
// validate.
func TestBakeFolderRefusesCycles(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sixRecipes(t, dir)
	writeFiles(t, dir, map[string]string{"recipes/d-os.bake.hcl": folderRecipe("os", "recipe:app2", "os_version")})
	home := filepath.Join(dir, "home")
	env := []string{"BAKERY_HOME=" + home}
	for _, verb := range []string{"bake", "validate"} {
		r := run(t, env, verb, "recipes/")
		want := filepath.Join("recipes", "d-os.bake.hcl") + ":9:10: Error: recipes link to each other in a cycle: os → app2 → tools → os"
		if r.code != exitFailure || !strings.Contains(r.stderr, want) {
			t.Errorf("%s of a cycle: exit %d, want %q in\n%s", verb, r.code, want, r.stderr)
		}
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("a refused bake wrote %s: %v", home, err)
	}
	writeFiles(t, dir, map[string]string{"recipes/d-os.bake.hcl": folderRecipe("os", "recipe:nope", "os_version")})
	r := run(t, env, "validate", "recipes/")
	if r.code != exitFailure || !strings.Contains(r.stderr, filepath.Join("recipes", "d-os.bake.hcl")+`:9:10: Error: unknown recipe "nope"`) {
		t.Errorf("validate of an unknown link: exit %d\n%s", r.code, r.stderr)
	}
}

// TestBakeOnlyRecipeBakesWhatItNeeds: --only app2 bakes os, tools and
// app2, nothing else.
func TestBakeOnlyRecipeBakesWhatItNeeds(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sixRecipes(t, dir)
	r := mustRun(t, []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}, "-q", "--output", "json", "bake", "--only", "app2", "recipes/")
	if got := outcomes(bakeDocs(t, r.stdout)); got != "os@1.0.0:baked tools@1.0.0:baked app2@1.0.0:baked" {
		t.Errorf("--only app2: %s", got)
	}
}

// TestOutdatedFollowsBaseLinks: outdated compares what a linked recipe
// was baked on with the newest image of the recipe it links to: after os
// alone is baked under a new version, the recipes directly on it are
// outdated, and those on tools are not.
func TestOutdatedFollowsBaseLinks(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sixRecipes(t, dir)
	env := []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}
	mustRun(t, env, "-q", "bake", "recipes/")
	if r := run(t, env, "-q", "outdated", "--files"); r.code != 0 || r.stdout != "" {
		t.Fatalf("outdated right after the bake: exit %d, %q\n%s", r.code, r.stdout, r.stderr)
	}
	writeFiles(t, dir, map[string]string{"recipes/files/os": "os, changed\n"})
	mustRun(t, env, "-q", "bake", "-var", "os_version=1.1.0", "recipes/d-os.bake.hcl")
	r := run(t, env, "-q", "outdated", "--files")
	want := filepath.Join(dir, "recipes", "a-app1.bake.hcl") + "\n" + filepath.Join(dir, "recipes", "f-tools.bake.hcl") + "\n"
	if r.code != exitOutdated || r.stdout != want {
		t.Errorf("outdated after os@1.1.0: exit %d, %q, want app1 and tools:\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestRevokedBaseRecipeTaintsItsDependents: revoking os@1.0.0 taints the
// recipes baked on it through the link (app1, tools), not those on tools.
func TestRevokedBaseRecipeTaintsItsDependents(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sixRecipes(t, dir)
	env := []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}
	mustRun(t, env, "-q", "bake", "recipes/")
	mustRun(t, env, "-q", "revoke", "os@1.0.0", "--reason", "CVE-2026-1")
	r := mustRun(t, env, "status")
	var tainted []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, "TAINTED: baked from revoked os@1.0.0") {
			tainted = append(tainted, l)
		}
	}
	if len(tainted) != 2 || !strings.Contains(r.stdout, "app1") {
		t.Errorf("status after revoking os@1.0.0: %d tainted lines, want app1's and tools':\n%s", len(tainted), r.stdout)
	}
}

// TestBakeLinkOutsideTheRun: a recipe baked alone takes, for a link to
// a recipe of its folder that the run does not bake, that recipe's newest
// baked image; never baked, it is refused saying what to do, and
// validate of the file alone knows the folder's recipes.
func TestBakeLinkOutsideTheRun(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sixRecipes(t, dir)
	home := filepath.Join(dir, "home")
	env := []string{"BAKERY_HOME=" + home}
	app1 := filepath.Join("recipes", "a-app1.bake.hcl")
	mustRun(t, env, "validate", app1)
	r := run(t, env, "-q", "bake", app1)
	if r.code != exitFailure || !strings.Contains(r.stderr, "recipe:os has never been baked, and it is not part of this run: bake them together (bakery bake "+filepath.Join(dir, "recipes")+")") {
		t.Fatalf("bake of app1 alone before os was baked: exit %d\n%s", r.code, r.stderr)
	}
	mustRun(t, env, "-q", "bake", "-var", "os_version=2.0.0", filepath.Join("recipes", "d-os.bake.hcl"))
	docs := bakeDocs(t, mustRun(t, env, "-q", "--output", "json", "bake", app1).stdout)
	if got := outcomes(docs); got != "app1@1.0.0:baked" {
		t.Fatalf("bake of app1 alone: %s", got)
	}
	layout, err := catalogoci.OpenLayout(home)
	if err != nil {
		t.Fatal(err)
	}
	img, err := layout.Lookup(t.Context(), "app1:1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	os2, err := layout.Lookup(t.Context(), "os:2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if img.BaseDigest != os2.Digest || img.BaseName != "recipe:os@2.0.0" {
		t.Errorf("app1 baked alone is on %s %s, want os@2.0.0 %s", img.BaseName, img.BaseDigest, os2.Digest)
	}
}

// TestBakeFolderLinesNameTheirRecipe: off a terminal, every step line of
// a folder bake names its recipe, so the interleaved streams of recipes
// baking at once stay readable.
func TestBakeFolderLinesNameTheirRecipe(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sixRecipes(t, dir)
	r := mustRun(t, []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}, "bake", "--parallel", "2", "recipes/")
	steps := 0
	for _, l := range strings.Split(r.stderr, "\n") {
		_, step, ok := strings.Cut(l, `step="`)
		if !ok {
			continue
		}
		steps++
		name, _, _ := strings.Cut(step, "]")
		if !strings.HasPrefix(step, "[") || !strings.HasPrefix(step[len(name)+2:], strings.TrimPrefix(name, "[")+": ") {
			t.Errorf("step line without its recipe: %s", l)
		}
	}
	if steps == 0 || !strings.Contains(r.stderr, `step="[app2] app2: resolve base recipe:tools"`) {
		t.Errorf("no step lines naming their recipe:\n%s", r.stderr)
	}

	// The stream shows the order and the bound: a recipe's first line
	// comes after the last line of the recipe it is built on, and never
	// more than 2 recipes (--parallel 2) are between their first and last
	// line at once.
	first, last := map[string]int{}, map[string]int{}
	lines := strings.Split(r.stderr, "\n")
	for i, l := range lines {
		_, step, ok := strings.Cut(l, `step="[`)
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(step, "]")
		if _, seen := first[name]; !seen {
			first[name] = i
		}
		last[name] = i
	}
	for app, base := range map[string]string{"app1": "os", "tools": "os", "app2": "tools", "app3": "tools"} {
		if first[app] <= last[base] {
			t.Errorf("%s's first line (%d) is not after %s's last (%d)", app, first[app], base, last[base])
		}
	}
	for i := range lines {
		open := 0
		for n := range first {
			if first[n] <= i && i <= last[n] {
				open++
			}
		}
		if open > 2 {
			t.Fatalf("line %d: %d recipes baking at once, want at most 2:\n%s", i, open, r.stderr)
		}
	}
}

// TestOutdatedBeforeAnyBake: in a folder never baked, a recipe on a
// base recipe is reported never baked, like the others, not an error.
func TestOutdatedBeforeAnyBake(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	sixRecipes(t, dir)
	r := run(t, []string{"BAKERY_HOME=" + filepath.Join(dir, "home")}, "-q", "outdated", "--files")
	if r.code != exitOutdated || strings.Count(r.stdout, "\n") != 6 {
		t.Errorf("outdated of a folder never baked: exit %d, %q\n%s", r.code, r.stdout, r.stderr)
	}
}
