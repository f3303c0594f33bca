package recipes

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// linkRecipe is a recipe NAME with one container on base; the base's
// value starts at line 6, column 10.
func linkRecipe(name, base string) string {
	return `recipe "` + name + `" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "` + name + `" {
  base = "` + base + `"
  layer {
    source      = "f"
    destination = "/f"
  }
}
`
}

// loadSet loads the files (name → source) of one folder, in name order.
func loadSet(t *testing.T, files map[string]string) ([]*Recipe, string) {
	t.Helper()
	dir := writeTree(t, files)
	writeFile(t, filepath.Join(dir, "f"), "f\n")
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var rs []*Recipe
	for _, n := range names {
		rs = append(rs, mustLoad(t, filepath.Join(dir, n), Options{}))
	}
	return rs, dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func orderNames(rs []*Recipe) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return strings.Join(out, " ")
}

// TestLinkGraphOrdersByBase: a recipe comes after the recipes its bases
// link to; independent recipes keep the order given (file-name order).
func TestLinkGraphOrdersByBase(t *testing.T) {
	rs, _ := loadSet(t, map[string]string{
		"a-app.bake.hcl":  linkRecipe("app", "recipe:mid"),
		"b-mid.bake.hcl":  linkRecipe("mid", "recipe:os"),
		"c-os.bake.hcl":   linkRecipe("os", "scratch"),
		"d-solo.bake.hcl": linkRecipe("solo", "scratch"),
		"e-tool.bake.hcl": linkRecipe("tool", "recipe:os/os"),
	})
	g, diags := LinkGraph(rs)
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	if got := orderNames(g.Order()); got != "os mid app solo tool" {
		t.Errorf("order = %q, want os mid app solo tool", got)
	}
	if got := g.Needs("app"); !slices.Equal(got, []string{"app", "mid", "os"}) {
		t.Errorf("Needs(app) = %v", got)
	}
	if rs[4].Containers[0].BaseLink.Block != "os" || rs[0].Containers[0].BaseKind != BaseRecipe {
		t.Errorf("links not parsed: %+v %+v", rs[4].Containers[0].BaseLink, rs[0].Containers[0])
	}
}

// TestLinkGraphReportsUnknownAndCycles: a link to no recipe of the set,
// to a block the recipe does not have, and a cycle are errors at the
// base value's file:line:col.
func TestLinkGraphReportsUnknownAndCycles(t *testing.T) {
	rs, dir := loadSet(t, map[string]string{
		"a.bake.hcl": linkRecipe("a", "recipe:b"),
		"b.bake.hcl": linkRecipe("b", "recipe:c"),
		"c.bake.hcl": linkRecipe("c", "recipe:a"),
		"d.bake.hcl": linkRecipe("d", "recipe:nope"),
		"e.bake.hcl": linkRecipe("e", "recipe:a/other"),
	})
	_, diags := LinkGraph(rs)
	got := map[string]string{}
	for _, d := range diags {
		rel, _ := filepath.Rel(dir, d.Subject.Filename)
		got[rel+":"+strings.TrimPrefix(posString(*d.Subject), d.Subject.Filename+":")] = d.Summary
	}
	want := map[string]string{
		"a.bake.hcl:6:10": "recipes link to each other in a cycle: a → b → c → a",
		"d.bake.hcl:6:10": `unknown recipe "nope"`,
		"e.bake.hcl:6:10": `recipe "a" has no container "other"`,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("at %s: %q, want %q", k, got[k], v)
		}
	}
	if len(diags) != len(want) {
		t.Errorf("got %d diagnostics, want %d:\n%s", len(diags), len(want), diagText(diags))
	}
}

// TestLinkSyntax: a malformed link is refused where it is written, and a
// source_ami may link to a recipe's machine image.
func TestLinkSyntax(t *testing.T) {
	dir := writeTree(t, map[string]string{"bad.bake.hcl": linkRecipe("bad", "recipe:"), "f": "f\n"})
	_, diags := NewLoader().Load(filepath.Join(dir, "bad.bake.hcl"), Options{})
	wantDiags(t, diags, filepath.Join(dir, "bad.bake.hcl"), []string{`6:10: invalid recipe link "recipe:"`})

	dir = writeTree(t, map[string]string{"web.bake.hcl": `recipe "web" {
  version = "1.0.0"
  stages  = ["dev"]
}
machine_image "web" {
  source_ami = "recipe:hardened/amd64"
  ssh_username = "ec2-user"
}
`})
	r := mustLoad(t, filepath.Join(dir, "web.bake.hcl"), Options{})
	if l := r.MachineImages[0].SourceLink; l == nil || l.Recipe != "hardened" || l.Block != "amd64" || r.MachineImages[0].SourceAMI != "" {
		t.Errorf("source_ami link = %+v", l)
	}
}
