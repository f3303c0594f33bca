package oci

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// retireLayout bakes versions 1.0.0..1.0.3 of hello into a new layout and
// promotes 1.0.1 to prod.
func retireLayout(t *testing.T) (string, *Layout, *LayoutStore) {
	t.Helper()
	dir := t.TempDir()
	l := openLayout(t, dir)
	for i, v := range []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"} {
		img := withPlatform(t, bakedImage(t, v, testTime(time.Duration(i)*time.Hour).Format(time.RFC3339)), "amd64")
		bakeInto(t, l, testArtifact+":"+v, img)
	}
	s := l.Store(testArtifact, testRecipe, testArtifact)
	e := entryOf(t, entries(t, s), "1.0.1")
	if err := s.Promote(context.Background(), e, catalog.StageSpec{Name: "prod"}, promoteEvent("1.0.1", "prod", "ops", testTime(5*time.Hour))); err != nil {
		t.Fatal(err)
	}
	return dir, l, s
}

// readable checks that skopeo and umoci read NAME:TAG in the layout.
func readable(t *testing.T, dir string, refs ...string) {
	t.Helper()
	for _, tool := range []string{"skopeo", "umoci"} {
		if _, err := exec.LookPath(tool); err != nil {
			needPeer(t, tool+" is not installed")
		}
	}
	for _, ref := range refs {
		if out, err := exec.Command("skopeo", "inspect", "oci:"+dir+":"+ref).CombinedOutput(); err != nil {
			t.Errorf("skopeo inspect %s: %v: %s", ref, err, out)
		}
		if out, err := exec.Command("umoci", "stat", "--image", dir+":"+ref).CombinedOutput(); err != nil {
			t.Errorf("umoci stat %s: %v: %s", ref, err, out)
		}
	}
}

// TestRemoveVersionAndPrune removes two versions with their events and
// prunes their blobs: the staged and the newest version stay readable by
// skopeo and umoci, nothing dangles, and a staged version is refused.
func TestRemoveVersionAndPrune(t *testing.T) {
	ctx := context.Background()
	dir, l, s := retireLayout(t)
	// An event on a version to remove, so that its referrers go too.
	if err := s.Revoke(ctx, entryOf(t, entries(t, s), "1.0.0"), revokeEvent(catalog.ActionRevoke, "1.0.0", "cve", testTime(6*time.Hour))); err != nil {
		t.Fatal(err)
	}
	before := len(blobFiles(t, dir))
	if _, err := s.RemoveVersion(ctx, entryOf(t, entries(t, s), "1.0.1")); err == nil {
		t.Fatal("RemoveVersion removed the version in prod")
	}
	var total int
	for _, v := range []string{"1.0.0", "1.0.2"} {
		rm, err := s.RemoveVersion(ctx, entryOf(t, entries(t, s), v))
		if err != nil {
			t.Fatal(err)
		}
		if rm.Entries == 0 || len(rm.Candidates) == 0 {
			t.Fatalf("RemoveVersion %s removed %+v", v, rm)
		}
		rep, err := l.Prune(ctx, rm.Candidates)
		if err != nil {
			t.Fatal(err)
		}
		total += rep.Blobs
	}
	if got := versionsOf(entries(t, s)); !slices.Equal(got, []string{"1.0.1", "1.0.3"}) {
		t.Errorf("versions after removal: %v", got)
	}
	descs, err := l.Descriptors()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		if subj := d.Annotations[AnnotationSubject]; subj != "" {
			if subj != entryOf(t, entries(t, s), "1.0.1").Digest {
				t.Errorf("an event of a removed version is left: %v", d.Annotations)
			}
		}
	}
	after := len(blobFiles(t, dir))
	if after >= before || before-after != total {
		t.Errorf("blobs: %d before, %d after, %d reported deleted", before, after, total)
	}
	if keep := l.referenced(ctx); len(keep) != after {
		t.Errorf("%d blobs referenced, %d in the layout: something dangles or is left", len(keep), after)
	}
	validateLayout(t, dir)
	readable(t, dir, "hello:1.0.1", "hello:1.0.3", "hello:prod")
	// Idempotent: a version already gone is no error and removes nothing.
	rm, err := s.RemoveVersion(ctx, catalog.Entry{Image: catalog.Image{Ref: catalog.Ref{Recipe: testRecipe, Version: "1.0.0"}}})
	if err != nil || rm.Entries != 0 {
		t.Errorf("RemoveVersion of a removed version: %+v, %v", rm, err)
	}
}

// TestPruneCancelled leaves a valid layout when its context is cancelled:
// the index is committed, the blobs stay unreferenced, and a second prune
// finishes.
func TestPruneCancelled(t *testing.T) {
	dir, l, s := retireLayout(t)
	rm, err := s.RemoveVersion(context.Background(), entryOf(t, entries(t, s), "1.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	before := len(blobFiles(t, dir))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Prune(ctx, rm.Candidates); !errors.Is(err, context.Canceled) {
		t.Fatalf("Prune with a cancelled context: %v", err)
	}
	if got := len(blobFiles(t, dir)); got != before {
		t.Errorf("a cancelled prune deleted %d blobs", before-got)
	}
	validateLayout(t, dir)
	readable(t, dir, "hello:1.0.3", "hello:prod")
	rep, err := l.Prune(context.Background(), rm.Candidates)
	if err != nil || rep.Blobs == 0 {
		t.Fatalf("second prune: %+v, %v", rep, err)
	}
	validateLayout(t, dir)
	readable(t, dir, "hello:1.0.0", "hello:1.0.1", "hello:1.0.3", "hello:prod")
}

// TestPruneSparesUncommittedBake: a bake whose transaction has written its
// blobs but not committed yet while a version is removed and pruned still
// commits, and its image is complete.
func TestPruneSparesUncommittedBake(t *testing.T) {
	ctx := context.Background()
	dir, l, s := retireLayout(t)
	tx := l.Begin()
	defer tx.Rollback()
	img := withPlatform(t, bakedImage(t, "1.0.4", testTime(7*time.Hour).Format(time.RFC3339)), "amd64")
	if _, err := tx.WriteImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	rm, err := s.RemoveVersion(ctx, entryOf(t, entries(t, s), "1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prune(ctx, rm.Candidates); err != nil {
		t.Fatal(err)
	}
	if err := tx.Tag("hello:1.0.4", descriptor(t, img)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the bake in progress failed to commit after a prune: %v", err)
	}
	validateLayout(t, dir)
	readable(t, dir, "hello:1.0.4", "hello:prod")
}
