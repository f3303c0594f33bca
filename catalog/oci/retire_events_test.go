package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bakery-sh/bakery/catalog"
)

func retireEvent(version string, at time.Time) catalog.Event {
	return catalog.Event{Time: at, Action: catalog.ActionRetire, Recipe: testRecipe, Version: version, Artifact: testArtifact,
		Kind: KindContainer, Actor: "ops", Reason: "not among the newest 1"}
}

// TestRegistryRetireVersionKeepsItsRetireEvent: on a registry without
// the referrers API, retiring 1.0.0 (which has events, so a sha256-HEX
// fallback tag) deletes its events, the fallback tag and the manifest,
// and leaves its retire event readable; retiring it again keeps the
// first event's time.
func TestRegistryRetireVersionKeepsItsRetireEvent(t *testing.T) {
	ctx := context.Background()
	tr := newTestRegistry(t, false)
	repo := tr.repo(t, "hello")
	for i, v := range []string{"1.0.0", "1.0.1"} {
		push(t, repo, v, bakedImage(t, v, testTime(time.Duration(i)*time.Hour).Format(time.RFC3339)))
	}
	s := newStore(t, repo)
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(5*time.Hour))
	mustPromote(t, s, "1.0.1", catalog.StageSpec{Name: "dev"}, "ann", testTime(6*time.Hour))
	old := entryOf(t, entries(t, s), "1.0.0")
	fallback := strings.Replace(old.Digest, ":", "-", 1)
	tags := func() []string {
		t.Helper()
		ts, err := remote.List(repo, remote.WithAuth(authn.Anonymous))
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	if !slices.Contains(tags(), fallback) {
		t.Fatalf("no referrers fallback tag %s before: %v", fallback, tags())
	}
	ev := retireEvent("1.0.0", testTime(7*time.Hour))
	if _, err := s.RetireVersion(ctx, old, ev); err != nil {
		t.Fatal(err)
	}
	if got := tags(); slices.Contains(got, fallback) || slices.Contains(got, "1.0.0") {
		t.Errorf("tags after retiring 1.0.0: %v: want neither its version tag nor %s", got, fallback)
	}
	if got := versionsOf(entries(t, s)); !slices.Equal(got, []string{"1.0.1"}) {
		t.Errorf("versions: %v", got)
	}
	evs, err := s.RetiredEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Action != catalog.ActionRetire || evs[0].Version != "1.0.0" || !evs[0].Time.Equal(ev.Time) ||
		evs[0].Artifact != testArtifact || evs[0].Reason != ev.Reason || evs[0].Actor != "ops" {
		t.Fatalf("retired events %+v, want %+v", evs, ev)
	}
	// Reading the catalog lists the tombstone's tag but never reads it: it
	// is no version and no stage (RetiredEvents reads it).
	tr.reset()
	entries(t, newStore(t, repo))
	for _, r := range tr.requests() {
		if strings.Contains(r, "/manifests/"+RetiredTagPrefix) {
			t.Errorf("reading the catalog fetched a retire tombstone: %s", r)
		}
	}
	// Again (an interrupted run finished): the first time stays.
	if _, err := s.RetireVersion(ctx, old, retireEvent("1.0.0", testTime(8*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if evs, err := s.RetiredEvents(ctx); err != nil || len(evs) != 1 || !evs[0].Time.Equal(ev.Time) {
		t.Errorf("after a second run: %+v, %v", evs, err)
	}
}

// TestLayoutRetireVersionKeepsItsRetireEvent: the tombstone stays in
// the layout's history file after the version and its blobs are gone, Prune keeps its
// blobs, and the kept versions stay readable by skopeo and umoci.
func TestLayoutRetireVersionKeepsItsRetireEvent(t *testing.T) {
	ctx := context.Background()
	dir, l, s := retireLayout(t)
	ev := retireEvent("1.0.0", testTime(7*time.Hour))
	rm, err := s.RetireVersion(ctx, entryOf(t, entries(t, s), "1.0.0"), ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prune(ctx, rm.Candidates); err != nil {
		t.Fatal(err)
	}
	if got := versionsOf(entries(t, s)); !slices.Equal(got, []string{"1.0.1", "1.0.2", "1.0.3"}) {
		t.Errorf("versions: %v", got)
	}
	evs, err := s.RetiredEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Version != "1.0.0" || !evs[0].Time.Equal(ev.Time) || evs[0].Reason != ev.Reason {
		t.Fatalf("retired events %+v, want %+v", evs, ev)
	}
	// Another artifact's store of the same layout sees none.
	if evs, err := l.Store("other", testRecipe, "other").RetiredEvents(ctx); err != nil || len(evs) != 0 {
		t.Errorf("another artifact's retired events: %+v, %v", evs, err)
	}
	readable(t, dir, testArtifact+":1.0.1", testArtifact+":1.0.3")
}

// TestRegistryRetireVersionRefusedListsNoRetireEvent: a registry that
// refuses DELETE keeps the version; the tombstone written before the
// deletions is not listed while the version is there.
func TestRegistryRetireVersionRefusedListsNoRetireEvent(t *testing.T) {
	repo := refusingRegistry(t)
	push(t, repo, "1.0.0", bakedImage(t, "1.0.0", testTime(0).Format(time.RFC3339)))
	s := newStore(t, repo)
	if _, err := s.RetireVersion(context.Background(), entryOf(t, entries(t, s), "1.0.0"), retireEvent("1.0.0", testTime(time.Hour))); !errors.Is(err, ErrDeleteRefused) {
		t.Fatalf("RetireVersion on a registry refusing DELETE: %v", err)
	}
	if evs, err := s.RetiredEvents(context.Background()); err != nil || len(evs) != 0 {
		t.Errorf("retired events of a version still there: %+v, %v", evs, err)
	}
	if got := versionsOf(entries(t, s)); !slices.Equal(got, []string{"1.0.0"}) {
		t.Errorf("versions: %v (the tombstone must not read as one)", got)
	}
}

// TestUnreferencedBlobs lists the blobs nothing in index.json reaches,
// and no file that is not a blob; a version's blobs and its events' are
// referenced.
func TestUnreferencedBlobs(t *testing.T) {
	ctx := context.Background()
	dir, l, _ := retireLayout(t)
	if got, err := l.UnreferencedBlobs(ctx); err != nil || len(got) != 0 {
		t.Fatalf("a fresh layout has unreferenced blobs: %+v, %v", got, err)
	}
	content := "left by a killed bake"
	h, _, err := v1.SHA256(strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.WriteBlob(h, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", "not-a-digest"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := l.UnreferencedBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Digest != h || got[0].Size != int64(len(content)) || got[0].Modified.IsZero() {
		t.Errorf("unreferenced blobs %+v, want only %s", got, h)
	}
}
