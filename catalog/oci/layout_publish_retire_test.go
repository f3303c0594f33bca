package oci

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// TestLayoutRemoveVersionDeletesItsPublishedCopies: a version baked into
// the layout and published to a stage repository by a promotion goes
// from that repository too when it is removed (its STAGE_REPO:VERSION
// tag included), while the version the stage tag names there is refused
// and stays in both places.
func TestLayoutRemoveVersionDeletesItsPublishedCopies(t *testing.T) {
	ctx := context.Background()
	tr := newTestRegistry(t, true)
	prodRepo := tr.repo(t, "prod/hello")
	l := openLayout(t, t.TempDir())
	imgs := bakeVersions(t, l, "1.4.2", "1.5.0")
	s := l.Store(testArtifact, testRecipe, testArtifact, WithKeychain(anonymous))
	prod := catalog.StageSpec{Name: "prod", Repository: prodRepo.Name()}
	mustPromote(t, s, "1.4.2", prod, "ann", testTime(0))
	mustPromote(t, s, "1.5.0", prod, "bob", testTime(time.Hour))
	d4, d5 := digestOf(t, imgs["1.4.2"]), digestOf(t, imgs["1.5.0"])
	if got := tagged(t, prodRepo, "1.4.2"); got != d4 {
		t.Fatalf("prod/hello:1.4.2 = %q before, want %s", got, d4)
	}

	// The stage's holder is refused, here and there.
	_, err := s.RemoveVersion(ctx, entryOf(t, entries(t, s), "1.5.0"))
	if err == nil || !strings.Contains(err.Error(), "in prod now") {
		t.Fatalf("removing prod's version: %v, want a refusal naming prod", err)
	}
	if got := tagged(t, prodRepo, "1.5.0"); got != d5 {
		t.Errorf("prod/hello:1.5.0 = %q after the refusal, want %s", got, d5)
	}

	old := entryOf(t, entries(t, s), "1.4.2")
	rm, err := s.RemoveVersion(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if rm.Entries == 0 {
		t.Error("1.4.2 was not removed from the layout")
	}
	if got := tagged(t, prodRepo, "1.4.2"); got != "" {
		t.Errorf("prod/hello:1.4.2 = %s after retiring 1.4.2, want it gone", got)
	}
	if got := tagged(t, prodRepo, "prod"); got != d5 {
		t.Errorf("prod/hello:prod = %q, want 1.5.0's %s", got, d5)
	}
	if got := versionsOf(entries(t, s)); len(got) != 1 || got[0] != "1.5.0" {
		t.Errorf("versions after = %v, want 1.5.0", got)
	}
	// Again (an interrupted run finished): nothing left to do, no error.
	if _, err := s.RemoveVersion(ctx, old); err != nil {
		t.Errorf("removing again: %v", err)
	}
}
