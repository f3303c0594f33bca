package oci

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// approveEvent is the event bakery approve records.
func approveEvent(version, stage, actor string, unverified bool, at time.Time) catalog.Event {
	return catalog.Event{Time: at, Action: catalog.ActionApprove, Recipe: testRecipe, Version: version,
		Artifact: testArtifact, Kind: KindContainer, Stage: stage, Actor: actor, Unverified: unverified, Reason: "reviewed"}
}

// checkRecorded records an unverified approval of 1.0.0 for prod in s
// twice and checks that it reads back once, with every field, and moves
// the image into no stage; and that an event that changes the image is
// refused.
func checkRecorded(t *testing.T, s catalog.Store) {
	t.Helper()
	ctx := context.Background()
	e := entryOf(t, entries(t, s), "1.0.0")
	ev := approveEvent("1.0.0", "prod", "ann", true, testTime(time.Hour))
	for range 2 {
		if err := s.Record(ctx, e, ev); err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	e = entryOf(t, entries(t, s), "1.0.0")
	var got []catalog.Event
	for _, x := range e.Events {
		if x.Action == catalog.ActionApprove {
			got = append(got, x)
		}
	}
	if len(got) != 1 || got[0] != ev {
		t.Errorf("approve events read back = %+v, want once %+v", got, ev)
	}
	if len(e.Stages) != 0 {
		t.Errorf("an approval put the image in stages %v", e.Stages)
	}
	err := s.Record(ctx, e, promoteEvent("1.0.0", "prod", "ann", testTime(2*time.Hour)))
	if err == nil || !strings.Contains(err.Error(), "changes the image") {
		t.Errorf("Record of a promote event: err = %v, want a refusal", err)
	}
}

func TestLayoutStoreRecordsAnApproval(t *testing.T) {
	l := openLayout(t, t.TempDir())
	bakeVersions(t, l, "1.0.0")
	checkRecorded(t, layoutStore(l))
}

func TestRegistryStoreRecordsAnApproval(t *testing.T) {
	tr := newTestRegistry(t, true)
	repo := tr.repo(t, "hello")
	pushVersions(t, repo, "1.0.0")
	checkRecorded(t, newStore(t, repo))
}
