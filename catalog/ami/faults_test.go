package ami_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/faultproxy"
)

// These tests promote through faultproxy, which gives moto what real EC2
// has and moto lacks: a new AMI copy unknown to other calls for a while
// (*.NotFound when named, missing from lists), and tag-filtered
// DescribeImages lists that lag behind the tags just written.
//
// The proxies' clock moves faultStep with every request, so "a while" is
// a number of requests and no test sleeps: a copy stays unknown for the
// next 30 requests, a tag-filtered list is answered from an identical
// earlier request for 100 requests.
const (
	faultStep  = 100 * time.Millisecond
	faultFresh = 3 * time.Second
	faultStale = 10 * time.Second
)

// faultConfig starts a fault proxy with opts (after a fake clock) in front
// of a's moto and returns a's config sending its calls through it, retried
// as bakery retries them (awsx.Load's retryer) but without waiting long
// between tries.
func (a *account) faultConfig(t *testing.T, opts ...faultproxy.Option) (aws.Config, *faultproxy.Proxy) {
	t.Helper()
	clock := faultproxy.NewClock(time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC), faultStep)
	p := faultproxy.Start(t, a.srv.URL, append([]faultproxy.Option{faultproxy.WithClock(clock.Now), faultproxy.WithSeed(42)}, opts...)...)
	cfg := p.Config(a.config(t))
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = awsx.DefaultMaxAttempts
			o.RateLimiter = ratelimit.None
			o.Backoff = retry.NewExponentialJitterBackoff(20 * time.Millisecond)
		})
	}
	return cfg, p
}

// TestFaultPromoteCopiesThroughStaleReadsAndFreshNotFound promotes into
// a stage with a copy region: the copy is unknown to EC2 for a while
// after CopyImage answered (tagging it answers InvalidAMIID.NotFound),
// and the catalog read right before the promotion is what a tag-filtered
// list answers right after it. Promote must wait the NotFound out, and the
// store must show the promotion it just made.
func TestFaultPromoteCopiesThroughStaleReadsAndFreshNotFound(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	v1 := a.bake(t, "1.0.0", east)
	cfg, p := a.faultConfig(t, faultproxy.FreshNotFound(faultFresh), faultproxy.StaleReads(faultStale))
	s := newStore(cfg, []string{east, west})
	prod := catalog.StageSpec{Name: "prod", Regions: []string{west}}

	if err := s.Promote(ctx, entry(t, s, "1.0.0"), prod, catalog.Event{Time: at(1), Actor: actor}); err != nil {
		t.Fatalf("Promote: %v\ncalls through the proxy:\n%s", err, p.Summary())
	}

	copies := a.versionAMIs(t, west, "1.0.0")
	if len(copies) != 1 {
		t.Fatalf("AMIs of 1.0.0 in %s = %v, want one copy\n%s", west, copies, p.Summary())
	}
	wantMark := "2026-03-02T00:00:01Z " + actor
	for _, tg := range append([]map[string]string{a.imageTags(t, west, copies[0])}, a.snapshotTags(t, west, copies[0])...) {
		if tg[catalog.TagBakeKey] != "sha256:key-1.0.0" || tg["bakery:stage:prod"] != wantMark {
			t.Errorf("the copy (or a snapshot of it) has tags %v, want the bake key and the stage mark %q", tg, wantMark)
		}
	}
	e := entry(t, s, "1.0.0")
	if st, ok := e.Stages["prod"]; !ok || !st.Since.Equal(at(1)) {
		t.Errorf("after Promote the store shows stages %v, want prod since %s", e.Stages, at(1))
	}
	want := []catalog.Location{{Where: east, ID: v1[east]}, {Where: west, ID: copies[0]}}
	if fmt.Sprint(e.Locations) != fmt.Sprint(want) {
		t.Errorf("after Promote the store shows locations %v, want %v", e.Locations, want)
	}
	if p.Faults("", faultproxy.FaultNotFound)+p.Faults("", faultproxy.FaultHidden) == 0 {
		t.Errorf("the promotion never met its fresh copy:\n%s", p.Summary())
	}
}

// TestFaultPromoteReadsItsOwnStageMarks promotes 1.0.0 and then 2.0.0
// into one stage while tag-filtered lists lag: the list of the stage's
// holders that 2.0.0's promotion reads is the one read a moment before,
// which shows 1.0.0 only. The store must count the marks it wrote itself:
// 2.0.0, promoted last, holds the stage, Promote returns nil, and the
// store's entries say so at once.
func TestFaultPromoteReadsItsOwnStageMarks(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	regions := []string{east, eu}
	v1 := a.bake(t, "1.0.0", east, eu)
	v2 := a.bake(t, "2.0.0", east, eu)
	cfg, p := a.faultConfig(t, faultproxy.StaleReads(faultStale))
	s := newStore(cfg, regions)
	staging := catalog.StageSpec{Name: "staging"}

	if err := s.Promote(ctx, entry(t, s, "1.0.0"), staging, catalog.Event{Time: at(1), Actor: actor}); err != nil {
		t.Fatalf("promoting 1.0.0: %v\n%s", err, p.Summary())
	}
	if err := s.Promote(ctx, entry(t, s, "2.0.0"), staging, catalog.Event{Time: at(2), Actor: actor}); err != nil {
		t.Errorf("promoting 2.0.0 after 1.0.0: %v\ncalls through the proxy:\n%s", err, p.Summary())
	}

	// What EC2 holds: 2.0.0 in staging, 1.0.0 not, in every region.
	for _, r := range regions {
		if _, ok := a.imageTags(t, r, v2[r])["bakery:stage:staging"]; !ok {
			t.Errorf("2.0.0 is not in staging in %s", r)
		}
		if _, ok := a.imageTags(t, r, v1[r])["bakery:stage:staging"]; ok {
			t.Errorf("1.0.0 is still in staging in %s", r)
		}
	}
	// What the store shows right after.
	if st := entry(t, s, "2.0.0").Stages; len(st) != 1 || !st["staging"].Since.Equal(at(2)) {
		t.Errorf("the store shows 2.0.0 in %v, want staging since %s", st, at(2))
	}
	if st := entry(t, s, "1.0.0").Stages; len(st) != 0 {
		t.Errorf("the store shows 1.0.0 in %v, want no stage", st)
	}
	if p.Faults("DescribeImages", faultproxy.FaultStale) == 0 {
		t.Errorf("no list was stale:\n%s", p.Summary())
	}
}

// TestFaultConcurrentPromotionsThroughStaleReadsLeaveOneHolder promotes
// two versions into one stage at once from two stores while tag-filtered
// lists lag (each may read the other's, or its own, earlier list): the
// stage must still end with one holder, the other demoted, and at most
// one promotion reporting that it lost.
func TestFaultConcurrentPromotionsThroughStaleReadsLeaveOneHolder(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	regions := []string{east, eu}
	a.bake(t, "1.0.0", east, eu)
	a.bake(t, "2.0.0", east, eu)
	cfg, p := a.faultConfig(t, faultproxy.StaleReads(faultStale))
	s1, s2 := newStore(cfg, regions), newStore(cfg, regions)
	e1, e2 := entry(t, s1, "1.0.0"), entry(t, s2, "2.0.0")
	direct := newStore(a.config(t), regions) // sees what EC2 holds

	for i := range 3 {
		stage := fmt.Sprintf("prod-%d", i)
		errs := race(ctx, catalog.StageSpec{Name: stage}, []*catalogami.LifecycleStore{s1, s2}, []catalog.Entry{e1, e2})
		lost := 0
		for _, err := range errs {
			switch {
			case errors.Is(err, catalog.ErrSuperseded):
				lost++
			case err != nil:
				t.Errorf("round %d: %v\ncalls through the proxy:\n%s", i, err, p.Summary())
			}
		}
		if lost > 1 {
			t.Errorf("round %d: both promotions report losing: %v", i, errs)
		}

		es, err := direct.Entries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var holders []string
		demoted := map[string]string{}
		for _, e := range es {
			if _, ok := e.Stages[stage]; ok {
				holders = append(holders, e.Version)
			}
			for _, ev := range e.Events {
				if ev.Stage == stage && ev.Action == catalog.ActionDemote {
					demoted[e.Version] = ev.Reason
				}
			}
		}
		if len(holders) != 1 {
			t.Errorf("round %d: %s held by %v, want exactly one version", i, stage, holders)
			continue
		}
		loser := "1.0.0"
		if holders[0] == loser {
			loser = "2.0.0"
		}
		if demoted[loser] != "replaced by "+holders[0] || len(demoted) != 1 {
			t.Errorf("round %d: demotions %v, want %s replaced by %s", i, demoted, loser, holders[0])
		}
	}
	if p.Faults("DescribeImages", faultproxy.FaultStale) == 0 {
		t.Errorf("no list was stale:\n%s", p.Summary())
	}
}
