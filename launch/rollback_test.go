package launch_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/launch"
	"github.com/bakery-sh/bakery/recipes"
)

// rollbacks returns the rollback events of version, as STAGE:REASON.
func (w *world) rollbacks(version string) []string {
	var out []string
	for _, ev := range w.entry(version).Events {
		if ev.Action == catalog.ActionRollback {
			out = append(out, ev.Stage+":"+ev.Reason)
		}
	}
	return out
}

func (w *world) rollback(l *launch.Launcher, f *recipes.Fleet) (*launch.Result, error) {
	if f == nil {
		f = w.fleet()
	}
	return l.Rollback(context.Background(), launch.Request{Recipe: "web", Stage: "prod", Fleet: f, Actor: actor})
}

// twoReleases launches 1.0.0 and then 1.1.0 with fleet f: v002 serves,
// v001 is disabled.
func (w *world) twoReleases(l *launch.Launcher, f *recipes.Fleet) {
	w.t.Helper()
	w.bake("1.0.0")
	w.promote("1.0.0", "prod")
	w.mustLaunch(l, launch.Request{Fleet: f})
	w.bake("1.1.0")
	w.promote("1.1.0", "prod")
	w.mustLaunch(l, launch.Request{Fleet: f})
}

func TestRollbackTwiceInARowSwapsTheGroups(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.launcher()
	f := w.fleet()
	one := 1
	f.MinSize = &one // min 1, desired 2: the rollback pins min to 2, then gives 1 back
	w.twoReleases(l, f)
	w.requireOnly("web-prod-v001:disabled", "web-prod-v002:serving")

	r, err := w.rollback(l, f)
	if err != nil {
		t.Fatal(err)
	}
	if r.Group != "web-prod-v001" || r.Version != "1.0.0" || r.Previous != "web-prod-v002" || r.State != "serving" ||
		!slices.Equal(r.Disabled, []string{"web-prod-v002"}) || len(r.Instances) != 2 {
		t.Errorf("first rollback: %+v", r)
	}
	w.requireOnly("web-prod-v001:serving", "web-prod-v002:disabled")
	v1 := w.group("web-prod-v001")
	if v1.Min != 1 || v1.Desired != 2 || v1.Max != 4 || len(v1.Suspended) != 0 || !slices.Equal(v1.TargetGroups, []string{w.tg}) {
		t.Errorf("v001 after the rollback: %+v", v1)
	}
	for _, k := range []string{fleet.TagDisabled, fleet.TagLaunching} {
		if _, ok := v1.Tags[k]; ok {
			t.Errorf("v001 serves but is tagged %s", k)
		}
	}
	if evs := w.rollbacks("1.0.0"); len(evs) != 1 || !strings.HasPrefix(evs[0], "prod:group web-prod-v001 in ") {
		t.Errorf("rollback events of 1.0.0 = %v", evs)
	}

	// Again: back to v002, the newest disabled group.
	if r, err = w.rollback(l, f); err != nil {
		t.Fatal(err)
	}
	if r.Group != "web-prod-v002" || r.Previous != "web-prod-v001" {
		t.Errorf("second rollback: %+v", r)
	}
	w.requireOnly("web-prod-v001:disabled", "web-prod-v002:serving")
	if evs := w.rollbacks("1.1.0"); len(evs) != 1 {
		t.Errorf("rollback events of 1.1.0 = %v", evs)
	}
}

func TestRollbackWithNoDisabledGroupLaunchesThePreviousVersion(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.launcher()
	f := w.fleet()
	f.Strategy = recipes.StrategyHighlander // no disabled group is kept
	w.twoReleases(l, f)
	ctx := context.Background()

	// The version before was revoked: say so and stop.
	if err := w.store.Revoke(ctx, w.entry("1.0.0"), catalog.Event{Actor: actor, Reason: "CVE-2026-4"}); err != nil {
		t.Fatal(err)
	}
	before := w.everything()
	_, err := w.rollback(l, f)
	if !errors.Is(err, launch.ErrNothingToRollBack) || !strings.Contains(err.Error(), "web@1.0.0, the version before in prod, is revoked (CVE-2026-4)") {
		t.Errorf("rollback to a revoked previous version: %v", err)
	}
	if after := w.everything(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused rollback changed the account:\nbefore %+v\nafter  %+v", before, after)
	}

	// Not revoked: it is launched again, as a rollback.
	if err := w.store.Unrevoke(ctx, w.entry("1.0.0"), catalog.Event{Actor: actor}); err != nil {
		t.Fatal(err)
	}
	r, err := w.rollback(l, f)
	if err != nil {
		t.Fatal(err)
	}
	if r.Group != "web-prod-v003" || r.Version != "1.0.0" || r.Previous != "web-prod-v002" || !slices.Equal(r.Deleted, []string{"web-prod-v002"}) {
		t.Errorf("rollback by relaunch: %+v", r)
	}
	w.requireOnly("web-prod-v003:serving")
	var evs []catalog.Event
	for _, ev := range w.entry("1.0.0").Events {
		if ev.Action == catalog.ActionRollback {
			evs = append(evs, ev)
		}
	}
	if len(evs) != 1 || !evs[0].Forced || !strings.Contains(evs[0].Reason, "no disabled group was left") {
		t.Errorf("rollback events of 1.0.0 = %+v", evs)
	}
}

func TestRollbackWithNothingBeforeFails(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.launcher()
	w.bake("1.0.0")
	w.promote("1.0.0", "prod")
	w.mustLaunch(l, launch.Request{})
	before := w.everything()
	if _, err := w.rollback(l, nil); !errors.Is(err, launch.ErrNothingToRollBack) || !strings.Contains(err.Error(), "no other version was ever in prod") {
		t.Errorf("rollback with nothing before: %v", err)
	}
	if after := w.everything(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused rollback changed the account:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestRollbackRefusesARevokedTarget(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.launcher()
	w.twoReleases(l, nil)
	if err := w.store.Revoke(context.Background(), w.entry("1.0.0"), catalog.Event{Actor: actor, Reason: "CVE-2026-2"}); err != nil {
		t.Fatal(err)
	}
	before := w.everything()
	if _, err := w.rollback(l, nil); err == nil || !strings.Contains(err.Error(), "web-prod-v001 runs web@1.0.0, which is revoked (CVE-2026-2)") {
		t.Errorf("rollback to a revoked version: %v", err)
	}
	if after := w.everything(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused rollback changed the account:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestRollbackThatFailsTheGatePutsBothGroupsBack(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.twoReleases(w.launcher(), nil)
	disabled, serving := w.group("web-prod-v001"), w.group("web-prod-v002")
	h := &hookHealth{real: w.inv, first: func(g fleet.Group) {
		if _, err := w.ec2.StopInstances(context.Background(), &ec2.StopInstancesInput{InstanceIds: []string{g.Instances[0].ID}}); err != nil {
			t.Error(err)
		}
	}}
	_, err := w.rollback(w.launcher(launch.WithHealth(h)), nil)
	if err == nil || !strings.Contains(err.Error(), "health gate of web-prod-v001") || !strings.Contains(err.Error(), "undone: web-prod-v001 disabled again") {
		t.Fatalf("a rollback whose target fails the gate: %v", err)
	}
	w.requireUntouched(serving)
	after := w.group("web-prod-v001")
	if after.State != fleet.StateDisabled || after.Min != disabled.Min || after.Desired != disabled.Desired || after.Max != disabled.Max ||
		len(after.TargetGroups) != 0 || !slices.Equal(after.Suspended, disabled.Suspended) || !maps.Equal(after.Tags, disabled.Tags) {
		t.Errorf("v001 is not as it was:\nbefore %+v\nafter  %+v", disabled, after)
	}
	w.requireOnly("web-prod-v001:disabled", "web-prod-v002:serving")
}

func TestRollbackTargetIsTheNewestDisabledGroup(t *testing.T) {
	groups := []fleet.Group{
		{Name: "a", Number: 1, State: fleet.StateDisabled, Disabled: at(1)},
		{Name: "b", Number: 2, State: fleet.StateDraining, Disabled: at(3)},
		{Name: "c", Number: 3, State: fleet.StateFailed},
		{Name: "d", Number: 4, State: fleet.StateServing},
	}
	if g, ok := launch.RollbackTarget(groups); !ok || g.Name != "b" {
		t.Errorf("RollbackTarget = %s %v, want b", g.Name, ok)
	}
	if _, ok := launch.RollbackTarget(groups[2:]); ok {
		t.Error("RollbackTarget found one among failed and serving groups")
	}
}

func at(minute int) time.Time { return time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC) }
