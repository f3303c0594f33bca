package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/bakery-sh/bakery"

// verbs are the top-level packages that must not import each other.
var verbs = []string{"bake", "promote", "launch", "retire", "adopt"}

// tree returns which verb tree a package belongs to ("" for none).
func tree(pkg string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	for _, v := range verbs {
		if rel == v || strings.HasPrefix(rel, v+"/") {
			return v
		}
	}
	return ""
}

func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		seen++
		rel := strings.TrimPrefix(pkg, module+"/")
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			irel := strings.TrimPrefix(imp, module+"/")
			if from, to := tree(pkg), tree(imp); from != "" && to != "" && from != to {
				t.Errorf("%s imports %s: %s and %s must meet in catalog, not import each other", rel, irel, from, to)
			}
			if (strings.HasPrefix(rel, "catalog") || rel == "recipes") && (tree(imp) != "" || strings.HasPrefix(irel, "internal/cli")) {
				t.Errorf("%s imports %s: the catalog and recipe packages must not depend on the verbs", rel, irel)
			}
			if irel == "internal/cli" && rel != "cmd/bakery" {
				t.Errorf("%s imports internal/cli: only cmd/bakery may", rel)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("go list saw only %d packages", seen)
	}
}

func TestTreeClassifiesVerbs(t *testing.T) {
	for pkg, want := range map[string]string{
		module + "/bake/oci":    "bake",
		module + "/bake":        "bake",
		module + "/bakery":      "",
		module + "/retire":      "retire",
		module + "/catalog/oci": "",
		module + "/adopt":       "adopt",
	} {
		if got := tree(pkg); got != want {
			t.Errorf("tree(%s) = %q, want %q", pkg, got, want)
		}
	}
}
