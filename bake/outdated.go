package bake

import (
	"context"
	"fmt"
	"sort"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/recipes"
)

// Stale is an artifact whose newest bake is behind its base: the base
// tag (or the source AMI filter) now names another image, or it was never
// baked.
type Stale struct {
	// Recipe, File and Artifact name it; Kind is the kind of image.
	Recipe   string       `json:"recipe"`
	File     string       `json:"file"`
	Artifact string       `json:"artifact"`
	Kind     catalog.Kind `json:"kind"`
	// Version is the newest baked version ("" if never baked).
	Version string `json:"version,omitempty"`
	// Base is the base image name (container) or source description.
	Base string `json:"base,omitempty"`
	// BakedFrom is the base digest or source AMI of the newest bake.
	BakedFrom string `json:"baked_from,omitempty"`
	// Current is what the base resolves to now.
	Current string `json:"current,omitempty"`
	// Reason says why in words.
	Reason string `json:"reason"`
}

// BaseResolver resolves a container base to its current digest;
// *bakeoci.Baker implements it.
type BaseResolver interface {
	ResolveBase(ctx context.Context, c *recipes.Container) (name, digest string, err error)
}

// Outdated compares the newest bake of each artifact of r (entries, by
// artifact name) with what its base resolves to now.
func (e *Engine) Outdated(ctx context.Context, bases BaseResolver, r *recipes.Recipe, entries map[string][]catalog.Entry) ([]Stale, error) {
	var out []Stale
	for _, c := range r.Containers {
		s := Stale{Recipe: r.Name, File: r.File, Artifact: c.Name, Kind: catalog.KindContainer}
		latest, ok := newest(entries[c.Name])
		if !ok {
			s.Reason = "never baked"
			out = append(out, s)
			continue
		}
		s.Version, s.BakedFrom = latest.Version, latest.BaseDigest
		name, digest, err := bases.ResolveBase(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("checking the base of %s: %w", r.Name, err)
		}
		s.Base, s.Current = name, digest
		if digest != latest.BaseDigest {
			s.Reason = fmt.Sprintf("base %s is now %s; %s@%s was baked from %s", name, short(digest), r.Name, latest.Version, short(latest.BaseDigest))
			out = append(out, s)
		}
	}
	for _, m := range r.MachineImages {
		s := Stale{Recipe: r.Name, File: r.File, Artifact: m.Name, Kind: catalog.KindAMI}
		latest, ok := newest(entries[m.Name])
		if !ok {
			s.Reason = "never baked"
			out = append(out, s)
			continue
		}
		if e.machines == nil {
			return nil, fmt.Errorf("checking the source AMI of %s: no AWS configuration", r.Name)
		}
		plan, err := e.machines.Prepare(ctx, r, m)
		if err != nil {
			return nil, fmt.Errorf("checking the source AMI of %s: %w", r.Name, err)
		}
		s.Version, s.BakedFrom, s.Base, s.Current = latest.Version, latest.BaseName, plan.SourceAMIName, plan.SourceAMI
		if catalog.Adopted(latest.BakeKey) && latest.BaseName == "" {
			s.Reason = fmt.Sprintf("%s@%s was adopted (bakery adopt): what it was built from is unknown; the recipe's source AMI is %s (%s): bake a new version", r.Name, latest.Version, plan.SourceAMI, plan.SourceAMIName)
			out = append(out, s)
			continue
		}
		if plan.SourceAMI != latest.BaseName {
			s.Reason = fmt.Sprintf("source AMI is now %s (%s); %s@%s was baked from %s", plan.SourceAMI, plan.SourceAMIName, r.Name, latest.Version, latest.BaseName)
			out = append(out, s)
		}
	}
	return out, nil
}

// newest is the most recently baked entry.
func newest(es []catalog.Entry) (catalog.Entry, bool) {
	if len(es) == 0 {
		return catalog.Entry{}, false
	}
	s := append([]catalog.Entry(nil), es...)
	sort.SliceStable(s, func(i, j int) bool {
		if !s[i].Created.Equal(s[j].Created) {
			return s[i].Created.After(s[j].Created)
		}
		return catalog.CompareVersions(s[i].Version, s[j].Version) > 0
	})
	return s[0], true
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	if d == "" {
		return "(none)"
	}
	return d
}
