package oci

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestLayoutMovesLegacyEventsOutOfTheIndex: a layout written by an older
// bakery lists its events in index.json; they are read from there, and
// the next change bakery commits moves them to the history file, so that
// index.json lists images only.
func TestLayoutMovesLegacyEventsOutOfTheIndex(t *testing.T) {
	dir := t.TempDir()
	l := openLayout(t, dir)
	imgs := bakeVersions(t, l, "1.0.0", "1.1.0")
	s := layoutStore(l)
	mustPromote(t, s, "1.0.0", catalog.StageSpec{Name: "dev"}, "ann", testTime(0))
	// Make it the old layout: the history back in index.json.
	hist, err := l.History()
	if err != nil || len(hist) != 1 {
		t.Fatalf("history = %v, %v", hist, err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "index.json")), &im); err != nil {
		t.Fatal(err)
	}
	im.Manifests = append(im.Manifests, hist...)
	b, err := json.Marshal(im)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, historyFile)); err != nil {
		t.Fatal(err)
	}

	// Read as it is.
	e := entryOf(t, entries(t, s), "1.0.0")
	if got, want := actions(e), []string{"bake", "promote:dev"}; !slices.Equal(got, want) {
		t.Fatalf("history read from the old index = %v, want %v", got, want)
	}
	// The next change moves the old events over.
	mustPromote(t, s, "1.1.0", catalog.StageSpec{Name: "dev"}, "bob", testTime(time.Hour))
	descs, err := l.Descriptors()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		if isEventEntry(d) {
			t.Errorf("index.json still lists event %v", d.Annotations)
		}
	}
	if got, want := actions(entryOf(t, entries(t, s), "1.0.0")), []string{"bake", "promote:dev", "demote:dev"}; !slices.Equal(got, want) {
		t.Errorf("1.0.0 history after the move = %v, want %v", got, want)
	}
	if keep := l.referenced(context.Background()); !keep[hist[0].Digest] || !keep[mustDigest(t, imgs["1.1.0"])] {
		t.Errorf("the moved event's blob or the image is no longer referenced")
	}
	validateLayout(t, dir)
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
