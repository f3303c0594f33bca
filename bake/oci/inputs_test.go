package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/bake/bakekey"
	"github.com/bakery-sh/bakery/recipes"
	"github.com/zeebo/blake3"
)

// keyOf returns the bake key of the given layers alone.
func keyOf(t testing.TB, layers ...*recipes.Layer) string {
	t.Helper()
	k := bakekey.New("test")
	if err := HashInputs(context.Background(), layers, k); err != nil {
		t.Fatal(err)
	}
	return k.Sum()
}

func TestHashInputsFollowsWhatDecidesTheLayer(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	l := dirLayer(root, "/app/")
	base := keyOf(t, l)

	same := func(what string) {
		t.Helper()
		if got := keyOf(t, l); got != base {
			t.Errorf("%s changed the key", what)
		}
	}
	changed := func(what string) {
		t.Helper()
		got := keyOf(t, l)
		if got == base {
			t.Errorf("%s did not change the key", what)
		}
		base = got
	}

	same("hashing again")
	touchTree(t, root) // new mtimes, 0644 → 0664
	same("new mtimes and chmod 0664")
	moved := filepath.Join(t.TempDir(), "other", "place")
	copyTree(t, root, moved)
	if got := keyOf(t, dirLayer(moved, "/app/")); got != base {
		t.Error("a copy at another absolute path changed the key")
	}

	conf := filepath.Join(root, "etc", "secret.conf")
	os.WriteFile(conf, []byte("secret!\n"), 0o644)
	changed("new content")
	os.WriteFile(conf, []byte("secret?\n"), 0o644)
	changed("same size, new content")
	os.Chmod(conf, 0o744)
	changed("an execute bit")
	os.Chmod(conf, 0o700)
	same("another executable mode")
	os.Rename(conf, filepath.Join(root, "etc", "renamed.conf"))
	changed("a rename")
	os.Remove(filepath.Join(root, "link"))
	os.Symlink("bin/tool", filepath.Join(root, "link"))
	changed("a symlink target")
	os.Mkdir(filepath.Join(root, "new-empty"), 0o755)
	changed("an empty folder")

	l.UID = ptr(1000)
	changed("the uid")
	l.GID = ptr(1000)
	changed("the gid")
	l.Mode = ptr(uint32(0o600))
	changed("the mode")
	l.Destination = "/srv/"
	changed("the destination")
}

func TestHashInputsTarball(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "root.tar.gz")
	testTarball(t, p, true, &tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644})
	l := &recipes.Layer{Source: "root.tar.gz", Path: p, Kind: recipes.SourceTarball, Destination: "/"}
	base := keyOf(t, l)
	later := time.Now().Add(time.Hour)
	os.Chtimes(p, later, later)
	if keyOf(t, l) != base {
		t.Error("the archive's mtime changed the key")
	}
	testTarball(t, p, true, &tar.Header{Name: "b", Typeflag: tar.TypeReg, Mode: 0o644})
	if keyOf(t, l) == base {
		t.Error("a new archive did not change the key")
	}
}

func TestHashInputsOrderOfHashingDoesNotMatter(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	file := filepath.Join(root, "bin", "run")
	layers := []*recipes.Layer{
		dirLayer(root, "/app/"),
		{Source: "run", Path: file, Kind: recipes.SourceFile, Destination: "/usr/bin/"},
		dirLayer(filepath.Join(root, "a"), "/a/"),
	}
	var want string
	for _, workers := range []int{1, 2, 3, 8, 64} {
		k := bakekey.New("test")
		if _, err := hashInputs(context.Background(), layers, k, workers); err != nil {
			t.Fatal(err)
		}
		if want == "" {
			want = k.Sum()
		} else if k.Sum() != want {
			t.Errorf("%d workers: key %s, want %s", workers, k.Sum(), want)
		}
	}
	if got := keyOf(t, layers...); got != want {
		t.Errorf("HashInputs (GOMAXPROCS %d): key %s, want %s", runtime.GOMAXPROCS(0), got, want)
	}
	// The order of the layers is part of the image, so it is part of the key.
	if got := keyOf(t, layers[2], layers[1], layers[0]); got == want {
		t.Error("reordering the layers did not change the key")
	}
}

func TestHashInputsErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	fifo := filepath.Join(tree, "pipe")
	mkfifo(t, fifo)
	for _, tc := range []struct {
		name string
		l    *recipes.Layer
		want []string
	}{
		{"missing folder", dirLayer(missing, "/app/"), []string{missing, "check the source path"}},
		{"missing tarball", &recipes.Layer{Source: "x.tar", Path: missing, Kind: recipes.SourceTarball, Destination: "/"}, []string{missing}},
		{"fifo", dirLayer(tree, "/app/"), []string{fifo, "named pipe"}},
		{"unknown kind", &recipes.Layer{Source: "x", Path: tree, Kind: "zip", Destination: "/"}, []string{`"zip"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := HashInputs(context.Background(), []*recipes.Layer{tc.l}, bakekey.New("test"))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	root := writeTestTree(t, t.TempDir())
	if err := HashInputs(ctx, []*recipes.Layer{dirLayer(root, "/")}, bakekey.New("test")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v, want context.Canceled", err)
	}
}

// TestHashInputsAgreesWithBuildLayer checks that every layer entry
// BuildLayer writes is one HashInputs saw, in the same order.
func TestHashInputsAgreesWithBuildLayer(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	l := dirLayer(root, "/opt/app/")
	l.UID = ptr(3)
	entries, err := layerEntries(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	es := readLayer(t, buildTest(t, l).Path)
	if len(es) != len(entries) {
		t.Fatalf("%d entries listed, %d written", len(entries), len(es))
	}
	for i, e := range entries {
		h := es[i].hdr
		got := fmt.Sprintf("%s %c %o %d:%d %q %d", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, h.Size)
		want := fmt.Sprintf("%s %c %o %d:%d %q %d", e.name, e.typ, e.mode, e.uid, e.gid, e.link, e.size)
		if got != want {
			t.Errorf("entry %d: written %s, listed %s", i, got, want)
		}
	}
}

// BenchmarkHashInputs hashes the same ~50 MB tree as BenchmarkBuildLayer:
// the cost of a bake that finds nothing to do.
func BenchmarkHashInputs(b *testing.B) {
	root, size := benchTree(b)
	layers := []*recipes.Layer{dirLayer(root, "/app/")}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if err := HashInputs(context.Background(), layers, bakekey.New("bench")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSHA256Files is the baseline for BenchmarkHashInputs: what
// sha256sum does, one file after another on one core.
func BenchmarkSHA256Files(b *testing.B) {
	root, size := benchTree(b)
	var files []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	buf := make([]byte, 128<<10)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		for _, p := range files {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			io.CopyBuffer(h, struct{ io.Reader }{f}, buf)
			f.Close()
		}
	}
}

// TestInputContentHashIsBLAKE3 pins the content hash of input files in the
// bake key to BLAKE3 (see newInputHash): a file's sum is what an
// independent BLAKE3 implementation of the same bytes gives, and not
// its SHA-256.
func TestInputContentHashIsBLAKE3(t *testing.T) {
	content := bytes.Repeat([]byte("bakery input\n"), 100_000) // spans several read buffers
	path := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	jobs := []inputJob{{path: path, name: "input", size: int64(len(content))}}
	if err := hashInputJobs(context.Background(), jobs, 1); err != nil {
		t.Fatal(err)
	}
	if want := blake3.Sum256(content); jobs[0].sum != want {
		t.Errorf("input sum = %x, want BLAKE3 %x", jobs[0].sum, want)
	}
	if sha := sha256.Sum256(content); jobs[0].sum == sha {
		t.Error("input sum is the SHA-256 of the content")
	}
}
