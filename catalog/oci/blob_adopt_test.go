package oci

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdoptBuiltBlobChecksTheSize(t *testing.T) {
	dir := t.TempDir()
	l := openLayout(t, dir)
	tx := l.Begin()
	stage, err := tx.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(stage, "layer.tar.gz")
	data := randomBytes(t, 10000)
	h := hashOf(data)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if created, err := tx.AdoptBuiltBlob(h, int64(len(data)), tmp); err != nil || !created {
		t.Fatalf("AdoptBuiltBlob = %v, %v", created, err)
	}
	if got := readFile(t, l.BlobPath(h)); !bytes.Equal(got, data) {
		t.Error("adopted blob content differs")
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Error("AdoptBuiltBlob left its source behind")
	}

	// A file of another size is refused and removed.
	other := randomBytes(t, 100)
	if err := os.WriteFile(tmp, other[:50], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.AdoptBuiltBlob(hashOf(other), 100, tmp); err == nil || !strings.Contains(err.Error(), "has 50 bytes, the blob 100") {
		t.Errorf("AdoptBuiltBlob(truncated file) = %v, want a size error", err)
	}
	if has, _ := l.HasBlob(hashOf(other)); has {
		t.Error("a truncated file was adopted")
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Error("AdoptBuiltBlob left a refused source behind")
	}

	// The caller's digest is trusted: the file is not read again.
	third := randomBytes(t, 64)
	if err := os.WriteFile(tmp, bytes.Repeat([]byte{'x'}, 64), 0o600); err != nil {
		t.Fatal(err)
	}
	if created, err := tx.AdoptBuiltBlob(hashOf(third), 64, tmp); err != nil || !created {
		t.Errorf("AdoptBuiltBlob(same size) = %v, %v", created, err)
	}

	// Unknown size: the digest is checked.
	if err := os.WriteFile(tmp, other[:50], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.AdoptBuiltBlob(hashOf(other), -1, tmp); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("AdoptBuiltBlob(size -1) = %v, want a digest error", err)
	}

	// Rollback removes what the transaction adopted.
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if has, _ := l.HasBlob(h); has {
		t.Error("Rollback kept an adopted blob")
	}
}
