package ami

import (
	"context"
	"slices"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/progress"
)

// completeStep writes the bake key on every snapshot and AMI, the build
// region's AMI last. An AMI without a bake key is an unfinished bake:
// the catalog ignores it and Sweep removes it.
type completeStep struct{}

func (completeStep) Name() string { return "mark bake complete" }

func (completeStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	key := map[string]string{catalog.TagBakeKey: st.plan.Key}
	regions := slices.Clone(st.plan.CopyRegions())
	regions = append(regions, st.plan.BuildRegion)
	for _, region := range regions {
		img := st.image(region)
		if err := st.b.ops.Tag(ctx, region, img.Snapshots, key); err != nil {
			return err
		}
		if err := st.b.ops.Tag(ctx, region, []string{img.ImageID}, key); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup does nothing: a bake that fails later than this has nothing
// left to do.
func (completeStep) Cleanup(context.Context, *bakeState, bool) error { return nil }
