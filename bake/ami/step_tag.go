package ami

import (
	"context"

	"github.com/bakery-sh/bakery/internal/progress"
)

// tagImageStep writes the catalog metadata (recipe, artifact, version,
// source AMI, creation time and the recipe's tags) on the AMI and its
// snapshots. The bake key comes last, in completeStep.
type tagImageStep struct{}

func (tagImageStep) Name() string { return "tag AMI" }

func (tagImageStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	region := st.plan.BuildRegion
	img := st.image(region)
	return st.b.ops.Tag(ctx, region, append([]string{img.ImageID}, img.Snapshots...), st.catalogTags())
}

// Cleanup does nothing: the create step's cleanup removes the AMI.
func (tagImageStep) Cleanup(context.Context, *bakeState, bool) error { return nil }
