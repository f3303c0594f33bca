package ami_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
)

// TestSweepRemovesTheLaunchTemplateAKilledLaunchLeft: a launch killed
// after deleting its old group and before deleting the group's template
// leaves a template no group launches from (chaos seed 4). Sweep lists it
// once older than --older-than and removes it; the template of a live
// group stays.
func TestSweepRemovesTheLaunchTemplateAKilledLaunchLeft(t *testing.T) {
	e := newBakeEnv(t)
	ctx := context.Background()
	c := e.ec2("us-east-1")
	template := func(name string) string {
		t.Helper()
		out, err := c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String(name),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(bakeAL2023), InstanceType: ec2types.InstanceTypeT3Micro},
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{
				{Key: aws.String(catalog.TagRecipe), Value: aws.String("web")},
				{Key: aws.String(fleet.TagStage), Value: aws.String("prod")},
				{Key: aws.String(fleet.TagLaunchID), Value: aws.String("ln-1")},
			}}}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.LaunchTemplate.LaunchTemplateId)
	}
	left := template("web-prod-v001")
	live := template("web-prod-v002")
	subnets, err := fleet.NewFromConfig(e.cfg).DefaultSubnets(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	as := autoscaling.NewFromConfig(e.cfg, func(o *autoscaling.Options) { o.Region = "us-east-1" })
	if _, err := as.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("web-prod-v002"),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(live), Version: aws.String("1")},
		MinSize:        aws.Int32(0), MaxSize: aws.Int32(1), DesiredCapacity: aws.Int32(0), VPCZoneIdentifier: aws.String(subnets[0])}); err != nil {
		t.Fatal(err)
	}
	regions := []string{"us-east-1"}

	if plan, err := e.baker().Sweep(ctx, regions, time.Hour, false); err != nil || len(plan.Remove) != 0 {
		t.Fatalf("Sweep older than 1h, right after the launch = %+v, %v; want nothing (it may be a launch in progress)", plan, err)
	}
	later := e.baker(ami.WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))
	plan, err := later.Sweep(ctx, regions, time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Remove) != 1 || plan.Remove[0].Kind != ami.KindLaunchTemplate || plan.Remove[0].ID != left ||
		!strings.Contains(plan.Remove[0].Reason, "no Auto Scaling group launches from it") {
		t.Fatalf("sweep plan = %+v, want only launch template %s", plan.Remove, left)
	}
	if len(plan.Removed) != 1 || plan.Removed[0].ID != left || !strings.Contains(plan.String(), "launch-template") {
		t.Errorf("sweep removed %+v:\n%s", plan.Removed, plan)
	}
	out, err := c.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, lt := range out.LaunchTemplates {
		ids = append(ids, aws.ToString(lt.LaunchTemplateId))
	}
	if !slices.Equal(ids, []string{live}) {
		t.Errorf("launch templates after the sweep: %v, want only the live group's %s", ids, live)
	}
}
