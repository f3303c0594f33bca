package ami

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
)

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
// A promotion also finishes any other stage the version holds that a
// killed promotion left with two versions (see converge).
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
	known, err := s.lookIn(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	regions := dedupe(append(slices.Clone(known), spec.Regions...))
	v, err := s.load(ctx, e.Version, regions)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(v.amis) == 0 {
		return fmt.Errorf("%s: no complete AMI of it in %s: bake it first, or name its regions in the recipe", what, strings.Join(regions, ", "))
	}
	if m, ok := revokedOf(images(v.every())); ok { // a duplicate's mark counts: see Revoke
		return fmt.Errorf("%s: it is revoked (%s): lift the revocation first", what, orNone(m.Reason))
	}
	resumable := func(err error) error {
		return fmt.Errorf("%s: %w (run the promotion again to finish it: it resumes where it stopped)", what, err)
	}

	if err := s.copyMissing(ctx, v, spec); err != nil {
		return resumable(err)
	}
	if len(spec.Accounts) > 0 {
		accounts := dedupe(spec.Accounts)
		if err := s.each(ctx, v.list(), func(ctx context.Context, l *located) error { return s.ops.Share(ctx, l.Image, accounts) }); err != nil {
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
	winner, err := s.converge(ctx, stage, regions, v.list())
	if err != nil {
		return resumable(err)
	}
	if winner != e.Version {
		return fmt.Errorf("%s: %s holds the stage after a concurrent promotion: %w", what, s.ref(winner), catalog.ErrSuperseded)
	}
	// Another stage the version holds may be one a killed promotion left
	// half moved: the version's mark written, the old holder's not yet
	// taken away. Finish it as that promotion would have (one listing per
	// stage when there is nothing to do).
	for _, other := range slices.Sorted(maps.Keys(stagesOf(v.images()))) {
		if other == stage {
			continue
		}
		if _, err := s.converge(ctx, other, regions, nil); err != nil {
			return resumable(err)
		}
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
func (s *LifecycleStore) converge(ctx context.Context, stage string, regions []string, own []*located) (string, error) {
	key := StageTag(stage)
	for round := range MaxConvergeRounds {
		if round > 0 {
			// Back off before reading again: another promoter is moving
			// the stage too, and EC2's tag index catches up meanwhile.
			select {
			case <-ctx.Done():
				return "", context.Cause(ctx)
			case <-s.clock().After(convergeBackoff(round)):
			}
		}
		listed, err := s.find.Find(ctx, regions, Query{Recipe: s.recipe, Artifact: s.artifact, Tagged: []string{key}})
		if err != nil {
			return "", fmt.Errorf("reading the holders of stage %s: %w", stage, err)
		}
		// A tag-filter listing can be stale on AWS: it may miss the marks
		// just written and show marks just deleted. Read every candidate,
		// and this promotion's own AMIs, again by id, and believe that.
		imgs, err := s.reread(ctx, append(listed, images(own)...))
		if err != nil {
			return "", fmt.Errorf("reading the holders of stage %s: %w", stage, err)
		}
		for _, l := range own {
			// What this promotion wrote is true even while EC2 does not
			// show it yet (a copy made a moment ago).
			if !slices.ContainsFunc(imgs, func(img Image) bool { return img.Region == l.Region && img.ImageID == l.ImageID }) {
				imgs = append(imgs, l.Image)
			}
		}
		imgs = slices.DeleteFunc(imgs, func(img Image) bool { _, ok := img.Tags[key]; return !ok })
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

// convergeBackoff is the pause before convergence round n (n ≥ 1):
// 250 ms doubling each round, at most 8 s.
func convergeBackoff(n int) time.Duration {
	return min(250*time.Millisecond<<(n-1), 8*time.Second)
}

// reread reads imgs again by id, one DescribeImages per region (ids read
// what was just written, where a filtered listing may lag), and returns
// the complete AMIs of the store's artifact among them, each once.
func (s *LifecycleStore) reread(ctx context.Context, imgs []Image) ([]Image, error) {
	byRegion := map[string][]string{}
	var regions []string
	for _, img := range imgs {
		if _, ok := byRegion[img.Region]; !ok {
			regions = append(regions, img.Region)
		}
		if !slices.Contains(byRegion[img.Region], img.ImageID) {
			byRegion[img.Region] = append(byRegion[img.Region], img.ImageID)
		}
	}
	found := make([][]Image, len(regions))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.o.concurrency)
	for i, region := range regions {
		g.Go(func() error {
			out, err := s.client(region).DescribeImages(gctx, &ec2.DescribeImagesInput{ImageIds: byRegion[region]})
			if awsx.IsNotFound(err) {
				// One of them is gone (deregistered): read them one by one.
				for _, id := range byRegion[region] {
					img, ok, err := s.ops.Describe(gctx, region, id)
					if err != nil {
						return err
					}
					if ok {
						found[i] = append(found[i], img)
					}
				}
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading AMIs %s in %s: %w", strings.Join(byRegion[region], ", "), region, awsx.ExplainError(err))
			}
			for _, img := range out.Images {
				found[i] = append(found[i], FromEC2(region, img))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []Image
	for _, imgs := range found {
		for _, img := range imgs {
			if img.Complete() && img.Recipe == s.recipe && img.Artifact == s.artifact && img.State == string(ec2types.ImageStateAvailable) {
				out = append(out, img)
			}
		}
	}
	return out, nil
}
