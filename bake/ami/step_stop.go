package ami

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
)

// stopStep stops the builder so that the image is taken of a quiet disk.
type stopStep struct{}

func (stopStep) Name() string { return "stop builder" }

func (stopStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	region := st.plan.BuildRegion
	if _, err := st.b.clients.EC2(region).StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{st.instanceID}}); err != nil {
		return fmt.Errorf("stopping the builder %s in %s: %w", st.instanceID, region, awsx.ExplainError(err))
	}
	return st.b.waitInstances(ctx, region, []string{st.instanceID}, ec2types.InstanceStateNameStopped, st.launched, st.m.Timeouts.Instance)
}

// Cleanup does nothing: the launch step's cleanup terminates the builder.
func (stopStep) Cleanup(context.Context, *bakeState, bool) error { return nil }
