package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bakery-sh/bakery/recipes"
)

// tarLayer returns a layer holding the headers (regular files empty).
func tarLayer(t *testing.T, hdrs ...*tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
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

func dirHdr(name string, mode int64, uid int) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode, Uid: uid, Gid: uid, ModTime: time.Unix(1600000000, 0)}
}

func regHdr(name string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}
}

// describe lists a lowerFS as "name dir MODE UID" and "name -> target".
func describe(fs *lowerFS) []string {
	var out []string
	for n, e := range fs.entries {
		if e.dir != nil {
			out = append(out, fmt.Sprintf("%s dir %o %d", n, e.dir.mode, e.dir.uid))
		} else {
			out = append(out, n+" -> "+e.link)
		}
	}
	slices.Sort(out)
	return out
}

func TestReadLowerFSAppliesLayersAndWhiteouts(t *testing.T) {
	img, err := mutate.AppendLayers(empty.Image,
		tarLayer(t,
			dirHdr("./tmp/", 0o1777, 0),
			dirHdr("home/", 0o755, 0),
			dirHdr("/home/app/", 0o700, 1000),
			dirHdr("home/app/.cache/", 0o700, 1000),
			dirHdr("opt/", 0o755, 0),
			dirHdr("opt/old/", 0o700, 0),
			dirHdr("opt/old/sub/", 0o700, 0),
			dirHdr("srv/", 0o755, 0),
			dirHdr("srv/data/", 0o700, 0),
			dirHdr("var/", 0o755, 0),
			dirHdr("var/run/", 0o755, 0),
			dirHdr("lib/", 0o755, 0),
			&tar.Header{Name: "../escape/", Typeflag: tar.TypeDir, Mode: 0o755},
			dirHdr("implicit/sub/", 0o700, 0), // its parent has no entry of its own
			dirHdr("gone/sub/", 0o700, 0),
		),
		tarLayer(t,
			regHdr("opt/.wh.old"),            // removes opt/old and what is under it
			regHdr("srv/.wh..wh..opq"),       // empties srv, keeps it
			dirHdr("srv/new/", 0o750, 3),     // added by the same layer
			dirHdr("home/app/", 0o750, 1000), // a folder again: its new metadata
			&tar.Header{Name: "var/run", Typeflag: tar.TypeSymlink, Linkname: "/run"}, // a symlink replaces a folder
			regHdr("lib"),          // a file replaces a folder
			regHdr(".wh.implicit"), // removes what is under an unlisted folder
			regHdr("gone"),         // a file replaces an unlisted folder
		),
	)
	if err != nil {
		t.Fatal(err)
	}
	cache := map[v1.Hash][]lowerOp{}
	fs, err := readLowerFS(context.Background(), img, 2, cache)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"home dir 755 0",
		"home/app dir 750 1000",
		"home/app/.cache dir 700 1000",
		"opt dir 755 0",
		"srv dir 755 0",
		"srv/new dir 750 3",
		"tmp dir 1777 0",
		"var dir 755 0",
		"var/run -> /run",
	}
	if got := describe(fs); !slices.Equal(got, want) {
		t.Errorf("lower filesystem:\n got %q\nwant %q", got, want)
	}
	if len(cache) != 2 {
		t.Errorf("cache holds %d layers, want 2", len(cache))
	}
	// A second image sharing the layers (another platform) reads them
	// from the cache: here they cannot be read at all.
	layers, _ := img.Layers()
	unreadable, err := mutate.AppendLayers(empty.Image, unreadableLayer{layers[0]}, unreadableLayer{layers[1]})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := readLowerFS(context.Background(), unreadable, 2, cache); err != nil || !slices.Equal(describe(again), want) {
		t.Errorf("from the cache: %q, %v", describe(again), err)
	}
	if _, err := readLowerFS(context.Background(), unreadable, 2, map[v1.Hash][]lowerOp{}); err == nil || !strings.Contains(err.Error(), "reading the base's layer") {
		t.Errorf("reading an unreadable layer: %v", err)
	}
}

// unreadableLayer is a layer whose content cannot be read.
type unreadableLayer struct{ v1.Layer }

func (unreadableLayer) Uncompressed() (io.ReadCloser, error) { return nil, errors.New("unreadable") }
func (unreadableLayer) Compressed() (io.ReadCloser, error)   { return nil, errors.New("unreadable") }

func TestBuildLayerTarballKeepsFoldersBelowIt(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "root.tar")
	testTarball(t, p, true,
		&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o700},
		&tar.Header{Name: "tmp/cache/", Typeflag: tar.TypeDir, Mode: 0o700},
		&tar.Header{Name: "tmp/cache/x", Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "home/app/y", Typeflag: tar.TypeReg, Mode: 0o644},
	)
	l := &recipes.Layer{Source: "root.tar", Path: p, Kind: recipes.SourceTarball, Destination: "/srv/root/", UID: ptr(7), GID: ptr(7)}

	base := newLowerFS()
	mt := time.Unix(1600000000, 0)
	for _, op := range []lowerOp{
		{kind: 'd', name: "srv", dir: &dirMeta{mode: 0o755, mtime: mt}},
		{kind: 'd', name: "srv/root", dir: &dirMeta{mode: 0o750, uid: 1, gid: 2, uname: "x", mtime: mt, xattrs: map[string]string{"SCHILY.xattr.user.k": "v"}}},
		{kind: 'd', name: "srv/root/tmp", dir: &dirMeta{mode: 0o1777, mtime: mt}},
	} {
		base.apply(op)
	}
	es, err := plannedEntries(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.name)
	}
	if want := []string{"srv/", "srv/root/", "srv/root/tmp/", "srv/root/tmp/cache/", "srv/root/tmp/cache/x", "srv/root/home/app/y"}; !slices.Equal(names, want) {
		t.Errorf("planned entries %q, want %q", names, want)
	}
	kept, err := planKept(l, es, base, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	b := buildTest(t, l, withKept(kept))
	var got []string
	for _, e := range readLayer(t, b.Path) {
		h := e.hdr
		got = append(got, fmt.Sprintf("%s %o %d:%d %s %d %v", h.Name, h.Mode, h.Uid, h.Gid, h.Uname, h.ModTime.Unix(), h.PAXRecords["SCHILY.xattr.user.k"]))
	}
	want := []string{
		"srv/ 755 0:0  1600000000 ",
		"srv/root/ 750 1:2 x 1600000000 v",
		"srv/root/tmp/ 1777 0:0  1600000000 ",
		fmt.Sprintf("srv/root/tmp/cache/ 755 7:7  %d ", testEpoch.Unix()),
		fmt.Sprintf("srv/root/tmp/cache/x 644 7:7  %d ", testEpoch.Unix()),
		fmt.Sprintf("srv/root/home/app/y 644 7:7  %d ", testEpoch.Unix()),
	}
	if !slices.Equal(got, want) {
		t.Errorf("layer:\n got %q\nwant %q", got, want)
	}
	// The layer's new folders are now below the next layer.
	if e, _ := base.get("srv/root/tmp/cache"); e.dir == nil || e.dir.uid != 7 || e.dir.mode != 0o755 {
		t.Errorf("after the layer, srv/root/tmp/cache = %+v, want a folder 0755 owned by 7", e)
	}
	if _, ok := base.get("srv/root/tmp/cache/x"); ok {
		t.Error("a file was recorded in the lower filesystem")
	}
}

func TestPlanKeptRefusesAFolderOverASymlink(t *testing.T) {
	fs := newLowerFS()
	fs.apply(lowerOp{kind: 'd', name: "usr", dir: &dirMeta{mode: 0o755}})
	fs.apply(lowerOp{kind: 'l', name: "lib", link: "usr/lib"})
	l := &recipes.Layer{Source: "x.so", Kind: recipes.SourceFile, Destination: "/lib/x/"}
	_, err := planKept(l, layerParents("lib/x", 0, 0), fs, testEpoch)
	if err == nil || !strings.Contains(err.Error(), "/lib is a symlink to usr/lib") {
		t.Fatalf("planKept over a symlink: %v", err)
	}
}

func TestOCIImageRelabelsDockerLayersKeepingBytes(t *testing.T) {
	l := tarLayer(t, dirHdr("tmp/", 0o1777, 0))
	img := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	img, err := mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.DockerLayer, History: v1.History{CreatedBy: "base"}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ociImage(img)
	if err != nil {
		t.Fatal(err)
	}
	m, err := out.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := l.Digest()
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || m.Layers[0].MediaType != types.OCILayer || m.Layers[0].Digest != d {
		t.Errorf("manifest %s config %s layer %s %s; want OCI types and digest %s", m.MediaType, m.Config.MediaType, m.Layers[0].MediaType, m.Layers[0].Digest, d)
	}
	layers, _ := out.Layers()
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer reports %s, want %s", mt, types.OCILayer)
	}
	cfg, _ := out.ConfigFile()
	if len(cfg.History) != 1 || cfg.History[0].CreatedBy != "base" || len(cfg.RootFS.DiffIDs) != 1 {
		t.Errorf("config history %+v diffIDs %v: want the base's", cfg.History, cfg.RootFS.DiffIDs)
	}

	// A layer type with no OCI name is refused by name.
	bad, err := mutate.Append(empty.Image, mutate.Addendum{Layer: l, MediaType: "application/x-custom"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ociImage(bad); err == nil || !strings.Contains(err.Error(), "application/x-custom, which an OCI image cannot hold") {
		t.Errorf("ociImage with a custom layer type: %v", err)
	}
}
