package bake

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// Outcome is what became of one recipe of a graph bake.
type Outcome struct {
	// Recipe is the recipe, as given to BakeGraph.
	Recipe *recipes.Recipe
	// Result holds its images (baked or up to date); nil when it failed
	// entirely or was skipped.
	Result *Result
	// Err is why it failed, or why it was skipped.
	Err error
	// SkippedFor names the recipe it links to that failed (or was
	// skipped): then it was not baked at all. Empty otherwise.
	SkippedFor string
	// Start and End are when its bake started and ended, by the
	// engine's clock (both zero when it was skipped).
	Start, End time.Time
}

// Status is one word for the outcome: "baked", "up to date", "failed"
// or "skipped".
func (o *Outcome) Status() string {
	switch {
	case o.SkippedFor != "":
		return "skipped"
	case o.Err != nil:
		return "failed"
	case o.Result != nil && o.Result.Cached:
		return "up to date"
	default:
		return "baked"
	}
}

// BakeGraph bakes the recipes of g, each after the recipes it links to
// ("recipe:NAME" bases and source AMIs), whose images become the bases of
// its blocks. Recipes that do not depend on each other bake at once,
// bounded by the engine's slots (WithParallel for machine images,
// WithContainerParallel for containers); they start in g.Order(). A
// recipe whose linked recipe failed is skipped; the others go on. The
// outcomes are in g.Order(). g must have no link errors
// (recipes.LinkGraph).
func (e *Engine) BakeGraph(ctx context.Context, g *recipes.Graph) []*Outcome {
	order := g.Order()
	outs := make([]*Outcome, len(order))
	byName := map[string]*Outcome{}
	for i, r := range order {
		outs[i] = &Outcome{Recipe: r}
		byName[r.Name] = outs[i]
	}
	// One dispatcher starts the recipes, so that recipes ready together
	// start in order: the first ready one whose pool has a free slot.
	finished := map[string]bool{}
	ended := make(chan *Outcome)
	running := map[bool]int{} // by "has machine images"
	limit := map[bool]int{true: e.parallel, false: e.containerParallel}
	pending := slices.Clone(outs)
	for len(pending) > 0 || running[true]+running[false] > 0 {
		started := false
		for i := 0; i < len(pending); i++ {
			o := pending[i]
			r := o.Recipe
			ready, failed := true, ""
			for _, d := range g.Deps[r.Name] {
				if !finished[d] {
					ready = false
				} else if byName[d].Result == nil && failed == "" {
					failed = d
				}
			}
			if !ready {
				continue
			}
			linked, dep, err := resolveLinks(r, byName)
			switch {
			case failed != "" || ctx.Err() != nil || err != nil:
				if failed == "" {
					failed = dep
				}
				o.SkippedFor = failed
				switch {
				case failed != "":
					o.Err = fmt.Errorf("skipped %s: %s, the recipe it is built on, did not bake", r.Name, failed)
					e.progress.Info(fmt.Sprintf("%s: skipped: %s, the recipe it is built on, did not bake", r.Name, failed))
				case err != nil:
					o.Err = fmt.Errorf("baking %s: %w", r.Name, err)
				default:
					o.Err = fmt.Errorf("baking %s: not started: %w", r.Name, ctx.Err())
				}
				finished[r.Name] = true
			default:
				ami := len(r.MachineImages) > 0
				if running[ami] >= limit[ami] {
					continue
				}
				running[ami]++
				o.Start = e.now()
				rctx := ctx
				if len(order) > 1 { // each line says which recipe it is about
					rctx = progress.ContextWithPrefix(ctx, "["+r.Name+"] ")
				}
				go func() {
					o.Result, o.Err = e.Bake(rctx, linked)
					o.End = e.now()
					ended <- o
				}()
			}
			pending = slices.Delete(pending, i, i+1)
			started = true
			break // from the start: an earlier recipe may be ready now
		}
		if started {
			continue
		}
		if running[true]+running[false] == 0 {
			break // nothing runs and nothing can start: cannot happen without a cycle
		}
		o := <-ended
		running[len(o.Recipe.MachineImages) > 0]--
		finished[o.Recipe.Name] = true
	}
	return outs
}

// resolveLinks returns a copy of r whose linked blocks name the images
// their linked recipes' outcomes hold. r is not changed.
// On error, dep names the linked recipe whose block did not bake.
func resolveLinks(r *recipes.Recipe, byName map[string]*Outcome) (_ *recipes.Recipe, dep string, err error) {
	if len(r.Links()) == 0 {
		return r, "", nil
	}
	cp := *r
	cp.Containers = make([]*recipes.Container, len(r.Containers))
	for i, c := range r.Containers {
		cp.Containers[i] = c
		if c.BaseLink == nil || c.BaseLink.Resolved != nil { // resolved by the caller: a recipe outside the run
			continue
		}
		dep := byName[c.BaseLink.Recipe]
		a, err := linkedArtifact(dep, c.BaseLink, catalog.KindContainer, "")
		if err != nil {
			return nil, c.BaseLink.Recipe, fmt.Errorf("container %s: %w", c.Name, err)
		}
		res := &recipes.Resolved{Version: dep.Result.Version}
		if a.Location != "" {
			res.Layout, res.Ref = a.Location, a.Ref
		} else {
			res.Image = a.Ref + "@" + a.Digest
		}
		cc, l := *c, *c.BaseLink
		l.Resolved, cc.BaseLink = res, &l
		cp.Containers[i] = &cc
	}
	cp.MachineImages = make([]*recipes.MachineImage, len(r.MachineImages))
	for i, m := range r.MachineImages {
		cp.MachineImages[i] = m
		if m.SourceLink == nil || m.SourceLink.Resolved != nil {
			continue
		}
		dep := byName[m.SourceLink.Recipe]
		a, err := linkedArtifact(dep, m.SourceLink, catalog.KindAMI, m.Region)
		if err != nil {
			return nil, "", fmt.Errorf("machine_image %s: %w", m.Name, err)
		}
		mm, l := *m, *m.SourceLink
		l.Resolved = &recipes.Resolved{Version: dep.Result.Version, AMI: a.ID}
		mm.SourceLink, mm.SourceAMI = &l, a.ID
		cp.MachineImages[i] = &mm
	}
	return &cp, "", nil
}

// linkedArtifact finds in dep's result the image l names: of kind k, its
// block named l.Block (or its only block of that kind), in region when
// one is given (else the first, the build region).
func linkedArtifact(dep *Outcome, l *recipes.Link, k catalog.Kind, region string) (*Artifact, error) {
	if dep == nil || dep.Result == nil {
		return nil, fmt.Errorf("%s did not bake in this run: bake the recipes together (bakery bake FOLDER)", l)
	}
	var names []string
	for i := range dep.Result.Artifacts {
		a := &dep.Result.Artifacts[i]
		if a.Kind != k {
			continue
		}
		names = append(names, a.Name)
		if (l.Block == "" || a.Name == l.Block) && (region == "" || a.Region == region) {
			return a, nil
		}
	}
	if region != "" {
		return nil, fmt.Errorf("%s has no image in %s (it has %s): add %s to its regions", l, region, strings.Join(names, ", "), region)
	}
	return nil, fmt.Errorf("%s did not bake the block linked to: see its error", l)
}
