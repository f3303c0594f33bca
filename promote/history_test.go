package promote

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// TestMergeHistory merges the events read from tags with the ledger's:
// one record per event, the ledger's where both hold it, newest first.
func TestMergeHistory(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ev := func(min int, action, stage, version, artifact, reason string) catalog.Event {
		return catalog.Event{Time: t0.Add(time.Duration(min) * time.Minute), Action: action, Stage: stage, Version: version,
			Artifact: artifact, Recipe: "web", Kind: catalog.KindAMI, Reason: reason}
	}
	bake := ev(0, catalog.ActionBake, "", "1.0.0", "server", "")
	promo := ev(10, catalog.ActionPromote, "dev", "1.0.0", "server", "short…")
	promoFull := promo
	promoFull.Reason = "short reason the tag had to cut"
	old := ev(5, catalog.ActionPromote, "dev", "0.9.0", "server", "pruned from the AMI")
	shift := func(e catalog.Event, d time.Duration) catalog.Event { e.Time = e.Time.Add(d); return e }
	with := func(e catalog.Event, f func(*catalog.Event)) catalog.Event { f(&e); return e }

	for _, tc := range []struct {
		name           string
		images, ledger []catalog.Event
		want           []catalog.Event
	}{
		{"no ledger", []catalog.Event{promo, bake}, nil, []catalog.Event{promo, bake}},
		{"ledger alone (images gone)", nil, []catalog.Event{old, promoFull}, []catalog.Event{promoFull, old}},
		{"same event: the ledger's record, once", []catalog.Event{promo, bake}, []catalog.Event{promoFull}, []catalog.Event{promoFull, bake}},
		{"pruned event comes back", []catalog.Event{promo, bake}, []catalog.Event{old, promoFull}, []catalog.Event{promoFull, old, bake}},
		{"1µs apart is the same event", []catalog.Event{promo}, []catalog.Event{shift(promoFull, time.Microsecond)},
			[]catalog.Event{shift(promoFull, time.Microsecond)}},
		{"1µs earlier is the same event", []catalog.Event{promo}, []catalog.Event{shift(promoFull, -time.Microsecond)},
			[]catalog.Event{shift(promoFull, -time.Microsecond)}},
		{"2µs apart are two events", []catalog.Event{promo}, []catalog.Event{shift(promoFull, 2*time.Microsecond)},
			[]catalog.Event{shift(promoFull, 2*time.Microsecond), promo}},
		{"another stage is another event", []catalog.Event{promo}, []catalog.Event{with(promoFull, func(e *catalog.Event) { e.Stage = "staging" })},
			[]catalog.Event{promo, with(promoFull, func(e *catalog.Event) { e.Stage = "staging" })}},
		{"another artifact is another event", []catalog.Event{promo}, []catalog.Event{with(promoFull, func(e *catalog.Event) { e.Artifact = "worker" })},
			[]catalog.Event{promo, with(promoFull, func(e *catalog.Event) { e.Artifact = "worker" })}},
		{"another version is another event", []catalog.Event{promo}, []catalog.Event{with(promoFull, func(e *catalog.Event) { e.Version = "1.0.1" })},
			[]catalog.Event{with(promoFull, func(e *catalog.Event) { e.Version = "1.0.1" }), promo}},
		{"another action is another event", []catalog.Event{promo}, []catalog.Event{with(promoFull, func(e *catalog.Event) { e.Action = catalog.ActionDemote })},
			[]catalog.Event{promo, with(promoFull, func(e *catalog.Event) { e.Action = catalog.ActionDemote })}},
		{"two images' records of two events at one instant pair up", []catalog.Event{promo, with(promo, func(e *catalog.Event) { e.Artifact = "worker" })},
			[]catalog.Event{with(promoFull, func(e *catalog.Event) { e.Artifact = "worker" }), promoFull},
			[]catalog.Event{promoFull, with(promoFull, func(e *catalog.Event) { e.Artifact = "worker" })}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			images := append([]catalog.Event(nil), tc.images...)
			got := MergeHistory(images, tc.ledger)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("MergeHistory =\n%s\nwant\n%s", show(got), show(tc.want))
			}
			if !reflect.DeepEqual(images, tc.images) {
				t.Errorf("MergeHistory changed its images argument")
			}
		})
	}
}

func show(evs []catalog.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s %s %s %s@%s %q\n", e.Time.Format(time.RFC3339Nano), e.Action, e.Stage, e.Artifact, e.Version, e.Reason)
	}
	return b.String()
}

// TestPruned sums the events pruned from every version of every
// artifact.
func TestPruned(t *testing.T) {
	arts := []*Artifact{
		{Name: "server", Entries: []catalog.Entry{{Lifecycle: catalog.Lifecycle{Pruned: 3}}, {Lifecycle: catalog.Lifecycle{Pruned: 0}}, {Lifecycle: catalog.Lifecycle{Pruned: 4}}}},
		{Name: "worker", Entries: []catalog.Entry{{Lifecycle: catalog.Lifecycle{Pruned: 5}}}},
		{Name: "empty"},
	}
	if got := Pruned(arts); got != 12 {
		t.Errorf("Pruned = %d, want 12", got)
	}
	if got := Pruned(nil); got != 0 {
		t.Errorf("Pruned(nil) = %d, want 0", got)
	}
}
