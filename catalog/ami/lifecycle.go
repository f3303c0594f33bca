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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
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

// lifecycleEC2 is every EC2 call a LifecycleStore makes. *ec2.Client
// implements it.
type lifecycleEC2 interface {
	EC2
	DescribeSnapshots(context.Context, *ec2.DescribeSnapshotsInput, ...func(*ec2.Options)) (*ec2.DescribeSnapshotsOutput, error)
	CreateTags(context.Context, *ec2.CreateTagsInput, ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
	DeleteTags(context.Context, *ec2.DeleteTagsInput, ...func(*ec2.Options)) (*ec2.DeleteTagsOutput, error)
	CopyImage(context.Context, *ec2.CopyImageInput, ...func(*ec2.Options)) (*ec2.CopyImageOutput, error)
	DescribeImageAttribute(context.Context, *ec2.DescribeImageAttributeInput, ...func(*ec2.Options)) (*ec2.DescribeImageAttributeOutput, error)
	ModifyImageAttribute(context.Context, *ec2.ModifyImageAttributeInput, ...func(*ec2.Options)) (*ec2.ModifyImageAttributeOutput, error)
	DescribeSnapshotAttribute(context.Context, *ec2.DescribeSnapshotAttributeInput, ...func(*ec2.Options)) (*ec2.DescribeSnapshotAttributeOutput, error)
	ModifySnapshotAttribute(context.Context, *ec2.ModifySnapshotAttributeInput, ...func(*ec2.Options)) (*ec2.ModifySnapshotAttributeOutput, error)
}

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
// The identity needs ec2:DescribeImages, ec2:DescribeSnapshots,
// ec2:CreateTags, ec2:DeleteTags, ec2:CopyImage,
// ec2:DescribeImageAttribute, ec2:ModifyImageAttribute,
// ec2:DescribeSnapshotAttribute and ec2:ModifySnapshotAttribute.
//
// A LifecycleStore is safe for concurrent use, and several stores (and
// machines) may change the same artifact at once: stage changes converge
// on one holder per stage (see Promote).
type LifecycleStore struct {
	recipe, artifact string
	regions          []string
	client           func(region string) lifecycleEC2
	find             *Store
	o                options
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
	clients := newClientCache(cfg)
	o := newOptions(opts)
	return &LifecycleStore{
		recipe:   recipe,
		artifact: artifact,
		regions:  dedupe(regions),
		client:   func(region string) lifecycleEC2 { return clients.get(region) },
		find:     &Store{client: func(region string) EC2 { return clients.get(region) }, concurrency: o.concurrency},
		o:        o,
	}
}

// Regions returns the regions the store looks in.
func (s *LifecycleStore) Regions() []string { return slices.Clone(s.regions) }

// ref names version for messages: RECIPE@VERSION (ARTIFACT).
func (s *LifecycleStore) ref(version string) string {
	return fmt.Sprintf("%s@%s (%s)", s.recipe, version, s.artifact)
}

// Entries returns every version that has a complete AMI in the store's
// regions, oldest bake first (then by catalog.CompareVersions), with its
// stages, revocation, locations (one per region, in the store's region
// order) and history: the bake, then the events stored on any of its
// AMIs, merged, oldest first. It makes one paginated DescribeImages call per
// region.
func (s *LifecycleStore) Entries(ctx context.Context) ([]catalog.Entry, error) {
	imgs, err := s.find.Find(ctx, s.regions, Query{Recipe: s.recipe, Artifact: s.artifact})
	if err != nil {
		return nil, fmt.Errorf("listing the AMIs of %s/%s: %w", s.recipe, s.artifact, err)
	}
	groups := map[string][]Image{}
	for _, img := range imgs {
		g := groups[img.Version]
		// Find lists each region's AMIs newest first: keep the first.
		if !slices.ContainsFunc(g, func(o Image) bool { return o.Region == img.Region }) {
			groups[img.Version] = append(g, img)
		}
	}
	entries := make([]catalog.Entry, 0, len(groups))
	for _, g := range groups {
		entries = append(entries, s.entry(g))
	}
	slices.SortFunc(entries, func(a, b catalog.Entry) int {
		return cmp.Or(a.Created.Compare(b.Created), catalog.CompareVersions(a.Version, b.Version), strings.Compare(a.Version, b.Version))
	})
	return entries, nil
}

// entry makes the catalog entry of one version's AMIs (one per region,
// in region order).
func (s *LifecycleStore) entry(imgs []Image) catalog.Entry {
	build := buildImage(imgs)
	e := catalog.Entry{Image: build.Image}
	e.Kind = Kind
	e.Reference = build.ImageID
	e.Stages = map[string]catalog.StageEntry{}
	for stage, m := range stagesOf(imgs) {
		e.Stages[stage] = catalog.StageEntry{Since: m.Time, By: m.Actor}
	}
	if m, ok := revokedOf(imgs); ok {
		e.Revoked = true
		e.RevokeReason = m.Reason
	}
	for _, img := range imgs {
		e.Locations = append(e.Locations, catalog.Location{Where: img.Region, ID: img.ImageID})
	}
	e.Events = []catalog.Event{{Time: build.Created, Action: catalog.ActionBake, Actor: build.Tags[catalog.TagCreatedBy]}}
	for _, se := range historyOf(imgs) {
		e.Events = append(e.Events, se.ev)
	}
	slices.SortStableFunc(e.Events, func(a, b catalog.Event) int { return a.Time.Compare(b.Time) })
	for i := range e.Events {
		ev := &e.Events[i]
		ev.Recipe, ev.Version, ev.Artifact, ev.Kind = e.Recipe, e.Version, e.Artifact, Kind
	}
	return e
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

// revokedOf returns the newest revocation mark of imgs, if any carries one.
func revokedOf(imgs []Image) (mark, bool) {
	var (
		out   mark
		found bool
	)
	for _, img := range imgs {
		v, ok := img.Tags[TagRevoked]
		if !ok {
			continue
		}
		m, err := parseMark(v)
		if err != nil {
			m = mark{Reason: v}
		}
		if !found || m.newer(out) {
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

// version is one version's complete AMIs, newest per region, and the
// unfinished ones (copies in progress).
type version struct {
	name       string
	regions    []string
	amis       map[string]*located
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
	v := &version{name: name, regions: regions, amis: map[string]*located{}, unfinished: map[string][]Image{}}
	for _, img := range imgs {
		switch {
		case !img.Complete():
			v.unfinished[img.Region] = append(v.unfinished[img.Region], img)
		case v.amis[img.Region] == nil:
			v.amis[img.Region] = &located{Image: img}
		}
	}
	return v, s.each(ctx, v.list(), s.readSnapshots)
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

// Promote puts e into spec's stage, in this order, each step skipped
// where it is done already:
//
//  1. copies the version to every region of spec.Regions it is not in
//     (see below);
//  2. shares the AMI of every region with spec.Accounts (launch
//     permission) and its snapshots (create-volume permission);
//  3. writes the stage mark on the AMI of every region and on its
//     snapshots: the time of ev (the clock's when ev has none) and its
//     actor, or, when the version holds the stage already, the mark it
//     has, so that it keeps the time it entered;
//  4. records ev on the AMI of every region, its time being the mark's;
//  5. converges: re-reads the versions holding the stage and takes it
//     away from every one but the newest (newest mark, then greatest
//     version by catalog.CompareVersions, then greatest AMI id),
//     recording their demotion ("replaced by VERSION", at the winner's
//     time, by its actor); then reads again, up to MaxConvergeRounds
//     times, until one holds it.
//     A revoked version loses the stage without a demotion event. Every
//     promoter of the stage reaches the same verdict from the marks, so
//     concurrent promotions end with one holder; e may be the one that
//     loses, and Promote still returns nil.
//
// A copy is made from the build region's AMI with the same name and a
// description naming its source; it carries the version's tags (those
// of an unfinished bake: recipe, artifact, version, bake id and the copy's
// start time as bakery:created) from the moment CopyImage returns, then,
// once available, every tag of the source (the version's stage marks and
// history included, stage marks it has lost since an earlier run
// removed), the bake key last. A rerun after a crash resumes a copy it
// finds by those tags, or by name and description, instead of copying
// again.
//
// Promote refuses a revoked version. Promoting a version that is in the
// stage, with everything in place, changes nothing and records nothing.
func (s *LifecycleStore) Promote(ctx context.Context, e catalog.Entry, spec catalog.StageSpec, ev catalog.Event) error {
	stage := spec.Name
	what := fmt.Sprintf("promoting %s to %s", s.ref(e.Version), stage)
	if err := s.checkEntry(e); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := checkStage(stage); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ev, err := s.fill(ev, e.Version, catalog.ActionPromote, stage)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	regions := dedupe(append(slices.Clone(s.regions), spec.Regions...))
	v, err := s.load(ctx, e.Version, regions)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(v.amis) == 0 {
		return fmt.Errorf("%s: no complete AMI of it in %s: bake it first, or name its regions in the recipe", what, strings.Join(regions, ", "))
	}
	if m, ok := revokedOf(v.images()); ok {
		return fmt.Errorf("%s: it is revoked (%s): lift the revocation first", what, orNone(m.Reason))
	}
	resumable := func(err error) error {
		return fmt.Errorf("%s: %w (run the promotion again to finish it: it resumes where it stopped)", what, err)
	}

	if err := s.copyMissing(ctx, v, spec.Regions); err != nil {
		return resumable(err)
	}
	if len(spec.Accounts) > 0 {
		accounts := dedupe(spec.Accounts)
		if err := s.each(ctx, v.list(), func(ctx context.Context, l *located) error { return s.share(ctx, l, accounts) }); err != nil {
			return resumable(err)
		}
	}
	m, held := stagesOf(v.images())[stage]
	if !held || m.Time.IsZero() {
		m = mark{Time: ev.Time, Actor: ev.Actor}
	}
	ev.Time = m.Time
	tag := map[string]string{StageTag(stage): m.String()}
	if err := s.each(ctx, v.list(), func(ctx context.Context, l *located) error { return s.tag(ctx, l, tag, tag) }); err != nil {
		return resumable(err)
	}
	same := func(o catalog.Event) bool {
		return o.Action == catalog.ActionPromote && o.Stage == stage && nearly(o.Time, m.Time)
	}
	if err := s.ensureEvent(ctx, v.list(), ev, same); err != nil {
		return resumable(err)
	}
	winner, err := s.converge(ctx, stage, regions)
	if err != nil {
		return resumable(err)
	}
	if winner != e.Version {
		return fmt.Errorf("%s: %s holds the stage after a concurrent promotion: %w", what, s.ref(winner), catalog.ErrSuperseded)
	}
	return nil
}

// nearly reports whether an event stored at t is the one of time want
// (its tag key may have moved up to maxEventBump nanoseconds).
func nearly(t, want time.Time) bool {
	d := t.Sub(want)
	return d >= 0 && d < maxEventBump
}

func orNone(reason string) string {
	if reason == "" {
		return "no reason given"
	}
	return reason
}

// holder is a version that holds a stage.
type holder struct {
	version string
	mark    mark
	revoked bool
	imgs    []Image
}

// beats reports whether h wins the stage over o.
func (h holder) beats(o holder) bool {
	if h.revoked != o.revoked {
		return !h.revoked
	}
	if !h.mark.Time.Equal(o.mark.Time) {
		return h.mark.newer(o.mark)
	}
	if c := cmp.Or(catalog.CompareVersions(h.version, o.version), strings.Compare(h.version, o.version)); c != 0 {
		return c > 0
	}
	return maxID(h.imgs) > maxID(o.imgs)
}

func maxID(imgs []Image) string {
	id := ""
	for _, img := range imgs {
		id = max(id, img.ImageID)
	}
	return id
}

// converge leaves stage to one version (see Promote) and returns it ("" if
// no version holds the stage).
func (s *LifecycleStore) converge(ctx context.Context, stage string, regions []string) (string, error) {
	key := StageTag(stage)
	for range MaxConvergeRounds {
		imgs, err := s.find.Find(ctx, regions, Query{Recipe: s.recipe, Artifact: s.artifact, Tagged: []string{key}})
		if err != nil {
			return "", fmt.Errorf("reading the holders of stage %s: %w", stage, err)
		}
		byVersion := map[string]*holder{}
		var holders []*holder
		for _, img := range imgs {
			h := byVersion[img.Version]
			if h == nil {
				h = &holder{version: img.Version}
				byVersion[img.Version] = h
				holders = append(holders, h)
			}
			h.imgs = append(h.imgs, img)
		}
		for _, h := range holders {
			h.mark = stagesOf(h.imgs)[stage]
			_, h.revoked = revokedOf(h.imgs)
		}
		switch {
		case len(holders) == 0:
			return "", nil
		case len(holders) == 1 && !holders[0].revoked:
			return holders[0].version, nil
		}
		slices.SortFunc(holders, func(a, b *holder) int {
			switch {
			case a.beats(*b):
				return -1
			case b.beats(*a):
				return 1
			}
			return 0
		})
		winner := holders[0]
		losers := holders[1:]
		if winner.revoked {
			losers = holders
		}
		for _, h := range losers {
			if err := s.demote(ctx, stage, h, winner); err != nil {
				return "", err
			}
		}
	}
	return "", fmt.Errorf("stage %s is still held by more than one version of %s/%s after %d rounds: another promotion may be running; check with bakery status and promote again", stage, s.recipe, s.artifact, MaxConvergeRounds)
}

// demote takes stage away from h, which lost it to winner: it records the
// demotion (not for a revoked version), then deletes the stage mark from
// the snapshots and, if it still has the value read, from the AMIs.
func (s *LifecycleStore) demote(ctx context.Context, stage string, h, winner *holder) error {
	ls := make([]*located, len(h.imgs))
	for i, img := range h.imgs {
		ls[i] = &located{Image: img}
	}
	if !h.revoked {
		ev := catalog.Event{
			Time:   winner.mark.Time,
			Action: catalog.ActionDemote,
			Stage:  stage,
			Actor:  winner.mark.Actor,
			Reason: "replaced by " + winner.version,
		}
		same := func(o catalog.Event) bool {
			return o.Action == catalog.ActionDemote && o.Stage == stage && nearly(o.Time, ev.Time)
		}
		if err := s.ensureEvent(ctx, ls, ev, same); err != nil {
			return fmt.Errorf("recording the demotion of %s from %s: %w", s.ref(h.version), stage, err)
		}
	}
	key := StageTag(stage)
	return s.each(ctx, ls, func(ctx context.Context, l *located) error {
		if err := s.untag(ctx, l, map[string]*string{key: aws.String(l.Tags[key])}); err != nil {
			return fmt.Errorf("taking stage %s from %s: %w", stage, s.ref(h.version), err)
		}
		return nil
	})
}

// ensureEvent records ev on every AMI of ls, unless an event that same
// matches is recorded already: that one is then copied to the AMIs that
// lack it.
func (s *LifecycleStore) ensureEvent(ctx context.Context, ls []*located, ev catalog.Event, same func(catalog.Event) bool) error {
	key, value := "", ""
	for _, se := range historyOf(images(ls)) {
		if same(se.ev) {
			key, value = se.key, se.value
			break
		}
	}
	if key == "" {
		value = encodeEvent(ev)
		n := ev.Time.UnixNano()
		for bump := int64(0); key == "" && bump < maxEventBump; bump++ {
			k := eventTagNanos(n + bump)
			if !slices.ContainsFunc(ls, func(l *located) bool { v, ok := l.Tags[k]; return ok && v != value }) {
				key = k
			}
		}
		if key == "" {
			return fmt.Errorf("recording a %s event at %s: %d other events hold its time; try again", ev.Action, ev.Time.Format(time.RFC3339Nano), maxEventBump)
		}
	}
	if j := s.o.journal; j != nil {
		// The ledger gets the whole event (a tag cuts long reasons), at
		// the time its tag key says, so that a retry appends the same one.
		full := ev
		if n, ok := eventNanos(key); ok {
			full.Time = time.Unix(0, n).UTC()
		}
		full.Recipe, full.Artifact, full.Kind = s.recipe, s.artifact, Kind
		if len(ls) > 0 {
			full.Version = ls[0].Version
		}
		if err := j.Append(ctx, full); err != nil {
			return fmt.Errorf("recording a %s event in the ledger: %w", ev.Action, err)
		}
	}
	add := map[string]string{key: value}
	return s.each(ctx, ls, func(ctx context.Context, l *located) error { return s.tagImage(ctx, l, add) })
}

// open checks e and ev (filling in ev's action) and loads e's complete
// AMIs in every region of the store; it fails when there are none.
func (s *LifecycleStore) open(ctx context.Context, e catalog.Entry, ev catalog.Event, action string) (catalog.Event, *version, error) {
	if err := s.checkEntry(e); err != nil {
		return ev, nil, err
	}
	ev, err := s.fill(ev, e.Version, action, "")
	if err != nil {
		return ev, nil, err
	}
	v, err := s.load(ctx, e.Version, s.regions)
	if err != nil {
		return ev, nil, err
	}
	if len(v.amis) == 0 {
		return ev, nil, fmt.Errorf("no complete AMI of it in %s: check the version and the recipe's regions", strings.Join(s.regions, ", "))
	}
	return ev, v, nil
}

// Revoke takes e out of every stage and marks it revoked, on the AMI of
// every region of the store and on its snapshots: it writes TagRevoked
// ("<time> <actor> <reason>" of ev), records ev at that time, then deletes
// every stage mark. A version revoked already keeps its first revocation
// (mark and reason); Revoke then only finishes what a crash left undone.
func (s *LifecycleStore) Revoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	what := "revoking " + s.ref(e.Version)
	ev, v, err := s.open(ctx, e, ev, catalog.ActionRevoke)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	m, revoked := revokedOf(v.images())
	if !revoked || m.Time.IsZero() {
		m = mark{Time: ev.Time, Actor: ev.Actor, Reason: ev.Reason}
	}
	ev.Time = m.Time
	tag := map[string]string{TagRevoked: m.String()}
	if err := s.each(ctx, v.list(), func(ctx context.Context, l *located) error { return s.tag(ctx, l, tag, tag) }); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	same := func(o catalog.Event) bool { return o.Action == catalog.ActionRevoke && nearly(o.Time, m.Time) }
	if err := s.ensureEvent(ctx, v.list(), ev, same); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = s.each(ctx, v.list(), func(ctx context.Context, l *located) error {
		keys := map[string]*string{}
		for k := range l.Tags {
			if strings.HasPrefix(k, TagStagePrefix) {
				keys[k] = nil
			}
		}
		for _, tags := range l.snaps {
			for k := range tags {
				if strings.HasPrefix(k, TagStagePrefix) {
					keys[k] = nil
				}
			}
		}
		return s.untag(ctx, l, keys)
	})
	if err != nil {
		return fmt.Errorf("%s: taking it out of its stages: %w (run the revocation again to finish it)", what, err)
	}
	return nil
}

// Unrevoke lifts e's revocation: it records ev (after the revocation; the
// clock's time when ev has none) on the AMI of every region of the store,
// then deletes TagRevoked from the AMIs and their snapshots. The version
// enters no stage. Unrevoking a version that is not revoked changes
// nothing.
func (s *LifecycleStore) Unrevoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	what := "lifting the revocation of " + s.ref(e.Version)
	ev, v, err := s.open(ctx, e, ev, catalog.ActionUnrevoke)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	m, revoked := revokedOf(v.images())
	if !revoked {
		return nil
	}
	if !ev.Time.After(m.Time) {
		ev.Time = m.Time.Add(time.Microsecond)
	}
	same := func(o catalog.Event) bool { return o.Action == catalog.ActionUnrevoke && o.Time.After(m.Time) }
	if err := s.ensureEvent(ctx, v.list(), ev, same); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = s.each(ctx, v.list(), func(ctx context.Context, l *located) error {
		return s.untag(ctx, l, map[string]*string{TagRevoked: nil})
	})
	if err != nil {
		return fmt.Errorf("%s: %w (run it again to finish)", what, err)
	}
	return nil
}

// tag writes snap on l's snapshots, then img on l (pruning events to stay
// under MaxTags), each only where it is not there already. The AMI comes
// last, so that what the AMI says is true of its snapshots.
func (s *LifecycleStore) tag(ctx context.Context, l *located, img, snap map[string]string) error {
	if err := s.tagSnapshots(ctx, l, snap); err != nil {
		return err
	}
	return s.tagImage(ctx, l, img)
}

// tagSnapshots writes tags on those of l's snapshots that lack them (all
// of them when their tags were not read).
func (s *LifecycleStore) tagSnapshots(ctx context.Context, l *located, tags map[string]string) error {
	if len(tags) == 0 {
		return nil
	}
	var ids []string
	diff := map[string]string{}
	for _, id := range l.Snapshots {
		have, known := l.snaps[id]
		changed := false
		for k, v := range tags {
			if cur, ok := have[k]; !known || !ok || cur != v {
				diff[k] = v
				changed = true
			}
		}
		if changed {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.client(l.Region).CreateTags(ctx, &ec2.CreateTagsInput{Resources: ids, Tags: ec2Tags(diff)}); err != nil {
		return fmt.Errorf("tagging snapshots %s of AMI %s in %s: %w", strings.Join(ids, ", "), l.ImageID, l.Region, awsx.ExplainError(err))
	}
	for _, id := range ids {
		if l.snaps == nil {
			l.snaps = map[string]map[string]string{}
		}
		if l.snaps[id] == nil {
			l.snaps[id] = map[string]string{}
		}
		maps.Copy(l.snaps[id], diff)
	}
	return nil
}

// tagImage writes add on l's AMI where it is not there already, deleting
// the oldest events first when the AMI would otherwise hold more than
// MaxTags tags (see planTags). When EC2 still finds too many tags (another
// writer added some), it re-reads the AMI's tags and tries again.
func (s *LifecycleStore) tagImage(ctx context.Context, l *located, add map[string]string) error {
	c := s.client(l.Region)
	for attempt := 0; ; attempt++ {
		p := planTags(l.Tags, add)
		if len(p.Delete) > 0 {
			tags := make([]ec2types.Tag, len(p.Delete))
			for i, k := range p.Delete {
				tags[i] = ec2types.Tag{Key: aws.String(k)}
			}
			if _, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{l.ImageID}, Tags: tags}); err != nil {
				return fmt.Errorf("deleting the oldest events of AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
			}
			for _, k := range p.Delete {
				delete(l.Tags, k)
			}
		}
		if len(p.Create) == 0 {
			return nil
		}
		_, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{l.ImageID}, Tags: ec2Tags(p.Create)})
		if err == nil {
			if l.Tags == nil {
				l.Tags = map[string]string{}
			}
			maps.Copy(l.Tags, p.Create)
			return nil
		}
		if errorCode(err) != "TagLimitExceeded" || attempt >= 2 {
			return fmt.Errorf("tagging AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
		}
		if err := s.refresh(ctx, l); err != nil {
			return err
		}
	}
}

// refresh re-reads the tags of l's AMI.
func (s *LifecycleStore) refresh(ctx context.Context, l *located) error {
	out, err := s.client(l.Region).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{l.ImageID}})
	if err != nil {
		return fmt.Errorf("reading the tags of AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
	}
	if len(out.Images) == 0 {
		return fmt.Errorf("reading the tags of AMI %s in %s: it is gone", l.ImageID, l.Region)
	}
	l.Tags = FromEC2(l.Region, out.Images[0]).Tags
	return nil
}

// untag deletes keys from l's snapshots (whatever their value), then from
// l's AMI: a key with a value only if the AMI still has that value, a key
// without one whatever its value. Keys known to be absent are skipped.
func (s *LifecycleStore) untag(ctx context.Context, l *located, keys map[string]*string) error {
	c := s.client(l.Region)
	var snapIDs []string
	snapKeys := map[string]bool{}
	for _, id := range l.Snapshots {
		have, known := l.snaps[id]
		found := false
		for k := range keys {
			if _, ok := have[k]; ok || !known {
				snapKeys[k] = true
				found = true
			}
		}
		if found {
			snapIDs = append(snapIDs, id)
		}
	}
	if len(snapIDs) > 0 {
		var tags []ec2types.Tag
		for _, k := range slices.Sorted(maps.Keys(snapKeys)) {
			tags = append(tags, ec2types.Tag{Key: aws.String(k)})
		}
		if _, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: snapIDs, Tags: tags}); err != nil {
			return fmt.Errorf("untagging snapshots %s of AMI %s in %s: %w", strings.Join(snapIDs, ", "), l.ImageID, l.Region, awsx.ExplainError(err))
		}
		for _, id := range snapIDs {
			for k := range snapKeys {
				delete(l.snaps[id], k)
			}
		}
	}
	var tags []ec2types.Tag
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if _, ok := l.Tags[k]; ok {
			tags = append(tags, ec2types.Tag{Key: aws.String(k), Value: keys[k]})
		}
	}
	if len(tags) == 0 {
		return nil
	}
	if _, err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{l.ImageID}, Tags: tags}); err != nil {
		return fmt.Errorf("untagging AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
	}
	for _, t := range tags {
		if t.Value == nil || l.Tags[*t.Key] == *t.Value {
			delete(l.Tags, *t.Key)
		}
	}
	return nil
}

// share gives accounts launch permission on l's AMI and create-volume
// permission on its snapshots, where they lack it.
func (s *LifecycleStore) share(ctx context.Context, l *located, accounts []string) error {
	c := s.client(l.Region)
	attr, err := c.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{
		ImageId:   aws.String(l.ImageID),
		Attribute: ec2types.ImageAttributeNameLaunchPermission,
	})
	if err != nil {
		return fmt.Errorf("reading who may launch AMI %s in %s: %w", l.ImageID, l.Region, awsx.ExplainError(err))
	}
	have := map[string]bool{}
	for _, p := range attr.LaunchPermissions {
		have[aws.ToString(p.UserId)] = true
	}
	var perms []ec2types.LaunchPermission
	for _, a := range accounts {
		if !have[a] {
			perms = append(perms, ec2types.LaunchPermission{UserId: aws.String(a)})
		}
	}
	if len(perms) > 0 {
		if _, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
			ImageId:          aws.String(l.ImageID),
			LaunchPermission: &ec2types.LaunchPermissionModifications{Add: perms},
		}); err != nil {
			return fmt.Errorf("sharing AMI %s in %s with %v: %w", l.ImageID, l.Region, accounts, awsx.ExplainError(err))
		}
	}
	for _, sn := range l.Snapshots {
		attr, err := c.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{
			SnapshotId: aws.String(sn),
			Attribute:  ec2types.SnapshotAttributeNameCreateVolumePermission,
		})
		if err != nil {
			return fmt.Errorf("reading who may use snapshot %s of AMI %s in %s: %w", sn, l.ImageID, l.Region, awsx.ExplainError(err))
		}
		have := map[string]bool{}
		for _, p := range attr.CreateVolumePermissions {
			have[aws.ToString(p.UserId)] = true
		}
		var missing []string
		for _, a := range accounts {
			if !have[a] {
				missing = append(missing, a)
			}
		}
		if len(missing) == 0 {
			continue
		}
		if _, err := c.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{
			SnapshotId:    aws.String(sn),
			Attribute:     ec2types.SnapshotAttributeNameCreateVolumePermission,
			OperationType: ec2types.OperationTypeAdd,
			UserIds:       missing,
		}); err != nil {
			return fmt.Errorf("sharing snapshot %s of AMI %s in %s with %v: %w", sn, l.ImageID, l.Region, missing, awsx.ExplainError(err))
		}
	}
	return nil
}

// copyMissing copies v to each of regions it is not in, a bounded number
// at once, and adds the copies to v.
func (s *LifecycleStore) copyMissing(ctx context.Context, v *version, regions []string) error {
	var missing []string
	for _, r := range dedupe(regions) {
		if v.amis[r] == nil {
			missing = append(missing, r)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	src := v.amis[buildImage(v.images()).Region]
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.o.concurrency)
	for _, region := range missing {
		g.Go(func() error {
			l, err := s.copyTo(gctx, v, src, region)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			v.amis[region] = l
			return nil
		})
	}
	return g.Wait()
}

// copyDescription is the description of a copy of src: it finds the copy
// again when a crash lost even its tags.
func copyDescription(src *located) string {
	return fmt.Sprintf("bakery %s %s (%s), copy of %s from %s", src.Recipe, src.Version, src.Artifact, src.ImageID, src.Region)
}

// copyTo copies src, the build region's AMI of v, to region, or finishes
// the copy an earlier run started (see Promote).
func (s *LifecycleStore) copyTo(ctx context.Context, v *version, src *located, region string) (*located, error) {
	c := s.client(region)
	desc := copyDescription(src)
	pending := map[string]string{
		catalog.TagRecipe:   src.Tags[catalog.TagRecipe],
		catalog.TagArtifact: src.Tags[catalog.TagArtifact],
		catalog.TagVersion:  src.Tags[catalog.TagVersion],
		catalog.TagBakeID:   src.Tags[catalog.TagBakeID],
		catalog.TagCreated:  s.o.now().UTC().Format(time.RFC3339),
	}
	id, tagged := "", false
	for _, img := range v.unfinished[region] {
		if img.Description == desc && img.State != string(ec2types.ImageStateDeregistered) {
			id, tagged = img.ImageID, true
			break
		}
	}
	if id == "" {
		found, err := s.findCopy(ctx, region, src.Name, desc)
		if err != nil {
			return nil, err
		}
		id = found
	}
	if id == "" {
		out, err := c.CopyImage(ctx, &ec2.CopyImageInput{
			SourceImageId: aws.String(src.ImageID),
			SourceRegion:  aws.String(src.Region),
			Name:          aws.String(src.Name),
			Description:   aws.String(desc),
			TagSpecifications: []ec2types.TagSpecification{
				{ResourceType: ec2types.ResourceTypeImage, Tags: ec2Tags(pending)},
				{ResourceType: ec2types.ResourceTypeSnapshot, Tags: ec2Tags(pending)},
			},
		})
		if err != nil {
			return nil, fmt.Errorf("copying AMI %s from %s to %s: %w", src.ImageID, src.Region, region, awsx.ExplainError(err))
		}
		id = aws.ToString(out.ImageId)
	}
	if !tagged {
		// CopyImage's TagSpecifications tag the copy at once on AWS, but
		// not under moto 5.2.5, nor an orphan found by its name.
		if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: ec2Tags(pending)}); err != nil {
			return nil, fmt.Errorf("tagging AMI %s, the copy of %s in %s: %w", id, src.ImageID, region, awsx.ExplainError(err))
		}
	}
	img, err := s.waitAvailable(ctx, region, id)
	if err != nil {
		return nil, err
	}
	l := &located{Image: img}
	if err := s.readSnapshots(ctx, l); err != nil {
		return nil, err
	}
	// An earlier run may have left stage marks the version has lost since.
	current := stagesOf(v.images())
	stale := map[string]*string{}
	for _, tags := range append([]map[string]string{l.Tags}, slices.Collect(maps.Values(l.snaps))...) {
		for k := range tags {
			if st, ok := strings.CutPrefix(k, TagStagePrefix); ok {
				if _, held := current[st]; !held {
					stale[k] = nil
				}
			}
		}
	}
	if len(stale) > 0 {
		if err := s.untag(ctx, l, stale); err != nil {
			return nil, err
		}
	}
	snapTags := map[string]string{}
	for k, val := range src.Tags {
		if k != catalog.TagBakeKey && k != TagRevoked && !isEventTag(k) && !strings.HasPrefix(k, TagStagePrefix) && !strings.HasPrefix(k, "aws:") {
			snapTags[k] = val
		}
	}
	for stage, m := range current {
		snapTags[StageTag(stage)] = m.String()
	}
	imgTags := maps.Clone(snapTags)
	for _, se := range historyOf(v.images()) {
		imgTags[se.key] = se.value
	}
	if err := s.tag(ctx, l, imgTags, snapTags); err != nil {
		return nil, err
	}
	key := map[string]string{catalog.TagBakeKey: src.BakeKey}
	if err := s.tag(ctx, l, key, key); err != nil {
		return nil, err
	}
	l.Image.Image = src.Image.Image
	l.Reference = l.ImageID
	return l, nil
}

// findCopy returns the id of an AMI in region named name with description
// desc: a copy whose tags a crash lost. "" when there is none.
func (s *LifecycleStore) findCopy(ctx context.Context, region, name, desc string) (string, error) {
	if name == "" {
		return "", nil
	}
	out, err := s.client(region).DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{name}}},
	})
	if err != nil {
		return "", fmt.Errorf("looking for an earlier copy named %q in %s: %w", name, region, awsx.ExplainError(err))
	}
	for _, img := range out.Images {
		if aws.ToString(img.Description) == desc && img.State != ec2types.ImageStateDeregistered {
			return aws.ToString(img.ImageId), nil
		}
	}
	return "", nil
}

// waitAvailable polls AMI id in region until it is available.
func (s *LifecycleStore) waitAvailable(ctx context.Context, region, id string) (Image, error) {
	c := s.client(region)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return Image{}, fmt.Errorf("waiting for AMI %s in %s to be available: %w", id, region, ctx.Err())
		case <-t.C:
		}
		out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
		if err != nil && errorCode(err) != "InvalidAMIID.NotFound" {
			return Image{}, fmt.Errorf("waiting for AMI %s in %s to be available: %w", id, region, awsx.ExplainError(err))
		}
		if err == nil && len(out.Images) > 0 {
			img := FromEC2(region, out.Images[0])
			switch out.Images[0].State {
			case ec2types.ImageStateAvailable:
				return img, nil
			case ec2types.ImageStatePending, "":
			default:
				reason := ""
				if r := out.Images[0].StateReason; r != nil {
					reason = ": " + aws.ToString(r.Message)
				}
				return Image{}, fmt.Errorf("AMI %s in %s is %s%s: deregister it and its snapshots, then promote again", id, region, img.State, reason)
			}
		}
		t.Reset(s.o.poll)
	}
}

// ec2Tags turns a map into EC2 tags, sorted by key.
func ec2Tags(m map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// errorCode returns the AWS error code of err, or "".
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}
