package recipes

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// LinkPrefix starts a base or source_ami that names another recipe:
// "recipe:NAME" or "recipe:NAME/BLOCK".
const LinkPrefix = "recipe:"

// BaseRecipe is a base that names the container another recipe of the
// run bakes ("recipe:NAME[/BLOCK]"); see Container.BaseLink.
const BaseRecipe BaseKind = "recipe"

// Link is a base or source_ami that names the image another recipe
// bakes: "recipe:NAME" (that recipe's only container or machine_image
// of the kind asked for) or "recipe:NAME/BLOCK".
type Link struct {
	// Recipe is the name of the recipe linked to.
	Recipe string
	// Block is the label of its block, or "" for its only one.
	Block string
	// Range is where the base or source_ami value is written.
	Range hcl.Range
	// Resolved is what the link stands for in this run, set by the bake
	// orchestration before the dependent is baked; nil until then.
	Resolved *Resolved
}

// Resolved is the image a Link stands for: the newest image of the
// linked recipe's block, baked (or found up to date) in this run or
// earlier.
type Resolved struct {
	// Version is the linked recipe's version.
	Version string
	// Layout is the OCI layout folder of a local container image, and
	// Ref its name there ("NAME:VERSION").
	Layout, Ref string
	// Image is a registry container image by digest ("repo@sha256:…").
	Image string
	// AMI is the AMI id in the dependent's build region.
	AMI string
}

// String is "recipe:NAME" or "recipe:NAME/BLOCK".
func (l *Link) String() string {
	if l.Block == "" {
		return LinkPrefix + l.Recipe
	}
	return LinkPrefix + l.Recipe + "/" + l.Block
}

var linkNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// parseLink parses v ("recipe:NAME[/BLOCK]") written at attr; it
// reports a malformed one.
func (s *state) parseLink(attr *hcl.Attribute, v, attrName string) *Link {
	rest := strings.TrimPrefix(v, LinkPrefix)
	name, block, _ := strings.Cut(rest, "/")
	if !linkNameRE.MatchString(name) || (strings.Contains(rest, "/") && !linkNameRE.MatchString(block)) {
		s.attrError(attr, fmt.Sprintf("invalid recipe link %q", v),
			fmt.Sprintf(`Write %s = "recipe:NAME" (the image of recipe NAME of the same folder) or "recipe:NAME/BLOCK" (one of its blocks).`, attrName))
		return nil
	}
	return &Link{Recipe: name, Block: block, Range: attr.Expr.Range()}
}

// Links returns the links of r's blocks to other recipes, in file order.
func (r *Recipe) Links() []*Link {
	var out []*Link
	for _, c := range r.Containers {
		if c.BaseLink != nil {
			out = append(out, c.BaseLink)
		}
	}
	for _, m := range r.MachineImages {
		if m.SourceLink != nil {
			out = append(out, m.SourceLink)
		}
	}
	return out
}

// Graph is the recipes of a run with the links between them.
type Graph struct {
	// Recipes are the recipes, in the order given.
	Recipes []*Recipe
	// Deps maps a recipe name to the names of the recipes it links to,
	// each once, in file order.
	Deps map[string][]string
}

// LinkGraph checks the links of rs, as a bake or validate of the set rs
// sees them: every link names a recipe of rs and a block of the right
// kind, and no recipe depends on itself through links. Each problem is
// an error diagnostic at the base or source_ami value.
//
// outside are recipes a link may name that the run does not bake (the
// other recipes of a dependent's folder): a link to one is checked the
// same way but is no dependency in the Graph; the caller resolves it to
// that recipe's newest baked image.
func LinkGraph(rs []*Recipe, outside ...*Recipe) (*Graph, hcl.Diagnostics) {
	g := &Graph{Recipes: rs, Deps: map[string][]string{}}
	byName := map[string]*Recipe{}
	var names []string
	inRun := map[string]bool{}
	for _, r := range rs {
		inRun[r.Name] = true
	}
	for _, r := range append(slices.Clone(rs), outside...) {
		if _, dup := byName[r.Name]; !dup {
			byName[r.Name] = r
			names = append(names, r.Name)
		}
	}
	var diags hcl.Diagnostics
	bad := func(l *Link, summary, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: l.Range.Ptr()})
	}
	for _, r := range rs {
		check := func(l *Link, kind string, blocks []string) {
			switch {
			case len(blocks) == 0:
				bad(l, fmt.Sprintf("recipe %q has no %s to link to", l.Recipe, kind),
					fmt.Sprintf("%s names recipe %q, which bakes no %s block. Name a recipe that does.", l, l.Recipe, kind))
				return
			case l.Block == "" && len(blocks) > 1:
				bad(l, fmt.Sprintf("recipe %q has %d %s blocks", l.Recipe, len(blocks), kind),
					fmt.Sprintf("Name one: %s.", strings.Join(prefixAll(LinkPrefix+l.Recipe+"/", blocks), ", ")))
				return
			case l.Block != "" && !slices.Contains(blocks, l.Block):
				bad(l, fmt.Sprintf("recipe %q has no %s %q", l.Recipe, kind, l.Block),
					fmt.Sprintf("Its %s blocks are: %s.", kind, strings.Join(blocks, ", ")))
				return
			}
			if inRun[l.Recipe] && !slices.Contains(g.Deps[r.Name], l.Recipe) {
				g.Deps[r.Name] = append(g.Deps[r.Name], l.Recipe)
			}
		}
		for _, c := range r.Containers {
			if l := c.BaseLink; l != nil {
				if dep := linked(l, byName, names, bad); dep != nil {
					check(l, "container", containerNames(dep))
				}
			}
		}
		for _, m := range r.MachineImages {
			if l := m.SourceLink; l != nil {
				if dep := linked(l, byName, names, bad); dep != nil {
					check(l, "machine_image", machineNames(dep))
				}
			}
		}
	}
	if cyc := g.cycle(); cyc != nil {
		r := byName[cyc[0]]
		var at *Link
		for _, l := range r.Links() {
			if l.Recipe == cyc[1] {
				at = l
				break
			}
		}
		bad(at, "recipes link to each other in a cycle: "+strings.Join(cyc, " → "),
			"A recipe's base cannot be built, directly or through other recipes, on the recipe itself. Point one of these bases at an image outside the cycle.")
	}
	return g, diags
}

// linked returns the recipe l names, reporting it when there is none.
func linked(l *Link, byName map[string]*Recipe, names []string, bad func(*Link, string, string)) *Recipe {
	if dep := byName[l.Recipe]; dep != nil {
		return dep
	}
	detail := fmt.Sprintf("%s names no recipe of this run or of its folder; the recipes are: %s. A link names a recipe of the same folder, or of the files given on the command line.", l, strings.Join(names, ", "))
	if s := suggest(l.Recipe, names); s != "" {
		detail = fmt.Sprintf("Did you mean %q? ", LinkPrefix+s) + detail
	}
	bad(l, fmt.Sprintf("unknown recipe %q", l.Recipe), detail)
	return nil
}

// cycle returns a cycle of links (its first name repeated at the end),
// or nil.
func (g *Graph) cycle() []string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var found []string
	var visit func(n string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range g.Deps[n] {
			switch color[d] {
			case grey:
				i := slices.Index(stack, d)
				found = append(slices.Clone(stack[i:]), d)
				return true
			case white:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for _, r := range g.Recipes {
		if color[r.Name] == white && visit(r.Name) {
			return found
		}
	}
	return nil
}

// Order returns the recipes so that every recipe comes after those it
// links to; recipes that do not depend on each other keep the order
// given (file-name order for a folder). It assumes LinkGraph found no
// cycle.
func (g *Graph) Order() []*Recipe {
	done := map[string]bool{}
	var out []*Recipe
	for len(out) < len(g.Recipes) {
		progressed := false
		for _, r := range g.Recipes {
			if done[r.Name] {
				continue
			}
			ready := true
			for _, d := range g.Deps[r.Name] {
				ready = ready && done[d]
			}
			if ready {
				done[r.Name] = true
				out = append(out, r)
				progressed = true
				break // restart: an earlier recipe may now be ready
			}
		}
		if !progressed {
			break // a cycle: LinkGraph reports it
		}
	}
	return out
}

// Needs returns the names of the recipes name links to, directly or
// through others, name included, sorted.
func (g *Graph) Needs(name string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		for _, d := range g.Deps[n] {
			walk(d)
		}
	}
	walk(name)
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func containerNames(r *Recipe) []string {
	var out []string
	for _, c := range r.Containers {
		out = append(out, c.Name)
	}
	return out
}

func machineNames(r *Recipe) []string {
	var out []string
	for _, m := range r.MachineImages {
		out = append(out, m.Name)
	}
	return out
}

func prefixAll(p string, list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = p + s
	}
	return out
}
