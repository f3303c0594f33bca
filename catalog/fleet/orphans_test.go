package fleet_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// A launch killed after it deleted a group and before it deleted the
// group's launch template (chaos seed 4), or between creating the
// template and the group, leaves a template nothing launches from. Those
// are the orphans; a template a group names (by id, or by name in a mixed
// instances policy, bakery's group or not) and one bakery did not create
// are not.
func TestOrphanTemplatesAreThoseNoGroupLaunchesFrom(t *testing.T) {
	moto := mototest.Shared(t)
	cfg := moto.ConfigForAccount(t, region, moto.NewAccount())
	ctx := context.Background()
	ec, as := ec2.NewFromConfig(cfg), autoscaling.NewFromConfig(cfg)
	images, err := ec.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto has no AMIs to launch: %v", err)
	}
	image := aws.ToString(images.Images[0].ImageId)
	template := func(name string, launched bool) string {
		t.Helper()
		in := &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String(name),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(image), InstanceType: ec2types.InstanceTypeT3Micro}}
		if launched {
			in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{
				{Key: aws.String(catalog.TagRecipe), Value: aws.String("web")},
				{Key: aws.String(fleet.TagStage), Value: aws.String("prod")},
				{Key: aws.String(fleet.TagLaunchID), Value: aws.String("ln-" + name)},
			}}}
		}
		out, err := ec.CreateLaunchTemplate(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.LaunchTemplate.LaunchTemplateId)
	}
	orphan := template("web-prod-v001", true)
	byID := template("web-prod-v002", true)
	template("web-prod-v003", true) // named by a group of another name
	template("hand-made", false)
	inv := fleet.New(fleet.ClientsFromConfig(cfg))
	subnets, err := inv.DefaultSubnets(ctx, region)
	if err != nil {
		t.Fatal(err)
	}
	group := func(in *autoscaling.CreateAutoScalingGroupInput) {
		t.Helper()
		in.MinSize, in.MaxSize, in.DesiredCapacity, in.VPCZoneIdentifier = aws.Int32(0), aws.Int32(1), aws.Int32(0), aws.String(subnets[0])
		if _, err := as.CreateAutoScalingGroup(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	group(&autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("web-prod-v002"),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(byID), Version: aws.String("1")}})
	group(&autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("someone-elses"),
		MixedInstancesPolicy: &astypes.MixedInstancesPolicy{LaunchTemplate: &astypes.LaunchTemplate{
			LaunchTemplateSpecification: &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("web-prod-v003"), Version: aws.String("$Default")}}}})

	later := time.Now().Add(time.Hour)
	got, err := inv.OrphanTemplates(ctx, region, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != orphan || got[0].Name != "web-prod-v001" || got[0].Recipe != "web" || got[0].Stage != "prod" ||
		got[0].LaunchID != "ln-web-prod-v001" || got[0].Created.IsZero() {
		t.Errorf("OrphanTemplates = %+v, want only web-prod-v001 (%s) with its tags and creation time", got, orphan)
	}
	// A template younger than the cutoff may be a launch in progress.
	if got, err := inv.OrphanTemplates(ctx, region, time.Now().Add(-time.Hour)); err != nil || len(got) != 0 {
		t.Errorf("OrphanTemplates with a cutoff before their creation = %+v, %v; want none", got, err)
	}
	names := func() []string {
		out, err := ec.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, lt := range out.LaunchTemplates {
			n = append(n, aws.ToString(lt.LaunchTemplateName))
		}
		slices.Sort(n)
		return n
	}
	if err := inv.DeleteTemplate(ctx, region, orphan); err != nil {
		t.Fatal(err)
	}
	if n := names(); !slices.Equal(n, []string{"hand-made", "web-prod-v002", "web-prod-v003"}) {
		t.Errorf("templates left: %v", n)
	}
}
