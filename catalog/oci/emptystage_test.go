package oci

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// everyRegistry runs f against the in-process registry and against real
// Docker Distribution registries with and without deletes: f gets the
// registry's host:port.
func everyRegistry(t *testing.T, f func(t *testing.T, host string)) {
	t.Run("in-process", func(t *testing.T) { f(t, newTestRegistry(t, true).host) })
	t.Run("distribution-deletes-enabled", func(t *testing.T) { f(t, startDistribution(t, true)) })
	t.Run("distribution-deletes-disabled", func(t *testing.T) { f(t, startDistribution(t, false)) })
}

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkEmptied checks that repo:stage does not serve digest but an empty
// stage artifact whose annotations contain every one of want.
func checkEmptied(t *testing.T, repo name.Repository, stage, digest string, want ...string) {
	t.Helper()
	d, err := remote.Get(repo.Tag(stage), remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Errorf("reading %s:%s: %v (want the empty stage artifact)", repo, stage, err)
		return
	}
	if d.Digest.String() == digest {
		t.Errorf("%s:%s still serves %s", repo, stage, digest)
	}
	var m v1.Manifest
	if err := json.Unmarshal(d.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != EmptyStageArtifactType || string(m.Config.MediaType) != EmptyStageArtifactType {
		t.Errorf("%s:%s is a %s with config %s, want the empty stage artifact", repo, stage, m.ArtifactType, m.Config.MediaType)
	}
	if m.Annotations[AnnotationEmptyStageName] != stage {
		t.Errorf("%s:%s empty stage names stage %q", repo, stage, m.Annotations[AnnotationEmptyStageName])
	}
	for _, w := range want {
		if !strings.Contains(m.Annotations[AnnotationEmptyStage], w) || !strings.Contains(m.Annotations[annotationDescription], w) {
			t.Errorf("%s:%s says %q / %q, want it to mention %q", repo, stage, m.Annotations[AnnotationEmptyStage], m.Annotations[annotationDescription], w)
		}
	}
}

// TestRevokeEmptiesStagesOnEveryRegistry revokes a version held by a
// stage in its own repository and by one in a stage repository: on every
// registry, with or without deletes, no stage tag serves it after, status
// (Entries) shows it in no stage, running it again finishes, and a stage
// emptied so takes a new version.
func TestRevokeEmptiesStagesOnEveryRegistry(t *testing.T) {
	everyRegistry(t, func(t *testing.T, host string) {
		ctx := context.Background()
		repo := mustRepo(t, host+"/team/hello")
		prodRepo := mustRepo(t, host+"/prod/hello")
		imgs := pushVersions(t, repo, "1.0.0", "1.1.0")
		s := newStore(t, repo)
		mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(0))
		mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "staging"}, "ann", testTime(time.Minute))
		mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "prod", Repository: prodRepo.Name()}, "ann", testTime(time.Hour))
		d := digestOf(t, imgs["1.0.0"])
		for _, tag := range []struct {
			repo  name.Repository
			stage string
		}{{repo, "dev"}, {repo, "staging"}, {prodRepo, "prod"}} {
			if got := tagged(t, tag.repo, tag.stage); got != d {
				t.Fatalf("before revoking: %s:%s = %s, want %s", tag.repo, tag.stage, got, d)
			}
		}

		e := entryOf(t, entries(t, s), "1.0.0")
		rev := revokeEvent(catalog.ActionRevoke, "1.0.0", "CVE-2025-1234", testTime(2*time.Hour))
		if err := s.Revoke(ctx, e, rev); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		for _, stage := range []string{"dev", "staging"} {
			checkEmptied(t, repo, stage, d, testRecipe+"@1.0.0 was revoked", "CVE-2025-1234")
		}
		checkEmptied(t, prodRepo, "prod", d, testRecipe+"@1.0.0 was revoked", "CVE-2025-1234")
		es := entries(t, s)
		e = entryOf(t, es, "1.0.0")
		if !e.Revoked || len(e.Stages) != 0 {
			t.Errorf("after revoke: revoked %v stages %v, want revoked and in no stage", e.Revoked, e.Stages)
		}
		for _, stage := range []string{"dev", "staging", "prod"} {
			if h := holders(es, stage); len(h) != 0 {
				t.Errorf("%s holders after revoke = %v, want none", stage, h)
			}
		}
		// The version tag stays: a revoked image is kept.
		if got := tagged(t, repo, "1.0.0"); got != d {
			t.Errorf("hello:1.0.0 = %s, want the image kept", got)
		}

		// Again (as "run the same command again" does): it succeeds and
		// changes nothing.
		before := tagged(t, repo, "dev")
		if err := s.Revoke(ctx, e, rev); err != nil {
			t.Fatalf("Revoke again: %v", err)
		}
		if after := tagged(t, repo, "dev"); after != before {
			t.Errorf("revoking again moved dev from %s to %s", before, after)
		}

		// The emptied stage takes another version.
		mustPromote(t, s, "1.1.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(3*time.Hour))
		if got := tagged(t, repo, "dev"); got != digestOf(t, imgs["1.1.0"]) {
			t.Errorf("dev after promoting 1.1.0 = %s", got)
		}
		if h := holders(entries(t, s), "dev"); !slices.Equal(h, []string{"1.1.0"}) {
			t.Errorf("dev holders = %v, want 1.1.0", h)
		}
	})
}

// TestStageMovedToAnotherRepositoryEmptiesTheOldTag checks the other way a
// stage tag leaves a version: the stage gets its own repository, and the
// tag left in the image's repository must stop serving the version, on
// every registry.
func TestStageMovedToAnotherRepositoryEmptiesTheOldTag(t *testing.T) {
	everyRegistry(t, func(t *testing.T, host string) {
		repo := mustRepo(t, host+"/team/hello")
		qaRepo := mustRepo(t, host+"/qa/hello")
		imgs := pushVersions(t, repo, "1.0.0")
		d := digestOf(t, imgs["1.0.0"])
		s := newStore(t, repo)
		mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa"}, "ann", testTime(0))
		mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa", Repository: qaRepo.Name()}, "ann", testTime(time.Hour))
		if got := tagged(t, qaRepo, "qa"); got != d {
			t.Errorf("qa/hello:qa = %s, want %s", got, d)
		}
		checkEmptied(t, repo, "qa", d, "the stage moved to "+qaRepo.Tag("qa").String())
		if h := holders(entries(t, s), "qa"); !slices.Equal(h, []string{"1.0.0"}) {
			t.Errorf("qa holders = %v, want 1.0.0 (through its new repository)", h)
		}
	})
}

// TestStageRepositoryHoldsTheVersionTag: promoting into a stage with its
// own repository gives STAGE_REPO:VERSION as well as STAGE_REPO:STAGE,
// and a version tag there that holds another image is never overwritten:
// the promotion is refused and changes nothing.
func TestStageRepositoryHoldsTheVersionTag(t *testing.T) {
	everyRegistry(t, func(t *testing.T, host string) {
		ctx := context.Background()
		repo := mustRepo(t, host+"/team/hello")
		prodRepo := mustRepo(t, host+"/prod/hello")
		imgs := pushVersions(t, repo, "1.4.2", "1.5.0")
		s := newStore(t, repo)
		spec := catalog.StageSpec{Name: "prod", Repository: prodRepo.Name()}
		mustPromote(t, s, "1.4.2", spec, "ann", testTime(0))
		d := digestOf(t, imgs["1.4.2"])
		for _, tag := range []string{"1.4.2", "prod"} {
			if got := tagged(t, prodRepo, tag); got != d {
				t.Errorf("prod/hello:%s = %q, want %s", tag, got, d)
			}
		}

		// Someone else's image already holds prod/hello:1.5.0.
		squatter := push(t, prodRepo, "1.5.0", randomImage(t, nil))
		e := entryOf(t, entries(t, s), "1.5.0")
		err := s.Promote(ctx, e, spec, promoteEvent("1.5.0", "prod", "ann", testTime(time.Hour)))
		if err == nil || !strings.Contains(err.Error(), "never overwritten") || !strings.Contains(err.Error(), prodRepo.Tag("1.5.0").String()) {
			t.Fatalf("promoting over another image's version tag: err = %v, want a refusal naming the tag", err)
		}
		if got := tagged(t, prodRepo, "1.5.0"); got != squatter.String() {
			t.Errorf("prod/hello:1.5.0 = %s, want it left at %s", got, squatter)
		}
		if got := tagged(t, prodRepo, "prod"); got != d {
			t.Errorf("prod/hello:prod = %s after the refusal, want it still %s", got, d)
		}
		if evs := findEvents(entryOf(t, entries(t, s), "1.5.0"), catalog.ActionPromote, "prod"); len(evs) != 0 {
			t.Errorf("a refused promotion recorded %v", evs)
		}
	})
}

// TestStageMovedBackEmptiesTheStageRepositoryTag: a stage that had its
// own repository and returns to the image's repository (or moves to a
// third one) leaves no tag behind serving the version.
func TestStageMovedBackEmptiesTheStageRepositoryTag(t *testing.T) {
	tr := newTestRegistry(t, true)
	repo := tr.repo(t, "team/hello")
	aRepo, bRepo := tr.repo(t, "a/hello"), tr.repo(t, "b/hello")
	imgs := pushVersions(t, repo, "1.0.0")
	d := digestOf(t, imgs["1.0.0"])
	s := newStore(t, repo)
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa", Repository: aRepo.Name()}, "ann", testTime(0))
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa", Repository: bRepo.Name()}, "ann", testTime(time.Hour))
	checkEmptied(t, aRepo, "qa", d, "the stage moved to "+bRepo.Tag("qa").String())
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "qa"}, "ann", testTime(2*time.Hour))
	checkEmptied(t, bRepo, "qa", d, "the stage moved to "+repo.Tag("qa").String())
	if got := tagged(t, repo, "qa"); got != d {
		t.Errorf("team/hello:qa = %s, want %s", got, d)
	}
	if h := holders(entries(t, s), "qa"); !slices.Equal(h, []string{"1.0.0"}) {
		t.Errorf("qa holders = %v", h)
	}
}
