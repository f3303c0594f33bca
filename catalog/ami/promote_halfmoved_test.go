package ami_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
)

// A promotion of 1.1.0 to staging killed after it marked 1.1.0 and before
// it took the stage from 1.0.0 leaves staging with two versions. The next
// promotion of 1.1.0 (to prod) finishes it: staging is 1.1.0's alone.
// (Chaos seed 6 found a stage left so.)
func TestPromoteFinishesAStageAKilledPromotionLeftHalfMoved(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	old := a.bake(t, "1.0.0", east)[east]
	cur := a.bake(t, "1.1.0", east)[east]
	s := newStore(a.config(t), []string{east})
	key := catalogami.StageTag("staging")
	if err := s.Promote(ctx, entry(t, s, "1.0.0"), catalog.StageSpec{Name: "staging"}, catalog.Event{Time: at(1), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	oldMark := a.imageTags(t, east, old)[key]
	if oldMark == "" {
		t.Fatal("1.0.0 holds no staging mark after its promotion")
	}
	if err := s.Promote(ctx, entry(t, s, "1.1.0"), catalog.StageSpec{Name: "staging"}, catalog.Event{Time: at(2), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	// The state the killed promotion left: 1.0.0's mark still there.
	if _, err := a.client(t, east).CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{old},
		Tags: []ec2types.Tag{{Key: aws.String(key), Value: aws.String(oldMark)}}}); err != nil {
		t.Fatal(err)
	}

	if err := s.Promote(ctx, entry(t, s, "1.1.0"), catalog.StageSpec{Name: "prod"}, catalog.Event{Time: at(3), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	if v, ok := a.imageTags(t, east, old)[key]; ok {
		t.Errorf("1.0.0 still holds staging (%q) after 1.1.0's next promotion", v)
	}
	tags := a.imageTags(t, east, cur)
	if tags[key] == "" || tags[catalogami.StageTag("prod")] == "" {
		t.Errorf("1.1.0's tags %v: want staging and prod", tags)
	}
}

// A promotion stopped part way is reported unfinished until promoted
// again: killed after it marked one region of two (and before it took the
// stage from the old holder), or after it marked every region but before
// it recorded its event.
func TestEntriesReportAPromotionStoppedPartWay(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ctx := context.Background()
	old := a.bake(t, "1.0.0", east)[east]
	cur := a.bake(t, "1.1.0", east, eu)
	s := newStore(a.config(t), []string{east, eu})
	key := catalogami.StageTag("dev")
	unfinished := func(version string) bool {
		t.Helper()
		se, ok := entry(t, s, version).Stages["dev"]
		if !ok {
			t.Fatalf("%s is not in dev", version)
		}
		return se.Unfinished
	}
	if err := s.Promote(ctx, entry(t, s, "1.0.0"), catalog.StageSpec{Name: "dev"}, catalog.Event{Time: at(1), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	if unfinished("1.0.0") {
		t.Error("1.0.0's finished promotion is reported unfinished")
	}

	// Killed after it marked 1.1.0 in us-east-1 only.
	mark := "2026-03-02T00:00:02Z " + actor
	if _, err := a.client(t, east).CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{cur[east]},
		Tags: []ec2types.Tag{{Key: aws.String(key), Value: aws.String(mark)}}}); err != nil {
		t.Fatal(err)
	}
	if !unfinished("1.1.0") {
		t.Error("1.1.0, marked in one region of two, is not reported unfinished")
	}
	if err := s.Promote(ctx, entry(t, s, "1.1.0"), catalog.StageSpec{Name: "dev"}, catalog.Event{Time: at(3), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	if unfinished("1.1.0") {
		t.Error("1.1.0 is still unfinished after its promotion ran again")
	}
	for _, r := range []string{east, eu} {
		if got := a.imageTags(t, r, cur[r])[key]; got != mark {
			t.Errorf("1.1.0's dev mark in %s is %q, want the one the killed promotion wrote, %q", r, got, mark)
		}
	}
	if v, ok := a.imageTags(t, east, old)[key]; ok {
		t.Errorf("1.0.0 still holds dev (%q)", v)
	}

	// Killed between the marks and the event: take the event away.
	for _, r := range []string{east, eu} {
		for k := range a.imageTags(t, r, cur[r]) {
			if strings.HasPrefix(k, catalogami.TagEventPrefix) {
				if _, err := a.client(t, r).DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{cur[r]}, Tags: []ec2types.Tag{{Key: aws.String(k)}}}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if !unfinished("1.1.0") {
		t.Error("1.1.0, marked but with no promotion in its history, is not reported unfinished")
	}
	if err := s.Promote(ctx, entry(t, s, "1.1.0"), catalog.StageSpec{Name: "dev"}, catalog.Event{Time: at(4), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	if unfinished("1.1.0") {
		t.Error("1.1.0 is still unfinished after its promotion ran again")
	}
	evs := entry(t, s, "1.1.0").Events
	if !slices.ContainsFunc(evs, func(e catalog.Event) bool {
		return e.Action == catalog.ActionPromote && e.Stage == "dev" && e.Time.Equal(at(2))
	}) {
		t.Errorf("1.1.0's history %+v lacks its promotion to dev at the mark's time", evs)
	}
}
