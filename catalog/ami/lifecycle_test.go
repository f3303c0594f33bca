package ami_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/mototest"
)

const (
	east  = "us-east-1"
	eu    = "eu-west-1"
	west  = "us-west-2"
	actor = "arn:aws:iam::123456789012:user/alice"
)

// account is a fresh moto account with one EC2 client per region.
type account struct {
	srv *mototest.Server
	id  string
	mu  sync.Mutex
	ec2 map[string]*ec2.Client
}

func newAccount(t *testing.T) *account {
	t.Helper()
	srv := mototest.Shared(t)
	return &account{srv: srv, id: srv.NewAccount(), ec2: map[string]*ec2.Client{}}
}

// config is an AWS config acting in the account.
func (a *account) config(t *testing.T) aws.Config {
	t.Helper()
	return a.srv.ConfigForAccount(t, east, a.id)
}

func (a *account) client(t *testing.T, region string) *ec2.Client {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.ec2[region]
	if !ok {
		c = ec2.NewFromConfig(a.srv.ConfigForAccount(t, region, a.id))
		a.ec2[region] = c
	}
	return c
}

// bake makes version of web/server the way bake does: an AMI in
// regions[0], copied to the other regions, each copy and its snapshots
// tagged like the original, bake key last. It returns region → AMI id.
func (a *account) bake(t *testing.T, version string, regions ...string) map[string]string {
	t.Helper()
	return a.bakeArtifact(t, "server", version, nil, regions...)
}

func (a *account) bakeArtifact(t *testing.T, artifact, version string, extra map[string]string, regions ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	bakeID := "bk-" + artifact + "-" + version
	tg := tags(version, "sha256:key-"+version, bakeID, "2026-01-01T00:00:00Z")
	tg[catalog.TagArtifact] = artifact
	maps.Copy(tg, extra)
	ids := map[string]string{regions[0]: bakeAMI(t, a.client(t, regions[0]), regions[0], tg)}
	for _, region := range regions[1:] {
		c := a.client(t, region)
		src, err := a.client(t, regions[0]).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ids[regions[0]]}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.CopyImage(ctx, &ec2.CopyImageInput{SourceImageId: aws.String(ids[regions[0]]), SourceRegion: aws.String(regions[0]),
			Name: src.Images[0].Name, Description: src.Images[0].Description})
		if err != nil {
			t.Fatalf("CopyImage to %s: %v", region, err)
		}
		id := aws.ToString(out.ImageId)
		res := append([]string{id}, a.snapshots(t, region, id)...)
		if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: res, Tags: ec2Tags(tg)}); err != nil {
			t.Fatal(err)
		}
		ids[region] = id
	}
	return ids
}

func ec2Tags(m map[string]string) []ec2types.Tag {
	var ts []ec2types.Tag
	for k, v := range m {
		ts = append(ts, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return ts
}

// image returns AMI id in region.
func (a *account) image(t *testing.T, region, id string) ec2types.Image {
	t.Helper()
	out, err := a.client(t, region).DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{id}})
	if err != nil || len(out.Images) != 1 {
		t.Fatalf("DescribeImages %s in %s: %v", id, region, err)
	}
	return out.Images[0]
}

func (a *account) snapshots(t *testing.T, region, id string) []string {
	t.Helper()
	var out []string
	for _, b := range a.image(t, region, id).BlockDeviceMappings {
		if b.Ebs != nil && b.Ebs.SnapshotId != nil {
			out = append(out, *b.Ebs.SnapshotId)
		}
	}
	return out
}

func tagMap(ts []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[*t.Key] = *t.Value
	}
	return m
}

// imageTags returns the tags of AMI id in region.
func (a *account) imageTags(t *testing.T, region, id string) map[string]string {
	t.Helper()
	return tagMap(a.image(t, region, id).Tags)
}

// snapshotTags returns the tags of each snapshot of AMI id in region.
func (a *account) snapshotTags(t *testing.T, region, id string) []map[string]string {
	t.Helper()
	snaps := a.snapshots(t, region, id)
	out, err := a.client(t, region).DescribeSnapshots(context.Background(), &ec2.DescribeSnapshotsInput{SnapshotIds: snaps})
	if err != nil {
		t.Fatal(err)
	}
	var tags []map[string]string
	for _, s := range out.Snapshots {
		tags = append(tags, tagMap(s.Tags))
	}
	return tags
}

// everything returns the tags of every AMI and snapshot of the account in
// regions, by id.
func (a *account) everything(t *testing.T, regions ...string) map[string]map[string]string {
	t.Helper()
	ctx := context.Background()
	all := map[string]map[string]string{}
	for _, r := range regions {
		imgs, err := a.client(t, r).DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range imgs.Images {
			all[*img.ImageId] = tagMap(img.Tags)
		}
		snaps, err := a.client(t, r).DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps.Snapshots {
			all[*s.SnapshotId] = tagMap(s.Tags)
		}
	}
	return all
}

// versionAMIs returns the ids of the AMIs of web/server at version in
// region, complete or not.
func (a *account) versionAMIs(t *testing.T, region, version string) []string {
	t.Helper()
	out, err := a.client(t, region).DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("tag:" + catalog.TagVersion), Values: []string{version}}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, img := range out.Images {
		ids = append(ids, *img.ImageId)
	}
	return ids
}

// onCall adds a middleware to cfg that calls fn with each operation's
// name once the call returned.
func onCall(cfg aws.Config, fn func(op string, err error)) aws.Config {
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("onCall",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				fn(awsmiddleware.GetOperationName(ctx), err)
				return out, md, err
			}), middleware.After)
	})
	return cfg
}

// writes counts the calls through cfg that change something.
func writes(cfg aws.Config) (aws.Config, *atomic.Int64) {
	var n atomic.Int64
	return onCall(cfg, func(op string, _ error) {
		switch op {
		case "CreateTags", "DeleteTags", "CopyImage", "ModifyImageAttribute", "ModifySnapshotAttribute":
			n.Add(1)
		}
	}), &n
}

// clock is a test clock that moves one second on each reading.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func newStore(cfg aws.Config, regions []string, opts ...catalogami.Option) *catalogami.LifecycleStore {
	opts = append([]catalogami.Option{catalogami.WithPollInterval(50 * time.Millisecond), catalogami.WithConcurrency(4)}, opts...)
	return catalogami.NewLifecycleStore(cfg, "web", "server", regions, opts...)
}

// entry returns the entry of version.
func entry(t *testing.T, s catalog.Store, version string) catalog.Entry {
	t.Helper()
	es, err := s.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Version == version {
			return e
		}
	}
	t.Fatalf("no entry for %s among %d", version, len(es))
	return catalog.Entry{}
}

// actions lists the events as ACTION[:STAGE].
func actions(evs []catalog.Event) []string {
	var out []string
	for _, e := range evs {
		s := e.Action
		if e.Stage != "" {
			s += ":" + e.Stage
		}
		out = append(out, s)
	}
	return out
}

func at(sec int) time.Time { return time.Date(2026, 3, 2, 0, 0, sec, 0, time.UTC) }

func TestLifecycleEntriesGroupsVersionsAcrossRegions(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	v1 := a.bake(t, "1.0.0", east, eu)
	v2 := a.bake(t, "2.0.0", east)
	bakeAMI(t, a.client(t, east), east, tags("3.0.0", "", "bk-3", "2026-04-01T00:00:00Z")) // unfinished
	a.bakeArtifact(t, "worker", "1.0.0", nil, east)                                        // another artifact

	// Sorted, as the CLI passes them: the order says nothing of the build region.
	s := newStore(a.config(t), []string{eu, east, west})
	es, err := s.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Version)
	}
	if strings.Join(got, " ") != "1.0.0 2.0.0" {
		t.Fatalf("versions = %v, want 1.0.0 2.0.0", got)
	}
	e := es[0]
	wantLocs := []catalog.Location{{Where: eu, ID: v1[eu]}, {Where: east, ID: v1[east]}}
	if !reflect.DeepEqual(e.Locations, wantLocs) {
		t.Errorf("locations = %v, want %v", e.Locations, wantLocs)
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if e.Recipe != "web" || e.Artifact != "server" || e.Kind != "ami" || e.Reference != v1[east] ||
		e.BakeKey != "sha256:key-1.0.0" || e.BaseName != al2023 || !e.Created.Equal(created) {
		t.Errorf("image = %+v", e.Image)
	}
	if len(e.Stages) != 0 || e.Revoked {
		t.Errorf("lifecycle = %+v, want no stage, not revoked", e.Lifecycle)
	}
	wantEv := []catalog.Event{{Time: created, Action: catalog.ActionBake, Recipe: "web", Version: "1.0.0", Artifact: "server", Kind: "ami"}}
	if !reflect.DeepEqual(e.Events, wantEv) {
		t.Errorf("events = %+v, want %+v", e.Events, wantEv)
	}
	if got := es[1].Locations; len(got) != 1 || got[0].ID != v2[east] {
		t.Errorf("2.0.0 locations = %v", got)
	}
}

func TestLifecyclePromoteSharesCopiesAndDemotes(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	other := a.srv.NewAccount()
	ctx := context.Background()
	regions := []string{eu, east, west}
	v1 := a.bake(t, "1.0.0", east, eu)
	v2 := a.bake(t, "2.0.0", east, eu)
	cfg, nwrites := writes(a.config(t))
	s := newStore(cfg, regions, catalogami.WithClock(newClock().now))
	prod := catalog.StageSpec{Name: "prod", Accounts: []string{other}, Regions: []string{west}}

	ev := catalog.Event{Time: at(1), Actor: actor, Reason: "CVE-2026-0001; ship it", ApprovedBy: "bob", Forced: true}
	if err := s.Promote(ctx, entry(t, s, "1.0.0"), prod, ev); err != nil {
		t.Fatal(err)
	}

	// The copy: one AMI of 1.0.0 in us-west-2, with the bake's tags, the
	// stage mark and the history, and so are its snapshots (no history).
	copies := a.versionAMIs(t, west, "1.0.0")
	if len(copies) != 1 {
		t.Fatalf("AMIs of 1.0.0 in %s = %v, want one copy", west, copies)
	}
	v1[west] = copies[0]
	src := a.imageTags(t, east, v1[east])
	got := a.imageTags(t, west, v1[west])
	for _, k := range []string{catalog.TagRecipe, catalog.TagArtifact, catalog.TagVersion, catalog.TagBakeKey, catalog.TagSourceAMI, catalog.TagCreated, catalog.TagBakeID} {
		if got[k] != src[k] {
			t.Errorf("copy's %s = %q, want %q", k, got[k], src[k])
		}
	}
	wantMark := "2026-03-02T00:00:01Z " + actor
	for _, r := range []string{east, eu, west} {
		if tg := a.imageTags(t, r, v1[r]); tg["bakery:stage:prod"] != wantMark {
			t.Errorf("stage mark of %s in %s = %q, want %q", v1[r], r, tg["bakery:stage:prod"], wantMark)
		}
		for _, st := range a.snapshotTags(t, r, v1[r]) {
			if st["bakery:stage:prod"] != wantMark || st[catalog.TagBakeKey] != src[catalog.TagBakeKey] {
				t.Errorf("a snapshot of %s in %s has tags %v, want the stage mark and the bake key", v1[r], r, st)
			}
		}
	}
	if d := *a.image(t, west, v1[west]).Description; !strings.Contains(d, "copy of "+v1[east]+" from "+east) {
		t.Errorf("copy's description = %q", d)
	}

	// Shared with the other account in every region: AMI and snapshots.
	for _, r := range []string{east, eu, west} {
		c := a.client(t, r)
		attr, err := c.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: aws.String(v1[r]), Attribute: ec2types.ImageAttributeNameLaunchPermission})
		if err != nil {
			t.Fatal(err)
		}
		if len(attr.LaunchPermissions) != 1 || aws.ToString(attr.LaunchPermissions[0].UserId) != other {
			t.Errorf("launch permissions of %s in %s = %+v, want %s", v1[r], r, attr.LaunchPermissions, other)
		}
		for _, sn := range a.snapshots(t, r, v1[r]) {
			sa, err := c.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{SnapshotId: aws.String(sn), Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission})
			if err != nil {
				t.Fatal(err)
			}
			if len(sa.CreateVolumePermissions) != 1 || aws.ToString(sa.CreateVolumePermissions[0].UserId) != other {
				t.Errorf("create-volume permissions of %s in %s = %+v, want %s", sn, r, sa.CreateVolumePermissions, other)
			}
		}
	}

	e := entry(t, s, "1.0.0")
	if st, ok := e.Stages["prod"]; !ok || !st.Since.Equal(at(1)) || st.By != actor {
		t.Errorf("stages = %+v, want prod since %s by %s", e.Stages, at(1), actor)
	}
	if len(e.Locations) != 3 || e.Reference != v1[east] {
		t.Errorf("locations = %v, reference %s; want 3 with %s the reference", e.Locations, e.Reference, v1[east])
	}
	wantPromote := catalog.Event{Time: at(1), Action: catalog.ActionPromote, Recipe: "web", Version: "1.0.0", Artifact: "server", Kind: "ami",
		Stage: "prod", Actor: actor, Reason: ev.Reason, Forced: true, ApprovedBy: "bob"}
	if len(e.Events) != 2 || !reflect.DeepEqual(e.Events[1], wantPromote) {
		t.Errorf("events = %+v, want bake then %+v", e.Events, wantPromote)
	}

	// Again: everything is in place, so nothing changes.
	before := a.everything(t, regions...)
	nwrites.Store(0)
	if err := s.Promote(ctx, entry(t, s, "1.0.0"), prod, catalog.Event{Time: at(2), Actor: "carol"}); err != nil {
		t.Fatal(err)
	}
	if n := nwrites.Load(); n != 0 {
		t.Errorf("promoting again made %d writes, want none", n)
	}
	if after := a.everything(t, regions...); !reflect.DeepEqual(before, after) {
		t.Errorf("promoting again changed tags:\nbefore %v\nafter  %v", before, after)
	}

	// A second machine with the same credentials sees the same catalog.
	s2 := newStore(a.config(t), regions)
	e1, err := s.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := s2.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e1, e2) {
		t.Errorf("a second store sees\n%+v\nnot\n%+v", e2, e1)
	}

	// 2.0.0 takes prod: 1.0.0 loses it everywhere, with a demote event.
	if err := s2.Promote(ctx, entry(t, s2, "2.0.0"), prod, catalog.Event{Time: at(3), Actor: "dave"}); err != nil {
		t.Fatal(err)
	}
	v2[west] = a.versionAMIs(t, west, "2.0.0")[0]
	for _, r := range []string{east, eu, west} {
		if _, ok := a.imageTags(t, r, v1[r])["bakery:stage:prod"]; ok {
			t.Errorf("1.0.0 still in prod in %s", r)
		}
		for _, st := range a.snapshotTags(t, r, v1[r]) {
			if _, ok := st["bakery:stage:prod"]; ok {
				t.Errorf("a snapshot of 1.0.0 still in prod in %s", r)
			}
		}
		if _, ok := a.imageTags(t, r, v2[r])["bakery:stage:prod"]; !ok {
			t.Errorf("2.0.0 not in prod in %s", r)
		}
	}
	e = entry(t, s, "1.0.0")
	if len(e.Stages) != 0 {
		t.Errorf("1.0.0 stages = %v, want none", e.Stages)
	}
	wantDemote := catalog.Event{Time: at(3), Action: catalog.ActionDemote, Recipe: "web", Version: "1.0.0", Artifact: "server", Kind: "ami",
		Stage: "prod", Actor: "dave", Reason: "replaced by 2.0.0"}
	if len(e.Events) != 3 || !reflect.DeepEqual(e.Events[2], wantDemote) {
		t.Errorf("1.0.0 events = %+v, want bake, promote, %+v", e.Events, wantDemote)
	}
	if got := actions(entry(t, s, "2.0.0").Events); strings.Join(got, " ") != "bake promote:prod" {
		t.Errorf("2.0.0 events = %v", got)
	}
}

// crashing adds a middleware to cfg that, when crash says so, cancels
// the context and fails the call before it is sent: the process died
// there.
func crashing(cfg aws.Config, cancel func(), crash func(op string, in any) bool) aws.Config {
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("crash",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if crash(awsmiddleware.GetOperationName(ctx), in.Parameters) {
					cancel()
					return middleware.InitializeOutput{}, middleware.Metadata{}, context.Canceled
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	})
	return cfg
}

func TestLifecyclePromoteResumesAfterACrash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// crash returns a function that says whether to die before a call.
		crash func() func(op string, in any) bool
	}{
		{"right after CopyImage", func() func(string, any) bool {
			copied := false
			return func(op string, _ any) bool {
				if op == "CopyImage" {
					copied = true
					return false
				}
				return copied
			}
		}},
		{"after tagging the pending copy", func() func(string, any) bool {
			calls := -1
			return func(op string, _ any) bool {
				if op == "CopyImage" {
					calls = 0
				} else if calls >= 0 {
					calls++
				}
				return calls == 2
			}
		}},
		{"right before the bake key", func() func(string, any) bool {
			return func(op string, in any) bool {
				ct, ok := in.(*ec2.CreateTagsInput)
				return ok && op == "CreateTags" && slices.ContainsFunc(ct.Tags, func(tg ec2types.Tag) bool { return *tg.Key == catalog.TagBakeKey })
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newAccount(t)
			ctx := context.Background()
			v1 := a.bake(t, "1.0.0", east)
			a.bake(t, "2.0.0", east)
			regions := []string{east, west}
			s := newStore(a.config(t), regions)
			prod := catalog.StageSpec{Name: "prod", Regions: []string{west}}
			staging := catalog.StageSpec{Name: "staging"}
			if err := s.Promote(ctx, entry(t, s, "1.0.0"), staging, catalog.Event{Time: at(1), Actor: actor}); err != nil {
				t.Fatal(err)
			}

			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			crashed := newStore(crashing(a.config(t), cancel, tc.crash()), regions)
			err := crashed.Promote(cctx, entry(t, s, "1.0.0"), prod, catalog.Event{Time: at(2), Actor: actor})
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run the promotion again") {
				t.Fatalf("Promote with a crash = %v, want context.Canceled and a hint to run it again", err)
			}
			if got := entry(t, s, "1.0.0"); len(got.Locations) != 1 || !reflect.DeepEqual(slices.Collect(maps.Keys(got.Stages)), []string{"staging"}) {
				t.Errorf("after the crash the catalog shows %v in %v, want only %s and staging", got.Locations, got.Stages, east)
			}
			// Meanwhile 1.0.0 leaves staging: the half-made copy must not
			// bring it back.
			if err := s.Promote(ctx, entry(t, s, "2.0.0"), staging, catalog.Event{Time: at(3), Actor: actor}); err != nil {
				t.Fatal(err)
			}

			if err := s.Promote(ctx, entry(t, s, "1.0.0"), prod, catalog.Event{Time: at(4), Actor: actor}); err != nil {
				t.Fatal(err)
			}
			out, err := a.client(t, west).DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Images) != 1 {
				t.Fatalf("%d AMIs in %s after the rerun, want exactly one copy", len(out.Images), west)
			}
			id := *out.Images[0].ImageId
			for _, tg := range append([]map[string]string{tagMap(out.Images[0].Tags)}, a.snapshotTags(t, west, id)...) {
				if tg[catalog.TagBakeKey] != "sha256:key-1.0.0" || tg["bakery:stage:prod"] == "" || tg[catalog.TagCreated] != "2026-01-01T00:00:00Z" {
					t.Errorf("the copy's (or its snapshot's) tags = %v", tg)
				}
				if _, ok := tg["bakery:stage:staging"]; ok {
					t.Errorf("the copy (or its snapshot) is still marked staging: %v", tg)
				}
			}
			e := entry(t, s, "1.0.0")
			if len(e.Locations) != 2 || len(e.Stages) != 1 || !e.Stages["prod"].Since.Equal(at(4)) || e.Reference != v1[east] {
				t.Errorf("entry = %+v", e)
			}
		})
	}
}

func TestLifecycleRevokeAndUnrevoke(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	regions := []string{east, eu}
	v1 := a.bake(t, "1.0.0", east, eu)
	cfg, nwrites := writes(a.config(t))
	s := newStore(cfg, regions)
	for i, st := range []string{"staging", "prod"} {
		if err := s.Promote(ctx, entry(t, s, "1.0.0"), catalog.StageSpec{Name: st}, catalog.Event{Time: at(i + 1), Actor: actor}); err != nil {
			t.Fatal(err)
		}
	}

	reason := "CVE-2026-1234: openssl " + strings.Repeat("x", 300)
	if err := s.Revoke(ctx, entry(t, s, "1.0.0"), catalog.Event{Time: at(10), Actor: "sec team", Reason: reason}); err != nil {
		t.Fatal(err)
	}
	for _, r := range regions {
		all := append([]map[string]string{a.imageTags(t, r, v1[r])}, a.snapshotTags(t, r, v1[r])...)
		for _, tg := range all {
			for k := range tg {
				if strings.HasPrefix(k, catalogami.TagStagePrefix) {
					t.Errorf("%s still tagged %s in %s after revoke", v1[r], k, r)
				}
			}
			v := tg[catalogami.TagRevoked]
			if !strings.HasPrefix(v, "2026-03-02T00:00:10Z sec%20team CVE-2026-1234: openssl xx") || len([]rune(v)) != catalogami.MaxTagValue || !strings.HasSuffix(v, "…") {
				t.Errorf("%s in %s: revoked = %q (%d characters), want the mark cut to %d", v1[r], r, v, len([]rune(v)), catalogami.MaxTagValue)
			}
		}
	}
	e := entry(t, s, "1.0.0")
	if !e.Revoked || !strings.HasPrefix(e.RevokeReason, "CVE-2026-1234") || len(e.Stages) != 0 {
		t.Errorf("after revoke: %+v", e.Lifecycle)
	}
	if got := actions(e.Events); strings.Join(got, " ") != "bake promote:staging promote:prod revoke" {
		t.Errorf("events = %v", got)
	}
	if last := e.Events[len(e.Events)-1]; last.Actor != "sec team" || !strings.HasSuffix(last.Reason, "…") || !strings.HasPrefix(reason, strings.TrimSuffix(last.Reason, "…")) {
		t.Errorf("revoke event = %+v", last)
	}

	err := s.Promote(ctx, e, catalog.StageSpec{Name: "prod"}, catalog.Event{Time: at(11), Actor: actor})
	if err == nil || !strings.Contains(err.Error(), "revoked") || !strings.Contains(err.Error(), "lift the revocation") {
		t.Errorf("promoting a revoked version = %v, want a refusal", err)
	}
	nwrites.Store(0)
	if err := s.Revoke(ctx, e, catalog.Event{Time: at(12), Actor: "sec team", Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	if n := nwrites.Load(); n != 0 {
		t.Errorf("revoking again made %d writes, want none", n)
	}

	if err := s.Unrevoke(ctx, e, catalog.Event{Time: at(13), Actor: actor, Reason: "false alarm"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range regions {
		all := append([]map[string]string{a.imageTags(t, r, v1[r])}, a.snapshotTags(t, r, v1[r])...)
		for _, tg := range all {
			if _, ok := tg[catalogami.TagRevoked]; ok {
				t.Errorf("%s in %s still revoked", v1[r], r)
			}
		}
	}
	e = entry(t, s, "1.0.0")
	if e.Revoked || len(e.Stages) != 0 {
		t.Errorf("after unrevoke: %+v", e.Lifecycle)
	}
	if got := actions(e.Events); strings.Join(got, " ") != "bake promote:staging promote:prod revoke unrevoke" {
		t.Errorf("events = %v", got)
	}
	nwrites.Store(0)
	if err := s.Unrevoke(ctx, e, catalog.Event{Time: at(14), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	if n := nwrites.Load(); n != 0 {
		t.Errorf("unrevoking again made %d writes, want none", n)
	}
	if err := s.Promote(ctx, e, catalog.StageSpec{Name: "prod"}, catalog.Event{Time: at(15), Actor: actor}); err != nil {
		t.Errorf("promoting after unrevoke: %v", err)
	}
}

// race promotes entries[i] through stores[i] into spec's stage, all at
// once, and returns their errors.
func race(ctx context.Context, spec catalog.StageSpec, stores []*catalogami.LifecycleStore, entries []catalog.Entry) []error {
	start := make(chan struct{})
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for j, s := range stores {
		wg.Go(func() {
			<-start
			errs[j] = s.Promote(ctx, entries[j], spec, catalog.Event{Actor: fmt.Sprintf("promoter-%d", j)})
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func TestLifecycleConcurrentPromotionsLeaveOneHolder(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	regions := []string{east, eu}
	a.bake(t, "1.0.0", east, eu)
	a.bake(t, "2.0.0", east, eu)
	s1 := newStore(a.config(t), regions)
	s2 := newStore(a.config(t), regions)
	e1, e2 := entry(t, s1, "1.0.0"), entry(t, s2, "2.0.0")

	for i := range 10 {
		stage := fmt.Sprintf("prod-%d", i)
		errs := race(ctx, catalog.StageSpec{Name: stage}, []*catalogami.LifecycleStore{s1, s2}, []catalog.Entry{e1, e2})
		// The loser says so; nothing else may fail.
		lost := 0
		for _, err := range errs {
			switch {
			case errors.Is(err, catalog.ErrSuperseded):
				lost++
			case err != nil:
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if lost > 1 {
			t.Fatalf("round %d: both promotions report losing: %v", i, errs)
		}

		es, err := s1.Entries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var holders, promoted []string
		demoted := map[string]string{}
		for _, e := range es {
			if _, ok := e.Stages[stage]; ok {
				holders = append(holders, e.Version)
			}
			for _, ev := range e.Events {
				if ev.Stage != stage {
					continue
				}
				switch ev.Action {
				case catalog.ActionPromote:
					promoted = append(promoted, e.Version)
				case catalog.ActionDemote:
					demoted[e.Version] = ev.Reason
				}
			}
		}
		if len(holders) != 1 {
			t.Fatalf("round %d: %s held by %v, want exactly one version", i, stage, holders)
		}
		slices.Sort(promoted)
		if !slices.Equal(promoted, []string{"1.0.0", "2.0.0"}) {
			t.Errorf("round %d: promote events for %v, want one for each of 1.0.0 and 2.0.0", i, promoted)
		}
		loser := "1.0.0"
		if holders[0] == loser {
			loser = "2.0.0"
		}
		if demoted[loser] != "replaced by "+holders[0] || len(demoted) != 1 {
			t.Errorf("round %d: demotions %v, want %s replaced by %s", i, demoted, loser, holders[0])
		}
		// Every region agrees.
		for _, r := range regions {
			for _, id := range a.versionAMIs(t, r, loser) {
				if _, ok := a.imageTags(t, r, id)[catalogami.StageTag(stage)]; ok {
					t.Errorf("round %d: loser %s still holds %s in %s", i, loser, stage, r)
				}
			}
		}
	}
}

func TestLifecycleKeepsTheNewestEventsUnderTheTagLimit(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	extra := map[string]string{}
	for i := range 20 {
		extra[fmt.Sprintf("team:tag-%02d", i)] = "x"
	}
	ids := a.bakeArtifact(t, "server", "1.0.0", extra, east)
	s := newStore(a.config(t), []string{east}, catalogami.WithClock(newClock().now))
	e := entry(t, s, "1.0.0")
	for range 25 {
		if err := s.Revoke(ctx, e, catalog.Event{Actor: actor, Reason: "r"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Unrevoke(ctx, e, catalog.Event{Actor: actor}); err != nil {
			t.Fatal(err)
		}
	}
	tg := a.imageTags(t, east, ids[east])
	var events []string
	for k := range tg {
		if strings.HasPrefix(k, catalogami.TagEventPrefix) {
			events = append(events, k)
		}
	}
	// 29 other tags when the last event came (7 of bakery's, 20 of the
	// team's, bakery:revoked, deleted right after, and the count of
	// pruned events), 2 kept free: 19 events fit.
	if len(tg) > catalogami.MaxTags || len(events) != catalogami.MaxTags-2-29 {
		t.Errorf("%d tags, %d of them events; want at most %d, %d events", len(tg), len(events), catalogami.MaxTags, catalogami.MaxTags-2-29)
	}
	// 50 events recorded (25 revokes, 25 unrevokes), 19 kept: the rest
	// are counted, so history can say how many are gone.
	if pruned := entry(t, s, "1.0.0").Pruned; pruned != 50-len(events) {
		t.Errorf("Pruned = %d, want the %d events no longer on the AMI", pruned, 50-len(events))
	}
	for k := range extra {
		if _, ok := tg[k]; !ok {
			t.Errorf("tag %s was deleted to make room", k)
		}
	}
	got := entry(t, s, "1.0.0").Events
	if len(got) != 1+len(events) || got[0].Action != catalog.ActionBake || got[len(got)-1].Action != catalog.ActionUnrevoke {
		t.Errorf("events = %v, want the bake and the newest %d ending with an unrevoke", actions(got), len(events))
	}
	// The newest are kept: the history ends at the last unrevoke, and
	// alternates revoke/unrevoke without a gap.
	for i := 2; i < len(got); i++ {
		if got[i].Action == got[i-1].Action {
			t.Errorf("events %d and %d are both %s: a middle event was dropped", i-1, i, got[i].Action)
		}
	}

	// Without other tags, MaxEvents is the cap.
	b := newAccount(t)
	b.bake(t, "1.0.0", east)
	s = newStore(b.config(t), []string{east}, catalogami.WithClock(newClock().now))
	e = entry(t, s, "1.0.0")
	for range 20 {
		if err := s.Revoke(ctx, e, catalog.Event{Actor: actor}); err != nil {
			t.Fatal(err)
		}
		if err := s.Unrevoke(ctx, e, catalog.Event{Actor: actor}); err != nil {
			t.Fatal(err)
		}
	}
	if got := entry(t, s, "1.0.0").Events; len(got) != 1+catalogami.MaxEvents {
		t.Errorf("%d events, want the bake and %d", len(got), catalogami.MaxEvents)
	}
}

func TestLifecycleRefusesWhatItCannotDo(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	a.bake(t, "1.0.0", east)
	s := newStore(a.config(t), []string{east})
	e := entry(t, s, "1.0.0")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"no version", s.Promote(ctx, catalog.Entry{}, catalog.StageSpec{Name: "prod"}, catalog.Event{}), "names no version"},
		{"other artifact", s.Promote(ctx, catalog.Entry{Image: catalog.Image{Ref: catalog.Ref{Recipe: "web", Version: "1.0.0"}, Artifact: "worker"}}, catalog.StageSpec{Name: "prod"}, catalog.Event{}), "use the store of its artifact"},
		{"no stage", s.Promote(ctx, e, catalog.StageSpec{}, catalog.Event{}), "stage name is empty"},
		{"stage with a space", s.Promote(ctx, e, catalog.StageSpec{Name: "pro d"}, catalog.Event{}), "white space"},
		{"event for another stage", s.Promote(ctx, e, catalog.StageSpec{Name: "prod"}, catalog.Event{Stage: "dev"}), "names stage dev"},
		{"wrong action", s.Revoke(ctx, e, catalog.Event{Action: catalog.ActionPromote}), "is a promote, not a revoke"},
		{"unknown version", s.Promote(ctx, catalog.Entry{Image: catalog.Image{Ref: catalog.Ref{Version: "9.9.9"}}}, catalog.StageSpec{Name: "prod"}, catalog.Event{}), "bake it first"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want one containing %q", tc.name, tc.err, tc.want)
		}
	}
}
