package launch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/launch"
	"github.com/bakery-sh/bakery/recipes"
)

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

const (
	region = "us-east-1"
	actor  = "arn:aws:iam::123456789012:user/deployer"
)

// fakeClock is an awsx.Clock on which every wait passes at once: After
// moves the time by d. onAfter, when set, sees each wait first.
type fakeClock struct {
	mu      sync.Mutex
	t       time.Time
	onAfter func(d time.Duration)
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	if c.onAfter != nil {
		c.onAfter(d)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.t
	return ch
}

// world is a fresh moto account holding web's AMIs, a target group, the
// catalog store, the inventory and a launcher over them.
type world struct {
	t     *testing.T
	cfg   aws.Config
	ec2   *ec2.Client
	elb   *elb.Client
	store *catalogami.LifecycleStore
	inv   *fleet.Inventory
	clock *fakeClock
	tg    string
	amis  map[string]string // version → AMI id
}

func newWorld(t *testing.T) *world {
	t.Helper()
	moto := mototest.Shared(t)
	cfg := moto.ConfigForAccount(t, region, moto.NewAccount())
	w := &world{t: t, cfg: cfg, ec2: ec2.NewFromConfig(cfg), elb: elb.NewFromConfig(cfg), clock: newClock(), amis: map[string]string{}}
	w.store = catalogami.NewLifecycleStore(cfg, "web", "web", []string{region}, catalogami.WithPollInterval(time.Millisecond), catalogami.WithWaitClock(w.clock))
	w.inv = fleet.NewFromConfig(cfg, fleet.WithPollInterval(time.Millisecond), fleet.WithClock(w.clock))
	ctx := context.Background()
	vpcs, err := w.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		t.Fatalf("moto has no VPC: %v", err)
	}
	tg, err := w.elb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{Name: aws.String("web"), Protocol: elbtypes.ProtocolEnumHttp,
		Port: aws.Int32(80), VpcId: vpcs.Vpcs[0].VpcId, TargetType: elbtypes.TargetTypeEnumInstance})
	if err != nil {
		t.Fatal(err)
	}
	w.tg = aws.ToString(tg.TargetGroups[0].TargetGroupArn)
	return w
}

// bake makes an AMI of version the way bake leaves one: tagged with the
// catalog tags, the builder terminated.
func (w *world) bake(version string) string {
	t := w.t
	t.Helper()
	ctx := context.Background()
	src, err := w.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(src.Images) == 0 {
		t.Fatalf("no source AMI: %v", err)
	}
	run, err := w.ec2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: src.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Instances[0].InstanceId
	img, err := w.ec2.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: id, Name: aws.String("web-" + version)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{*id}}); err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{catalog.TagRecipe: "web", catalog.TagArtifact: "web", catalog.TagVersion: version,
		catalog.TagBakeKey: "sha256:" + version, catalog.TagCreated: w.clock.Now().Format(time.RFC3339), catalog.TagCreatedBy: actor}
	var ts []ec2types.Tag
	for k, v := range tags {
		ts = append(ts, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if _, err := w.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{*img.ImageId}, Tags: ts}); err != nil {
		t.Fatal(err)
	}
	w.clock.After(time.Minute) // the next bake is newer
	w.amis[version] = *img.ImageId
	return *img.ImageId
}

// entry returns version's catalog entry.
func (w *world) entry(version string) catalog.Entry {
	w.t.Helper()
	es, err := w.store.Entries(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	for _, e := range es {
		if e.Version == version {
			return e
		}
	}
	w.t.Fatalf("no version %s in the catalog", version)
	return catalog.Entry{}
}

// promote puts version into stage, as bakery promote does.
func (w *world) promote(version, stage string) {
	w.t.Helper()
	w.clock.After(time.Minute)
	err := w.store.Promote(context.Background(), w.entry(version), catalog.StageSpec{Name: stage}, catalog.Event{Actor: actor, Time: w.clock.Now()})
	if err != nil {
		w.t.Fatal(err)
	}
}

// fleet is prod's fleet block: two instances behind the target group.
func (w *world) fleet() *recipes.Fleet {
	two := 2
	return &recipes.Fleet{Stage: "prod", Image: "web", Region: region, InstanceType: "t3.micro",
		MinSize: &two, DesiredCapacity: &two, MaxSize: func() *int { n := 4; return &n }(),
		TargetGroups: []string{w.tg}, HealthCheckType: recipes.HealthCheckELB, HealthCheckGrace: time.Minute,
		Strategy: recipes.StrategyRedBlack, KeepDisabled: 1, Drain: 5 * time.Minute, HealthyTimeout: 10 * time.Minute,
		Tags: map[string]string{"team": "web"}}
}

func (w *world) launcher(opts ...launch.Option) *launch.Launcher {
	images := func(string) launch.Images { return w.ec2 }
	opts = append([]launch.Option{launch.WithClock(w.clock), launch.WithPollInterval(time.Second)}, opts...)
	return launch.New(w.inv, images, w.store, opts...)
}

func (w *world) launch(l *launch.Launcher, req launch.Request) (*launch.Result, error) {
	if req.Recipe == "" {
		req.Recipe = "web"
	}
	if req.Stage == "" {
		req.Stage = "prod"
	}
	if req.Fleet == nil {
		req.Fleet = w.fleet()
	}
	if req.Actor == "" {
		req.Actor = actor
	}
	return l.Launch(context.Background(), req)
}

func (w *world) mustLaunch(l *launch.Launcher, req launch.Request) *launch.Result {
	w.t.Helper()
	res, err := w.launch(l, req)
	if err != nil {
		w.t.Fatalf("launch: %v", err)
	}
	return res
}

// group reads a group; it fails the test when it does not exist.
func (w *world) group(name string) fleet.Group {
	w.t.Helper()
	g, ok, err := w.inv.Get(context.Background(), region, name)
	if err != nil || !ok {
		w.t.Fatalf("group %s: exists %v, %v", name, ok, err)
	}
	return g
}

// everything is what the account runs: groups (NAME:STATE), launch
// template names, running instances, and the target group's healthy
// targets.
type everything struct {
	groups, templates, instances, healthy []string
}

func (w *world) everything() everything {
	t := w.t
	t.Helper()
	ctx := context.Background()
	var e everything
	gs, err := w.inv.List(ctx, region, fleet.Selector{Any: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		e.groups = append(e.groups, g.Name+":"+string(g.State))
	}
	lts, err := w.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, lt := range lts.LaunchTemplates {
		e.templates = append(e.templates, aws.ToString(lt.LaunchTemplateName))
	}
	inst, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range inst.Reservations {
		for _, i := range r.Instances {
			if i.State.Name != ec2types.InstanceStateNameTerminated {
				e.instances = append(e.instances, aws.ToString(i.InstanceId))
			}
		}
	}
	th, err := w.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(w.tg)})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range th.TargetHealthDescriptions {
		if d.TargetHealth.State == elbtypes.TargetHealthStateEnumHealthy {
			e.healthy = append(e.healthy, aws.ToString(d.Target.Id))
		}
	}
	for _, s := range [][]string{e.groups, e.templates, e.instances, e.healthy} {
		sort.Strings(s)
	}
	return e
}

// requireOnly fails unless the account runs exactly the groups given
// (NAME:STATE) with their templates, and its running instances and the
// target group's healthy targets are exactly the serving groups'.
func (w *world) requireOnly(groups ...string) {
	t := w.t
	t.Helper()
	e := w.everything()
	slices.Sort(groups)
	if !slices.Equal(e.groups, groups) {
		t.Errorf("groups = %v, want %v", e.groups, groups)
	}
	var templates, instances, serving []string
	for _, gs := range groups {
		name, state, _ := strings.Cut(gs, ":")
		templates = append(templates, name)
		g := w.group(name)
		instances = append(instances, g.InstanceIDs()...)
		if state == string(fleet.StateServing) {
			serving = append(serving, g.InstanceIDs()...)
		}
	}
	slices.Sort(templates)
	slices.Sort(instances)
	slices.Sort(serving)
	if !slices.Equal(e.templates, templates) {
		t.Errorf("launch templates = %v, want %v", e.templates, templates)
	}
	if !slices.Equal(e.instances, instances) {
		t.Errorf("running instances = %v, want those of the groups: %v", e.instances, instances)
	}
	if !slices.Equal(e.healthy, serving) {
		t.Errorf("healthy targets = %v, want the serving groups' instances %v", e.healthy, serving)
	}
}

// launches returns the launch events of version, as STAGE:REASON.
func (w *world) launches(version string) []string {
	var out []string
	for _, ev := range w.entry(version).Events {
		if ev.Action == catalog.ActionLaunch {
			out = append(out, ev.Stage+":"+ev.Reason)
		}
	}
	return out
}

func TestRedBlackLaunchesInARowKeepOneDisabledGroup(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.launcher()
	ctx := context.Background()

	w.bake("1.0.0")
	w.promote("1.0.0", "prod")
	r1 := w.mustLaunch(l, launch.Request{})
	if r1.Group != "web-prod-v001" || r1.Version != "1.0.0" || r1.Image != w.amis["1.0.0"] || r1.Previous != "" || r1.State != "serving" ||
		r1.Desired != 2 || len(r1.Instances) != 2 || len(r1.Disabled) != 0 || len(r1.Deleted) != 0 || r1.LaunchTemplateVersion != "1" {
		t.Errorf("first launch: %+v", r1)
	}
	w.requireOnly("web-prod-v001:serving")
	v1 := w.group("web-prod-v001")
	want := map[string]string{"bakery:recipe": "web", "bakery:stage": "prod", "bakery:version": "1.0.0", "bakery:image": w.amis["1.0.0"],
		"bakery:launch-id": r1.LaunchID, "bakery:previous": "", "team": "web", "Name": "web-prod-v001"}
	for k, v := range want {
		if got, ok := v1.Tags[k]; !ok || got != v {
			t.Errorf("v001 tag %s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if _, ok := v1.Tags[fleet.TagLaunching]; ok {
		t.Errorf("v001 serves but is still tagged %s", fleet.TagLaunching)
	}

	// The launch template: the full data, pinned by number.
	lt, err := w.ec2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(v1.TemplateID)})
	if err != nil || len(lt.LaunchTemplateVersions) != 1 {
		t.Fatalf("template of v001: %+v %v", lt, err)
	}
	d := lt.LaunchTemplateVersions[0].LaunchTemplateData
	if aws.ToString(d.ImageId) != w.amis["1.0.0"] || d.InstanceType != ec2types.InstanceTypeT3Micro ||
		d.MetadataOptions == nil || d.MetadataOptions.HttpTokens != ec2types.LaunchTemplateHttpTokensStateRequired {
		t.Errorf("template data of v001: image %s type %s metadata %+v", aws.ToString(d.ImageId), d.InstanceType, d.MetadataOptions)
	}
	if len(d.BlockDeviceMappings) == 0 {
		t.Error("the template maps no EBS device, so nothing is encrypted")
	}
	for _, m := range d.BlockDeviceMappings {
		if m.Ebs == nil || !aws.ToBool(m.Ebs.Encrypted) {
			t.Errorf("device %s of v001's template is not encrypted", aws.ToString(m.DeviceName))
		}
	}
	specs := map[ec2types.ResourceType]bool{}
	for _, ts := range d.TagSpecifications {
		for _, tg := range ts.Tags {
			if aws.ToString(tg.Key) == "bakery:version" && aws.ToString(tg.Value) == "1.0.0" {
				specs[ts.ResourceType] = true
			}
		}
	}
	if !specs[ec2types.ResourceTypeInstance] || !specs[ec2types.ResourceTypeVolume] {
		t.Errorf("the template tags instances %v and volumes %v, want both", specs[ec2types.ResourceTypeInstance], specs[ec2types.ResourceTypeVolume])
	}
	if v1.TemplateVersion != "1" {
		t.Errorf("v001 launches from template version %q, want the number 1 (never $Latest or $Default)", v1.TemplateVersion)
	}

	// Second launch: v002 serves, v001 is disabled and scaled to 0.
	w.bake("1.1.0")
	w.promote("1.1.0", "prod")
	r2 := w.mustLaunch(l, launch.Request{})
	if r2.Group != "web-prod-v002" || r2.Previous != "web-prod-v001" || !slices.Equal(r2.Disabled, []string{"web-prod-v001"}) || len(r2.Deleted) != 0 {
		t.Errorf("second launch: %+v", r2)
	}
	w.requireOnly("web-prod-v001:disabled", "web-prod-v002:serving")
	old := w.group("web-prod-v001")
	if old.Min != 0 || old.Desired != 0 || old.Max != 4 || len(old.TargetGroups) != 0 ||
		!slices.Equal(old.Suspended, []string{"AZRebalance", "AlarmNotification", "Launch"}) || old.Disabled.IsZero() {
		t.Errorf("v001 after the second launch: %+v", old)
	}
	if v2 := w.group("web-prod-v002"); v2.Tags[fleet.TagPrevious] != "web-prod-v001" || v2.Version != "1.1.0" {
		t.Errorf("v002: previous %q, version %q", v2.Tags[fleet.TagPrevious], v2.Version)
	}

	// Third: keep_disabled = 1, so v001 goes and v002 is the rollback target.
	w.bake("1.2.0")
	w.promote("1.2.0", "prod")
	r3 := w.mustLaunch(l, launch.Request{})
	if r3.Group != "web-prod-v003" || !slices.Equal(r3.Disabled, []string{"web-prod-v002"}) || !slices.Equal(r3.Deleted, []string{"web-prod-v001"}) || len(r3.Warnings) != 0 {
		t.Errorf("third launch: %+v", r3)
	}
	w.requireOnly("web-prod-v002:disabled", "web-prod-v003:serving")

	// Each launch is in its image's history.
	for v, g := range map[string]string{"1.0.0": "web-prod-v001", "1.1.0": "web-prod-v002", "1.2.0": "web-prod-v003"} {
		if evs := w.launches(v); len(evs) != 1 || !strings.HasPrefix(evs[0], "prod:group "+g+" in "+region) {
			t.Errorf("launch events of %s = %v, want one naming %s", v, evs, g)
		}
	}
}

func TestHighlanderDeletesEveryOldGroup(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.launcher()
	w.bake("1.0.0")
	w.promote("1.0.0", "prod")
	w.mustLaunch(l, launch.Request{})
	w.bake("1.1.0")
	w.promote("1.1.0", "prod")
	f := w.fleet()
	f.Strategy = recipes.StrategyHighlander
	r := w.mustLaunch(l, launch.Request{Fleet: f})
	if !slices.Equal(r.Deleted, []string{"web-prod-v001"}) || r.Group != "web-prod-v002" {
		t.Errorf("highlander launch: %+v", r)
	}
	w.requireOnly("web-prod-v002:serving")
}

// hookHealth is a health source that reads the real one and lets a test
// act on the group before the first reading.
type hookHealth struct {
	real  launch.HealthSource
	once  sync.Once
	first func(g fleet.Group)
}

func (h *hookHealth) Health(ctx context.Context, region, group string, tgs []string) (fleet.Health, error) {
	hh, err := h.real.Health(ctx, region, group, tgs)
	if err != nil {
		return hh, err
	}
	done := false
	h.once.Do(func() { h.first(hh.Group); done = true })
	if done {
		return h.real.Health(ctx, region, group, tgs)
	}
	return hh, nil
}

// serving launches 1.0.0 and promotes 1.1.0: v001 serves and a second
// launch would replace it. It returns v001 as it is.
func (w *world) serving(l *launch.Launcher) fleet.Group {
	w.t.Helper()
	w.bake("1.0.0")
	w.promote("1.0.0", "prod")
	w.mustLaunch(l, launch.Request{})
	w.bake("1.1.0")
	w.promote("1.1.0", "prod")
	return w.group("web-prod-v001")
}

// requireUntouched fails unless v001 is as before: same sizes, still
// attached, nothing suspended, the same instances, serving.
func (w *world) requireUntouched(before fleet.Group) {
	w.t.Helper()
	after := w.group(before.Name)
	if after.State != fleet.StateServing || after.Min != before.Min || after.Desired != before.Desired || after.Max != before.Max ||
		!slices.Equal(after.TargetGroups, before.TargetGroups) || len(after.Suspended) != 0 ||
		!slices.Equal(after.InstanceIDs(), before.InstanceIDs()) {
		w.t.Errorf("%s changed:\nbefore %+v\nafter  %+v", before.Name, before, after)
	}
}

func TestAGroupThatFailsTheGateIsDeletedAndTheOldOneUntouched(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	before := w.serving(w.launcher())
	var stopped string
	h := &hookHealth{real: w.inv, first: func(g fleet.Group) {
		// A stopped instance is "unused" in the target group (moto's
		// way of an instance that never becomes healthy).
		stopped = g.Instances[0].ID
		if _, err := w.ec2.StopInstances(context.Background(), &ec2.StopInstancesInput{InstanceIds: []string{stopped}}); err != nil {
			t.Error(err)
		}
	}}
	_, err := w.launch(w.launcher(launch.WithHealth(h)), launch.Request{})
	if err == nil {
		t.Fatal("the launch passed the gate with a stopped instance")
	}
	for _, want := range []string{"health gate of web-prod-v002", "1/2 healthy in tg web", stopped + ": unused", "gave up after 10m0s", "undone: web-prod-v002 deleted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	w.requireUntouched(before)
	w.requireOnly("web-prod-v001:serving")
	if evs := w.launches("1.1.0"); len(evs) != 0 {
		t.Errorf("a failed launch was recorded: %v", evs)
	}
}

func TestInterruptedHealthWaitUndoesTheLaunch(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	before := w.serving(w.launcher())
	ctx, cancel := context.WithCancelCause(context.Background())
	sigint := errors.New("interrupt")
	h := &hookHealth{real: w.inv, first: func(fleet.Group) { cancel(sigint) }}
	l := w.launcher(launch.WithHealth(h))
	_, err := l.Launch(ctx, launch.Request{Recipe: "web", Stage: "prod", Fleet: w.fleet(), Actor: actor})
	if !errors.Is(err, sigint) || !strings.Contains(err.Error(), "web-prod-v002 deleted") {
		t.Errorf("interrupted launch: %v", err)
	}
	w.requireUntouched(before)
	w.requireOnly("web-prod-v001:serving")
}

func TestInterruptedDrainRestoresTheOldGroupExactly(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	before := w.serving(w.launcher())
	ctx, cancel := context.WithCancelCause(context.Background())
	sigterm := errors.New("terminated")
	f := w.fleet()
	// The drain is the only wait of this length: the old group is
	// disabled by then, so the undo must put it back.
	f.Drain = 7 * time.Minute
	w.clock.onAfter = func(d time.Duration) {
		if d == f.Drain {
			if g := w.group(before.Name); g.State != fleet.StateDraining || len(g.TargetGroups) != 0 {
				t.Errorf("v001 is not draining during the drain: %+v", g)
			}
			cancel(sigterm)
		}
	}
	defer func() { w.clock.onAfter = nil }()
	_, err := w.launcher().Launch(ctx, launch.Request{Recipe: "web", Stage: "prod", Fleet: f, Actor: actor})
	if !errors.Is(err, sigterm) || !strings.Contains(err.Error(), "web-prod-v001 restored") {
		t.Errorf("interrupted drain: %v", err)
	}
	w.clock.onAfter = nil
	w.requireUntouched(before)
	w.requireOnly("web-prod-v001:serving")
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.launcher()
	w.serving(l)
	before := w.everything()
	r := w.mustLaunch(l, launch.Request{DryRun: true, Capacity: 3})
	if !r.DryRun || r.State != "planned" || r.Group != "web-prod-v002" || r.Version != "1.1.0" || r.Previous != "web-prod-v001" ||
		r.Desired != 3 || !slices.Equal(r.Disabled, []string{"web-prod-v001"}) || r.LaunchTemplate != "" {
		t.Errorf("dry run: %+v", r)
	}
	if after := w.everything(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a dry run changed the account:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestBadInputIsRefusedBeforeAnythingChanges(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.launcher()
	w.bake("1.0.0")
	w.bake("2.0.0")
	w.promote("1.0.0", "staging")
	refuse := func(want string, req launch.Request) {
		t.Helper()
		before := w.everything()
		_, err := w.launch(l, req)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("launch %+v: %v, want an error with %q", req, err, want)
		}
		if after := w.everything(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("a refused launch changed the account:\nbefore %+v\nafter  %+v", before, after)
		}
	}
	refuse("no version of web is in stage prod: promote one first", launch.Request{})
	refuse("web@2.0.0 is not in stage prod (no version is): promote it first", launch.Request{Version: "2.0.0"})
	refuse("web has no version 9.9.9 (known: 1.0.0, 2.0.0)", launch.Request{Version: "9.9.9"})
	w.promote("1.0.0", "prod")
	west := w.fleet()
	west.Region = "eu-west-1"
	refuse("web@1.0.0 is not in eu-west-1 (it is in us-east-1): promote it there", launch.Request{Fleet: west})
	refuse("fleet prod: min_size 5 is more than max_size 4", launch.Request{Fleet: func() *recipes.Fleet {
		f := w.fleet()
		f.DesiredCapacity = nil
		f.MinSize = func() *int { n := 5; return &n }()
		return f
	}()})
	// A subnet that does not exist: Auto Scaling refuses the group, and
	// the launch template made for it is deleted again.
	nowhere := w.fleet()
	nowhere.Subnets = []string{"subnet-0123456789abcdef0"}
	refuse("subnet-0123456789abcdef0' does not exist: check the subnets of fleet \"prod\"", launch.Request{Fleet: nowhere})
	if err := w.store.Revoke(context.Background(), w.entry("1.0.0"), catalog.Event{Actor: actor, Reason: "CVE-2026-1"}); err != nil {
		t.Fatal(err)
	}
	refuse("web@1.0.0 is revoked (CVE-2026-1): launch another version", launch.Request{Version: "1.0.0"})
	w.promote("2.0.0", "prod")
	// An AMI deregistered after the catalog listed it (AWS's listings
	// lag; moto's do not, so the launcher reads it through one that does).
	lagging := launch.New(w.inv, func(string) launch.Images { return deregistered{} }, w.store, launch.WithClock(w.clock))
	before := w.everything()
	if _, err := w.launch(lagging, launch.Request{}); err == nil || !strings.Contains(err.Error(), "AMI "+w.amis["2.0.0"]+" of web@2.0.0 in us-east-1 is deregistered or disabled") {
		t.Errorf("launching a deregistered AMI: %v", err)
	}
	if after := w.everything(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused launch changed the account:\nbefore %+v\nafter  %+v", before, after)
	}
	if _, err := w.ec2.DeregisterImage(context.Background(), &ec2.DeregisterImageInput{ImageId: aws.String(w.amis["2.0.0"])}); err != nil {
		t.Fatal(err)
	}
	refuse("AMI "+w.amis["2.0.0"]+" of web@2.0.0 in us-east-1 is deregistered or disabled: promote another version to prod", launch.Request{})
	w.requireOnly()
}

// deregistered answers DescribeImages as EC2 does for a deregistered AMI.
type deregistered struct{}

func (deregistered) DescribeImages(context.Context, *ec2.DescribeImagesInput, ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	return &ec2.DescribeImagesOutput{}, nil
}

// Two launches of one stage at once: the second starts while the first
// waits for its gate. The newer group serves; the older launch yields and
// is undone; exactly one group serves at the end, and both say so.
func TestTwoLaunchesAtOnceEndWithOneServingGroup(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serving(w.launcher())
	var second *launch.Result
	var secondErr error
	h := &hookHealth{real: w.inv, first: func(fleet.Group) {
		second, secondErr = w.launch(w.launcher(), launch.Request{})
	}}
	_, err := w.launch(w.launcher(launch.WithHealth(h)), launch.Request{})
	if secondErr != nil {
		t.Fatalf("the second launch: %v", secondErr)
	}
	if second.Group != "web-prod-v003" || !slices.Equal(second.Disabled, []string{"web-prod-v001"}) {
		t.Errorf("the second launch: %+v", second)
	}
	if !errors.Is(err, launch.ErrSuperseded) || !strings.Contains(err.Error(), "web-prod-v003 is serving") || !strings.Contains(err.Error(), "undone: web-prod-v002 deleted") {
		t.Errorf("the first launch: %v", err)
	}
	w.requireOnly("web-prod-v001:disabled", "web-prod-v003:serving")
}

func TestForceLaunchesAVersionNotInTheStageWithAReason(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.launcher()
	w.serving(l) // v001 runs 1.0.0; 1.1.0 is in prod
	w.bake("0.9.0")
	before := w.everything()
	for _, req := range []launch.Request{{Version: "0.9.0", Force: true}, {Force: true, Reason: "hotfix"}} {
		if _, err := w.launch(l, req); err == nil || !strings.Contains(err.Error(), "--force needs") {
			t.Errorf("launch %+v: %v, want --force needs ...", req, err)
		}
	}
	if after := w.everything(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused launch changed the account:\nbefore %+v\nafter  %+v", before, after)
	}
	r := w.mustLaunch(l, launch.Request{Version: "0.9.0", Force: true, Reason: "1.1.0 breaks checkout"})
	if r.Version != "0.9.0" || r.Image != w.amis["0.9.0"] || r.Group != "web-prod-v002" {
		t.Errorf("forced launch: %+v", r)
	}
	w.requireOnly("web-prod-v001:disabled", "web-prod-v002:serving")
	var forced []catalog.Event
	for _, ev := range w.entry("0.9.0").Events {
		if ev.Action == catalog.ActionLaunch {
			forced = append(forced, ev)
		}
	}
	if len(forced) != 1 || !forced[0].Forced || !strings.HasSuffix(forced[0].Reason, ": 1.1.0 breaks checkout") {
		t.Errorf("the forced launch is recorded as %+v, want forced with its reason", forced)
	}
}

func TestKeepFailedKeepsTheFailedGroupDisabledForDebugging(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	before := w.serving(w.launcher())
	h := &hookHealth{real: w.inv, first: func(g fleet.Group) {
		if _, err := w.ec2.StopInstances(context.Background(), &ec2.StopInstancesInput{InstanceIds: []string{g.Instances[0].ID}}); err != nil {
			t.Error(err)
		}
	}}
	r, err := w.launch(w.launcher(launch.WithHealth(h)), launch.Request{KeepFailed: true})
	if err == nil || !strings.Contains(err.Error(), "web-prod-v002 kept for debugging") || r.Failed != "web-prod-v002" {
		t.Fatalf("a failed launch with KeepFailed: %v (%+v)", err, r)
	}
	w.requireUntouched(before)
	kept := w.group("web-prod-v002")
	if kept.State != fleet.StateFailed || len(kept.TargetGroups) != 0 || !slices.Equal(kept.Suspended, []string{"AZRebalance", "AlarmNotification", "Launch"}) ||
		len(kept.Instances) != 2 || !strings.Contains(kept.Tags[fleet.TagFailed], "unused") {
		t.Errorf("the kept group: %+v", kept)
	}
	if _, ok := kept.Tags[fleet.TagLaunching]; ok {
		t.Errorf("the kept group is still tagged %s", fleet.TagLaunching)
	}
	e := w.everything()
	if !slices.Contains(e.templates, "web-prod-v002") || len(e.healthy) != 2 {
		t.Errorf("templates %v (want v002's kept), healthy targets %v (want v001's 2 only)", e.templates, e.healthy)
	}
	// A later launch leaves the failed group alone.
	r2 := w.mustLaunch(w.launcher(), launch.Request{})
	if r2.Group != "web-prod-v003" || slices.Contains(r2.Deleted, "web-prod-v002") || slices.Contains(r2.Disabled, "web-prod-v002") {
		t.Errorf("the launch after: %+v", r2)
	}
	if err := w.inv.Delete(context.Background(), kept); err != nil {
		t.Fatal(err)
	}
	w.requireOnly("web-prod-v001:disabled", "web-prod-v003:serving")
}

// cancelOnRecord is a catalog that interrupts the run when the launch is
// recorded, after the new group serves.
type cancelOnRecord struct {
	launch.Catalog
	cancel context.CancelCauseFunc
}

func (c cancelOnRecord) Record(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	c.cancel(errors.New("interrupt"))
	return c.Catalog.Record(ctx, e, ev)
}

func TestAnInterruptAfterTheNewGroupServesUndoesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serving(w.launcher())
	ctx, cancel := context.WithCancelCause(context.Background())
	l := launch.New(w.inv, func(string) launch.Images { return w.ec2 }, cancelOnRecord{w.store, cancel}, launch.WithClock(w.clock), launch.WithPollInterval(time.Second))
	_, err := l.Launch(ctx, launch.Request{Recipe: "web", Stage: "prod", Fleet: w.fleet(), Actor: actor})
	if err == nil || !strings.Contains(err.Error(), "web-prod-v002 serves and web-prod-v001 are disabled: nothing was undone") {
		t.Errorf("interrupted after the commit: %v", err)
	}
	w.requireOnly("web-prod-v001:disabled", "web-prod-v002:serving")
}

// refuseDelete is an Auto Scaling client that refuses to delete groups.
type refuseDelete struct{ fleet.AutoScaling }

func (refuseDelete) DeleteAutoScalingGroup(context.Context, *autoscaling.DeleteAutoScalingGroupInput, ...func(*autoscaling.Options)) (*autoscaling.DeleteAutoScalingGroupOutput, error) {
	return nil, errors.New("refused by the test")
}

// A launch whose new group fails the gate and then cannot be deleted
// (a permission missing, AWS failing) keeps that group's launch template:
// deleting it would leave a group that can neither scale nor be rolled
// back to (the IAM proof found it, with autoscaling:DeleteAutoScalingGroup
// missing from a later probe's policy). sweep removes the template once
// the group is gone.
func TestATemplateStaysWithAGroupItsLaunchCouldNotDelete(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serving(w.launcher())
	clients := fleet.ClientsFromConfig(w.cfg)
	as := clients.AutoScaling
	clients.AutoScaling = func(r string) fleet.AutoScaling { return refuseDelete{as(r)} }
	inv := fleet.New(clients, fleet.WithPollInterval(time.Millisecond), fleet.WithClock(w.clock))
	h := &hookHealth{real: inv, first: func(g fleet.Group) {
		if _, err := w.ec2.StopInstances(context.Background(), &ec2.StopInstancesInput{InstanceIds: []string{g.Instances[0].ID}}); err != nil {
			t.Error(err)
		}
	}}
	images := func(string) launch.Images { return w.ec2 }
	l := launch.New(inv, images, w.store, launch.WithClock(w.clock), launch.WithPollInterval(time.Second), launch.WithHealth(h))
	_, err := w.launch(l, launch.Request{})
	if err == nil || !strings.Contains(err.Error(), "refused by the test") {
		t.Fatalf("launch = %v, want the gate's failure and the refused deletion", err)
	}
	g := w.group("web-prod-v002")
	out, err := w.ec2.DescribeLaunchTemplates(context.Background(), &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{g.TemplateID}})
	if err != nil || len(out.LaunchTemplates) != 1 {
		t.Errorf("the launch template %s of web-prod-v002, which still exists, is gone: %v", g.TemplateID, err)
	}
}
