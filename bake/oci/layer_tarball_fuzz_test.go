package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/bakery-sh/bakery/recipes"
)

// fuzzTar returns the bytes of an archive with hdrs; a regular entry gets
// its name as content. Headers the writer refuses are left out.
func fuzzTar(compress bool, hdrs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		var data []byte
		if h.Typeflag == tar.TypeReg {
			data = []byte(h.Name)
			h.Size = int64(len(data))
		}
		if tw.WriteHeader(h) == nil {
			tw.Write(data)
		}
	}
	tw.Close()
	if !compress {
		return buf.Bytes()
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(buf.Bytes())
	zw.Close()
	return z.Bytes()
}

// FuzzTarballLayer builds a layer from arbitrary archive bytes. Hostile
// archives (names with "..", absolute names, huge headers, symlinks that
// later entries would be written through, hard links outside, devices)
// must be refused with an error that names the archive, leaving no file
// behind, or contained: every entry of the layer produced is the
// destination, one of its parents, or under it; no hard link leaves it;
// no entry is written through a symlink of the layer.
func FuzzTarballLayer(f *testing.F) {
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644} }
	dir := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	sym := func(name, to string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: to}
	}
	hard := func(name, to string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: to}
	}
	for _, hdrs := range [][]*tar.Header{
		{dir("./"), dir("z/"), reg("z/run"), reg("/abs.txt"), sym("z/ln", "/usr/bin/env"), hard("z/hard", "./z/run")},
		{reg("a/../../evil")},
		{dir("../")},
		{reg("/../../etc/passwd")},
		{hard("h", "../etc/passwd")},
		{hard("h", "/etc/passwd")},
		{reg("f"), hard("h", "f/../../x")},
		{sym("etc", "/etc"), reg("etc/passwd")},
		{sym("up", "../../.."), dir("up/x/")},
		{sym("d", "/"), sym("d/e", "x")},
		{dir("d/"), reg("d/f"), sym("d", "/etc"), hard("h", "d/f")},
		{reg("f"), sym("f", "/etc/shadow"), hard("h", "f")},
		{reg("f"), dir("f/"), hard("h", "f")},
		{{Name: "pipe", Typeflag: tar.TypeFifo, Mode: 0o644}},
		{{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}},
		{{Name: "blk", Typeflag: tar.TypeBlock, Devmajor: 8}},
		{{Name: strings.Repeat("long/", 300) + "f", Typeflag: tar.TypeReg, Format: tar.FormatPAX}},
		{{Name: "x", Typeflag: tar.TypeReg, PAXRecords: map[string]string{"comment": strings.Repeat("y", 1<<16)}}},
		{{Name: "sparse", Typeflag: tar.TypeReg, PAXRecords: map[string]string{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s", "GNU.sparse.realsize": "999999999999999"}}},
		{{Name: "x", Typeflag: 'X'}},
		{dir("."), dir("./."), reg(".//a//b")},
	} {
		f.Add(fuzzTar(false, hdrs...), "/srv/")
		f.Add(fuzzTar(true, hdrs...), "/")
	}
	for _, format := range []string{"gnu", "pax"} {
		f.Add(sparseTar(f, format, "big.img", 1<<20), "/srv/")
	}
	f.Add([]byte("\x1f\x8b\x08\x00garbage"), "/app")
	f.Add([]byte(nil), "/")
	f.Add(fuzzTar(false, reg("a")), "relative/")
	f.Add(fuzzTar(false, reg("a")), "/../../x/")

	f.Fuzz(func(t *testing.T, archive []byte, dest string) {
		work := t.TempDir()
		p := filepath.Join(work, "in.tar")
		if err := os.WriteFile(p, archive, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(work, "out")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		l := &recipes.Layer{Source: "in.tar", Path: p, Kind: recipes.SourceTarball, Destination: dest}
		b, err := BuildLayer(context.Background(), l, out, testEpoch, nil, WithLayerConcurrency(1))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "building layer from in.tar: ") {
				t.Errorf("error %q does not name the source", err)
			}
			if es, _ := os.ReadDir(out); len(es) > 0 {
				t.Errorf("error %v left %d files behind", err, len(es))
			}
			return
		}
		dst, _, err := layerDestination(l)
		if err != nil {
			t.Fatal(err)
		}
		if files := checkContained(t, b.Path, dst); files > int64(len(unzipped(archive))) {
			t.Errorf("the layer holds %d bytes of files, more than the archive's %d: an entry expanded (sparse?)", files, len(unzipped(archive)))
		}
	})
}

// unzipped returns archive gunzipped when it is gzip (as far as it
// reads), else as it is.
func unzipped(archive []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return archive
	}
	out, _ := io.ReadAll(zr)
	return out
}

// checkContained fails t if the layer file at path holds an entry that is
// neither dst (a clean relative name, "" for the root), one of its
// parents, nor under it; a hard link that leaves dst or does not point to
// a regular file before it; an entry below a symlink of the layer; or a
// device or named pipe. It returns the bytes of the layer's files.
func checkContained(t *testing.T, path, dst string) (files int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	under := func(name string) bool {
		return dst == "" || name == dst || strings.HasPrefix(name, dst+"/")
	}
	kinds := map[string]byte{} // entries so far, by name without a trailing "/"
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading the layer back: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			files += h.Size
		}
		name := strings.TrimSuffix(h.Name, "/")
		switch {
		case name == "" || strings.HasPrefix(name, "/") || name != filepath.Clean(name) || name == ".." || strings.HasPrefix(name, "../"):
			t.Errorf("entry %q is not a clean relative name", h.Name)
		case !under(name) && !(h.Typeflag == tar.TypeDir && strings.HasPrefix(dst+"/", name+"/")):
			t.Errorf("entry %q is outside the destination %q", h.Name, dst)
		}
		for p := range parents(name) {
			if kinds[p] == tar.TypeSymlink {
				t.Errorf("entry %q is below %q, a symlink of the layer", h.Name, p)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir, tar.TypeReg, tar.TypeSymlink:
		case tar.TypeLink:
			if !under(h.Linkname) || kinds[h.Linkname] != tar.TypeReg {
				t.Errorf("hard link %q to %q: not a file earlier in the destination", h.Name, h.Linkname)
			}
			for p := range parents(h.Linkname) {
				if kinds[p] == tar.TypeSymlink {
					t.Errorf("hard link %q to %q, which is below %q, a symlink of the layer", h.Name, h.Linkname, p)
				}
			}
		default:
			t.Errorf("entry %q has type %q", h.Name, h.Typeflag)
		}
		kinds[name] = h.Typeflag
		if h.Typeflag == tar.TypeLink {
			kinds[name] = tar.TypeReg
		}
	}
}

// parents yields the proper ancestors of a "/"-separated name, outermost
// first: "a", "a/b" for "a/b/c".
func parents(name string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for i := 0; i < len(name); i++ {
			if name[i] == '/' && !yield(name[:i]) {
				return
			}
		}
	}
}

// TestTarballRefusesEntriesBelowItsSymlinks: an archive that makes a
// symlink and then writes below it would, extracted, write wherever the
// symlink points (found by FuzzTarballLayer). The error names the entry,
// the symlink and its target.
func TestTarballRefusesEntriesBelowItsSymlinks(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdrs []*tar.Header
		want string
	}{
		{"file", []*tar.Header{
			{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
			{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644},
		}, `entry "etc/passwd" is below "etc", a symlink earlier in the archive (to "/etc")`},
		{"folder", []*tar.Header{
			{Name: "./up", Typeflag: tar.TypeSymlink, Linkname: "../../.."},
			{Name: "up/x/", Typeflag: tar.TypeDir, Mode: 0o755},
		}, `entry "up/x/" is below "up", a symlink earlier in the archive (to "../../..")`},
		{"hard link", []*tar.Header{
			{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644},
			{Name: "d", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
			{Name: "h", Typeflag: tar.TypeLink, Linkname: "d/f"},
		}, `hard link "h" points to "d/f", which is not a file earlier in the archive`},
		{"hard link to a replaced file", []*tar.Header{
			{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644},
			{Name: "f", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"},
			{Name: "h", Typeflag: tar.TypeLink, Linkname: "f"},
		}, `hard link "h" points to "f", which is not a file earlier in the archive`},
		{"hard link to a file replaced by a folder", []*tar.Header{
			{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644},
			{Name: "f/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "h", Typeflag: tar.TypeLink, Linkname: "f"},
		}, `hard link "h" points to "f", which is not a file earlier in the archive`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "trick.tar")
			testTarball(t, p, false, tc.hdrs...)
			out := t.TempDir()
			l := &recipes.Layer{Source: "trick.tar", Path: p, Kind: recipes.SourceTarball, Destination: "/srv/"}
			_, err := BuildLayer(context.Background(), l, out, testEpoch, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v, want one naming %s and saying %s", err, p, tc.want)
			}
			assertEmpty(t, out)
		})
	}

	// A symlink replaced by a folder is a folder again.
	p := filepath.Join(t.TempDir(), "ok.tar")
	testTarball(t, p, false,
		&tar.Header{Name: "d", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
		&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644})
	b := buildTest(t, &recipes.Layer{Source: "ok.tar", Path: p, Kind: recipes.SourceTarball, Destination: "/srv/"})
	if got := names(readLayer(t, b.Path)); strings.Join(got, " ") != "srv/ srv/d srv/d/ srv/d/f" {
		t.Errorf("entries %q", got)
	}
}
