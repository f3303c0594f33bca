package ami

import (
	"context"
	"fmt"
	"slices"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/progress"
)

// deprecateStep sets each AMI's deprecation time to the bake's time plus
// the recipe's retain.deprecate_after (only recipes that set it have the
// step). It comes before the bake key: an AMI marked complete has it.
type deprecateStep struct{}

func (deprecateStep) Name() string { return "set deprecation time" }

func (deprecateStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	at := st.created.Add(st.plan.recipe.Retain.DeprecateAfter)
	for _, region := range st.plan.Regions {
		if err := st.b.ops.Deprecate(ctx, region, st.image(region).ImageID, at); err != nil {
			return fmt.Errorf("%s: %w", st.plan.recipe.Retain.Pos("deprecate_after"), err)
		}
	}
	return nil
}

// Cleanup does nothing: the image steps' cleanups remove the AMIs.
func (deprecateStep) Cleanup(context.Context, *bakeState, bool) error { return nil }

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
