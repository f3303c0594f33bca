package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/bakery-sh/bakery/internal/sbom"
	"github.com/bakery-sh/bakery/recipes"
)

// observed is what an EntryObserver saw of one entry.
type observed struct {
	name, src string
	typ       byte
	content   []byte
}

// observe returns an observer that records every entry and its content.
func observe(seen *[]*observed) EntryObserver {
	return func(h *tar.Header, src string) io.Writer {
		o := &observed{name: h.Name, src: src, typ: h.Typeflag}
		*seen = append(*seen, o)
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		return writerFunc(func(p []byte) (int, error) { o.content = append(o.content, p...); return len(p), nil })
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestEntryObserverSeesWhatTheLayerHolds(t *testing.T) {
	root := t.TempDir()
	writeTestTree(t, root)
	tarPath := filepath.Join(t.TempDir(), "root.tar.gz")
	testTarball(t, tarPath, true,
		&tar.Header{Name: "a.txt", Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "big.bin", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3<<20 + 5},
		&tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "a.txt"},
	)
	for _, l := range []*recipes.Layer{
		dirLayer(root, "/app/"),
		{Source: "root.tar.gz", Path: tarPath, Kind: recipes.SourceTarball, Destination: "/srv/"},
	} {
		t.Run(string(l.Kind), func(t *testing.T) {
			var seen []*observed
			b := buildTest(t, l, WithEntryObserver(observe(&seen)))
			es := readLayer(t, b.Path)
			if len(seen) != len(es) {
				t.Fatalf("observer saw %d entries, the layer holds %d: %q", len(seen), len(es), names(es))
			}
			for i, e := range es {
				o := seen[i]
				if o.name != e.hdr.Name || o.typ != e.hdr.Typeflag {
					t.Errorf("entry %d: observer saw %s (%c), layer has %s (%c)", i, o.name, o.typ, e.hdr.Name, e.hdr.Typeflag)
				}
				if e.hdr.Typeflag == tar.TypeReg && !bytes.Equal(o.content, e.data) {
					t.Errorf("%s: observer got %d bytes, the layer holds %d", e.hdr.Name, len(o.content), len(e.data))
				}
				if (o.src != "") != (l.Kind == recipes.SourceDir && e.hdr.Typeflag == tar.TypeReg) {
					t.Errorf("%s: source %q", e.hdr.Name, o.src)
				}
			}
		})
	}
}

func TestLowerFSKeepsThePackageDatabaseOfTheTopLayer(t *testing.T) {
	status := func(pkg string) []byte {
		return []byte("Package: " + pkg + "\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n")
	}
	fileHdr := func(name string, data []byte) []*tar.Header {
		return []*tar.Header{{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}}
	}
	layerWith := func(t *testing.T, files map[string][]byte, extra ...*tar.Header) v1.Layer {
		var hdrs []*tar.Header
		var datas [][]byte
		for n, d := range files {
			hdrs = append(hdrs, fileHdr(n, d)...)
			datas = append(datas, d)
		}
		return tarLayerWithData(t, hdrs, datas, extra...)
	}
	for _, tc := range []struct {
		name   string
		layers func(t *testing.T) []v1.Layer
		want   string // the package listed, "" for none
	}{
		{"one layer", func(t *testing.T) []v1.Layer {
			return []v1.Layer{layerWith(t, map[string][]byte{sbom.DpkgStatusPath: status("old")})}
		}, "old"},
		{"an upper layer replaces it", func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerWith(t, map[string][]byte{sbom.DpkgStatusPath: status("old")}),
				layerWith(t, map[string][]byte{sbom.DpkgStatusPath: status("new")}, dirHdr("var/lib/dpkg/", 0o755, 0)),
			}
		}, "new"},
		{"a whiteout removes it", func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerWith(t, map[string][]byte{sbom.DpkgStatusPath: status("old")}),
				tarLayer(t, regHdr("var/lib/dpkg/.wh.status")),
			}
		}, ""},
		{"an opaque parent removes it", func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerWith(t, map[string][]byte{sbom.DpkgStatusPath: status("old")}),
				tarLayer(t, regHdr("var/lib/.wh..wh..opq")),
			}
		}, ""},
		{"a folder entry of its parent keeps it", func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerWith(t, map[string][]byte{sbom.DpkgStatusPath: status("old")}),
				tarLayer(t, dirHdr("var/lib/dpkg/", 0o755, 0)),
			}
		}, "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := mutate.AppendLayers(empty.Image, tc.layers(t)...)
			if err != nil {
				t.Fatal(err)
			}
			fs, err := readLowerFS(context.Background(), img, 2, map[v1.Hash][]lowerOp{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range sbom.Packages(fs.pkgdb) {
				got = append(got, p.Name)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("packages %v, want %q", got, tc.want)
			}
		})
	}
}

// tarLayerWithData is tarLayer with content for the regular files hdrs
// (datas in the same order), then extra headers.
func tarLayerWithData(t *testing.T, hdrs []*tar.Header, datas [][]byte, extra ...*tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range extra {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(datas[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}
