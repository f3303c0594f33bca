package oci

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestRegistryStoreRemoveVersion deletes an old version with its events
// from the in-process registry; the staged version is refused, the kept
// ones stay readable, and a second removal deletes nothing.
func TestRegistryStoreRemoveVersion(t *testing.T) {
	ctx := context.Background()
	tr := newTestRegistry(t, true)
	repo := tr.repo(t, "hello")
	for i, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
		push(t, repo, v, bakedImage(t, v, testTime(time.Duration(i)*time.Hour).Format(time.RFC3339)))
	}
	s := newStore(t, repo)
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(5*time.Hour))
	mustPromote(t, s, "1.0.1", catalog.StageSpec{Name: "dev"}, "ann", testTime(6*time.Hour))
	old := entryOf(t, entries(t, s), "1.0.0")
	if len(old.Events) < 2 {
		t.Fatalf("1.0.0 has events %v, want its promotion and demotion", actions(old))
	}
	if _, err := s.RemoveVersion(ctx, entryOf(t, entries(t, s), "1.0.1")); err == nil {
		t.Fatal("RemoveVersion removed the version in dev")
	}
	n, err := s.RemoveVersion(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Errorf("deleted %d manifests, want the tag, the manifest and the events", n)
	}
	if got := versionsOf(entries(t, s)); !slices.Equal(got, []string{"1.0.1", "1.0.2"}) {
		t.Errorf("versions after removal: %v", got)
	}
	if _, err := remote.Head(repo.Digest(old.Digest), remote.WithAuth(authn.Anonymous)); !isAbsent(err) {
		t.Errorf("the manifest of 1.0.0 is still there: %v", err)
	}
	idx, err := remote.Referrers(repo.Digest(old.Digest), remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := idx.IndexManifest(); im != nil && len(im.Manifests) != 0 {
		t.Errorf("events of 1.0.0 left: %v", im.Manifests)
	}
	for _, tag := range []string{"1.0.1", "1.0.2", "dev"} {
		if tagged(t, repo, tag) == "" {
			t.Errorf("%s is gone", tag)
		}
	}
	if n, err := s.RemoveVersion(ctx, old); err != nil || n != 0 {
		t.Errorf("second RemoveVersion: %d, %v", n, err)
	}
}

// TestRegistryStoreRemoveVersionRefused reports a registry that refuses
// DELETE with ErrDeleteRefused.
func TestRegistryStoreRemoveVersionRefused(t *testing.T) {
	repo := refusingRegistry(t)
	push(t, repo, "1.0.0", bakedImage(t, "1.0.0", testTime(0).Format(time.RFC3339)))
	s := newStore(t, repo)
	_, err := s.RemoveVersion(context.Background(), entryOf(t, entries(t, s), "1.0.0"))
	if !errors.Is(err, ErrDeleteRefused) {
		t.Fatalf("RemoveVersion on a registry refusing DELETE: %v", err)
	}
	if tagged(t, repo, "1.0.0") == "" {
		t.Error("the tag is gone")
	}
}
