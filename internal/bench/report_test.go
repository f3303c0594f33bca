package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/bakery-sh/bakery/recipes"
)

// layerOf returns a tar of files under prefix/, and the sha256 of each file.
func layerOf(t *testing.T, prefix string, files map[string]string) ([]byte, map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	sums := map[string]string{}
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: prefix + "/" + name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, data); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(data))
		sums[name] = hex.EncodeToString(sum[:])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sums
}

func TestVerifyLayerReadsGzipAndZstd(t *testing.T) {
	layer, sums := layerOf(t, "data", map[string]string{"a.txt": "alpha", "b/c.bin": "gamma"})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer)
	zw.Close()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two frames, as bakery writes one per block.
	zs := enc.EncodeAll(layer[:700], nil)
	zs = enc.EncodeAll(layer[700:], zs)
	for name, blob := range map[string][]byte{"tar": layer, "gzip": gz.Bytes(), "zstd": zs} {
		msg, err := verifyLayer(bytes.NewReader(blob), "data", sums)
		if err != nil || !strings.Contains(msg, "all 2 files") {
			t.Errorf("%s: %q, %v", name, msg, err)
		}
	}
	changed := map[string]string{"a.txt": sums["a.txt"], "b/c.bin": sums["a.txt"]}
	if _, err := verifyLayer(bytes.NewReader(zs), "data", changed); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("a zstd layer with other content passed: %v", err)
	}
}

func TestRecipeTextNamesTheCompression(t *testing.T) {
	for i, c := range []recipes.Compression{recipes.CompressionGzip, recipes.CompressionZstd, recipes.CompressionZstd} {
		noSBOM := i == 2
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "tree"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tree", "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "bench.bake.hcl")
		if err := os.WriteFile(p, []byte(recipeText(string(c), noSBOM)), 0o644); err != nil {
			t.Fatal(err)
		}
		r, diags := recipes.NewLoader().Load(p, recipes.Options{})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", c, diags)
		}
		if got := r.Containers[0].Compression; got != c {
			t.Errorf("recipe for %s compresses with %s", c, got)
		}
		if got := r.Containers[0].NoSBOM; got != noSBOM {
			t.Errorf("recipe for %s, sbom off %v: NoSBOM = %v", c, noSBOM, got)
		}
	}
}

func TestEvaluateChecksZstdAgainstCrane(t *testing.T) {
	s := func(key string, d time.Duration) *series {
		return &series{Key: key, Samples: []sample{{Wall: d, MaxRSSKiB: 1024}}}
	}
	all := map[string]*series{
		mFull: s(mFull, 300*time.Millisecond), mZstd: s(mZstd, 250*time.Millisecond),
		mFullNoSBOM: s(mFullNoSBOM, 200*time.Millisecond), mZstdNoSBOM: s(mZstdNoSBOM, 190*time.Millisecond),
		mNoop: s(mNoop, 100*time.Millisecond), mSHA: s(mSHA, 100*time.Millisecond), mCrane: s(mCrane, time.Second),
		mFolder1: s(mFolder1, time.Second), mFolder4: s(mFolder4, 600*time.Millisecond),
	}
	r := &report{Bakery: bakeryFigures{LayerBytes: 100}, BakeryZstd: bakeryFigures{LayerBytes: 110}, Crane: craneFigures{LayerBytes: 100}}
	r.evaluate(all)
	got := map[string]check{}
	for _, c := range r.Checks {
		got[c.Name] = c
	}
	if c := got["bakery full / crane append"]; c.Value != 0.3 || !c.Pass {
		t.Errorf("gzip check %+v, want 0.3 passing", c)
	}
	if c := got["bakery full zstd / crane append"]; c.Value != 0.25 || c.Pass {
		t.Errorf("zstd check %+v, want 0.25 missing its goal", c)
	}
	if c := got["bakery full zstd, sbom = false / crane append"]; c.Value != 0.19 || !c.Pass {
		t.Errorf("zstd without SBOM check %+v, want 0.19 passing", c)
	}
	if c := got["layer size bakery zstd / crane"]; c.Value != 1.1 || c.Pass {
		t.Errorf("zstd size check %+v, want 1.1 missing its goal", c)
	}
	if c := got["folder bake --parallel 4 / --parallel 1"]; c.Value != 0.6 || !c.Pass {
		t.Errorf("folder check %+v, want 0.6 passing", c)
	}
}
