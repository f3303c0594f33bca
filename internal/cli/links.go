package cli

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/recipes"
)

// siblingRecipes returns the recipes that links of rs name but rs does
// not hold, found among the *.bake.hcl files of the linking recipe's
// folder (loaded for what their catalogs need; files with errors are
// passed over: a link to them stays unknown).
func siblingRecipes(rs []*recipes.Recipe) []*recipes.Recipe {
	have := map[string]bool{}
	for _, r := range rs {
		have[r.Name] = true
	}
	var out []*recipes.Recipe
	loaded := map[string]bool{}
	for _, r := range rs {
		for _, l := range r.Links() {
			if have[l.Recipe] {
				continue
			}
			files, _ := filepath.Glob(filepath.Join(filepath.Dir(r.File), "*.bake.hcl"))
			for _, f := range files {
				if loaded[f] || slices.ContainsFunc(rs, func(x *recipes.Recipe) bool { return x.File == f }) {
					continue
				}
				loaded[f] = true
				d, diags := recipes.NewLoader().Load(f, recipes.Options{Scope: recipes.ScopeBases, SharedVars: true})
				if diags.HasErrors() || d == nil || have[d.Name] {
					continue
				}
				have[d.Name] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// resolveLinksNewest returns r with its links resolved to the newest
// baked image of the recipe each names (among known), as a run that does
// not bake that recipe sees it; with only, just the links to the recipes
// only names. It fails, saying what to do, when that recipe was never
// baked. r is not changed.
func (s *session) resolveLinksNewest(r *recipes.Recipe, known []*recipes.Recipe, only map[string]bool) (*recipes.Recipe, error) {
	var cp *recipes.Recipe
	clone := func() {
		if cp == nil {
			c := *r
			c.Containers, c.MachineImages = slices.Clone(r.Containers), slices.Clone(r.MachineImages)
			cp = &c
		}
	}
	newest := func(l *recipes.Link, kind catalog.Kind) (*recipes.Recipe, string, *catalog.Entry, error) {
		i := slices.IndexFunc(known, func(d *recipes.Recipe) bool { return d.Name == l.Recipe })
		if i < 0 {
			return nil, "", nil, fmt.Errorf("checking the base of %s: %s names no recipe of %s: bake or name its file too", r.Name, l, filepath.Dir(r.File))
		}
		dep := known[i]
		block := l.Block
		if block == "" {
			names := blockLabels(dep)
			if kind == catalog.KindContainer && len(dep.Containers) > 0 {
				block = dep.Containers[0].Name
			} else if kind == catalog.KindAMI && len(dep.MachineImages) > 0 {
				block = dep.MachineImages[0].Name
			} else if len(names) > 0 {
				block = names[0]
			}
		}
		arts, err := s.loadCatalog([]*recipes.Recipe{dep})
		if err != nil {
			return nil, "", nil, err
		}
		var best *catalog.Entry
		for _, a := range arts[0] {
			if a.Name != block || a.Kind != kind {
				continue
			}
			for j := range a.Entries {
				en := &a.Entries[j]
				if best == nil || en.Created.After(best.Created) ||
					(en.Created.Equal(best.Created) && catalog.CompareVersions(en.Version, best.Version) > 0) {
					best = en
				}
			}
		}
		if best == nil {
			return nil, "", nil, fmt.Errorf("baking %s: %s has never been baked, and it is not part of this run: bake them together (bakery bake %s)", r.Name, l, filepath.Dir(r.File))
		}
		return dep, block, best, nil
	}
	for i, c := range r.Containers {
		l := c.BaseLink
		if l == nil || (only != nil && !only[l.Recipe]) {
			continue
		}
		dep, block, best, err := newest(l, catalog.KindContainer)
		if err != nil {
			return nil, err
		}
		res := &recipes.Resolved{Version: best.Version}
		j := slices.IndexFunc(dep.Containers, func(dc *recipes.Container) bool { return dc.Name == block })
		if repo := dep.Containers[j].Repository; repo == "" {
			res.Layout, res.Ref = s.e.home(), block+":"+best.Version
		} else {
			res.Image = repo + "@" + best.Digest
		}
		clone()
		cc, ll := *c, *l
		ll.Resolved, cc.BaseLink = res, &ll
		cp.Containers[i] = &cc
	}
	for i, m := range r.MachineImages {
		l := m.SourceLink
		if l == nil || (only != nil && !only[l.Recipe]) {
			continue
		}
		_, _, best, err := newest(l, catalog.KindAMI)
		if err != nil {
			return nil, err
		}
		id := best.Reference
		for _, loc := range best.Locations {
			if m.Region != "" && loc.Where == m.Region {
				id = loc.ID
			}
		}
		clone()
		mm, ll := *m, *l
		ll.Resolved = &recipes.Resolved{Version: best.Version, AMI: id}
		mm.SourceLink, mm.SourceAMI = &ll, id
		cp.MachineImages[i] = &mm
	}
	if cp == nil {
		return r, nil
	}
	return cp, nil
}
