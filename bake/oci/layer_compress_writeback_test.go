package oci

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestLayerSinkStartsWritebackEvery8MiB(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "layer"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type call struct{ off, n int64 }
	var calls []call
	s := &layerSink{f: f, h: sha256.New(), writeback: func(off, n int64) { calls = append(calls, call{off, n}) }}
	data := randomData(19<<20+5, 13)
	// Writes of uneven sizes, as compressed blocks are.
	for p, i := data, 0; len(p) > 0; i++ {
		n := min(len(p), 700<<10+i*4099)
		if _, err := s.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	var next int64
	for _, c := range calls {
		if c.off != next || c.n < writebackSize || c.n >= writebackSize+1<<20 {
			t.Errorf("writeback(%d, %d) after %d: want the next %d bytes or a little more", c.off, c.n, next, writebackSize)
		}
		next = c.off + c.n
	}
	if len(calls) != 2 {
		t.Errorf("%d writeback calls for 19 MiB, want 2: %v", len(calls), calls)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("file differs from what was written (%v)", err)
	}
}

func TestBuildLayerAsksLinuxToWriteBack(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "layer"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wb := fileWriteback(f)
	if runtime.GOOS != "linux" {
		if wb != nil {
			t.Error("fileWriteback is not nil outside Linux")
		}
		return
	}
	if wb == nil {
		t.Fatal("fileWriteback is nil on Linux")
	}
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	wb(0, 1<<20) // must not fail or block the file
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	w := newLayerWriter(t.Context(), f, testEpoch, nil, "", 1)
	defer w.abort()
	if w.sink.writeback == nil {
		t.Error("the layer writer's sink does not start writeback")
	}
}
