package oci

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A regular file that became a named pipe after the layer was listed
// fails the build with the changed-file message instead of blocking it
// for ever in open(2), waiting for a writer that never comes.
func TestLayerInputReplacedByANamedPipeFailsInsteadOfHanging(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "app.conf")
	mkfifo(t, fifo)
	f, err := os.Create(filepath.Join(dir, "layer"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newLayerWriter(t.Context(), f, testEpoch, nil, "", 1)
	defer w.abort()
	done := make(chan error, 1)
	go func() {
		done <- w.writeEntries([]layerEntry{{name: "etc/app.conf", typ: tar.TypeReg, mode: 0o644, size: 5, src: fifo}})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "changed size while bakery read it") {
			t.Errorf("writing a file that became a named pipe: %v, want the changed-file error", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the layer writer blocked opening a named pipe")
	}
}

// The files a layer reads are opened by openInput: errors name the file
// as os.Open's do, a short file reads to io.EOF, and Close twice fails.
func TestOpenInputReadsLikeOSOpen(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := openInput(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "hello" {
		t.Errorf("read %q, %v; want hello", got, err)
	}
	if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Errorf("read at the end: %d, %v; want 0, EOF", n, err)
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
	if err := r.Close(); err == nil {
		t.Error("a second Close succeeded")
	}
	missing := filepath.Join(dir, "missing")
	_, err = openInput(missing)
	_, want := os.Open(missing)
	if err == nil || want == nil || err.Error() != want.Error() || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("opening a missing file: %v; want %v", err, want)
	}
}
