package oci

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// TestRegistryRemoveVersionOnEveryRegistry removes a version that was
// promoted into a stage repository and then replaced there: where the
// registry deletes manifests, its version tags go from its repository and
// from the stage repository (Docker Distribution deletes a tag only with
// its manifest, never by name); where deletes are disabled, the refusal
// says so and the version stays listed, for a later run to finish.
func TestRegistryRemoveVersionOnEveryRegistry(t *testing.T) {
	everyRegistry(t, func(t *testing.T, host string) {
		ctx := context.Background()
		repo := mustRepo(t, host+"/team/hello")
		prodRepo := mustRepo(t, host+"/prod/hello")
		imgs := pushVersions(t, repo, "1.0.0", "1.1.0")
		s := newStore(t, repo)
		prod := catalog.StageSpec{Name: "prod", Repository: prodRepo.Name()}
		mustPromote(t, s, "1.0.0", prod, "ann", testTime(0))
		mustPromote(t, s, "1.1.0", prod, "bob", testTime(time.Hour))
		d0, d1 := digestOf(t, imgs["1.0.0"]), digestOf(t, imgs["1.1.0"])
		if got := tagged(t, prodRepo, "1.0.0"); got != d0 {
			t.Fatalf("prod/hello:1.0.0 = %q before, want %s", got, d0)
		}

		_, err := s.RemoveVersion(ctx, entryOf(t, entries(t, s), "1.0.0"))
		if t.Name() == "TestRegistryRemoveVersionOnEveryRegistry/distribution-deletes-disabled" {
			if !errors.Is(err, ErrDeleteRefused) {
				t.Fatalf("removing on a registry without deletes: %v, want ErrDeleteRefused", err)
			}
			if got := versionsOf(entries(t, s)); !slices.Equal(got, []string{"1.0.0", "1.1.0"}) {
				t.Errorf("versions after a refused removal = %v, want both", got)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct{ repo, tag string }{{repo.Name(), "1.0.0"}, {prodRepo.Name(), "1.0.0"}} {
			if got := tagged(t, mustRepo(t, r.repo), r.tag); got != "" {
				t.Errorf("%s:%s = %s after removing 1.0.0, want it gone", r.repo, r.tag, got)
			}
		}
		for _, r := range []struct{ repo, tag string }{{repo.Name(), "1.1.0"}, {prodRepo.Name(), "1.1.0"}, {prodRepo.Name(), "prod"}} {
			if got := tagged(t, mustRepo(t, r.repo), r.tag); got != d1 {
				t.Errorf("%s:%s = %q, want 1.1.0's %s", r.repo, r.tag, got, d1)
			}
		}
		if got := versionsOf(entries(t, s)); !slices.Equal(got, []string{"1.1.0"}) {
			t.Errorf("versions after = %v, want 1.1.0", got)
		}
	})
}
