package ami

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
)

// shareStep gives share_with's accounts launch permission on the AMI and
// create-volume permission on its snapshots, in every region.
type shareStep struct{}

func (shareStep) Name() string { return "share AMI" }

func (shareStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	accounts := st.m.ShareWith
	perms := make([]ec2types.LaunchPermission, len(accounts))
	for i, a := range accounts {
		perms[i] = ec2types.LaunchPermission{UserId: aws.String(a)}
	}
	for _, region := range st.plan.Regions {
		img := st.image(region)
		c := st.b.clients.EC2(region)
		if _, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
			ImageId:          aws.String(img.ImageID),
			LaunchPermission: &ec2types.LaunchPermissionModifications{Add: perms},
		}); err != nil {
			return fmt.Errorf("%s: sharing AMI %s in %s with %v: %w", st.m.Pos("share_with"), img.ImageID, region, accounts, awsx.ExplainError(err))
		}
		for _, s := range img.Snapshots {
			if _, err := c.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{
				SnapshotId:    aws.String(s),
				Attribute:     ec2types.SnapshotAttributeNameCreateVolumePermission,
				OperationType: ec2types.OperationTypeAdd,
				UserIds:       accounts,
			}); err != nil {
				return fmt.Errorf("%s: sharing snapshot %s in %s with %v: %w", st.m.Pos("share_with"), s, region, accounts, awsx.ExplainError(err))
			}
		}
	}
	return nil
}

// Cleanup does nothing: a failed bake's AMIs are removed, permissions and all.
func (shareStep) Cleanup(context.Context, *bakeState, bool) error { return nil }
