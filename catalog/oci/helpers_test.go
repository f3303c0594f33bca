package oci

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// needPeer skips a test whose real peer (root, a mount) is unavailable, or
// fails it when CI is set.
func needPeer(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and %s", reason)
	}
	t.Skip(reason)
}

func openLayout(t *testing.T, dir string) *Layout {
	t.Helper()
	l, err := OpenLayout(dir)
	if err != nil {
		t.Fatalf("OpenLayout(%s): %v", dir, err)
	}
	return l
}

// randomImage returns a random OCI image (OCI media types, like the images
// bakery bakes) of three layers, carrying annotations on its manifest.
func randomImage(t *testing.T, annotations map[string]string) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for range 3 {
		layer, err := random.Layer(1024, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	if annotations != nil {
		img = mutate.Annotations(img, annotations).(v1.Image)
	}
	return img
}

// dockerImage returns a random image with Docker media types.
func dockerImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func descriptor(t *testing.T, a partial.Describable) v1.Descriptor {
	t.Helper()
	d, err := partial.Descriptor(a)
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

// bakeInto writes img and tags it refName in one committed transaction.
func bakeInto(t *testing.T, l *Layout, refName string, img v1.Image) v1.Descriptor {
	t.Helper()
	ctx := context.Background()
	tx := l.Begin()
	defer tx.Rollback()
	if _, err := tx.WriteImage(ctx, img); err != nil {
		t.Fatalf("WriteImage: %v", err)
	}
	desc := descriptor(t, img)
	if err := tx.Tag(refName, desc); err != nil {
		t.Fatalf("Tag: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return desc
}

// blobFiles lists every file name in blobs/sha256, temporary ones included.
func blobFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// validateLayout checks the layout with go-containerregistry's own reader
// and validator.
func validateLayout(t *testing.T, dir string) {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("layout.ImageIndexFromPath: %v", err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
}

func hashOf(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
