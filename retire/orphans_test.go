package retire_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/retire"
)

// far is a region neither the recipe (us-east-1, eu-west-1) nor any of
// its versions is in.
const far = "ap-northeast-1"

// TestRetireFindsOrphanedSnapshotsInEveryEnabledRegion: a snapshot of
// web left in a region the recipe does not name (a copy since
// deregistered by hand, a region dropped from the recipe) is found and
// removed.
func TestRetireFindsOrphanedSnapshotsInEveryEnabledRegion(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day)
	c := w.ec2(far)
	vol, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(far + "a"), Size: aws.Int32(8)})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: vol.VolumeId, TagSpecifications: catalogami.TagSpecs(map[string]string{
		catalog.TagRecipe: "web", catalog.TagArtifact: "web", catalog.TagVersion: "0.9.0"}, ec2types.ResourceTypeSnapshot)})
	if err != nil {
		t.Fatal(err)
	}
	r := w.retirer()
	o, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plan := retire.MakePlan(o, retire.Policy{KeepLast: 1}, time.Now().Add(retire.OrphanMinAge+time.Minute))
	if len(plan.Orphans) != 1 || plan.Orphans[0].ID != aws.ToString(snap.SnapshotId) || plan.Orphans[0].Where != far {
		t.Fatalf("orphans %+v, want snapshot %s in %s", plan.Orphans, aws.ToString(snap.SnapshotId), far)
	}
	rep, err := r.Apply(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Snapshots != 1 || w.snapshotExists(t, far, aws.ToString(snap.SnapshotId)) {
		t.Errorf("report %+v: the orphan in %s is still there", rep, far)
	}
}

// copyOf copies AMI id of version from us-east-1 to region as a
// promotion does (catalog/ami copyTo), started age before now, and stops
// before the bake key: the copy a killed promotion leaves.
func (w *world) copyOf(t *testing.T, version, region string, age time.Duration, desc string) string {
	t.Helper()
	src := w.amis[version][east]
	if desc == "" {
		desc = fmt.Sprintf("bakery web %s (web), copy of %s from %s", version, src, east)
	}
	out, err := w.ec2(region).CopyImage(context.Background(), &ec2.CopyImageInput{SourceImageId: aws.String(src), SourceRegion: aws.String(east),
		Name: aws.String("web-" + version + "-copy"), Description: aws.String(desc)})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.ImageId)
	w.tag(t, region, id, map[string]string{catalog.TagRecipe: "web", catalog.TagArtifact: "web", catalog.TagVersion: version,
		catalog.TagCreated: now.Add(-age).Format(time.RFC3339)})
	return id
}

// TestRetireRemovesTheCopyAKilledPromotionLeft: a promotion copied 1.1.0
// to a region and was killed before it wrote the bake key. The copy is
// an orphan an hour after it started (moto makes copies available at
// once; a pending one waits PendingCopyMaxAge, see
// TestPlanOrphanedCopyAges) and goes with its snapshots, wherever it is;
// the version's finished AMIs, an unfinished AMI that is no promotion's
// copy (a bake's, left to bakery sweep) and a young copy stay.
func TestRetireRemovesTheCopyAKilledPromotionLeft(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day)
	w.bake(t, "1.1.0", 20*day)
	killed := w.copyOf(t, "1.1.0", far, 2*time.Hour, "")
	killedSnaps := w.snapshots(t, far, killed)
	young := w.copyOf(t, "1.1.0", west, 10*time.Minute, "")
	other := w.copyOf(t, "1.0.0", west, 2*time.Hour, "a bake's own copy")
	r := w.retirer()
	plan := w.plan(t, r, retire.Policy{KeepLast: 5})
	var ids []string
	for _, o := range plan.Orphans {
		ids = append(ids, o.Kind+" "+o.Where+":"+o.ID+" of "+o.Ref.Version)
	}
	if want := []string{"ami " + far + ":" + killed + " of 1.1.0"}; !slices.Equal(ids, want) {
		t.Fatalf("orphans %v, want %v", ids, want)
	}
	if got := decided(plan); len(got) != 2 || got["1.1.0"] == "remove" {
		t.Fatalf("plan %v: the killed copy is no location of 1.1.0", got)
	}
	rep, err := r.Apply(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AMIs != 1 || rep.Snapshots != len(killedSnaps) || w.exists(t, far, killed) {
		t.Fatalf("report %+v: want the killed copy %s deregistered with its %d snapshots", rep, killed, len(killedSnaps))
	}
	for _, sn := range killedSnaps {
		if w.snapshotExists(t, far, sn) {
			t.Errorf("snapshot %s of the killed copy is still there", sn)
		}
	}
	for _, id := range []string{young, other} {
		if !w.exists(t, west, id) {
			t.Errorf("%s was deregistered", id)
		}
	}
	if !w.exists(t, east, w.amis["1.1.0"][east]) {
		t.Error("1.1.0 lost its finished AMI")
	}
}

// TestRetireKeepsACopyFinishedSinceThePlan: the promotion was not dead,
// only slow: it wrote the bake key between plan and apply.
func TestRetireKeepsACopyFinishedSinceThePlan(t *testing.T) {
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day)
	slow := w.copyOf(t, "1.0.0", west, 2*time.Hour, "")
	r := w.retirer()
	plan := w.plan(t, r, retire.Policy{KeepLast: 5})
	if len(plan.Orphans) != 1 || plan.Orphans[0].ID != slow {
		t.Fatalf("orphans %+v, want the copy %s", plan.Orphans, slow)
	}
	w.tag(t, west, slow, map[string]string{catalog.TagBakeKey: "key-1.0.0"})
	rep, err := r.Apply(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AMIs != 0 || len(rep.Skipped) != 1 || rep.Skipped[0].ID != slow || !w.exists(t, west, slow) {
		t.Fatalf("report %+v: want the copy finished since the plan kept", rep)
	}
}

// TestRetireTakesTheDuplicatesOfAVersion: two promotions copied 1.0.0 to
// eu-west-1 at once and both finished: the catalog lists one AMI per
// region, and retiring the version deregisters the other too, with its
// snapshots.
func TestRetireTakesTheDuplicatesOfAVersion(t *testing.T) {
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day, west)
	w.bake(t, "1.1.0", 20*day)
	dup := w.copyOf(t, "1.0.0", west, 30*day, "")
	w.tag(t, west, dup, map[string]string{catalog.TagBakeKey: "key-1.0.0"})
	dupSnaps := w.snapshots(t, west, dup)
	r := w.retirer()
	plan := w.plan(t, r, retire.Policy{KeepLast: 1})
	if got := decided(plan)["1.0.0"]; got != "remove" {
		t.Fatalf("1.0.0: %s", got)
	}
	rep, err := r.Apply(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AMIs != 3 {
		t.Errorf("report %+v: want 3 AMIs (us-east-1 and both of eu-west-1)", rep)
	}
	for _, id := range []string{w.amis["1.0.0"][west], dup} {
		if w.exists(t, west, id) {
			t.Errorf("AMI %s of 1.0.0 in eu-west-1 is still there", id)
		}
	}
	for _, sn := range dupSnaps {
		if w.snapshotExists(t, west, sn) {
			t.Errorf("snapshot %s of the duplicate is still there", sn)
		}
	}
}

// snapshotPages records the page size of every DescribeSnapshots call.
type snapshotPages struct {
	catalogami.API
	mu    *sync.Mutex
	sizes *[]int32
}

func (s snapshotPages) DescribeSnapshots(ctx context.Context, in *ec2.DescribeSnapshotsInput, opts ...func(*ec2.Options)) (*ec2.DescribeSnapshotsOutput, error) {
	s.mu.Lock()
	*s.sizes = append(*s.sizes, aws.ToInt32(in.MaxResults))
	s.mu.Unlock()
	return s.API.DescribeSnapshots(ctx, in, opts...)
}

// The orphan search lists snapshots in pages, as EC2 allows (moto 5.2.5
// ignores MaxResults and answers in one page, so the request is checked):
// without MaxResults EC2 answers every snapshot of the account at once.
func TestOrphanSnapshotSearchAsksForPages(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.bake(t, "1.0.0", 30*day)
	var (
		mu    sync.Mutex
		sizes []int32
	)
	clients := awsx.NewRegional(func(r string) *ec2.Client { return awsx.NewEC2(w.cfg, r) })
	ops := catalogami.NewOps(func(r string) catalogami.API { return snapshotPages{clients.Get(r), &mu, &sizes} }, time.Millisecond, nil)
	r := retire.NewAMIs("web", "web", w.store(), catalogami.NewStoreFromConfig(w.cfg), ops, fleet.UsageClientsFromConfig(w.cfg),
		retire.WithClock(func() time.Time { return now }),
		retire.WithEnabledRegions(func(ctx context.Context) ([]string, error) { return awsx.EnabledRegions(ctx, w.ec2(east)) }))
	if _, err := r.Observe(ctx); err != nil {
		t.Fatal(err)
	}
	if len(sizes) == 0 {
		t.Fatal("the plan listed no snapshots")
	}
	for _, n := range sizes {
		if n < 5 || n > 1000 {
			t.Fatalf("DescribeSnapshots page sizes %v: each must ask for 5 to 1000 (EC2's range)", sizes)
		}
	}
}
