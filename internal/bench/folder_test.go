package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/recipes"
)

// TestFolderRecipesHaveTwoLevelsOfBases: the folder bench's recipes load
// and bake in link order, with two levels of bases.
func TestFolderRecipesHaveTwoLevelsOfBases(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, "tree", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	folder := filepath.Join(dir, "folder")
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	var rs []*recipes.Recipe
	for name, src := range folderRecipes([]string{"a", "b"}) {
		p := filepath.Join(folder, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		r, diags := recipes.NewLoader().Load(p, recipes.Options{})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", name, diags)
		}
		rs = append(rs, r)
	}
	g, diags := recipes.LinkGraph(rs)
	if diags.HasErrors() || len(rs) != 6 {
		t.Fatalf("%d recipes: %v", len(rs), diags)
	}
	if n := g.Needs("app2"); strings.Join(n, " ") != "app2 os tools" {
		t.Errorf("app2 needs %v, want os and tools", n)
	}
}
