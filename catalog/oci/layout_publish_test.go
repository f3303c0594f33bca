package oci

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// TestLayoutStorePublishesToStageRepository: images baked into the local
// layout are published on promotion into a stage with its own repository
// (bake locally in CI, publish on promotion): the repository gets the
// manifest by digest, the version tag and the stage tag; status sees the
// stage through it; a newer version takes the stage over; revoking empties
// the remote stage tag; and a squatted version tag is refused.
func TestLayoutStorePublishesToStageRepository(t *testing.T) {
	ctx := context.Background()
	tr := newTestRegistry(t, true)
	prodRepo := tr.repo(t, "prod/hello")
	l := openLayout(t, t.TempDir())
	imgs := bakeVersions(t, l, "1.4.2", "1.5.0", "1.6.0")
	s := l.Store(testArtifact, testRecipe, testArtifact, WithKeychain(anonymous))
	prod := catalog.StageSpec{Name: "prod", Repository: prodRepo.Name()}

	mustPromote(t, s, "1.4.2", prod, "ann", testTime(0))
	d := digestOf(t, imgs["1.4.2"])
	for _, tag := range []string{"1.4.2", "prod"} {
		if got := tagged(t, prodRepo, tag); got != d {
			t.Errorf("prod/hello:%s = %q, want %s", tag, got, d)
		}
	}
	if got := layoutTag(t, l, "prod"); got != "" {
		t.Errorf("the layout has hello:prod = %s, want the stage in its repository only", got)
	}
	e := entryOf(t, entries(t, s), "1.4.2")
	if se, ok := e.Stages["prod"]; !ok || !se.Since.Equal(testTime(0)) || se.By != "ann" {
		t.Errorf("1.4.2 stages = %v, want prod since %s by ann", e.Stages, testTime(0))
	}
	wantLocs := []catalog.Location{{Where: l.Dir(), ID: d}, {Where: prodRepo.Name(), ID: d}}
	if !reflect.DeepEqual(e.Locations, wantLocs) {
		t.Errorf("locations = %v, want %v", e.Locations, wantLocs)
	}

	// Again: nothing is written to the registry.
	tr.reset()
	mustPromote(t, s, "1.4.2", prod, "ann", testTime(0))
	if w := tr.writes(); len(w) != 0 {
		t.Errorf("promoting again wrote %v", w)
	}

	// A newer version takes the stage; the old one is demoted.
	mustPromote(t, s, "1.5.0", prod, "bob", testTime(time.Hour))
	d5 := digestOf(t, imgs["1.5.0"])
	if got := tagged(t, prodRepo, "prod"); got != d5 {
		t.Errorf("prod/hello:prod = %s, want 1.5.0's %s", got, d5)
	}
	if got := tagged(t, prodRepo, "1.4.2"); got != d {
		t.Errorf("prod/hello:1.4.2 = %s, want it kept at %s", got, d)
	}
	es := entries(t, s)
	if h := holders(es, "prod"); !slices.Equal(h, []string{"1.5.0"}) {
		t.Errorf("prod holders = %v, want 1.5.0", h)
	}
	if got, want := actions(entryOf(t, es, "1.4.2")), []string{"bake", "promote:prod", "demote:prod"}; !slices.Equal(got, want) {
		t.Errorf("1.4.2 history = %v, want %v", got, want)
	}

	// Revoking the holder empties the remote stage tag.
	if err := s.Revoke(ctx, entryOf(t, es, "1.5.0"), revokeEvent(catalog.ActionRevoke, "1.5.0", "CVE-2025-9", testTime(2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	checkEmptied(t, prodRepo, "prod", d5, testRecipe+"@1.5.0 was revoked", "CVE-2025-9")
	if e := entryOf(t, entries(t, s), "1.5.0"); !e.Revoked || len(e.Stages) != 0 {
		t.Errorf("after revoke: revoked %v stages %v", e.Revoked, e.Stages)
	}

	// Someone else's image holds prod/hello:1.6.0: refused, nothing changes.
	squatter := push(t, prodRepo, "1.6.0", randomImage(t, nil))
	err := s.Promote(ctx, entryOf(t, entries(t, s), "1.6.0"), prod, promoteEvent("1.6.0", "prod", "cy", testTime(3*time.Hour)))
	if err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Fatalf("promoting over a squatted version tag: err = %v, want a refusal", err)
	}
	if got := tagged(t, prodRepo, "1.6.0"); got != squatter.String() {
		t.Errorf("prod/hello:1.6.0 = %s, want it left", got)
	}
	if evs := findEvents(entryOf(t, entries(t, s), "1.6.0"), catalog.ActionPromote, "prod"); len(evs) != 0 {
		t.Errorf("a refused promotion recorded %v", evs)
	}
}

// TestLayoutStoreStageMovesToRepository: a stage first kept in the layout
// and then given a repository leaves no NAME:STAGE tag behind in the
// layout.
func TestLayoutStoreStageMovesToRepository(t *testing.T) {
	tr := newTestRegistry(t, true)
	qaRepo := tr.repo(t, "qa/hello")
	l := openLayout(t, t.TempDir())
	imgs := bakeVersions(t, l, "1.0.0")
	s := l.Store(testArtifact, testRecipe, testArtifact, WithKeychain(anonymous))
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa"}, "ann", testTime(0))
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa", Repository: qaRepo.Name()}, "ann", testTime(time.Hour))
	if got := layoutTag(t, l, "qa"); got != "" {
		t.Errorf("hello:qa = %s in the layout after the stage moved", got)
	}
	if got := tagged(t, qaRepo, "qa"); got != digestOf(t, imgs["1.0.0"]) {
		t.Errorf("qa/hello:qa = %s", got)
	}
	if h := holders(entries(t, s), "qa"); !slices.Equal(h, []string{"1.0.0"}) {
		t.Errorf("qa holders = %v", h)
	}
}

// TestLayoutStoreStageMovesBetweenRepositories: a stage moved from one
// stage repository to another, then back into the layout, leaves no
// remote tag behind serving the version.
func TestLayoutStoreStageMovesBetweenRepositories(t *testing.T) {
	tr := newTestRegistry(t, true)
	aRepo, bRepo := tr.repo(t, "a/hello"), tr.repo(t, "b/hello")
	l := openLayout(t, t.TempDir())
	imgs := bakeVersions(t, l, "1.0.0")
	d := digestOf(t, imgs["1.0.0"])
	s := l.Store(testArtifact, testRecipe, testArtifact, WithKeychain(anonymous))
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa", Repository: aRepo.Name()}, "ann", testTime(0))
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa", Repository: bRepo.Name()}, "ann", testTime(time.Hour))
	checkEmptied(t, aRepo, "qa", d, "the stage moved to "+bRepo.Tag("qa").String())
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa"}, "ann", testTime(2*time.Hour))
	checkEmptied(t, bRepo, "qa", d, "the stage moved to the local layout")
	if got := layoutTag(t, l, "qa"); got != d {
		t.Errorf("hello:qa = %q in the layout, want %s", got, d)
	}
	if h := holders(entries(t, s), "qa"); !slices.Equal(h, []string{"1.0.0"}) {
		t.Errorf("qa holders = %v", h)
	}
}
