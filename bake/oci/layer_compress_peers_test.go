package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bakery-sh/bakery/recipes"
)

// compressionRecipe returns a recipe and its scratch container with one
// layer of the folder src at /data/, compressed with c.
func compressionRecipe(src string, c recipes.Compression) (*recipes.Recipe, *recipes.Container) {
	ct := &recipes.Container{
		Name: "img", Base: "scratch", BaseKind: recipes.BaseScratch, Compression: c,
		Layers: []*recipes.Layer{{Source: "tree/", Path: src, Kind: recipes.SourceDir, Destination: "/data/"}},
	}
	r := &recipes.Recipe{Name: "r", Version: "1.0.0", Stages: []string{"dev"}, Containers: []*recipes.Container{ct}}
	return r, ct
}

// compressionTree writes a folder with a random file (stored), a text
// file (deflated) and a small file, and returns it with their content.
func compressionTree(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	files := map[string][]byte{
		"random.bin": randomData(2<<20+3, 12),
		"notes.txt":  textData(1<<20 + 17),
		"small.txt":  []byte("hello\n"),
	}
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, files
}

func TestBakeKeyNamesTheCompression(t *testing.T) {
	src, _ := compressionTree(t)
	b, err := NewBaker(WithHome(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	key := func(c recipes.Compression) string {
		t.Helper()
		r, ct := compressionRecipe(src, c)
		p, err := b.Prepare(context.Background(), r, ct)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Key(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		return p.Key
	}
	gz, zs := key(recipes.CompressionGzip), key(recipes.CompressionZstd)
	if gz == zs {
		t.Fatalf("gzip and zstd give the same bake key %s", gz)
	}
	if again := key(recipes.CompressionGzip); again != gz {
		t.Errorf("the same recipe gives keys %s and %s", gz, again)
	}
	if compressionFormat(recipes.CompressionGzip) == compressionFormat(recipes.CompressionZstd) {
		t.Error("compressionFormat does not tell gzip from zstd")
	}
	if compressionFormat("") != compressionFormat(recipes.CompressionGzip) {
		t.Error("the default compression is not gzip")
	}
}

// TestPeersReadCompressedImages bakes an image with each compression
// into a layout and reads it back with skopeo (which checks every
// digest while copying) and umoci (which unpacks the filesystem).
func TestPeersReadCompressedImages(t *testing.T) {
	skopeo, umoci := needTool(t, "skopeo"), needTool(t, "umoci")
	src, files := compressionTree(t)
	for _, c := range []recipes.Compression{recipes.CompressionGzip, recipes.CompressionZstd} {
		t.Run(string(c), func(t *testing.T) {
			home := t.TempDir()
			b, err := NewBaker(WithHome(home))
			if err != nil {
				t.Fatal(err)
			}
			r, ct := compressionRecipe(src, c)
			ctx := context.Background()
			p, err := b.Prepare(ctx, r, ct)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Build(ctx, p); err != nil {
				t.Fatal(err)
			}
			ref := home + ":img:1.0.0"

			out, err := exec.Command(skopeo, "inspect", "--raw", "oci:"+ref).Output()
			if err != nil {
				t.Fatalf("skopeo inspect: %v", err)
			}
			var m struct {
				Layers []struct{ MediaType string }
			}
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			want := "application/vnd.oci.image.layer.v1.tar+" + string(c)
			if len(m.Layers) != 1 || m.Layers[0].MediaType != want {
				t.Errorf("manifest layers %+v, want one %s", m.Layers, want)
			}

			dst := filepath.Join(t.TempDir(), "copy")
			if out, err := exec.Command(skopeo, "copy", "oci:"+ref, "oci:"+dst+":img").CombinedOutput(); err != nil {
				t.Fatalf("skopeo copy: %v\n%s", err, out)
			}
			out, err = exec.Command(skopeo, "inspect", "--raw", "oci:"+dst+":img").Output()
			if err != nil {
				t.Fatalf("skopeo inspect of the copy: %v", err)
			}
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("the copy's manifest does not keep the %s layer: %s", want, out)
			}

			unpack := ref
			if c == recipes.CompressionZstd {
				// umoci 0.4 (Debian 12) refuses tar+zstd layers: skopeo
				// decompresses them into gzip layers, and umoci unpacks
				// those after checking each against the config's diffID,
				// which bakery computed from the tar it compressed.
				unpack = filepath.Join(t.TempDir(), "gzip") + ":img"
				if out, err := exec.Command(skopeo, "copy", "--dest-compress-format", "gzip", "oci:"+ref, "oci:"+unpack).CombinedOutput(); err != nil {
					t.Fatalf("skopeo copy --dest-compress-format gzip: %v\n%s", err, out)
				}
			}
			bundle := filepath.Join(t.TempDir(), "bundle")
			if out, err := exec.Command(umoci, "unpack", "--rootless", "--image", unpack, bundle).CombinedOutput(); err != nil {
				t.Fatalf("umoci unpack: %v\n%s", err, out)
			}
			for name, data := range files {
				got, err := os.ReadFile(filepath.Join(bundle, "rootfs", "data", name))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Errorf("/data/%s: umoci unpacked %d bytes that differ from the %d of the source", name, len(got), len(data))
				}
			}
		})
	}
}

func TestPushZstdImageToRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	src, files := compressionTree(t)
	r, ct := compressionRecipe(src, recipes.CompressionZstd)
	ct.Repository = host + "/team/img"
	b, err := NewBaker(WithHome(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := b.Prepare(ctx, r, ct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(ctx, p); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/team/img:1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v, %v", layers, err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayerZStd {
		t.Errorf("pushed layer media type %s", mt)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want, ok := files[strings.TrimPrefix(h.Name, "data/")]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		got, err := io.ReadAll(tr)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes (%v), want the %d of the source", h.Name, len(got), err, len(want))
		}
		seen++
	}
	if seen != len(files) {
		t.Errorf("found %d of the %d files in the pushed layer", seen, len(files))
	}
}
