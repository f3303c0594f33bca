package ami

import (
	"context"
	"fmt"
	"slices"

	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/recipes"
)

// FindKey returns, for p of an auto-versioned recipe (version = "auto",
// whose bake key leaves the version out), the AMIs of p's artifact that
// carry p's bake key, one per region of p that holds one, and the version
// they carry (nil and "" when there is none); and the versions of the
// artifact in the build region that the recipe's version_format could
// have assigned. It costs one paginated DescribeImages call filtered by
// the bakery:bake-key tag per region of p, and one filtered by the
// recipe and artifact tags in the build region.
func (b *Baker) FindKey(ctx context.Context, p *Plan) (*Existing, string, []string, error) {
	found, err := b.store.Find(ctx, p.Regions, catalogami.Query{BakeKey: p.Key, Recipe: p.Recipe, Artifact: p.Artifact})
	if err != nil {
		return nil, "", nil, fmt.Errorf("machine image %s: looking up bake key %s: %w", p.Artifact, p.Key, err)
	}
	var e *Existing
	version := ""
	for _, r := range p.Regions {
		for _, img := range found {
			if img.Region != r || img.BakeKey != p.Key || (version != "" && img.Version != version) {
				continue
			}
			if e == nil {
				e, version = &Existing{BakeKey: p.Key}, img.Version
			}
			e.Images = append(e.Images, RegionImage{Region: r, ImageID: img.ImageID, Snapshots: img.Snapshots})
			break
		}
	}
	all, err := b.store.Find(ctx, []string{p.BuildRegion}, catalogami.Query{Recipe: p.Recipe, Artifact: p.Artifact, Unfinished: true})
	if err != nil {
		return nil, "", nil, fmt.Errorf("machine image %s: listing its versions: %w", p.Artifact, err)
	}
	var versions []string
	for _, img := range all {
		if p.recipe != nil && p.recipe.IsAutoVersion(img.Version) && !slices.Contains(versions, img.Version) {
			versions = append(versions, img.Version)
		}
	}
	return e, version, versions, nil
}

// Retarget sets p's version to r's, r being p's recipe with its auto
// version resolved (recipes.Recipe.WithVersion): the AMI name, tags and
// documents of the bake carry it; the bake key does not change.
func (b *Baker) Retarget(p *Plan, r *recipes.Recipe) {
	p.Version, p.recipe = r.Version, r
}
