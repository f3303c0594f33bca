package recipes

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// setRecipe is a recipe named name with version version, baking the
// folder app/.
func setRecipe(name, version string) string {
	return `recipe "` + name + `" {
  version = "` + version + `"
  stages  = ["dev", "prod"]
}
container "c" {
  base = "scratch"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`
}

func TestVersionEqualToAStageIsAnError(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll("app", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("r.bake.hcl", []byte(setRecipe("r", "prod")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, diags := NewLoader().Load("r.bake.hcl", Options{})
	if !diags.HasErrors() || !strings.Contains(diagText(diags), `r.bake.hcl:2:13: version "prod" is also a stage name`) {
		t.Errorf("version = \"prod\" with a prod stage: %s", diagText(diags))
	}
}

func TestCheckSetFindsDuplicatesAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for name, src := range map[string]string{"a.bake.hcl": setRecipe("web", "1.0.0"), "b.bake.hcl": setRecipe("web", "2.0.0"), "c.bake.hcl": setRecipe("api", "1.0.0")} {
		if err := os.WriteFile(name, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll("app/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("app/ok", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := NewLoader()
	var rs []*Recipe
	for _, f := range []string{"a.bake.hcl", "b.bake.hcl", "c.bake.hcl"} {
		r, diags := l.Load(f, Options{})
		if diags.HasErrors() {
			t.Fatal(diagText(diags))
		}
		rs = append(rs, r)
	}
	if diags := CheckSet(rs[:1]); len(diags) != 0 {
		t.Fatalf("one clean recipe: %s", diagText(diags))
	}
	if err := syscall.Mkfifo(filepath.Join("app", "sub", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "app", "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	text := diagText(CheckSet(rs))
	for _, want := range []string{
		`b.bake.hcl:1:1: recipe "web" is defined twice`, "also defined at a.bake.hcl:1:1",
		`a.bake.hcl:8:19: layer source "app/" holds a named pipe (fifo): sub/pipe`,
		`layer source "app/" holds a socket: sock`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("CheckSet lacks %q:\n%s", want, text)
		}
	}
}
