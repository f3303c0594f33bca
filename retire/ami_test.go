package retire_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/catalog/ledger"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/retire"
)

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

const (
	east = "us-east-1"
	west = "eu-west-1"
	day  = 24 * time.Hour
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// world is a fresh moto account with a ledger, and bakery AMIs of
// web/web made in it.
type world struct {
	cfg    aws.Config
	ledger *ledger.Ledger
	// amis maps VERSION to its AMI id in each region.
	amis map[string]map[string]string
	// deregister, when set, answers DeregisterImage in place of EC2.
	mu             sync.Mutex
	deregister     func(region, id string) error
	deleteSnapshot func(region, id string) error
	// extra are AMIs added to every listing of the account's AMIs in
	// us-east-1 (what moto cannot make).
	extra []ec2types.Image
}

func newWorld(t *testing.T) *world {
	t.Helper()
	moto := mototest.Shared(t)
	w := &world{cfg: moto.ConfigForAccount(t, east, moto.NewAccount()), amis: map[string]map[string]string{}}
	bucket := "ledger-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	bucket = strings.TrimRight(bucket[:min(len(bucket), 63)], "-")
	if _, err := awsx.NewS3(w.cfg, "").CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.NewFromConfig(w.cfg, bucket, "bakery", "")
	if err != nil {
		t.Fatal(err)
	}
	w.ledger = l
	return w
}

func (w *world) ec2(region string) *ec2.Client { return awsx.NewEC2(w.cfg, region) }

// bake makes version of web/web as bakery does, baked age before now in
// us-east-1 and copied to copies: an AMI from an instance, tagged (with
// its snapshots) with the catalog tags.
func (w *world) bake(t *testing.T, version string, age time.Duration, copies ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	c := w.ec2(east)
	amazon, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(amazon.Images) == 0 {
		t.Fatalf("moto has no AMI: %v", err)
	}
	run, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: amazon.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatal(err)
	}
	inst := run.Instances[0].InstanceId
	img, err := c.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: inst, Name: aws.String("web-" + version)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(inst)}}); err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{catalog.TagRecipe: "web", catalog.TagArtifact: "web", catalog.TagVersion: version,
		catalog.TagBakeKey: "key-" + version, catalog.TagCreated: now.Add(-age).Format(time.RFC3339)}
	ids := map[string]string{east: aws.ToString(img.ImageId)}
	w.tag(t, east, ids[east], tags)
	for _, region := range copies {
		cp, err := w.ec2(region).CopyImage(ctx, &ec2.CopyImageInput{SourceImageId: img.ImageId, SourceRegion: aws.String(east), Name: aws.String("web-" + version)})
		if err != nil {
			t.Fatal(err)
		}
		ids[region] = aws.ToString(cp.ImageId)
		w.tag(t, region, ids[region], tags)
	}
	w.amis[version] = ids
	return ids
}

// tag tags AMI id in region and its snapshots.
func (w *world) tag(t *testing.T, region, id string, tags map[string]string) {
	t.Helper()
	ids := append([]string{id}, w.snapshots(t, region, id)...)
	if _, err := w.ec2(region).CreateTags(context.Background(), &ec2.CreateTagsInput{Resources: ids, Tags: catalogami.EC2Tags(tags)}); err != nil {
		t.Fatal(err)
	}
}

// snapshots returns the snapshot ids of AMI id in region.
func (w *world) snapshots(t *testing.T, region, id string) []string {
	t.Helper()
	out, err := w.ec2(region).DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{id}})
	if err != nil || len(out.Images) != 1 {
		t.Fatalf("reading AMI %s in %s: %v", id, region, err)
	}
	var ids []string
	for _, b := range out.Images[0].BlockDeviceMappings {
		if b.Ebs != nil && b.Ebs.SnapshotId != nil {
			ids = append(ids, *b.Ebs.SnapshotId)
		}
	}
	return ids
}

// exists reports whether AMI id is registered in region.
func (w *world) exists(t *testing.T, region, id string) bool {
	t.Helper()
	out, err := w.ec2(region).DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(out.Images, func(i ec2types.Image) bool { return aws.ToString(i.ImageId) == id })
}

// snapshotExists reports whether snapshot id is still in region.
func (w *world) snapshotExists(t *testing.T, region, id string) bool {
	t.Helper()
	out, err := w.ec2(region).DescribeSnapshots(context.Background(), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(out.Snapshots, func(s ec2types.Snapshot) bool { return aws.ToString(s.SnapshotId) == id })
}

// deregisterFault is an EC2 client whose DeregisterImage the world may
// answer instead of EC2, and whose listings show the world's extra AMIs.
type deregisterFault struct {
	catalogami.API
	w      *world
	region string
}

func (d deregisterFault) DeregisterImage(ctx context.Context, in *ec2.DeregisterImageInput, o ...func(*ec2.Options)) (*ec2.DeregisterImageOutput, error) {
	d.w.mu.Lock()
	f := d.w.deregister
	d.w.mu.Unlock()
	if f != nil {
		if err := f(d.region, aws.ToString(in.ImageId)); err != nil {
			return nil, err
		}
	}
	return d.API.DeregisterImage(ctx, in, o...)
}

func (d deregisterFault) DeleteSnapshot(ctx context.Context, in *ec2.DeleteSnapshotInput, o ...func(*ec2.Options)) (*ec2.DeleteSnapshotOutput, error) {
	d.w.mu.Lock()
	f := d.w.deleteSnapshot
	d.w.mu.Unlock()
	if f != nil {
		if err := f(d.region, aws.ToString(in.SnapshotId)); err != nil {
			return nil, err
		}
	}
	return d.API.DeleteSnapshot(ctx, in, o...)
}

func (d deregisterFault) DescribeImages(ctx context.Context, in *ec2.DescribeImagesInput, o ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	out, err := d.API.DescribeImages(ctx, in, o...)
	if err == nil && d.region == east && len(in.ImageIds) == 0 && len(in.Filters) == 0 {
		out.Images = append(out.Images, d.w.extra...)
	}
	return out, err
}

func (w *world) store() *catalogami.LifecycleStore {
	// Like the CLI, look in every enabled region: a copy may be in a
	// region the recipe no longer names.
	more := func(ctx context.Context) ([]string, error) { return awsx.EnabledRegions(ctx, w.ec2(east)) }
	return catalogami.NewLifecycleStore(w.cfg, "web", "web", []string{east, west},
		catalogami.WithClock(func() time.Time { return now }), catalogami.WithJournal(w.ledger), catalogami.WithPollInterval(time.Millisecond),
		catalogami.WithMoreRegions(more))
}

func (w *world) retirer() *retire.AMIs {
	clients := awsx.NewRegional(func(r string) *ec2.Client { return awsx.NewEC2(w.cfg, r) })
	ops := catalogami.NewOps(func(r string) catalogami.API { return deregisterFault{clients.Get(r), w, r} }, time.Millisecond, nil)
	return retire.NewAMIs("web", "web", w.store(), catalogami.NewStoreFromConfig(w.cfg), ops, fleet.UsageClientsFromConfig(w.cfg),
		retire.WithClock(func() time.Time { return now }), retire.WithActor("tester"),
		retire.WithEnabledRegions(func(ctx context.Context) ([]string, error) { return awsx.EnabledRegions(ctx, w.ec2(east)) }))
}

func (w *world) plan(t *testing.T, r *retire.AMIs, p retire.Policy) *retire.Plan {
	t.Helper()
	o, err := r.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return retire.MakePlan(o, p, now)
}

// decided returns VERSION → "keep: reasons" or "remove".
func decided(p *retire.Plan) map[string]string {
	out := map[string]string{}
	for _, d := range p.Decisions {
		out[d.Ref.Version] = "remove"
		if d.Keep {
			out[d.Ref.Version] = "keep: " + strings.Join(d.Reasons, "; ")
		}
	}
	return out
}

func (w *world) retireEvents(t *testing.T) map[string]int {
	t.Helper()
	evs, err := w.ledger.Events(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range evs {
		if ev.Action == catalog.ActionRetire {
			out[ev.Version]++
		}
	}
	return out
}

func TestRetireByCountAndAgeDeletesEveryCopyAndSnapshot(t *testing.T) {
	w := newWorld(t)
	w.bake(t, "1.0.0", 60*day, west, "ap-southeast-2") // a region the store was not given
	w.bake(t, "1.1.0", 40*day)
	w.bake(t, "1.2.0", 20*day)
	w.bake(t, "1.3.0", 10*day)
	w.bake(t, "1.4.0", 1*day)
	snaps := map[string][]string{}
	var gib int64
	for _, v := range []string{"1.0.0", "1.1.0"} {
		for region, id := range w.amis[v] {
			s := w.snapshots(t, region, id)
			if len(s) == 0 {
				t.Fatalf("AMI %s in %s has no snapshot to delete", id, region)
			}
			snaps[region+"/"+id] = s
			out, err := w.ec2(region).DescribeSnapshots(context.Background(), &ec2.DescribeSnapshotsInput{SnapshotIds: s})
			if err != nil {
				t.Fatal(err)
			}
			for _, sn := range out.Snapshots {
				gib += int64(aws.ToInt32(sn.VolumeSize))
			}
		}
	}
	r := w.retirer()
	plan := w.plan(t, r, retire.Policy{KeepLast: 2, KeepWithin: 30 * day, KeepRevoked: 7 * day})
	want := map[string]string{"1.4.0": "keep: newest 2; baked within 30d", "1.3.0": "keep: newest 2; baked within 30d",
		"1.2.0": "keep: baked within 30d", "1.1.0": "remove", "1.0.0": "remove"}
	if got := decided(plan); !equalMaps(got, want) {
		t.Fatalf("plan %v, want %v", got, want)
	}
	for _, d := range plan.Decisions {
		if d.Ref.Version == "1.0.0" && len(d.Locations) != 3 {
			t.Fatalf("1.0.0 is planned in %v, want its three regions", d.Locations)
		}
	}
	rep, err := r.Apply(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AMIs != 4 || rep.Snapshots != 4 || rep.GiB != gib || gib == 0 || len(rep.Skipped) != 0 {
		t.Errorf("report %+v, want 4 AMIs and their 4 snapshots reclaimed, %d GiB", rep, gib)
	}
	if got := fmt.Sprint(rep.Retired); got != "[web@1.0.0 web@1.1.0]" {
		t.Errorf("retired %s, want the oldest first", got)
	}
	for key, ss := range snaps {
		region, id, _ := strings.Cut(key, "/")
		if w.exists(t, region, id) {
			t.Errorf("AMI %s in %s is still registered", id, region)
		}
		for _, s := range ss {
			if w.snapshotExists(t, region, s) {
				t.Errorf("snapshot %s of %s in %s is still there", s, id, region)
			}
		}
	}
	for _, v := range []string{"1.2.0", "1.3.0", "1.4.0"} {
		if !w.exists(t, east, w.amis[v][east]) {
			t.Errorf("kept %s was deregistered", v)
		}
	}
	if got := w.retireEvents(t); got["1.0.0"] != 1 || got["1.1.0"] != 1 || len(got) != 2 {
		t.Errorf("retire events in the ledger by version: %v, want one for 1.0.0 and 1.1.0", got)
	}
	// Nothing left to do: a second run plans nothing to remove.
	if again := w.plan(t, r, retire.Policy{KeepLast: 2, KeepWithin: 30 * day}); len(again.Remove()) != 0 {
		t.Errorf("a second plan removes %v", again.Remove())
	}
}

func TestRetireKeepsWhatIsStagedOrInUse(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for i := range 8 {
		w.bake(t, fmt.Sprintf("1.%d.0", i), time.Duration(70-i)*day)
	}
	c := w.ec2(east)
	launch := func(v string) string {
		out, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(w.amis[v][east]), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.Instances[0].InstanceId)
	}
	running, stopped := launch("1.0.0"), launch("1.1.0")
	if _, err := c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{stopped}}); err != nil {
		t.Fatal(err)
	}
	// A template whose version 1 runs 1.2.0 and version 2 runs 1.3.0;
	// the group runs version 2, no group runs version 1 (widdix#5).
	lt, err := c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("web"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(w.amis["1.2.0"][east]), InstanceType: ec2types.InstanceTypeT3Micro}})
	if err != nil {
		t.Fatal(err)
	}
	ltID := aws.ToString(lt.LaunchTemplate.LaunchTemplateId)
	if _, err := c.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{LaunchTemplateId: aws.String(ltID),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(w.amis["1.3.0"][east]), InstanceType: ec2types.InstanceTypeT3Micro}}); err != nil {
		t.Fatal(err)
	}
	subnets, err := fleet.New(fleet.ClientsFromConfig(w.cfg)).DefaultSubnets(ctx, east)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := autoscaling.NewFromConfig(w.cfg).CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("web-prod-v001"), MinSize: aws.Int32(0), MaxSize: aws.Int32(1), DesiredCapacity: aws.Int32(0),
		VPCZoneIdentifier: aws.String(subnets[0]),
		LaunchTemplate:    &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(ltID), Version: aws.String("2")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := autoscaling.NewFromConfig(w.cfg).CreateLaunchConfiguration(ctx, &autoscaling.CreateLaunchConfigurationInput{
		LaunchConfigurationName: aws.String("web-old"), ImageId: aws.String(w.amis["1.5.0"][east]), InstanceType: aws.String("t3.micro")}); err != nil {
		t.Fatal(err)
	}
	store := w.store()
	entries, err := store.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(entries, func(e catalog.Entry) bool { return e.Version == "1.4.0" })
	if err := store.Promote(ctx, entries[i], catalog.StageSpec{Name: "prod"}, catalog.Event{Actor: "tester"}); err != nil {
		t.Fatal(err)
	}

	r := w.retirer()
	plan := w.plan(t, r, retire.Policy{KeepLast: 1})
	got := decided(plan)
	want := map[string]string{
		"1.0.0": "keep: in use by instance " + running + " in us-east-1",
		"1.1.0": "keep: in use by instance " + stopped + " in us-east-1",
		"1.2.0": "keep: in use by launch template " + ltID + " version 1 in us-east-1",
		"1.3.0": "keep: in use by auto scaling group web-prod-v001 in us-east-1; in use by launch template " + ltID + " version 2 in us-east-1",
		"1.4.0": "keep: in prod",
		"1.5.0": "keep: in use by launch configuration web-old in us-east-1",
		"1.6.0": "remove",
		"1.7.0": "keep: newest 1",
	}
	if !equalMaps(got, want) {
		t.Fatalf("plan:\n%s\nwant:\n%s", lines(got), lines(want))
	}
	rep, err := r.Apply(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.Retired) != "[web@1.6.0]" {
		t.Errorf("retired %v, want only 1.6.0", rep.Retired)
	}
	for v, ids := range w.amis {
		if gone := !w.exists(t, east, ids[east]); gone != (v == "1.6.0") {
			t.Errorf("%s deregistered: %v", v, gone)
		}
	}
}

func TestRetireSkipsAnImageLaunchedAfterThePlan(t *testing.T) {
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day, west)
	w.bake(t, "1.1.0", 20*day)
	r := w.retirer()
	plan := w.plan(t, r, retire.Policy{KeepLast: 1})
	if got := decided(plan)["1.0.0"]; got != "remove" {
		t.Fatalf("1.0.0: %s, want remove", got)
	}
	// Between the plan and the apply, someone launches it in one region.
	out, err := w.ec2(west).RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String(w.amis["1.0.0"][west]),
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatal(err)
	}
	inst := aws.ToString(out.Instances[0].InstanceId)
	rep, err := r.Apply(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Retired) != 0 || rep.AMIs != 0 || len(rep.Skipped) != 1 ||
		!strings.Contains(rep.Skipped[0].Reason, "in use since the plan by instance "+inst+" in eu-west-1") {
		t.Fatalf("report %+v, want 1.0.0 skipped as in use by %s", rep, inst)
	}
	for region, id := range w.amis["1.0.0"] {
		if !w.exists(t, region, id) {
			t.Errorf("AMI %s in %s was deregistered: a version is retired whole or not at all", id, region)
		}
	}
	if n := w.retireEvents(t)["1.0.0"]; n != 0 {
		t.Errorf("%d retire events recorded for a version that was skipped", n)
	}
}

func TestRetireFinishesAnInterruptedRun(t *testing.T) {
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day, west)
	w.bake(t, "1.1.0", 20*day)
	westSnaps := w.snapshots(t, west, w.amis["1.0.0"][west])
	w.deregister = func(region, id string) error {
		if region == west {
			return errors.New("connection reset")
		}
		return nil
	}
	r := w.retirer()
	rep, err := r.Apply(context.Background(), w.plan(t, r, retire.Policy{KeepLast: 1}))
	if err == nil || !strings.Contains(err.Error(), "run bakery retire --yes again") {
		t.Fatalf("an interrupted apply returned %v, want an error that says to run it again", err)
	}
	if w.exists(t, east, w.amis["1.0.0"][east]) || !w.exists(t, west, w.amis["1.0.0"][west]) || len(rep.Retired) != 0 {
		t.Fatalf("after the interruption: east registered %v, west registered %v, retired %v",
			w.exists(t, east, w.amis["1.0.0"][east]), w.exists(t, west, w.amis["1.0.0"][west]), rep.Retired)
	}

	w.deregister = nil
	r = w.retirer() // a new process
	plan := w.plan(t, r, retire.Policy{KeepLast: 1})
	if got := decided(plan)["1.0.0"]; got != "remove" {
		t.Fatalf("the half-retired 1.0.0: %s, want remove", got)
	}
	rep, err = r.Apply(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.Retired) != "[web@1.0.0]" || rep.AMIs != 1 || rep.Snapshots != len(westSnaps) {
		t.Errorf("second run report %+v, want 1.0.0 finished: its AMI and snapshots in eu-west-1", rep)
	}
	if w.exists(t, west, w.amis["1.0.0"][west]) {
		t.Error("the copy in eu-west-1 is still registered")
	}
	for _, s := range westSnaps {
		if w.snapshotExists(t, west, s) {
			t.Errorf("snapshot %s is still there", s)
		}
	}
	if n := w.retireEvents(t)["1.0.0"]; n != 1 {
		t.Errorf("%d retire events for 1.0.0 after two runs, want 1", n)
	}
}

func TestRetireSkipsAVersionStagedAfterThePlan(t *testing.T) {
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day)
	w.bake(t, "1.1.0", 20*day)
	r := w.retirer()
	plan := w.plan(t, r, retire.Policy{KeepLast: 1})
	store := w.store()
	entries, err := store.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Promote(context.Background(), entries[0], catalog.StageSpec{Name: "dev"}, catalog.Event{Actor: "tester"}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Apply(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Retired) != 0 || len(rep.Skipped) != 1 || rep.Skipped[0].Reason != "entered stage dev since the plan" {
		t.Fatalf("report %+v, want 1.0.0 skipped as staged", rep)
	}
	if !w.exists(t, east, w.amis["1.0.0"][east]) {
		t.Error("a version promoted after the plan was deregistered")
	}
}

func TestRetireSkipsAVersionRevokedOrBuiltOnAfterThePlan(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.bake(t, "1.0.0", 30*day)
	base := w.bake(t, "1.1.0", 25*day)[east]
	w.bake(t, "1.2.0", 20*day)
	r := w.retirer()
	plan := w.plan(t, r, retire.Policy{KeepLast: 1, KeepRevoked: 7 * day})
	if got := decided(plan); got["1.0.0"] != "remove" || got["1.1.0"] != "remove" {
		t.Fatalf("plan %v, want 1.0.0 and 1.1.0 removed", got)
	}
	// Since the plan: 1.0.0 is revoked (keep_revoked keeps it), and
	// another recipe bakes from 1.1.0's AMI.
	store := w.store()
	entries, err := store.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Revoke(ctx, entries[0], catalog.Event{Actor: "tester", Reason: "CVE"}); err != nil {
		t.Fatal(err)
	}
	c := w.ec2(east)
	run, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(base), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatal(err)
	}
	app, err := c.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: run.Instances[0].InstanceId, Name: aws.String("app-1")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(run.Instances[0].InstanceId)}}); err != nil {
		t.Fatal(err)
	}
	w.tag(t, east, aws.ToString(app.ImageId), map[string]string{catalog.TagRecipe: "app", catalog.TagArtifact: "app", catalog.TagVersion: "1",
		catalog.TagBakeKey: "key-app", catalog.TagSourceAMI: base})
	rep, err := r.Apply(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, sk := range rep.Skipped {
		reasons = append(reasons, sk.Ref.Version+": "+sk.Reason)
	}
	want := []string{"1.0.0: revoked since the plan: kept for keep_revoked", "1.1.0: base of app@1 (" + aws.ToString(app.ImageId) + ") since the plan"}
	if len(rep.Retired) != 0 || !slices.Equal(reasons, want) {
		t.Fatalf("retired %v, skipped %q; want nothing retired and %q", rep.Retired, reasons, want)
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if !w.exists(t, east, w.amis[v][east]) {
			t.Errorf("%s was deregistered", v)
		}
	}
}

func TestRetireKeepsASnapshotAnotherAMIUses(t *testing.T) {
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day)
	w.bake(t, "1.1.0", 20*day)
	ctx := context.Background()
	snaps := w.snapshots(t, east, w.amis["1.0.0"][east])
	// Someone registered an AMI of their own from 1.0.0's snapshot.
	// moto 5.2.5's RegisterImage ignores the snapshot it is given (it
	// makes a new one), so the listing bakery reads is given that AMI
	// the way EC2 would list it.
	other := &ec2.RegisterImageOutput{ImageId: aws.String("ami-0handmade0000000")}
	w.extra = []ec2types.Image{{ImageId: other.ImageId, Name: aws.String("hand-made"), State: ec2types.ImageStateAvailable,
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &ec2types.EbsBlockDevice{SnapshotId: aws.String(snaps[0])}}}}}
	r := w.retirer()
	rep, err := r.Apply(ctx, w.plan(t, r, retire.Policy{KeepLast: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.Retired) != "[web@1.0.0]" || rep.AMIs != 1 || rep.Snapshots != len(snaps)-1 || len(rep.Skipped) != 1 ||
		rep.Skipped[0].ID != snaps[0] || !strings.Contains(rep.Skipped[0].Reason, "also used by AMI "+aws.ToString(other.ImageId)) {
		t.Fatalf("report %+v, want 1.0.0 retired with snapshot %s kept for %s", rep, snaps[0], aws.ToString(other.ImageId))
	}
	if w.exists(t, east, w.amis["1.0.0"][east]) || !w.snapshotExists(t, east, snaps[0]) {
		t.Errorf("want the AMI gone and snapshot %s kept", snaps[0])
	}
}

func TestRetireDeletesTheSnapshotsAnInterruptedRunLeft(t *testing.T) {
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day, west)
	w.bake(t, "1.1.0", 20*day)
	westSnaps := w.snapshots(t, west, w.amis["1.0.0"][west])
	// The first run stops after deregistering the copy in eu-west-1,
	// before its snapshot is deleted.
	w.deleteSnapshot = func(region, id string) error {
		if region == west {
			return errors.New("connection reset")
		}
		return nil
	}
	r := w.retirer()
	if _, err := r.Apply(context.Background(), w.plan(t, r, retire.Policy{KeepLast: 1})); err == nil {
		t.Fatal("the interrupted run returned no error")
	}
	if w.exists(t, west, w.amis["1.0.0"][west]) || !w.snapshotExists(t, west, westSnaps[0]) {
		t.Fatal("the interruption did not leave the deregistered copy's snapshot behind")
	}

	w.deleteSnapshot = nil
	r = w.retirer()
	o, err := r.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Right after, the orphan is too young to be told from a snapshot
	// whose AMI is being made; an hour later it is removed.
	if p := retire.MakePlan(o, retire.Policy{KeepLast: 1}, time.Now()); len(p.Orphans) != 0 {
		t.Fatalf("a snapshot made a moment ago is planned for removal: %+v", p.Orphans)
	}
	plan := retire.MakePlan(o, retire.Policy{KeepLast: 1}, time.Now().Add(retire.OrphanMinAge+time.Minute))
	if len(plan.Orphans) != 1 || plan.Orphans[0].ID != westSnaps[0] || plan.Orphans[0].Where != west || plan.Orphans[0].Ref.Version != "1.0.0" {
		t.Fatalf("orphans %+v, want snapshot %s of 1.0.0 in eu-west-1", plan.Orphans, westSnaps[0])
	}
	if got := decided(plan); got["1.0.0"] != "" {
		t.Errorf("1.0.0 is still a version of the catalog: %s", got["1.0.0"])
	}
	rep, err := r.Apply(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Snapshots != 1 || rep.GiB != plan.Orphans[0].GiB || w.snapshotExists(t, west, westSnaps[0]) {
		t.Errorf("report %+v; the orphan is still there: %v", rep, w.snapshotExists(t, west, westSnaps[0]))
	}
	// The kept version's snapshots are named by its AMI: never orphans.
	if !w.exists(t, east, w.amis["1.1.0"][east]) || !w.snapshotExists(t, east, w.snapshots(t, east, w.amis["1.1.0"][east])[0]) {
		t.Error("the kept version lost its AMI or snapshot")
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func lines(m map[string]string) string {
	var out []string
	for k, v := range m {
		out = append(out, "  "+k+": "+v)
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
