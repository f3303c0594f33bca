package launch_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/launch"
	"github.com/bakery-sh/bakery/recipes"
)

const tgARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"

// health makes a reading of instances i-1..i-n, each in lifecycle and
// Healthy in the group and in state states[i] in target group tg ("" for
// not registered).
func health(tg, lifecycle string, states ...string) fleet.Health {
	var h fleet.Health
	for i, s := range states {
		id := "i-" + string(rune('1'+i))
		h.Group.Instances = append(h.Group.Instances, fleet.Instance{ID: id, Lifecycle: lifecycle, Health: "Healthy"})
		if s != "" {
			h.Targets = append(h.Targets, fleet.TargetHealth{TargetGroup: tg, Instance: id, State: s})
		}
	}
	return h
}

func TestJudgeCountsOnlyHealthyTargets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       fleet.Health
		desired int
		ok      bool
		summary string
	}{
		{"all healthy", health(tgARN, "InService", "healthy", "healthy"), 2, true, "2/2 InService, 2/2 healthy in tg web"},
		{"initial is not healthy", health(tgARN, "InService", "healthy", "initial"), 2, false, "2/2 InService, 1/2 healthy in tg web"},
		{"draining is not healthy", health(tgARN, "InService", "draining", "healthy"), 2, false, "2/2 InService, 1/2 healthy in tg web"},
		{"unused is not healthy", health(tgARN, "InService", "unused", "healthy"), 2, false, "2/2 InService, 1/2 healthy in tg web"},
		{"unavailable is not healthy", health(tgARN, "InService", "unavailable", "healthy"), 2, false, "2/2 InService, 1/2 healthy in tg web"},
		{"unhealthy is not healthy", health(tgARN, "InService", "unhealthy", "healthy"), 2, false, "2/2 InService, 1/2 healthy in tg web"},
		{"unregistered is not healthy", health(tgARN, "InService", "", "healthy"), 2, false, "2/2 InService, 1/2 healthy in tg web"},
		{"pending is not InService", health(tgARN, "Pending", "healthy", "healthy"), 2, false, "0/2 InService, 2/2 healthy in tg web"},
		{"too few instances", health(tgARN, "InService", "healthy"), 2, false, "1/2 InService, 1/2 healthy in tg web"},
		{"more than desired", health(tgARN, "InService", "healthy", "healthy", "initial"), 2, true, "3/2 InService, 2/2 healthy in tg web"},
	} {
		v := launch.Judge(tc.h, tc.desired, []string{tgARN})
		if v.Healthy != tc.ok || v.Summary != tc.summary {
			t.Errorf("%s: Judge = %v %q, want %v %q", tc.name, v.Healthy, v.Summary, tc.ok, tc.summary)
		}
		if !tc.ok && len(v.Problems) == 0 {
			t.Errorf("%s: not healthy, but no problem named", tc.name)
		}
	}
	v := launch.Judge(health(tgARN, "InService", "healthy", "unused"), 2, []string{tgARN})
	if !slices.Contains(v.Problems, "i-2: unused in tg web") {
		t.Errorf("problems = %v, want i-2 named with its state", v.Problems)
	}
}

// scripted is a health source that answers readings[n] on the n-th read
// (the last one from then on) and counts the reads.
type scripted struct {
	mu       sync.Mutex
	readings []fleet.Health
	reads    int
}

func (s *scripted) Health(context.Context, string, string, []string) (fleet.Health, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.readings[min(s.reads, len(s.readings)-1)]
	s.reads++
	return h, nil
}

// The gate passes when the group becomes healthy within healthy_timeout
// and fails, undoing the launch, when it does not; time comes from the
// fake clock (moto's instances are healthy at once).
func TestGateWaitsOnTheClockUntilHealthyOrTimeout(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.bake("1.0.0")
	w.promote("1.0.0", "prod")
	f := w.fleet()
	f.HealthyTimeout = 5 * time.Minute

	// Healthy after 4 minutes of "initial" (polling every 30 s).
	slow := &scripted{readings: append(slices.Repeat([]fleet.Health{health(w.tg, "InService", "initial", "initial")}, 8), health(w.tg, "InService", "healthy", "healthy"))}
	start := w.clock.Now()
	r, err := w.launch(w.launcher(launch.WithHealth(slow), launch.WithPollInterval(30*time.Second)), launch.Request{Fleet: f})
	if err != nil {
		t.Fatalf("a group healthy after 4m of a 5m gate: %v", err)
	}
	if slow.reads != 9 || w.clock.Now().Sub(start) < 4*time.Minute {
		t.Errorf("the gate read %d times over %s, want 9 reads over at least 4m", slow.reads, w.clock.Now().Sub(start))
	}
	w.requireOnly(r.Group + ":serving")

	// Never healthy: the gate gives up at healthy_timeout, not before.
	w.bake("1.1.0")
	w.promote("1.1.0", "prod")
	never := &scripted{readings: []fleet.Health{health(w.tg, "InService", "healthy", "draining")}}
	start = w.clock.Now()
	_, err = w.launch(w.launcher(launch.WithHealth(never), launch.WithPollInterval(30*time.Second)), launch.Request{Fleet: f})
	if err == nil || !strings.Contains(err.Error(), "i-2: draining in tg web") || !strings.Contains(err.Error(), "gave up after 5m0s") {
		t.Errorf("a group never healthy: %v", err)
	}
	if waited := w.clock.Now().Sub(start); waited < 5*time.Minute {
		t.Errorf("the gate gave up after %s, before healthy_timeout", waited)
	}
	w.requireOnly(r.Group + ":serving")
}

func TestMakePlanDisablesTheServingAndRetiresPerStrategy(t *testing.T) {
	at := func(m int) time.Time { return time.Date(2026, 1, 1, 0, m, 0, 0, time.UTC) }
	g := func(n int, state fleet.State, disabled time.Time, d int) fleet.Group {
		return fleet.Group{Name: fleet.Name("web", "prod", n), Number: n, State: state, Disabled: disabled, Min: d, Desired: d, Max: d + 2}
	}
	groups := []fleet.Group{
		g(1, fleet.StateDisabled, at(1), 0),
		g(2, fleet.StateFailed, time.Time{}, 1),
		g(3, fleet.StateDisabled, at(3), 0),
		g(4, fleet.StateServing, time.Time{}, 3),
		g(5, fleet.StateLaunching, time.Time{}, 1),
	}
	names := func(gs []fleet.Group) []string {
		var out []string
		for _, g := range gs {
			out = append(out, g.Name)
		}
		return out
	}
	for _, tc := range []struct {
		strategy string
		keep     int
		del      []string
	}{
		{recipes.StrategyRedBlack, 1, []string{"web-prod-v003", "web-prod-v001"}},
		{recipes.StrategyRedBlack, 2, []string{"web-prod-v001"}},
		{recipes.StrategyRedBlack, 3, nil},
		{recipes.StrategyRedBlack, 0, []string{"web-prod-v004", "web-prod-v003", "web-prod-v001"}},
		{recipes.StrategyHighlander, 1, []string{"web-prod-v004", "web-prod-v001", "web-prod-v003"}},
	} {
		f := &recipes.Fleet{Strategy: tc.strategy, KeepDisabled: tc.keep}
		p := launch.MakePlan(f, groups, "web-prod-v006", 0)
		if p.Name != "web-prod-v006" || p.Previous != "web-prod-v004" || !slices.Equal(names(p.Disable), []string{"web-prod-v004"}) ||
			!slices.Equal(names(p.Delete), tc.del) || p.Min != 3 || p.Desired != 3 || p.Max != 5 {
			t.Errorf("%s keep %d: plan %s prev %s disable %v delete %v sizes %d/%d/%d, want delete %v and v004's sizes",
				tc.strategy, tc.keep, p.Name, p.Previous, names(p.Disable), names(p.Delete), p.Min, p.Desired, p.Max, tc.del)
		}
	}
	if p := launch.MakePlan(&recipes.Fleet{Strategy: recipes.StrategyRedBlack, KeepDisabled: 1}, nil, "web-prod-v001", 0); p.Previous != "" || len(p.Disable) != 0 || p.Desired != 1 {
		t.Errorf("first plan: %+v", p)
	}
}
