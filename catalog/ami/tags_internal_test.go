package ami

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bakery-sh/bakery/catalog"
)

func TestEventRoundTrip(t *testing.T) {
	when := time.Date(2026, 3, 2, 10, 11, 12, 123456789, time.UTC)
	for _, ev := range []catalog.Event{
		{Action: catalog.ActionPromote, Stage: "prod", Actor: "arn:aws:iam::123456789012:user/alice", Reason: "ship it; now", Forced: true, ApprovedBy: "bob"},
		{Action: catalog.ActionDemote, Stage: "prod", Actor: "dave", Reason: "replaced by 2.0.0"},
		{Action: catalog.ActionRevoke, Actor: "a;b%c d", ApprovedBy: "x;y", Reason: "ünïcödé; 100% ;;"},
		{Action: catalog.ActionUnrevoke},
		{Action: catalog.ActionApprove, Stage: "prod", Actor: "ann", Unverified: true, Reason: "reviewed"},
		{Action: catalog.ActionApprove, Stage: "prod", Actor: "arn:aws:sts::123456789012:assumed-role/release/ann"},
	} {
		ev.Time = when
		key, value := eventTag(ev.Time), encodeEvent(ev)
		got, err := decodeEvent(key, value)
		if err != nil {
			t.Fatalf("decoding %s=%q: %v", key, value, err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("round trip of %+v via %s=%q gave %+v", ev, key, value, got)
		}
	}
	if got := encodeEvent(catalog.Event{Action: "promote", Stage: "prod", Actor: "alice", Forced: true, ApprovedBy: "bob", Reason: "r"}); got != "v1;promote;prod;alice;f;bob;r" {
		t.Errorf("encoding = %q", got)
	}
	if got := encodeEvent(catalog.Event{Action: "approve", Stage: "prod", Actor: "ann", Unverified: true}); got != "v1;approve;prod;ann;u;;" {
		t.Errorf("encoding an unverified approval = %q", got)
	}
	for _, bad := range []struct{ key, value string }{
		{"bakery:event:1", "v2;promote;prod;a;;;"},
		{"bakery:event:1", "v1;promote;prod"},
		{"bakery:event:x", "v1;promote;prod;a;;;"},
		{"bakery:stage:prod", "v1;promote;prod;a;;;"},
		{"bakery:event:1", "v1;;;;;;"},
		{"bakery:event:1", "v1; promote;prod;a;;;"},
		{"bakery:event:1", "v1;Promote;prod;a;;;"},
	} {
		if _, err := decodeEvent(bad.key, bad.value); err == nil {
			t.Errorf("decodeEvent(%q, %q) succeeded", bad.key, bad.value)
		}
	}
}

func TestEventTruncatedToTheTagLimit(t *testing.T) {
	long := strings.Repeat("é", 400) // two bytes each: the limit counts characters
	ev := catalog.Event{Time: time.Unix(0, 42).UTC(), Action: catalog.ActionRevoke, Actor: "alice", Reason: long}
	v := encodeEvent(ev)
	if n := utf8.RuneCountInString(v); n != MaxTagValue || !strings.HasSuffix(v, "…") {
		t.Fatalf("encoded value has %d characters (want %d) and ends %q", n, MaxTagValue, v[len(v)-6:])
	}
	got, err := decodeEvent(eventTag(ev.Time), v)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(long, strings.TrimSuffix(got.Reason, "…")) || got.Actor != "alice" || got.Action != ev.Action {
		t.Errorf("decoded %+v", got)
	}

	// Fields that do not fit even without a reason are cut too.
	huge := catalog.Event{Action: catalog.ActionPromote, Stage: strings.Repeat("s", 115), Actor: strings.Repeat("a;", 150), ApprovedBy: strings.Repeat("b", 300), Reason: "why"}
	v = encodeEvent(huge)
	if n := utf8.RuneCountInString(v); n > MaxTagValue {
		t.Fatalf("encoded value has %d characters, want at most %d", n, MaxTagValue)
	}
	got, err = decodeEvent(eventTag(time.Unix(0, 0)), v)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got.Actor, "…") || !strings.HasPrefix(huge.Actor, strings.TrimSuffix(got.Actor, "…")) ||
		!strings.HasSuffix(got.ApprovedBy, "…") || got.Reason == "" {
		t.Errorf("decoded %+v", got)
	}
}

func TestMarkRoundTrip(t *testing.T) {
	when := time.Date(2026, 3, 2, 10, 11, 12, 5, time.UTC)
	for _, m := range []mark{
		{Time: when, Actor: "arn:aws:sts::123456789012:assumed-role/Deploy/ci job"},
		{Time: when, Actor: "100% sec", Reason: "CVE-2026-1: remote code execution"},
		{Time: when},
	} {
		got, err := parseMark(m.String())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %+v via %q gave %+v", m, m.String(), got)
		}
	}
	if got := (mark{Time: when.Truncate(time.Second), Actor: "alice"}).String(); got != "2026-03-02T10:11:12Z alice" {
		t.Errorf("stage mark = %q", got)
	}
	long := mark{Time: when, Actor: strings.Repeat("x y", 100), Reason: strings.Repeat("r", 300)}
	if v := long.String(); utf8.RuneCountInString(v) > MaxTagValue || !strings.HasSuffix(v, "…") {
		t.Errorf("long mark %q has %d characters", v, utf8.RuneCountInString(v))
	}
	if _, err := parseMark("yes"); err == nil {
		t.Error(`parseMark("yes") succeeded`)
	}
}

func TestPlanTags(t *testing.T) {
	base := map[string]string{
		"bakery:recipe": "web", "bakery:artifact": "server", "bakery:version": "1", "bakery:bake-key": "k",
		"bakery:source-ami": "ami-1", "bakery:created": "t", "bakery:bake-id": "b",
	}
	withEvents := func(n int, others map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range others {
			m[k] = v
		}
		for i := 1; i <= n; i++ {
			m[eventTagNanos(int64(i))] = "v1;x;;;;;"
		}
		return m
	}

	// Nothing to do.
	have := withEvents(3, nil)
	if p := planTags(have, map[string]string{"bakery:recipe": "web", eventTagNanos(2): "v1;x;;;;;"}); len(p.Create) != 0 || len(p.Delete) != 0 {
		t.Errorf("plan for tags already there = %+v", p)
	}

	// MaxEvents: adding the 31st event deletes the oldest, and the
	// count of pruned events (a tag of its own) starts.
	have = withEvents(MaxEvents, map[string]string{TagPruned: "4"})
	p := planTags(have, map[string]string{eventTagNanos(100): "new"})
	if !reflect.DeepEqual(p.Delete, []string{eventTagNanos(1)}) || p.Create[eventTagNanos(100)] != "new" || p.Create[TagPruned] != "5" {
		t.Errorf("plan = %+v, want event 1 deleted, 100 created and %s 4 → 5", p, TagPruned)
	}

	// Other tags leave less room: 7 + 30 others + 1 new stage mark + the
	// new pruned counter = 39, 2 kept free: 9 events fit.
	others := map[string]string{}
	for i := range 30 {
		others[fmt.Sprintf("team:%d", i)] = "x"
	}
	have = withEvents(20, others)
	p = planTags(have, map[string]string{"bakery:stage:prod": "m", eventTagNanos(100): "new"})
	if len(p.Delete) != 12 || p.Delete[0] != eventTagNanos(1) || p.Delete[11] != eventTagNanos(12) || p.Create[TagPruned] != "12" {
		t.Errorf("plan %+v, want events 1 to 12 deleted and %s = 12", p, TagPruned)
	}
	total := len(have) - len(p.Delete) + len(p.Create)
	if total != MaxTags-tagReserve {
		t.Errorf("%d tags after the plan, want %d", total, MaxTags-tagReserve)
	}

	// An added event older than all that fit is not written.
	have = withEvents(MaxEvents, map[string]string{TagPruned: "1"})
	p = planTags(have, map[string]string{eventTagNanos(0): "old"})
	if len(p.Create) != 0 || len(p.Delete) != 0 {
		t.Errorf("plan for an event too old to keep = %+v", p)
	}

	// Never negative room: with more other tags than the limit allows,
	// every event goes.
	for i := range 50 {
		others[fmt.Sprintf("more:%d", i)] = "x"
	}
	p = planTags(withEvents(2, others), map[string]string{eventTagNanos(9): "new"})
	if len(p.Delete) != 2 || len(p.Create) != 1 || p.Create[TagPruned] != "2" {
		t.Errorf("plan with no room = %+v, want both events deleted and counted", p)
	}
}

// TestEntryStartsWithTheBake: a version's history starts with its bake,
// even when an event tag is stamped earlier (a clock behind the baker's,
// or a hand edit); that event is kept, with its own time, and one with
// no action is left out.
func TestEntryStartsWithTheBake(t *testing.T) {
	baked := time.Date(2026, 3, 2, 10, 11, 12, 0, time.UTC)
	early, late := baked.Add(-time.Second), baked.Add(time.Hour)
	img := Image{Region: "us-east-1", ImageID: "ami-1", Tags: map[string]string{
		catalog.TagRecipe: "web", catalog.TagVersion: "1.0.0", catalog.TagCreatedBy: "carol",
		eventTag(late):   "v1;promote;prod;bob;;;",
		eventTag(early):  "v1;promote;dev;alice;;;",
		eventTagNanos(0): "v1;;;;;;",
	}}
	img.Recipe, img.Version, img.Created = "web", "1.0.0", baked
	e := (&LifecycleStore{}).entry([]Image{img})
	var got []string
	for _, ev := range e.Events {
		got = append(got, fmt.Sprintf("%s %s %s %s", ev.Time.Format(time.RFC3339), ev.Action, ev.Stage, ev.Actor))
	}
	want := []string{
		"2026-03-02T10:11:12Z bake  carol",
		"2026-03-02T10:11:11Z promote dev alice",
		"2026-03-02T11:11:12Z promote prod bob",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
