package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestFloorIsThePartsOverTheCPUsPlusAStart(t *testing.T) {
	ms := time.Millisecond
	runs := []floorParts{
		{readBLAKE3: 100 * ms, zstd: 300 * ms, shaTar: 90 * ms, shaLayer: 60 * ms},
		{readBLAKE3: 120 * ms, zstd: 900 * ms, shaTar: 10 * ms, shaLayer: 70 * ms},
		{readBLAKE3: 110 * ms, zstd: 320 * ms, shaTar: 100 * ms, shaLayer: 50 * ms},
	}
	f := medianFloor(runs, 14*ms, 2)
	// Each part's own median: 110, 320, 90 and 60 ms.
	if f.ReadBLAKE3S != 0.11 || f.ZstdS != 0.32 || f.SHA256TarS != 0.09 || f.SHA256LayerS != 0.06 {
		t.Errorf("medians %+v, want 110, 320, 90 and 60 ms", f)
	}
	// (110+320+90+60)/2 + 14 = 304 ms.
	if d := f.FloorS - 0.304; d > 1e-9 || d < -1e-9 {
		t.Errorf("floor %v s, want 0.304", f.FloorS)
	}

	r := &report{Floor: f, Measurements: []measurement{
		{Key: mZstdNoSBOM, MedianS: 0.38}, {Key: mCrane, MedianS: 1.52},
	}}
	var out bytes.Buffer
	r.writeFloor(&out)
	text := out.String()
	// 304 ms / 1.52 s = 0.20x; 380 / 304 = 1.25x.
	for _, want := range []string{"spread over 2 CPUs 290ms", "process start 14ms", "304ms = 0.20x crane", "1.25x this floor"} {
		if !strings.Contains(text, want) {
			t.Errorf("floor text lacks %q:\n%s", want, text)
		}
	}

	// A report without a floor (an older JSON) prints none.
	out.Reset()
	(&report{}).writeFloor(&out)
	if out.Len() != 0 {
		t.Errorf("a report without a floor printed %q", out.String())
	}
}

// floorLayout writes an OCI layout at home holding one image with the
// zstd layer of tarStream, and returns the image's digest and the layer.
func floorLayout(t *testing.T, home string, tarStream []byte, layers int) (string, []byte) {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	layer := enc.EncodeAll(tarStream, nil)
	put := func(b []byte) string {
		sum := sha256.Sum256(b)
		d := fmt.Sprintf("sha256:%x", sum)
		if err := os.MkdirAll(filepath.Join(home, "blobs", "sha256"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(blobPath(home, d), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	l := descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+zstd", Digest: put(layer), Size: int64(len(layer))}
	m := manifestOrIndex{MediaType: "application/vnd.oci.image.manifest.v1+json"}
	for range layers {
		m.Layers = append(m.Layers, l)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return put(b), layer
}

func TestFloorTimesTheLayerABakeWrote(t *testing.T) {
	dir := t.TempDir()
	files := []string{"a.txt", "sub/b.bin"}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte(f), 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tarStream := bytes.Repeat([]byte("a tar stream, in more than one 1 MiB frame "), 60000)
	home := t.TempDir()
	digest, layer := floorLayout(t, home, tarStream, 1)

	gotTar, gotLayer, err := floorInputs(home, digest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotTar, tarStream) || !bytes.Equal(gotLayer, layer) {
		t.Fatalf("floorInputs gave %d and %d bytes, want the layer's %d decompressed and its %d", len(gotTar), len(gotLayer), len(tarStream), len(layer))
	}
	p, err := measureFloor(dir, files, gotTar, gotLayer)
	if err != nil {
		t.Fatal(err)
	}
	if p.readBLAKE3 <= 0 || p.zstd <= 0 || p.shaTar <= 0 || p.shaLayer <= 0 {
		t.Errorf("a part was not timed: %+v", p)
	}

	// An input that is gone is an error, not a floor without it.
	if _, err := measureFloor(dir, append(files, "gone.txt"), gotTar, gotLayer); err == nil || !strings.Contains(err.Error(), "gone.txt") {
		t.Errorf("missing input: %v", err)
	}
	// The floor is of one layer; an image of two is refused.
	home2 := t.TempDir()
	digest2, _ := floorLayout(t, home2, tarStream, 2)
	if _, _, err := floorInputs(home2, digest2); err == nil || !strings.Contains(err.Error(), "2 layers") {
		t.Errorf("two layers: %v", err)
	}
}

func TestReportTextNamesGODEBUGAndTheFloor(t *testing.T) {
	r := &report{
		Machine: machine{GODEBUG: "cpu.sha=off", NumCPU: 2, GOMAXPROCS: 2},
		Floor:   floorFigures{ReadBLAKE3S: 0.1, ZstdS: 0.3, SHA256TarS: 0.1, SHA256LayerS: 0.06, StartS: 0.014, CPUs: 2},
		Measurements: []measurement{
			{Key: mZstdNoSBOM, MedianS: 0.4}, {Key: mCrane, MedianS: 2},
		},
	}
	r.Floor.total()
	var out bytes.Buffer
	r.writeText(&out)
	for _, want := range []string{"GODEBUG=cpu.sha=off in the environment", "294ms = 0.15x crane", "1.36x this floor"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
