package ami_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/faultproxy"
)

// packerAMI makes an AMI the way Packer's amazon-ebs builder does: an
// instance, CreateImage, and Packer's own tags (the template's tags
// block) on the AMI and its snapshots. It returns the AMI id.
func (a *account) packerAMI(t *testing.T, region, name string, own map[string]string) string {
	t.Helper()
	ctx := context.Background()
	c := a.client(t, region)
	src, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}, Filters: []ec2types.Filter{
		{Name: aws.String("name"), Values: []string{"al2023-ami-2023.*-kernel-6.1-x86_64"}},
	}})
	if err != nil || len(src.Images) == 0 {
		t.Fatalf("finding a source AMI in %s: %v", region, err)
	}
	run, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: src.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	img, err := c.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: run.Instances[0].InstanceId, Name: aws.String(name)})
	if err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	id := aws.ToString(img.ImageId)
	tags := map[string]string{"Name": name}
	maps.Copy(tags, own)
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: append([]string{id}, a.snapshots(t, region, id)...), Tags: ec2Tags(tags)}); err != nil {
		t.Fatal(err)
	}
	return id
}

// memJournal is a catalog.Journal in memory.
type memJournal struct {
	mu  sync.Mutex
	evs []catalog.Event
}

func (j *memJournal) Append(_ context.Context, ev catalog.Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, o := range j.evs {
		if reflect.DeepEqual(o, ev) {
			return nil
		}
	}
	j.evs = append(j.evs, ev)
	return nil
}

func (j *memJournal) Events(context.Context, string) ([]catalog.Event, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]catalog.Event(nil), j.evs...), nil
}

var packerBuilt = time.Date(2026, 2, 20, 8, 30, 0, 0, time.UTC)

// adoption is the adoption of amis (region → id) as version.
func adoption(version string, amis map[string]string) catalogami.Adoption {
	a := catalogami.Adoption{Version: version, Created: packerBuilt, CreatedBy: "packer (amazon-ebs)", Actor: actor,
		Reason: "packer build web, run r1, of manifest.json", Tags: map[string]string{"team": "web"}, Stages: 3}
	for _, r := range []string{east, eu, west} {
		if id, ok := amis[r]; ok {
			a.AMIs = append(a.AMIs, catalogami.RegionAMI{Region: r, ImageID: id})
		}
	}
	return a
}

func TestAdoptTagsPackerAMIsLikeABakeAndPromotes(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	amis := map[string]string{east: a.packerAMI(t, east, "web-1", nil), eu: a.packerAMI(t, eu, "web-1", nil)}
	clk := newClock()
	j := &memJournal{}
	s := newStore(a.config(t), []string{east, eu, west}, catalogami.WithClock(clk.now), catalogami.WithJournal(j))

	res, err := s.Adopt(ctx, adoption("1.0.0", amis))
	if err != nil {
		t.Fatal(err)
	}
	adoptedAt := time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC) // the clock's first reading
	if !res.Changed || res.Tagged != 4 || !res.Time.Equal(adoptedAt) || res.Actor != actor || res.Ref != (catalog.Ref{Recipe: "web", Version: "1.0.0"}) {
		t.Errorf("result = %+v, want changed, 2 AMIs and 2 snapshots tagged, at %s by %s", res, adoptedAt, actor)
	}
	want := map[string]string{
		catalog.TagRecipe:     "web",
		catalog.TagArtifact:   "server",
		catalog.TagVersion:    "1.0.0",
		catalog.TagBakeKey:    catalog.BakeKeyUnknown,
		catalog.TagCreated:    "2026-02-20T08:30:00Z",
		catalog.TagCreatedBy:  "packer (amazon-ebs)",
		catalogami.TagAdopted: "2026-03-01T12:00:01Z " + actor + " packer build web, run r1, of manifest.json",
		"team":                "web",
		"Name":                "web-1", // Packer's own tag stays
	}
	for region, id := range amis {
		all := append([]map[string]string{a.imageTags(t, region, id)}, a.snapshotTags(t, region, id)...)
		if len(all) < 2 {
			t.Fatalf("AMI %s has no snapshot", id)
		}
		for i, got := range all {
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s (resource %d: the AMI, then its snapshots) tags =\n%v\nwant\n%v", region, id, i, got, want)
			}
		}
	}

	e := entry(t, s, "1.0.0")
	if e.BakeKey != catalog.BakeKeyUnknown || !catalog.Adopted(e.BakeKey) || !e.Created.Equal(packerBuilt) {
		t.Errorf("entry = %+v, want bake key unknown, created at the Packer build", e.Image)
	}
	wantLocs := []catalog.Location{{Where: eu, ID: amis[eu]}, {Where: east, ID: amis[east]}}
	locs := slices.SortedFunc(slices.Values(e.Locations), func(x, y catalog.Location) int { return strings.Compare(x.Where, y.Where) })
	if !reflect.DeepEqual(locs, wantLocs) {
		t.Errorf("locations = %v, want %v", e.Locations, wantLocs)
	}
	wantEvents := []catalog.Event{
		{Time: packerBuilt, Action: catalog.ActionBake, Recipe: "web", Version: "1.0.0", Artifact: "server", Kind: "ami", Actor: "packer (amazon-ebs)"},
		{Time: adoptedAt, Action: catalog.ActionAdopt, Recipe: "web", Version: "1.0.0", Artifact: "server", Kind: "ami", Actor: actor, Reason: "packer build web, run r1, of manifest.json"},
	}
	if !reflect.DeepEqual(e.Events, wantEvents) {
		t.Errorf("events =\n%+v\nwant\n%+v", e.Events, wantEvents)
	}
	if evs, _ := j.Events(ctx, "web"); len(evs) != 1 || !reflect.DeepEqual(evs[0], wantEvents[1]) {
		t.Errorf("journal = %+v, want the adopt event %+v", evs, wantEvents[1])
	}

	// Promote treats it as any version: a copy to the stage's region
	// carries the bake key and the adoption.
	prod := catalog.StageSpec{Name: "prod", Regions: []string{west}}
	if err := s.Promote(ctx, e, prod, catalog.Event{Actor: actor}); err != nil {
		t.Fatalf("promoting the adopted version: %v", err)
	}
	copies := a.versionAMIs(t, west, "1.0.0")
	if len(copies) != 1 {
		t.Fatalf("copies in %s = %v", west, copies)
	}
	ct := a.imageTags(t, west, copies[0])
	if ct[catalog.TagBakeKey] != catalog.BakeKeyUnknown || ct[catalogami.TagAdopted] != want[catalogami.TagAdopted] || ct["bakery:stage:prod"] == "" {
		t.Errorf("the promotion's copy has tags %v, want the bake key unknown, the adoption mark and the stage mark", ct)
	}
	if st := entry(t, s, "1.0.0").Stages; len(st) != 1 {
		t.Errorf("stages after promote = %v, want prod", st)
	}
}

func TestAdoptAgainChangesNothingAndFinishesWhatIsMissing(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	amis := map[string]string{east: a.packerAMI(t, east, "web-2", nil), eu: a.packerAMI(t, eu, "web-2", nil)}
	clk := newClock()
	s := newStore(a.config(t), []string{east, eu}, catalogami.WithClock(clk.now))
	// First only the us-east-1 AMI.
	first, err := s.Adopt(ctx, adoption("2.0.0", map[string]string{east: amis[east]}))
	if err != nil {
		t.Fatal(err)
	}
	cfg, nwrites := writes(a.config(t))
	s2 := newStore(cfg, []string{east, eu}, catalogami.WithClock(clk.now))
	again, err := s2.Adopt(ctx, adoption("2.0.0", map[string]string{east: amis[east]}))
	if err != nil {
		t.Fatalf("adopting again: %v", err)
	}
	if again.Changed || nwrites.Load() != 0 || !again.Time.Equal(first.Time) {
		t.Errorf("adopting again: %+v after %d writes; want no change, no write, the first run's time %s", again, nwrites.Load(), first.Time)
	}
	// Then both: eu-west-1's is added with the first run's mark.
	both, err := s2.Adopt(ctx, adoption("2.0.0", amis))
	if err != nil {
		t.Fatalf("adopting with one more region: %v", err)
	}
	if !both.Changed || both.Tagged != 2 || !both.Time.Equal(first.Time) {
		t.Errorf("adopting with one more region: %+v; want the eu-west-1 AMI and snapshot tagged, at the first run's time", both)
	}
	if e, w := a.imageTags(t, eu, amis[eu]), a.imageTags(t, east, amis[east]); e[catalogami.TagAdopted] != w[catalogami.TagAdopted] || e[catalog.TagCreated] != w[catalog.TagCreated] {
		t.Errorf("the two regions disagree: %v vs %v", e, w)
	}
}

func TestAdoptTakesTheAMIsCreationDateWithoutABuildTime(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	id := a.packerAMI(t, east, "web-3", nil)
	s := newStore(a.config(t), []string{east})
	ad := adoption("3.0.0", map[string]string{east: id})
	ad.Created, ad.CreatedBy = time.Time{}, ""
	if _, err := s.Adopt(context.Background(), ad); err != nil {
		t.Fatal(err)
	}
	created, err := time.Parse(time.RFC3339, aws.ToString(a.image(t, east, id).CreationDate))
	if err != nil {
		t.Fatal(err)
	}
	tags := a.imageTags(t, east, id)
	if tags[catalog.TagCreated] != created.UTC().Format(time.RFC3339) {
		t.Errorf("bakery:created = %q, want the AMI's creation date %s", tags[catalog.TagCreated], created.UTC().Format(time.RFC3339))
	}
	if _, ok := tags[catalog.TagCreatedBy]; ok {
		t.Errorf("bakery:created-by written without a maker: %v", tags)
	}
}

func TestAdoptRefusesAndChangesNothing(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	packer := a.packerAMI(t, east, "web-4", nil)
	packerEU := a.packerAMI(t, eu, "web-4", nil)
	crowded := map[string]string{}
	for i := range 40 {
		crowded[fmt.Sprintf("packer-%02d", i)] = "x"
	}
	full := a.packerAMI(t, east, "web-full", crowded)
	baked := a.bake(t, "1.0.0", east)
	other := a.bakeArtifact(t, "worker", "5.0.0", nil, east)
	for _, tc := range []struct {
		name string
		ad   catalogami.Adoption
		want []string
	}{
		{"not found in the region", adoption("9.0.0", map[string]string{eu: packer}),
			[]string{"AMI " + packer + " does not exist in eu-west-1", "another region"}},
		{"another account's", adoption("9.0.0", map[string]string{east: al2023}),
			[]string{"AMI " + al2023 + " in us-east-1 belongs to account", "not to this one", "copy it into this account"}},
		{"bakery's own bake", adoption("9.0.0", map[string]string{east: baked[east]}),
			[]string{"is already web@1.0.0 (server) in bakery's catalog"}},
		{"another artifact's", adoption("9.0.0", map[string]string{east: other[east]}),
			[]string{"is already web@5.0.0 (worker)", "one version of one recipe"}},
		{"the version exists", adoption("1.0.0", map[string]string{east: packer}),
			[]string{"web@1.0.0 (server) exists already (baked AMI " + baked[east] + " in us-east-1)", "another --version"}},
		{"the version exists for another artifact", adoption("5.0.0", map[string]string{east: packer}),
			[]string{"web@5.0.0 (server) exists already (baked AMI " + other[east] + " of machine_image worker in us-east-1)"}},
		{"two in one region", catalogami.Adoption{Version: "9.0.0", AMIs: []catalogami.RegionAMI{{Region: east, ImageID: packer}, {Region: east, ImageID: full}}},
			[]string{"two AMIs in us-east-1", "one AMI per region"}},
		{"no version", adoption("", map[string]string{east: packer}), []string{"no version"}},
		{"a version with a space", adoption("1 0", map[string]string{east: packer}), []string{`version "1 0" contains white space`}},
		{"no AMI", catalogami.Adoption{Version: "9.0.0"}, []string{"no AMI to adopt"}},
		{"too many tags", adoption("9.0.0", map[string]string{east: full}),
			[]string{"AMI " + full + " in us-east-1 would carry 49 tags", "remove some of its own tags"}},
		{"a reserved tag", func() catalogami.Adoption {
			ad := adoption("9.0.0", map[string]string{east: packer, eu: packerEU})
			ad.Tags = map[string]string{"aws:owner": "x"}
			return ad
		}(), []string{`tag key "aws:owner" starts with aws:`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.everything(t, east, eu)
			_, err := newStore(a.config(t), []string{east, eu}).Adopt(context.Background(), tc.ad)
			if err == nil {
				t.Fatal("Adopt accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if after := a.everything(t, east, eu); !reflect.DeepEqual(before, after) {
				t.Errorf("a refused adoption changed tags")
			}
		})
	}
}

// TestAdoptRollsBackWhenTaggingFailsPartWay: CreateTags fails in
// us-east-1 (every try), after eu-west-1's AMI and snapshot were tagged
// (regions go in order). Adopt must take eu-west-1's tags back, restoring
// the value the recipe's tags overwrote, and say so.
func TestAdoptRollsBackWhenTaggingFailsPartWay(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	amis := map[string]string{east: a.packerAMI(t, east, "web-5", nil), eu: a.packerAMI(t, eu, "web-5", map[string]string{"team": "packer-era"})}
	before := a.everything(t, east, eu)
	cfg, p := a.faultConfig(t, faultproxy.InternalErrorIn(east, 1, "CreateTags"))
	s := newStore(cfg, []string{east, eu})

	_, err := s.Adopt(context.Background(), adoption("1.0.0", amis))
	if err == nil || !strings.Contains(err.Error(), "tagging snapshot") || !strings.Contains(err.Error(), "were removed again: nothing changed") {
		t.Fatalf("Adopt = %v, want the tagging error and that the tags written were removed\n%s", err, p.Summary())
	}
	if after := a.everything(t, east, eu); !reflect.DeepEqual(before, after) {
		for id, tags := range after {
			if !reflect.DeepEqual(tags, before[id]) {
				t.Errorf("%s: tags %v, before %v", id, tags, before[id])
			}
		}
	}
	if p.Count("DeleteTags") == 0 || p.Faults("CreateTags", faultproxy.FaultInternal) == 0 {
		t.Errorf("the failure did not come part way (no tag was taken back):\n%s", p.Summary())
	}
	if es, err := s.Entries(context.Background()); err != nil || len(es) != 0 {
		t.Errorf("entries after a rolled back adoption = %+v, %v; want none", es, err)
	}
}

// TestAdoptRequests counts what Adopt sends: per AMI one CreateTags on
// each snapshot and one on the AMI, nothing else that writes; adopting
// again sends no write at all.
func TestAdoptRequests(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	amis := map[string]string{east: a.packerAMI(t, east, "web-6", nil), eu: a.packerAMI(t, eu, "web-6", nil)}
	resources := 0
	for r, id := range amis {
		resources += 1 + len(a.snapshots(t, r, id))
	}
	cfg, p := a.faultConfig(t)
	s := newStore(cfg, []string{east, eu})
	if _, err := s.Adopt(context.Background(), adoption("1.0.0", amis)); err != nil {
		t.Fatal(err)
	}
	counts := p.Counts()
	if counts["CreateTags"] != resources {
		t.Errorf("CreateTags calls = %d, want %d (one per AMI and snapshot)\n%s", counts["CreateTags"], resources, p.Summary())
	}
	for _, op := range []string{"DeleteTags", "CopyImage", "ModifyImageAttribute", "ModifySnapshotAttribute", "DeregisterImage"} {
		if counts[op] != 0 {
			t.Errorf("%s calls = %d, want none", op, counts[op])
		}
	}
	if _, err := newStore(cfg, []string{east, eu}).Adopt(context.Background(), adoption("1.0.0", amis)); err != nil {
		t.Fatal(err)
	}
	if n := p.Count("CreateTags"); n != resources {
		t.Errorf("adopting again sent %d more CreateTags", n-resources)
	}
}
