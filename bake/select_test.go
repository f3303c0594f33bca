package bake_test

import (
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/bake"
	"github.com/bakery-sh/bakery/recipes"
)

// TestSelectionApply: Only keeps the named blocks, Except drops them,
// across container and machine_image blocks; recipes left with nothing
// are dropped and the inputs are not changed.
func TestSelectionApply(t *testing.T) {
	web := &recipes.Recipe{Name: "web",
		Containers:    []*recipes.Container{{Name: "app"}, {Name: "sidecar"}},
		MachineImages: []*recipes.MachineImage{{Name: "server"}, {Name: "app"}},
	}
	base := &recipes.Recipe{Name: "base", MachineImages: []*recipes.MachineImage{{Name: "base"}}}
	rs := []*recipes.Recipe{web, base}
	for _, c := range []struct {
		name string
		sel  bake.Selection
		want string
	}{
		{"zero", bake.Selection{}, "web[app sidecar | server app] base[ | base]"},
		{"only one", bake.Selection{Only: []string{"server"}}, "web[ | server]"},
		{"only a shared label", bake.Selection{Only: []string{"app"}}, "web[app | app]"},
		{"only several", bake.Selection{Only: []string{"sidecar", " base "}}, "web[sidecar | ] base[ | base]"},
		{"only comma-separated", bake.Selection{Only: []string{"sidecar, base", "server"}}, "web[sidecar | server] base[ | base]"},
		{"except comma-separated", bake.Selection{Except: []string{"app,base"}}, "web[sidecar | server]"},
		{"except", bake.Selection{Except: []string{"app", "base"}}, "web[sidecar | server]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.sel.Apply(rs)
			if err != nil {
				t.Fatal(err)
			}
			if s := describe(got); s != c.want {
				t.Errorf("Apply = %s, want %s", s, c.want)
			}
			if s := describe(rs); s != "web[app sidecar | server app] base[ | base]" {
				t.Errorf("Apply changed its input: %s", s)
			}
		})
	}
}

// TestSelectionApplyRefuses: unknown names (listing the blocks there
// are), Only with Except, and an Except that leaves nothing are errors.
func TestSelectionApplyRefuses(t *testing.T) {
	rs := []*recipes.Recipe{{Name: "web",
		Containers:    []*recipes.Container{{Name: "app"}},
		MachineImages: []*recipes.MachineImage{{Name: "server"}},
	}}
	for _, c := range []struct {
		name string
		sel  bake.Selection
		want []string
	}{
		{"unknown only", bake.Selection{Only: []string{"app", "nope", "gone"}}, []string{`named "nope", "gone"`, "blocks are app, server"}},
		{"unknown in a list", bake.Selection{Only: []string{"app,nope"}}, []string{`named "nope"`, "blocks are app, server"}},
		{"unknown except", bake.Selection{Except: []string{"nope"}}, []string{`named "nope"`, "blocks are app, server"}},
		{"both", bake.Selection{Only: []string{"app"}, Except: []string{"server"}}, []string{"not both"}},
		{"nothing left", bake.Selection{Except: []string{"app", "server"}}, []string{"leaves nothing to bake"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.sel.Apply(rs)
			if err == nil {
				t.Fatalf("Apply = %s, want an error", describe(got))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// describe writes recipes as NAME[containers | machine images].
func describe(rs []*recipes.Recipe) string {
	var parts []string
	for _, r := range rs {
		var cs, ms []string
		for _, c := range r.Containers {
			cs = append(cs, c.Name)
		}
		for _, m := range r.MachineImages {
			ms = append(ms, m.Name)
		}
		parts = append(parts, r.Name+"["+strings.Join(cs, " ")+" | "+strings.Join(ms, " ")+"]")
	}
	return strings.Join(parts, " ")
}
