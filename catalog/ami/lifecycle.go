package ami

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// MaxConvergeRounds bounds how many times Promote re-reads the holders of
// a stage and takes it away from all but the newest before it gives up.
const MaxConvergeRounds = 10

// maxEventBump is how far (in nanoseconds) an event's tag key moves past
// its time when another event already holds that key.
const maxEventBump = 16

// LifecycleStore is the catalog.Store of one machine_image artifact of a
// recipe: its versions are the complete AMIs tagged with the recipe and
// artifact, and their lifecycle (stages, revocation, history) is kept in
// tags on those AMIs and their snapshots (see TagStagePrefix, TagRevoked
// and TagEventPrefix), nowhere else. Two stores made from the same
// credentials, on two machines, see and change the same state.
//
// A version is in several regions, one AMI in each (the newest complete
// one when a version was baked again). Its build region's AMI, the one
// the others were copied from (EC2 reports the instance it was made
// from), is the Reference of its entry and the source of the copies
// Promote makes.
//
// The identity needs the actions of API (ec2:DescribeImages,
// ec2:CreateTags, ec2:CopyImage, ec2:ModifyImageAttribute, ...).
//
// A LifecycleStore is safe for concurrent use, and several stores (and
// machines) may change the same artifact at once: stage changes converge
// on one holder per stage (see Promote).
type LifecycleStore struct {
	recipe, artifact string
	regions          []string
	client           func(region string) API
	ops              *Ops
	find             *Store
	o                options

	mu      sync.Mutex
	written map[string]Image // the AMIs this store changed, by region/id, as it left them
	more    []string         // the regions WithMoreRegions found, once read
}

var _ catalog.Store = (*LifecycleStore)(nil)

// NewLifecycleStore returns the store of recipe's machine_image artifact
// whose AMIs are in regions: the recipe's build region and copy regions
// and every region a stage copies to (Entries, Revoke and Unrevoke look in
// these regions only; Promote also in the stage's). The order of regions
// does not matter. EC2 clients come from cfg (awsx.NewEC2), one per
// region. Options: WithConcurrency (regions worked on at once),
// WithClock (the time of events that carry none) and WithPollInterval
// (waiting for copies).
func NewLifecycleStore(cfg aws.Config, recipe, artifact string, regions []string, opts ...Option) *LifecycleStore {
	clients := newClients(cfg)
	o := newOptions(opts)
	client := func(region string) API { return clients.Get(region) }
	return &LifecycleStore{
		recipe:   recipe,
		artifact: artifact,
		regions:  dedupe(regions),
		client:   client,
		ops:      NewOps(client, o.poll, o.clock),
		find:     &Store{client: func(region string) EC2 { return clients.Get(region) }, concurrency: o.concurrency},
		o:        o,
	}
}

// clock is the clock the store's waits run on.
func (s *LifecycleStore) clock() awsx.Clock {
	if s.o.clock != nil {
		return s.o.clock
	}
	return awsx.SystemClock()
}

// Regions returns the regions the store was given (see also
// WithMoreRegions).
func (s *LifecycleStore) Regions() []string { return slices.Clone(s.regions) }

// lookIn returns the regions the store looks in: those it was given and,
// with WithMoreRegions, those the function returns (asked once).
func (s *LifecycleStore) lookIn(ctx context.Context) ([]string, error) {
	if s.o.moreRegions == nil {
		return s.regions, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.more == nil {
		more, err := s.o.moreRegions(ctx)
		if err != nil {
			return nil, err
		}
		s.more = dedupe(append(slices.Clone(s.regions), more...))
	}
	return s.more, nil
}

// ref names version for messages: RECIPE@VERSION (ARTIFACT).
func (s *LifecycleStore) ref(version string) string {
	return fmt.Sprintf("%s@%s (%s)", s.recipe, version, s.artifact)
}

// Entries returns every version that has a complete AMI in the store's
// regions, oldest bake first (then by catalog.CompareVersions), with its
// stages, revocation (of any of its AMIs, duplicates in a region
// included), locations (one per region, in the store's region order, the
// Preferred AMI) and history: the bake, then the events stored on any of
// its AMIs, merged, oldest first. It makes one paginated DescribeImages
// call per region.
func (s *LifecycleStore) Entries(ctx context.Context) ([]catalog.Entry, error) {
	regions, err := s.lookIn(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the AMIs of %s/%s: %w", s.recipe, s.artifact, err)
	}
	imgs, err := s.find.Find(ctx, regions, Query{Recipe: s.recipe, Artifact: s.artifact})
	if err != nil {
		return nil, fmt.Errorf("listing the AMIs of %s/%s: %w", s.recipe, s.artifact, err)
	}
	if imgs, err = s.withOwnWrites(ctx, imgs, regions); err != nil {
		return nil, fmt.Errorf("listing the AMIs of %s/%s: %w", s.recipe, s.artifact, err)
	}
	groups, dups := map[string][]Image{}, map[string][]Image{}
	for _, img := range imgs {
		g := groups[img.Version]
		// One AMI per version and region: of duplicates (left by an
		// older bakery, or a bake --force that stopped half way) the
		// one in a stage, else the newest.
		if i := slices.IndexFunc(g, func(o Image) bool { return o.Region == img.Region }); i < 0 {
			groups[img.Version] = append(g, img)
		} else if Preferred(img, g[i]) {
			dups[img.Version] = append(dups[img.Version], g[i])
			g[i] = img
		} else {
			dups[img.Version] = append(dups[img.Version], img)
		}
	}
	entries := make([]catalog.Entry, 0, len(groups))
	for v, g := range groups {
		entries = append(entries, s.entry(g, dups[v]...))
	}
	slices.SortFunc(entries, func(a, b catalog.Entry) int {
		return cmp.Or(a.Created.Compare(b.Created), catalog.CompareVersions(a.Version, b.Version), strings.Compare(a.Version, b.Version))
	})
	return entries, nil
}

// remember records img as this store left it, so that Entries shows the
// store's own writes even while a filtered listing lags behind them.
func (s *LifecycleStore) remember(img Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		s.written = map[string]Image{}
	}
	img.Tags = maps.Clone(img.Tags)
	s.written[img.Region+"/"+img.ImageID] = img
}

// Forget drops AMI id of region from the AMIs this store changed, which
// Entries shows even while a listing lags behind: call it once the AMI
// is deregistered (retire), or Entries keeps showing it as the store
// left it.
func (s *LifecycleStore) Forget(region, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.written, region+"/"+id)
}

// withOwnWrites returns imgs, a filtered listing, with the AMIs this
// store changed read again by id (what a listing on AWS may not show
// yet: new copies, new tags), or as the store left them where EC2 does
// not know them yet, each region's newest first.
func (s *LifecycleStore) withOwnWrites(ctx context.Context, imgs []Image, regions []string) ([]Image, error) {
	s.mu.Lock()
	written := slices.Collect(maps.Values(s.written))
	s.mu.Unlock()
	if len(written) == 0 {
		return imgs, nil
	}
	fresh, err := s.reread(ctx, written)
	if err != nil {
		return nil, err
	}
	for _, w := range written {
		if i := slices.IndexFunc(fresh, func(f Image) bool { return f.Region == w.Region && f.ImageID == w.ImageID }); i >= 0 {
			w = fresh[i]
		}
		if !slices.Contains(regions, w.Region) {
			continue
		}
		if i := slices.IndexFunc(imgs, func(o Image) bool { return o.Region == w.Region && o.ImageID == w.ImageID }); i >= 0 {
			imgs[i] = w
		} else {
			imgs = append(imgs, w)
		}
	}
	slices.SortStableFunc(imgs, func(a, b Image) int {
		return cmp.Or(strings.Compare(a.Region, b.Region), b.Created.Compare(a.Created), strings.Compare(a.ImageID, b.ImageID))
	})
	return imgs, nil
}

// entry makes the catalog entry of one version's AMIs (one per region,
// in region order). Its other complete AMIs, dups, add their events and
// revocation: a version is revoked when any of its AMIs is, and its
// history is what any of them holds.
func (s *LifecycleStore) entry(imgs []Image, dups ...Image) catalog.Entry {
	every := append(slices.Clone(imgs), dups...)
	build := buildImage(imgs)
	e := catalog.Entry{Image: build.Image}
	e.Kind = Kind
	e.Reference = build.ImageID
	e.Stages = map[string]catalog.StageEntry{}
	history := historyOf(every)
	pruned := slices.ContainsFunc(every, func(img Image) bool { return prunedOf(img.Tags) > 0 })
	for stage, m := range stagesOf(imgs) {
		key := StageTag(stage)
		unfinished := slices.ContainsFunc(imgs, func(img Image) bool { _, ok := img.Tags[key]; return !ok })
		if !unfinished && !pruned {
			// The promotion records its event after the marks: a mark
			// with no event is a promotion that stopped in between. (Once
			// events are pruned, the promotion's may be among them.)
			unfinished = !slices.ContainsFunc(history, func(se storedEvent) bool {
				return se.ev.Action == catalog.ActionPromote && se.ev.Stage == stage && nearly(se.ev.Time, m.Time)
			})
		}
		e.Stages[stage] = catalog.StageEntry{Since: m.Time, By: m.Actor, Unfinished: unfinished}
	}
	if m, ok := revokedOf(every); ok {
		e.Revoked = true
		e.RevokeReason = m.Reason
		e.RevokeUnfinished = slices.ContainsFunc(every, func(img Image) bool { _, ok := img.Tags[TagRevoked]; return !ok })
	}
	for _, img := range imgs {
		e.Locations = append(e.Locations, catalog.Location{Where: img.Region, ID: img.ImageID})
	}
	for _, img := range every {
		e.Pruned = max(e.Pruned, prunedOf(img.Tags))
	}
	// The bake comes first: nothing happens to a version before it
	// exists. An event stamped earlier (another machine's clock behind
	// the baker's, or a hand-edited tag) still follows it, with its own
	// time: it is not dropped, as a promotion may be what keeps a
	// rollback target.
	e.Events = []catalog.Event{{Time: build.Created, Action: catalog.ActionBake, Actor: build.Tags[catalog.TagCreatedBy]}}
	if m, ok := adoptedOf(every); ok {
		e.Events = append(e.Events, catalog.Event{Time: m.Time, Action: catalog.ActionAdopt, Actor: m.Actor, Reason: m.Reason})
	}
	for _, se := range history {
		e.Events = append(e.Events, se.ev)
	}
	// The adoption among the other events, by time (the bake stays first).
	slices.SortStableFunc(e.Events[1:], func(a, b catalog.Event) int { return a.Time.Compare(b.Time) })
	for i := range e.Events {
		ev := &e.Events[i]
		ev.Recipe, ev.Version, ev.Artifact, ev.Kind = e.Recipe, e.Version, e.Artifact, Kind
	}
	return e
}

// Preferred reports whether AMI a stands for its version in its region
// rather than b, another complete AMI of the same version there (a
// duplicate): the one in a stage, then the newest bake, then the greater
// id. status, promotion and launch use the preferred one; sweep reports
// the other.
func Preferred(a, b Image) bool {
	if sa, sb := len(stagesOf([]Image{a})) > 0, len(stagesOf([]Image{b})) > 0; sa != sb {
		return sa
	}
	if !a.Created.Equal(b.Created) {
		return a.Created.After(b.Created)
	}
	return a.ImageID > b.ImageID
}

// buildImage returns the AMI the others of a version were copied from:
// one made from an instance rather than copied (as EC2 reports it), then
// the oldest, then the first.
func buildImage(imgs []Image) Image {
	best := 0
	for i, img := range imgs[1:] {
		b := imgs[best]
		if c := cmp.Or(
			cmp.Compare(boolInt(img.SourceInstanceID == ""), boolInt(b.SourceInstanceID == "")),
			cmp.Compare(boolInt(img.SourceImageRegion != ""), boolInt(b.SourceImageRegion != "")),
			img.CreationDate.Compare(b.CreationDate),
		); c < 0 {
			best = i + 1
		}
	}
	return imgs[best]
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stagesOf returns the stage marks of imgs, the newest of each stage.
// A mark that does not parse counts, with a zero time.
func stagesOf(imgs []Image) map[string]mark {
	out := map[string]mark{}
	for _, img := range imgs {
		for k, v := range img.Tags {
			stage, ok := strings.CutPrefix(k, TagStagePrefix)
			if !ok {
				continue
			}
			m, _ := parseMark(v)
			if cur, seen := out[stage]; !seen || m.newer(cur) {
				out[stage] = m
			}
		}
	}
	return out
}

// revokedOf returns the newest revocation mark of imgs, if any carries
// one; a value that is no mark is kept as its reason.
func revokedOf(imgs []Image) (mark, bool) {
	return markOf(imgs, TagRevoked, true, func(a, b mark) bool { return a.newer(b) })
}

// adoptedOf returns the oldest adoption mark of imgs (every AMI of an
// adopted version carries the same one), if any carries one.
func adoptedOf(imgs []Image) (mark, bool) {
	return markOf(imgs, TagAdopted, false, func(a, b mark) bool { return b.newer(a) })
}

// markOf returns, of the marks under tag on imgs, the one better prefers
// to every other, if any carries one. A value that is no mark counts as
// a mark with that reason when keepUnparsed, and not at all otherwise.
func markOf(imgs []Image, tag string, keepUnparsed bool, better func(a, b mark) bool) (mark, bool) {
	var (
		out   mark
		found bool
	)
	for _, img := range imgs {
		v, ok := img.Tags[tag]
		if !ok {
			continue
		}
		m, err := parseMark(v)
		if err != nil {
			if !keepUnparsed {
				continue
			}
			m = mark{Reason: v}
		}
		if !found || better(m, out) {
			out, found = m, true
		}
	}
	return out, found
}

// storedEvent is an event with the tag it is stored in.
type storedEvent struct {
	key, value string
	ev         catalog.Event
}

// historyOf returns the events stored on imgs, merged by tag key (the
// first image's value wins), oldest first. Tags that do not decode are
// left out.
func historyOf(imgs []Image) []storedEvent {
	seen := map[string]bool{}
	var out []storedEvent
	for _, img := range imgs {
		for k, v := range img.Tags {
			if seen[k] || !isEventTag(k) {
				continue
			}
			ev, err := decodeEvent(k, v)
			if err != nil {
				continue
			}
			seen[k] = true
			out = append(out, storedEvent{key: k, value: v, ev: ev})
		}
	}
	slices.SortFunc(out, func(a, b storedEvent) int {
		return cmp.Or(a.ev.Time.Compare(b.ev.Time), strings.Compare(a.key, b.key))
	})
	return out
}

// located is a complete AMI of a version in one region, with the tags
// of its snapshots (nil when not read).
type located struct {
	Image
	snaps map[string]map[string]string
}

// version is one version's complete AMIs, the preferred one per region
// (see Preferred) and the other complete ones (duplicates), and the
// unfinished ones (copies in progress).
type version struct {
	name       string
	regions    []string
	amis       map[string]*located
	dups       map[string][]*located
	unfinished map[string][]Image
}

// list returns the complete AMIs in region order.
func (v *version) list() []*located {
	var out []*located
	for _, r := range v.regions {
		if l := v.amis[r]; l != nil {
			out = append(out, l)
		}
	}
	return out
}

// images returns the complete AMIs in region order.
func (v *version) images() []Image { return images(v.list()) }

// every returns the complete AMIs in region order, duplicates included
// (each after the region's preferred AMI): what a revocation marks.
func (v *version) every() []*located {
	var out []*located
	for _, r := range v.regions {
		if l := v.amis[r]; l != nil {
			out = append(out, l)
			out = append(out, v.dups[r]...)
		}
	}
	return out
}

func images(ls []*located) []Image {
	out := make([]Image, len(ls))
	for i, l := range ls {
		out[i] = l.Image
	}
	return out
}

// load reads version's AMIs in regions and the tags of their snapshots.
func (s *LifecycleStore) load(ctx context.Context, name string, regions []string) (*version, error) {
	imgs, err := s.find.Find(ctx, regions, Query{Recipe: s.recipe, Artifact: s.artifact, Version: name, Unfinished: true})
	if err != nil {
		return nil, err
	}
	v := &version{name: name, regions: regions, amis: map[string]*located{}, dups: map[string][]*located{}, unfinished: map[string][]Image{}}
	for _, img := range imgs {
		l, cur := &located{Image: img}, v.amis[img.Region]
		switch {
		case !img.Complete():
			v.unfinished[img.Region] = append(v.unfinished[img.Region], img)
		case cur == nil:
			v.amis[img.Region] = l
		case Preferred(img, cur.Image):
			v.amis[img.Region], v.dups[img.Region] = l, append(v.dups[img.Region], cur)
		default:
			v.dups[img.Region] = append(v.dups[img.Region], l)
		}
	}
	return v, s.each(ctx, v.every(), s.readSnapshots)
}

// readSnapshots reads the tags of l's snapshots.
func (s *LifecycleStore) readSnapshots(ctx context.Context, l *located) error {
	l.snaps = map[string]map[string]string{}
	if len(l.Snapshots) == 0 {
		return nil
	}
	out, err := s.client(l.Region).DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: l.Snapshots})
	if err != nil {
		return fmt.Errorf("reading the snapshots of AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
	}
	for _, sn := range out.Snapshots {
		tags := map[string]string{}
		for _, t := range sn.Tags {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
		l.snaps[aws.ToString(sn.SnapshotId)] = tags
	}
	return nil
}

// each runs fn on every l, up to the store's concurrency at once.
func (s *LifecycleStore) each(ctx context.Context, ls []*located, fn func(context.Context, *located) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.o.concurrency)
	for _, l := range ls {
		g.Go(func() error { return fn(gctx, l) })
	}
	return g.Wait()
}

// checkEntry reports whether e is a version of the store's artifact.
func (s *LifecycleStore) checkEntry(e catalog.Entry) error {
	switch {
	case e.Version == "":
		return errors.New("the entry names no version: pick one from the catalog (bakery status)")
	case e.Recipe != "" && e.Recipe != s.recipe, e.Artifact != "" && e.Artifact != s.artifact:
		return fmt.Errorf("the entry is %s/%s but this store holds %s/%s: use the store of its artifact", e.Recipe, e.Artifact, s.recipe, s.artifact)
	case e.Kind != "" && e.Kind != Kind:
		return fmt.Errorf("the entry is a %s image, not an AMI: use the store of its kind", e.Kind)
	}
	return nil
}

// fill completes ev for action on version: the action and stage (which
// must match when set), the image's names, and a time from the clock if
// it has none.
func (s *LifecycleStore) fill(ev catalog.Event, version, action, stage string) (catalog.Event, error) {
	if ev.Action == "" {
		ev.Action = action
	} else if ev.Action != action {
		return ev, fmt.Errorf("the event to record is a %s, not a %s", ev.Action, action)
	}
	if stage != "" {
		if ev.Stage == "" {
			ev.Stage = stage
		} else if ev.Stage != stage {
			return ev, fmt.Errorf("the event to record names stage %s, not %s", ev.Stage, stage)
		}
	}
	ev.Recipe, ev.Version, ev.Artifact, ev.Kind = s.recipe, version, s.artifact, Kind
	if ev.Time.IsZero() {
		ev.Time = s.o.now()
	}
	ev.Time = ev.Time.UTC()
	return ev, nil
}
