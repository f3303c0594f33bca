//go:build unix

package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// mkfifo creates a named pipe at path.
func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The folders are listed by several goroutines; with several files a
// layer cannot hold, the error names the first in byte order every time,
// as a walk in order would.
func TestListingReportsTheFirstBadFileWhateverTheTiming(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/deep/er", "b", "c/x", "d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 40 {
			if err := os.WriteFile(filepath.Join(root, d, fmt.Sprintf("f%02d", i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	first := filepath.Join(root, "a", "deep", "er", "pipe")
	for _, p := range []string{filepath.Join(root, "d", "pipe"), filepath.Join(root, "c", "x", "pipe"), first} {
		mkfifo(t, p)
	}
	for range 20 {
		_, err := layerEntries(t.Context(), dirLayer(root, "/app/"))
		if err == nil || !strings.Contains(err.Error(), first+" is a named pipe") {
			t.Fatalf("listing a folder with three named pipes: %v, want the error naming %s", err, first)
		}
	}
}

// The parallel listing finds exactly what filepath.WalkDir finds, in the
// order BuildLayer writes.
func TestListingFindsWhatWalkDirFinds(t *testing.T) {
	root := writeTestTree(t, t.TempDir())
	for _, d := range []string{"x/y/z", "x/y2", "x.d", "x0"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, d, "f"), []byte(d), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("x/y", filepath.Join(root, "link-to-x")); err != nil {
		t.Fatal(err)
	}
	es, err := layerEntries(t.Context(), dirLayer(root, "/app/"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%s %c %o %d %s", e.name, e.typ, e.mode, e.size, e.link))
	}
	want = append(want, "app/ 5 755 0 ")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := "app/" + filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			want = append(want, name+"/ 5 755 0 ")
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			want = append(want, name+" 2 777 0 "+target)
		default:
			want = append(want, fmt.Sprintf("%s 0 %o %d ", name, layerFileMode(dirLayer(root, "/app/"), int64(fi.Mode().Perm())), fi.Size()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("listing:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// countdownCtx is a context that is cancelled from its nth Err call on.
type countdownCtx struct {
	context.Context
	n atomic.Int32
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) <= 0 {
		return context.Canceled
	}
	return nil
}

// Listing a folder of many files checks for an interrupt as it goes, not
// only when it opens the folder.
func TestListingStopsInsideALargeFolder(t *testing.T) {
	root := t.TempDir()
	for i := range 600 {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%04d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := &countdownCtx{Context: t.Context()}
	ctx.n.Store(2) // the check when the folder is opened passes, the next fails
	_, err := walkLayerDir(ctx, dirLayer(root, "/app/"), "app", 0, 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("listing 600 files with the context cancelled after the folder was opened: %v, want context.Canceled", err)
	}
}
