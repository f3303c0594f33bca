package fleet_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/faultproxy"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// TestCreateGroupWhoseAnswerWasLostFindsItsOwnGroup loses the answer of
// CreateAutoScalingGroup after it took effect: the SDK tries again and
// Auto Scaling says the name exists (the proxy answers as AWS does; moto
// would make a second group). The group carries this launch's id, so
// CreateGroup succeeds; a group of another launch under the name is
// still an error.
func TestCreateGroupWhoseAnswerWasLostFindsItsOwnGroup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	moto := mototest.Shared(t)
	account := moto.NewAccount()
	w := newWorldIn(t, moto, account)
	p := faultproxy.Start(t, moto.URL, faultproxy.LoseAnswer("CreateAutoScalingGroup", 1))
	cfg := p.Config(moto.ConfigForAccount(t, region, account))
	inv := fleet.NewFromConfig(cfg, fleet.WithPollInterval(time.Millisecond))
	name := fleet.Name("web", "prod", 1)
	tpl, err := inv.CreateTemplate(ctx, region, name, &ec2types.RequestLaunchTemplateData{ImageId: aws.String(w.ami), InstanceType: ec2types.InstanceTypeT3Micro}, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := func(launchID string) fleet.GroupSpec {
		return fleet.GroupSpec{Name: name, Template: tpl, Min: 0, Desired: 0, Max: 1, Subnets: w.subnet, HealthCheckType: "EC2",
			Tags: map[string]string{catalog.TagRecipe: "web", fleet.TagStage: "prod", catalog.TagVersion: "1.0.0", fleet.TagImage: w.ami, fleet.TagLaunchID: launchID}}
	}
	if err := inv.CreateGroup(ctx, region, spec("l-mine")); err != nil {
		t.Fatalf("CreateGroup after a lost answer: %v\n%s", err, p.Summary())
	}
	if p.Faults("CreateAutoScalingGroup", faultproxy.FaultLost) != 1 || p.Count("CreateAutoScalingGroup") != 2 {
		t.Errorf("CreateAutoScalingGroup was not lost once and tried again:\n%s", p.Summary())
	}
	out, err := autoscaling.NewFromConfig(moto.ConfigForAccount(t, region, account)).DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		t.Errorf("%d groups (%v), want one", len(out.AutoScalingGroups), err)
	}
	if err := inv.CreateGroup(ctx, region, spec("l-other")); err == nil {
		t.Error("CreateGroup of a name another launch's group holds succeeded")
	}
}

// TestCreateTemplateReplacesTheTemplateOfAGroupThatWasNeverCreated
// leaves a launch template of a group's name with no group, as a launch
// killed between the two creations does: the next launch of that name
// replaces it instead of failing on the name forever (found by chaos
// seed 12).
func TestCreateTemplateReplacesTheTemplateOfAGroupThatWasNeverCreated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	name := fleet.Name("web", "prod", 3)
	data := &ec2types.RequestLaunchTemplateData{ImageId: aws.String(w.ami), InstanceType: ec2types.InstanceTypeT3Micro}
	stale, err := w.inv.CreateTemplate(ctx, region, name, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := w.inv.CreateTemplate(ctx, region, name, data, nil)
	if err != nil {
		t.Fatalf("CreateTemplate over the template of a group that does not exist: %v", err)
	}
	if fresh.ID == stale.ID {
		t.Errorf("CreateTemplate returned the stale template %s", stale.ID)
	}
	out, err := w.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
	if err != nil || len(out.LaunchTemplates) != 1 || aws.ToString(out.LaunchTemplates[0].LaunchTemplateId) != fresh.ID {
		t.Errorf("templates %+v (%v), want only %s", out.LaunchTemplates, err, fresh.ID)
	}
	// With the group there, the name is taken for good.
	w.create(t, 4, 0, nil)
	if _, err := w.inv.CreateTemplate(ctx, region, fleet.Name("web", "prod", 4), data, nil); err == nil {
		t.Error("CreateTemplate replaced the template of an existing group")
	}
}
