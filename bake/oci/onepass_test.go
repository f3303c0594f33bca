package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// twoPlatformBase writes an OCI layout holding an index of linux/amd64
// and linux/arm64 images whose /data folders differ (amd64 has one owned
// by uid 5), so a layer into /data/ is built once per platform.
func twoPlatformBase(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		if arch == "amd64" {
			var err error
			if img, err = mutate.AppendLayers(img, tarLayer(t, dirHdr("data/", 0o700, 5))); err != nil {
				t.Fatal(err)
			}
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture = "linux", arch
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{MediaType: types.OCIManifestSchema1, Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{catalog.AnnotationRefName: "base"})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// onePassRecipe has a file layer, a folder layer (nested folders, a
// symlink, random and text files) and a tarball layer on base.
func onePassRecipe(t *testing.T, base string) (*recipes.Recipe, *recipes.Container) {
	t.Helper()
	src, _ := compressionTree(t)
	if err := os.MkdirAll(filepath.Join(src, "sub", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "deeper", "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../notes.txt", filepath.Join(src, "sub", "notes")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "app.conf")
	if err := os.WriteFile(file, []byte("port = 8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "etc/motd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "extra.tar")
	if err := os.WriteFile(archive, tb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ct := &recipes.Container{
		Name: "img", Base: "oci:" + base + ":base", BaseKind: recipes.BaseLayout, BaseLayoutPath: base, BaseLayoutRef: "base",
		Platforms: []string{"linux/amd64", "linux/arm64"}, Compression: recipes.CompressionZstd,
		Layers: []*recipes.Layer{
			{Source: "app.conf", Path: file, Kind: recipes.SourceFile, Destination: "/etc/app/"},
			{Source: "tree/", Path: src, Kind: recipes.SourceDir, Destination: "/data/"},
			{Source: "extra.tar", Path: archive, Kind: recipes.SourceTarball, Destination: "/"},
		},
	}
	r := &recipes.Recipe{Name: "r", Version: "1.0.0", Stages: []string{"dev"}, Containers: []*recipes.Container{ct}}
	return r, ct
}

// stepNames records the names of the steps a bake starts.
type stepNames struct {
	progress.Reporter
	mu    sync.Mutex
	names []string
}

func (s *stepNames) Step(name string) progress.Step {
	s.mu.Lock()
	s.names = append(s.names, name)
	s.mu.Unlock()
	return s.Reporter.Step(name)
}

// A bake whose key is not known yet (no image at its target) computes it
// while it builds the layers, reading each input once: the key must be
// the one HashInputs computes before a bake, or the next bake of the same
// inputs would not find its image up to date.
func TestBuildComputesTheKeyHashInputsWould(t *testing.T) {
	base := twoPlatformBase(t)
	r, ct := onePassRecipe(t, base)
	ctx := context.Background()
	steps := &stepNames{Reporter: progress.Discard()}
	b, err := NewBaker(WithHome(t.TempDir()), WithProgress(steps))
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.Prepare(ctx, r, ct)
	if err != nil {
		t.Fatal(err)
	}
	img, err := b.Build(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range steps.names {
		if strings.Contains(n, "hash inputs") {
			t.Errorf("a bake with nothing to compare its key with hashed its inputs before building: step %q", n)
		}
	}
	// The folder layer was built twice (the bases differ at /data).
	builds := 0
	for _, n := range steps.names {
		if strings.Contains(n, "tree/ → /data/") {
			builds++
		}
	}
	if builds != 2 {
		t.Fatalf("the folder layer was built %d times, want once per platform: steps %q", builds, steps.names)
	}

	// The next version in the same layout, whose SBOM digest cache now
	// has entries, hashes first, so that unchanged files take their
	// digests from the cache.
	steps.names = nil
	r2 := *r
	r2.Version = "1.0.1"
	pn, err := b.Prepare(ctx, &r2, ct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(ctx, pn); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(steps.names, func(n string) bool { return strings.Contains(n, "hash inputs") }) {
		t.Errorf("a bake into a layout with cached file digests did not hash its inputs first: steps %q", steps.names)
	}

	b2, err := NewBaker(WithHome(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := b2.Prepare(ctx, r, ct)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Key(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if p.Key == "" || p.Key != p2.Key {
		t.Fatalf("the key computed while building is %q, HashInputs computes %q", p.Key, p2.Key)
	}
	if img.BakeKey != p2.Key {
		t.Errorf("the image records bake key %q, want %q", img.BakeKey, p2.Key)
	}

	// Any input change changes both keys alike.
	if err := os.WriteFile(filepath.Join(ct.Layers[1].Path, "sub", "deeper", "run.sh"), []byte("#!/bin/sh\necho bye\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p3, err := b2.Prepare(ctx, r, ct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Build(ctx, p3); err != nil {
		t.Fatal(err)
	}
	p4, err := b.Prepare(ctx, r, ct)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Key(ctx, p4); err != nil {
		t.Fatal(err)
	}
	if p3.Key == p.Key || p3.Key != p4.Key {
		t.Errorf("after an input changed: key while building %q, before %q, HashInputs %q", p3.Key, p.Key, p4.Key)
	}
}
