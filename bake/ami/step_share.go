package ami

import (
	"context"
	"fmt"

	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/progress"
)

// shareStep gives share_with's accounts launch permission on the AMI and
// create-volume permission on its snapshots, in every region.
type shareStep struct{}

func (shareStep) Name() string { return "share AMI" }

func (shareStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	for _, region := range st.plan.Regions {
		img := st.image(region)
		if err := st.b.ops.Share(ctx, catalogami.Image{Region: region, ImageID: img.ImageID, Snapshots: img.Snapshots}, st.m.ShareWith); err != nil {
			return fmt.Errorf("%s: %w", st.m.Pos("share_with"), err)
		}
	}
	return nil
}

// Cleanup does nothing: a failed bake's AMIs are removed, permissions and all.
func (shareStep) Cleanup(context.Context, *bakeState, bool) error { return nil }
