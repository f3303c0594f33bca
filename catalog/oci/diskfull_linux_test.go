package oci

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// smallTmpfs mounts a 256 KiB tmpfs on a fresh directory, unmounted when
// the test ends. It needs root.
func smallTmpfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		needPeer(t, "mounting a small tmpfs to fill the disk needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		needPeer(t, "cannot mount a tmpfs to fill the disk: "+err.Error())
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// noTempFiles fails if a temporary file is left anywhere under dir.
func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tmpPrefix) {
			t.Errorf("temporary file %s left behind", p)
		}
		return nil
	})
}

func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	mnt := smallTmpfs(t)
	dir := filepath.Join(mnt, "layout")
	l := openLayout(t, dir)

	// A blob bigger than the filesystem.
	data := randomBytes(t, 1<<20)
	h := hashOf(data)
	_, err := l.WriteBlob(h, bytes.NewReader(data))
	if err == nil {
		t.Fatal("WriteBlob of 1 MiB onto a 256 KiB tmpfs succeeded")
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "free space") || !strings.Contains(err.Error(), l.BlobPath(h)) {
		t.Errorf("WriteBlob error = %v, want ENOSPC naming %s and saying to free space", err, l.BlobPath(h))
	}
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Errorf("full disk left %v in blobs/sha256", files)
	}

	// A full disk while committing leaves index.json as it was.
	img := randomImage(t, nil)
	tx := l.Begin()
	if _, err := tx.WriteImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	if err := tx.Tag("hello:1", descriptor(t, img)); err != nil {
		t.Fatal(err)
	}
	index := filepath.Join(dir, "index.json")
	before := readFile(t, index)
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	err = tx.Commit(ctx)
	if err == nil {
		t.Fatal("Commit on a full disk succeeded")
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), index) || !strings.Contains(err.Error(), "free space") {
		t.Errorf("Commit error = %v, want ENOSPC naming %s", err, index)
	}
	if after := readFile(t, index); !bytes.Equal(before, after) {
		t.Error("failed Commit changed index.json")
	}
	noTempFiles(t, mnt)

	// Free space: the same transaction commits.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("Commit after freeing space: %v", err)
	}
	validateLayout(t, dir)
}

func TestReadOnlyLayout(t *testing.T) {
	mnt := smallTmpfs(t)
	dir := filepath.Join(mnt, "layout")
	l := openLayout(t, dir)
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, "size=256k"); err != nil {
		needPeer(t, "cannot remount the tmpfs read-only: "+err.Error())
	}
	data := randomBytes(t, 1000)
	_, err := l.WriteBlob(hashOf(data), bytes.NewReader(data))
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "fix the permissions") {
		t.Errorf("WriteBlob on a read-only filesystem = %v, want a permissions error", err)
	}
	if files := blobFiles(t, dir); len(files) != 0 {
		t.Errorf("read-only write left %v", files)
	}
}
