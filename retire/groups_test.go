package retire_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/retire"
)

func TestPlanGroups(t *testing.T) {
	g := func(stage string, n int, state fleet.State, disabledAgo time.Duration) fleet.Group {
		out := fleet.Group{Name: fleet.Name("web", stage, n), Stage: stage, Number: n, State: state}
		if disabledAgo > 0 {
			out.Disabled = now.Add(-disabledAgo)
		}
		return out
	}
	groups := []fleet.Group{
		g("prod", 1, fleet.StateDisabled, 40*day),
		g("prod", 2, fleet.StateDisabled, 30*day),
		g("prod", 3, fleet.StateDisabled, 20*day),
		g("prod", 4, fleet.StateDraining, 10*day),
		g("prod", 5, fleet.StateServing, 0),
		g("prod", 6, fleet.StateFailed, 0),
		g("prod", 7, fleet.StateFailed, 0),
		g("prod", 8, fleet.StateFailed, 0),
		g("dev", 1, fleet.StateDisabled, 5*day),
		g("dev", 2, fleet.StateServing, 0),
		g("dev", 3, fleet.StateFailed, 0),
		g("dev", 4, fleet.StateFailed, 0),
	}
	var got []string
	for _, d := range retire.PlanGroups(groups, map[string]int{"prod": 2, "dev": 0}) {
		verb := "remove"
		if d.Keep {
			verb = "keep"
		}
		got = append(got, d.Name+": "+verb+": "+strings.Join(d.Reasons, "; "))
	}
	want := []string{
		"web-dev-v001: keep: rollback target of dev",
		"web-dev-v002: keep: serving",
		"web-prod-v004: keep: draining: it still has instances",
		"web-prod-v003: keep: rollback target of prod; one of the newest 2 disabled",
		"web-prod-v002: keep: one of the newest 2 disabled",
		"web-prod-v001: remove: disabled, beyond keep_disabled 2",
		"web-prod-v008: keep: failed: one of the newest 2 failed, kept for debugging",
		"web-prod-v007: keep: failed: one of the newest 2 failed, kept for debugging",
		"web-prod-v006: remove: failed (kept by launch --on-error abort), beyond the newest 2 failed",
		"web-dev-v004: keep: failed: one of the newest 1 failed, kept for debugging",
		"web-dev-v003: remove: failed (kept by launch --on-error abort), beyond the newest 1 failed",
		"web-prod-v005: keep: serving",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestRetireDeletesDisabledGroupsBeyondKeepDisabled(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	ami := w.bake(t, "1.0.0", 30*day)[east]
	inv := fleet.NewFromConfig(w.cfg, fleet.WithPollInterval(time.Millisecond))
	subnets, err := inv.DefaultSubnets(ctx, east)
	if err != nil {
		t.Fatal(err)
	}
	var templates []string
	for n := 1; n <= 4; n++ {
		name := fleet.Name("web", "prod", n)
		tpl, err := inv.CreateTemplate(ctx, east, name, &ec2types.RequestLaunchTemplateData{ImageId: aws.String(ami), InstanceType: ec2types.InstanceTypeT3Micro}, nil)
		if err != nil {
			t.Fatal(err)
		}
		templates = append(templates, tpl.ID)
		if err := inv.CreateGroup(ctx, east, fleet.GroupSpec{Name: name, Template: tpl, Max: 1, Subnets: subnets, HealthCheckType: "EC2",
			Tags: map[string]string{catalog.TagRecipe: "web", fleet.TagStage: "prod", catalog.TagVersion: "1.0.0", fleet.TagImage: ami}}); err != nil {
			t.Fatal(err)
		}
		if n < 4 {
			g, _, err := inv.Get(ctx, east, name)
			if err != nil {
				t.Fatal(err)
			}
			if err := inv.Disable(ctx, g, now.Add(-time.Duration(10-n)*day)); err != nil {
				t.Fatal(err)
			}
		}
	}
	gs := retire.NewGroups(inv)
	groups, err := gs.Observe(ctx, "web", []string{east})
	if err != nil {
		t.Fatal(err)
	}
	plan := retire.PlanGroups(groups, map[string]int{"prod": 1})
	var remove []string
	for _, d := range plan {
		if !d.Keep {
			remove = append(remove, d.Name)
		}
	}
	if fmt.Sprint(remove) != "[web-prod-v002 web-prod-v001]" {
		t.Fatalf("plan removes %v, want the two older disabled groups", remove)
	}
	// Between the plan and the apply, web-prod-v002 is brought back.
	if err := inv.Untag(ctx, east, "web-prod-v002", fleet.TagDisabled); err != nil {
		t.Fatal(err)
	}
	if err := inv.Set(ctx, fleet.Group{Name: "web-prod-v002", Region: east, Max: 1}); err != nil {
		t.Fatal(err)
	}
	rep, err := gs.Apply(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.Deleted) != "[web-prod-v001]" || len(rep.Skipped) != 1 || !strings.HasPrefix(rep.Skipped[0], "web-prod-v002 in us-east-1: serving") {
		t.Fatalf("report %+v, want web-prod-v001 deleted and web-prod-v002 skipped as serving", rep)
	}
	left, err := gs.Observe(ctx, "web", []string{east})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range left {
		names = append(names, g.Name)
	}
	if fmt.Sprint(names) != "[web-prod-v002 web-prod-v003 web-prod-v004]" {
		t.Errorf("groups left: %v", names)
	}
	lts, err := w.ec2(east).DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, lt := range lts.LaunchTemplates {
		if aws.ToString(lt.LaunchTemplateId) == templates[0] {
			t.Errorf("the launch template of the deleted group is still there")
		}
	}
	if len(lts.LaunchTemplates) != 3 {
		t.Errorf("%d launch templates left, want 3", len(lts.LaunchTemplates))
	}
}

// TestRetireDeletesFailedGroupsBeyondTheNewest: three launches of prod
// failed and were kept by launch --on-error abort (fleet.Inventory.Fail:
// disabled, tagged, their instances kept). With keep_disabled 1 the
// newest is kept for debugging; the two older go with their launch
// templates and instances. The serving group and the rollback target
// stay, and a failed group brought back since the plan is skipped.
func TestRetireDeletesFailedGroupsBeyondTheNewest(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	ami := w.bake(t, "1.0.0", 30*day)[east]
	inv := fleet.NewFromConfig(w.cfg, fleet.WithPollInterval(time.Millisecond))
	subnets, err := inv.DefaultSubnets(ctx, east)
	if err != nil {
		t.Fatal(err)
	}
	templates := map[string]string{}
	for n := 1; n <= 5; n++ {
		name := fleet.Name("web", "prod", n)
		tpl, err := inv.CreateTemplate(ctx, east, name, &ec2types.RequestLaunchTemplateData{ImageId: aws.String(ami), InstanceType: ec2types.InstanceTypeT3Micro}, nil)
		if err != nil {
			t.Fatal(err)
		}
		templates[name] = tpl.ID
		if err := inv.CreateGroup(ctx, east, fleet.GroupSpec{Name: name, Template: tpl, Min: 1, Desired: 1, Max: 1, Subnets: subnets, HealthCheckType: "EC2",
			Tags: map[string]string{catalog.TagRecipe: "web", fleet.TagStage: "prod", catalog.TagVersion: "1.0.0", fleet.TagImage: ami}}); err != nil {
			t.Fatal(err)
		}
		g, _, err := inv.Get(ctx, east, name)
		if err != nil {
			t.Fatal(err)
		}
		switch n {
		case 1: // the rollback target
			if err := inv.Resize(ctx, east, name, 0, 0, 1); err != nil {
				t.Fatal(err)
			}
			g.Desired, g.Instances = 0, nil
			if err := inv.Disable(ctx, g, now.Add(-day)); err != nil {
				t.Fatal(err)
			}
		case 2: // serving
		default: // failed launches, kept for debugging
			if err := inv.Fail(ctx, g, fmt.Sprintf("launch %d failed its gate", n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	gs := retire.NewGroups(inv)
	groups, err := gs.Observe(ctx, "web", []string{east})
	if err != nil {
		t.Fatal(err)
	}
	plan := retire.PlanGroups(groups, map[string]int{"prod": 1})
	var remove []string
	for _, d := range plan {
		if !d.Keep {
			remove = append(remove, d.Name)
		}
	}
	if fmt.Sprint(remove) != "[web-prod-v004 web-prod-v003]" {
		t.Fatalf("plan removes %v, want the two older failed groups:\n%+v", remove, plan)
	}
	// Between the plan and the apply, web-prod-v003 is put back in service.
	if err := inv.Untag(ctx, east, "web-prod-v003", fleet.TagFailed); err != nil {
		t.Fatal(err)
	}
	if err := inv.Set(ctx, fleet.Group{Name: "web-prod-v003", Region: east, Min: 1, Desired: 1, Max: 1}); err != nil {
		t.Fatal(err)
	}
	rep, err := gs.Apply(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.Deleted) != "[web-prod-v004]" || len(rep.Skipped) != 1 || !strings.HasPrefix(rep.Skipped[0], "web-prod-v003 in us-east-1: serving") {
		t.Fatalf("report %+v, want web-prod-v004 deleted and web-prod-v003 skipped", rep)
	}
	left, err := gs.Observe(ctx, "web", []string{east})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range left {
		names = append(names, g.Name)
	}
	if fmt.Sprint(names) != "[web-prod-v001 web-prod-v002 web-prod-v003 web-prod-v005]" {
		t.Errorf("groups left: %v", names)
	}
	lts, err := w.ec2(east).DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, lt := range lts.LaunchTemplates {
		if aws.ToString(lt.LaunchTemplateId) == templates["web-prod-v004"] {
			t.Errorf("the launch template of the deleted failed group is still there")
		}
	}
	if len(lts.LaunchTemplates) != 4 {
		t.Errorf("%d launch templates left, want 4", len(lts.LaunchTemplates))
	}
}
