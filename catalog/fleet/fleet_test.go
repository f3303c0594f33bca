package fleet_test

import (
	"context"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

const region = "us-east-1"

func TestNamesNumberAfterEveryGroupOfTheStage(t *testing.T) {
	groups := []fleet.Group{
		{Name: "web-prod-v001"}, {Name: "web-prod-v007"}, {Name: "web-prod-v1000"},
		{Name: "web-prod-vx"}, {Name: "web-staging-v2000"}, {Name: "web-prod-v"},
	}
	if n := fleet.NextNumber("web", "prod", groups); n != 1001 {
		t.Errorf("NextNumber = %d, want 1001", n)
	}
	if n := fleet.NextNumber("web", "prod", nil); n != 1 {
		t.Errorf("NextNumber of none = %d, want 1", n)
	}
	if got := fleet.Name("web", "prod", 2); got != "web-prod-v002" {
		t.Errorf("Name = %q", got)
	}
}

// world is a fresh moto account with an AMI, a target group and the
// inventory over it.
type world struct {
	inv    *fleet.Inventory
	ec2    *ec2.Client
	elb    *elb.Client
	ami    string
	tg     string
	subnet []string
}

func newWorld(t *testing.T) world {
	t.Helper()
	moto := mototest.Shared(t)
	return newWorldIn(t, moto, moto.NewAccount())
}

// newWorldIn is newWorld in account of moto.
func newWorldIn(t *testing.T, moto *mototest.Server, account string) world {
	t.Helper()
	cfg := moto.ConfigForAccount(t, region, account)
	w := world{inv: fleet.NewFromConfig(cfg, fleet.WithPollInterval(time.Millisecond)), ec2: ec2.NewFromConfig(cfg), elb: elb.NewFromConfig(cfg)}
	ctx := context.Background()
	imgs, err := w.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(imgs.Images) == 0 {
		t.Fatalf("moto has no AMI: %v", err)
	}
	w.ami = aws.ToString(imgs.Images[0].ImageId)
	if w.subnet, err = w.inv.DefaultSubnets(ctx, region); err != nil {
		t.Fatal(err)
	}
	vpcs, err := w.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		t.Fatalf("moto has no VPC: %v", err)
	}
	tg, err := w.elb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{Name: aws.String("web"), Protocol: elbtypes.ProtocolEnumHttp,
		Port: aws.Int32(80), VpcId: vpcs.Vpcs[0].VpcId, TargetType: elbtypes.TargetTypeEnumInstance})
	if awsx.ErrorCode(err) == "DuplicateTargetGroupName" {
		// The SDK retried a create whose first answer a loaded moto never
		// sent (a CI run met it): the account is the test's own, so the
		// group is the one that first try made.
		tg2, derr := w.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{"web"}})
		if derr == nil && len(tg2.TargetGroups) == 1 {
			w.tg = aws.ToString(tg2.TargetGroups[0].TargetGroupArn)
			return w
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	w.tg = aws.ToString(tg.TargetGroups[0].TargetGroupArn)
	return w
}

// create makes group n of web's prod stage with its own template.
func (w world) create(t *testing.T, n, desired int, tags map[string]string) fleet.Group {
	t.Helper()
	ctx := context.Background()
	name := fleet.Name("web", "prod", n)
	tpl, err := w.inv.CreateTemplate(ctx, region, name, &ec2types.RequestLaunchTemplateData{ImageId: aws.String(w.ami), InstanceType: ec2types.InstanceTypeT3Micro}, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{catalog.TagRecipe: "web", fleet.TagStage: "prod", catalog.TagVersion: "1.0.0", fleet.TagImage: w.ami}
	for k, v := range tags {
		all[k] = v
	}
	err = w.inv.CreateGroup(ctx, region, fleet.GroupSpec{Name: name, Template: tpl, Min: desired, Desired: desired, Max: desired + 1,
		Subnets: w.subnet, TargetGroups: []string{w.tg}, HealthCheckType: "ELB", HealthCheckGrace: time.Minute, Tags: all})
	if err != nil {
		t.Fatal(err)
	}
	g, ok, err := w.inv.Get(ctx, region, name)
	if err != nil || !ok {
		t.Fatalf("reading %s back: %v %v", name, ok, err)
	}
	return g
}

func TestInventoryListsDisablesRestoresAndDeletes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if name, err := w.inv.NextName(ctx, region, "web", "prod"); err != nil || name != "web-prod-v001" {
		t.Fatalf("NextName with no group = %q, %v", name, err)
	}
	v1 := w.create(t, 1, 2, nil)
	v2 := w.create(t, 2, 1, map[string]string{fleet.TagLaunching: "l-2"})
	other := w.create(t, 3, 1, nil)
	// A group of another stage, by its tags, is not listed for prod.
	if err := w.inv.Tag(ctx, region, other.Name, map[string]string{fleet.TagStage: "staging"}); err != nil {
		t.Fatal(err)
	}

	groups, err := w.inv.List(ctx, region, fleet.Selector{Recipe: "web", Stage: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range groups {
		names = append(names, g.Name+":"+string(g.State))
	}
	if want := []string{"web-prod-v001:serving", "web-prod-v002:launching"}; !reflect.DeepEqual(names, want) {
		t.Errorf("List = %v, want %v", names, want)
	}
	g := groups[0]
	if g.Version != "1.0.0" || g.Image != w.ami || g.Number != 1 || g.TemplateID == "" || g.TemplateVersion != "1" ||
		g.Min != 2 || g.Desired != 2 || g.Max != 3 || len(g.Instances) != 2 || g.InService() != 2 || !slices.Equal(g.TargetGroups, []string{w.tg}) {
		t.Errorf("v001 as listed: %+v", g)
	}
	// The next name skips v003, which exists under another stage's tags.
	if name, err := w.inv.NextName(ctx, region, "web", "prod"); err != nil || name != "web-prod-v004" {
		t.Errorf("NextName = %q, %v; want web-prod-v004 (v003 is taken)", name, err)
	}

	h, err := w.inv.Health(ctx, region, v1.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Healthy(w.tg) != 2 {
		t.Errorf("v001 healthy in its target group: %d of %+v", h.Healthy(w.tg), h.Targets)
	}

	// Disable: detached, instances deregistered, processes suspended,
	// tagged; sizes kept for the drain.
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := w.inv.Disable(ctx, v1, at); err != nil {
		t.Fatal(err)
	}
	d, _, err := w.inv.Get(ctx, region, v1.Name)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != fleet.StateDraining || len(d.TargetGroups) != 0 || !slices.Equal(d.Suspended, []string{"AZRebalance", "AlarmNotification", "Launch"}) ||
		!d.Disabled.Equal(at) || d.Desired != 2 {
		t.Errorf("v001 disabled: %+v", d)
	}
	if h, err := w.inv.Health(ctx, region, v1.Name, []string{w.tg}); err != nil || h.Healthy(w.tg) != 0 {
		t.Errorf("v001's instances still healthy in the target group after Disable: %+v %v", h.Targets, err)
	}
	if err := w.inv.Resize(ctx, region, v1.Name, 0, 0, 3); err != nil {
		t.Fatal(err)
	}
	scaled, _, err := w.inv.Get(ctx, region, v1.Name)
	if err != nil || scaled.State != fleet.StateDisabled || len(scaled.Instances) != 0 {
		t.Errorf("v001 scaled to 0: %+v %v", scaled, err)
	}

	// Restore: exactly as it was.
	if err := w.inv.Restore(ctx, v1); err != nil {
		t.Fatal(err)
	}
	r, _, err := w.inv.Get(ctx, region, v1.Name)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != fleet.StateServing || r.Min != 2 || r.Desired != 2 || r.Max != 3 || len(r.Suspended) != 0 || !slices.Equal(r.TargetGroups, []string{w.tg}) {
		t.Errorf("v001 restored: %+v", r)
	}
	if _, has := r.Tags[fleet.TagDisabled]; has {
		t.Errorf("v001 restored still has %s", fleet.TagDisabled)
	}
	// And back to disabled: detached, suspended, 0, tagged as it was.
	if err := w.inv.Restore(ctx, scaled); err != nil {
		t.Fatal(err)
	}
	back, _, err := w.inv.Get(ctx, region, v1.Name)
	if err != nil {
		t.Fatal(err)
	}
	if back.State != fleet.StateDisabled || back.Min != 0 || back.Desired != 0 || len(back.TargetGroups) != 0 || len(back.Instances) != 0 ||
		!slices.Equal(back.Suspended, scaled.Suspended) || back.Tags[fleet.TagDisabled] != scaled.Tags[fleet.TagDisabled] {
		t.Errorf("v001 restored to disabled: %+v, want %+v", back, scaled)
	}
	if h, err := w.inv.Health(ctx, region, v1.Name, []string{w.tg}); err != nil || len(h.Targets) != 0 {
		t.Errorf("v001 restored to disabled still has targets: %+v %v", h.Targets, err)
	}

	// Delete: the group, its instances and its template go; again is a no-op.
	for _, g := range []fleet.Group{v1, v2, other, v2} {
		if err := w.inv.Delete(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if left, err := w.inv.List(ctx, region, fleet.Selector{Any: true}); err != nil || len(left) != 0 {
		t.Errorf("groups left: %+v %v", left, err)
	}
	lts, err := w.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
	if err != nil || len(lts.LaunchTemplates) != 0 {
		t.Errorf("launch templates left: %+v %v", lts, err)
	}
	inst, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range inst.Reservations {
		for _, i := range res.Instances {
			if i.State.Name != ec2types.InstanceStateNameTerminated {
				t.Errorf("instance %s left %s", aws.ToString(i.InstanceId), i.State.Name)
			}
		}
	}
}

func TestListNeedsARecipeOrAny(t *testing.T) {
	inv := fleet.New(fleet.Clients{})
	if _, err := inv.List(context.Background(), region, fleet.Selector{}); err == nil {
		t.Error("List with an empty selector did not fail")
	}
}

func TestAnomalies(t *testing.T) {
	groups := []fleet.Group{
		{Name: "web-prod-v001", Version: "1.0.0", Image: "ami-1", State: fleet.StateServing, Instances: []fleet.Instance{{ID: "i-1"}, {ID: "i-2"}}},
		{Name: "web-prod-v002", Version: "1.1.0", Image: "ami-2", State: fleet.StateServing},
		{Name: "web-prod-v003", Version: "1.2.0", Image: "ami-3", State: fleet.StateDisabled},
		{Name: "web-prod-v004", Version: "1.3.0", Image: "ami-4", State: fleet.StateDisabled},
	}
	o := fleet.Observed{
		ImageState:    map[string]string{"ami-1": "available", "ami-2": "available", "ami-3": "deregistered"},
		Revoked:       map[string]bool{"1.1.0": true},
		InstanceImage: map[string]string{"i-1": "ami-1", "i-2": "ami-9"},
	}
	want := []string{
		"stage prod of web has 2 serving groups (web-prod-v001, web-prod-v002)",
		"web-prod-v001 runs AMI ami-1, but its instances i-2 (ami-9) run another",
		"web-prod-v002 runs web@1.1.0, which is revoked",
		"web-prod-v003 runs AMI ami-3, which is deregistered",
		"web-prod-v004 runs AMI ami-4, which is gone",
	}
	got := fleet.Anomalies("web", "prod", groups, o)
	if len(got) != len(want) {
		t.Fatalf("Anomalies = %q, want %d", got, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("anomaly %d = %q, want it to start with %q", i, got[i], w)
		}
	}
	if got := fleet.Anomalies("web", "prod", groups[:1], fleet.Observed{ImageState: map[string]string{"ami-1": "available"}}); len(got) != 0 {
		t.Errorf("a healthy stage has anomalies: %q", got)
	}
}
