package oci

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bakery-sh/bakery/catalog"
)

// noNetwork is a transport that refuses every request: a fuzzed history
// may name any stage repository, and fuzzing must not reach out.
type noNetwork struct{}

func (noNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, errors.New("no network while fuzzing")
}

// fuzzLayout makes, in dir, a layout with two versions of hello
// (recipe web): 1.0.0 promoted to dev, revoked and unrevoked, 1.1.0
// retired. The images are the same bytes on every run, so seeds that
// name their digests stay valid.
func fuzzLayout(dir string) error {
	ctx := context.Background()
	l, err := OpenLayout(dir)
	if err != nil {
		return err
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		if img, err = mutate.AppendLayers(img, static.NewLayer([]byte("layer of "+v), types.OCILayer)); err != nil {
			return err
		}
		img = mutate.Annotations(img, map[string]string{
			catalog.AnnotationRecipe: testRecipe, catalog.AnnotationArtifact: testArtifact,
			catalog.AnnotationVersion: v, catalog.AnnotationCreated: "2025-02-01T00:00:00Z",
			catalog.AnnotationBakeKey: "sha256:key-" + v,
		}).(v1.Image)
		tx := l.Begin()
		if _, err := tx.WriteImage(ctx, img); err != nil {
			return err
		}
		d, err := partial.Descriptor(img)
		if err != nil {
			return err
		}
		if err := tx.Tag(testArtifact+":"+v, *d); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	s := l.Store(testArtifact, testRecipe, testArtifact)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	es, err := s.Entries(ctx)
	if err != nil || len(es) != 2 {
		return errors.Join(err, errors.New("want two versions"))
	}
	ev := func(action, stage string, d time.Duration) catalog.Event {
		return catalog.Event{Time: at.Add(d), Action: action, Stage: stage, Actor: "ann", Reason: "why; not"}
	}
	if err := s.Promote(ctx, es[0], catalog.StageSpec{Name: "dev"}, ev(catalog.ActionPromote, "dev", 0)); err != nil {
		return err
	}
	if err := s.Revoke(ctx, es[0], ev(catalog.ActionRevoke, "", time.Minute)); err != nil {
		return err
	}
	if err := s.Unrevoke(ctx, es[0], ev(catalog.ActionUnrevoke, "", 2*time.Minute)); err != nil {
		return err
	}
	_, err = s.RetireVersion(ctx, es[1], ev(catalog.ActionRetire, "", 3*time.Minute))
	return err
}

// FuzzLayoutIndex reads a layout whose index.json and
// bakery-history.json hold arbitrary bytes (the other files are those
// of a real layout, so mutated seeds still name its blobs) the ways
// bakery does: open, descriptors, history, find, the store's entries,
// the retired versions and the unreferenced blobs. Nothing may panic,
// and an error names the file at fault (or, from the store, the layout).
func FuzzLayoutIndex(f *testing.F) {
	tmpl := f.TempDir()
	if err := fuzzLayout(tmpl); err != nil {
		f.Fatal(err)
	}
	index, err := os.ReadFile(filepath.Join(tmpl, indexFile))
	if err != nil {
		f.Fatal(err)
	}
	history, err := os.ReadFile(filepath.Join(tmpl, historyFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(index, history)
	f.Add(index, []byte(nil))
	f.Add([]byte(emptyIndex), history)
	f.Add([]byte(`{"manifests":[{"digest":"sha256:zz","annotations":{"org.opencontainers.image.ref.name":"hello:1.0.0"}}]}`), []byte(`[]`))
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","annotations":{"org.opencontainers.image.ref.name":"hello:1.0.0"}}]}`), []byte(`{"manifests":null}`))
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha512:00","annotations":{"org.opencontainers.image.ref.name":"hello:"}}]}`), []byte(`{"manifests":[{"annotations":{"dev.bakery.subject":"x","dev.bakery.event.action":"promote","dev.bakery.event.time":"2026-01-02T03:04:05Z","dev.bakery.event.repository":"example.invalid/r"}}]}`))
	f.Add([]byte(""), []byte("{"))
	f.Add([]byte("null"), []byte("null"))

	f.Fuzz(func(t *testing.T, index, history []byte) {
		dir := t.TempDir()
		for name, b := range map[string][]byte{ociLayoutFile: []byte(ociLayoutContent), indexFile: index, historyFile: history} {
			if name == historyFile && len(b) == 0 {
				continue // no history yet
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Blobs are read only: share the template's.
		if err := os.Symlink(filepath.Join(tmpl, blobsDir), filepath.Join(dir, blobsDir)); err != nil {
			t.Fatal(err)
		}
		names := func(what string, err error, file string) {
			t.Helper()
			if err != nil && !strings.Contains(err.Error(), file) {
				t.Errorf("%s: error %q does not name %s", what, err, file)
			}
		}
		indexPath, historyPath := filepath.Join(dir, indexFile), filepath.Join(dir, historyFile)
		l, err := OpenLayout(dir)
		names("OpenLayout", err, indexPath)
		if err != nil {
			return
		}
		_, err = l.Descriptors()
		names("Descriptors", err, indexPath)
		_, err = l.History()
		names("History", err, historyPath)
		_, err = l.Find(testArtifact + ":1.0.0")
		names("Find", err, indexPath)
		ctx := context.Background()
		s := l.Store(testArtifact, testRecipe, testArtifact, WithTransport(noNetwork{}))
		es, err := s.Entries(ctx)
		names("Entries", err, dir)
		for _, e := range es {
			if e.Recipe != testRecipe || e.Artifact != testArtifact || e.Version == "" {
				t.Errorf("entry %+v is not a version of %s", e.Image, testArtifact)
			}
		}
		_, err = s.RetiredEvents(ctx)
		names("RetiredEvents", err, dir)
		_, err = l.UnreferencedBlobs(ctx)
		names("UnreferencedBlobs", err, dir)
	})
}
