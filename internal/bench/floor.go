package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// floorFigures is a lower bound of the wall time of a full bake with zstd
// layers and sbom = false: the computation such a bake cannot leave out,
// whatever its design, timed part by part in one goroutine each, spread
// over every CPU as if perfectly parallel, plus the start of a bakery
// process. The parts are: reading every input and hashing it with BLAKE3
// (the bake key, which records what the image was made from), compressing
// the layer's tar stream with zstd at its fastest level in 1 MiB frames
// (the same encoder and settings as bakery), and the two sha256 the OCI
// format fixes: over the tar stream (the diffID) and over the compressed
// layer (its digest). Writing the layer and making it durable, the tar
// framing and listing the inputs are left out, so the real floor is
// higher. Durations are in seconds.
type floorFigures struct {
	ReadBLAKE3S  float64 `json:"read_blake3_s"`
	ZstdS        float64 `json:"zstd_s"`
	SHA256TarS   float64 `json:"sha256_tar_s"`
	SHA256LayerS float64 `json:"sha256_layer_s"`
	StartS       float64 `json:"start_s"` // median wall time of `bakery version`
	CPUs         int     `json:"cpus"`
	// FloorS is (the four parts) / CPUs + StartS.
	FloorS float64 `json:"floor_s"`
}

// spread is the four parts, in seconds, spread over the CPUs.
func (f *floorFigures) spread() float64 {
	return (f.ReadBLAKE3S + f.ZstdS + f.SHA256TarS + f.SHA256LayerS) / float64(max(f.CPUs, 1))
}

// total sets FloorS.
func (f *floorFigures) total() { f.FloorS = f.spread() + f.StartS }

// floorParts is one timing of each part of floorFigures but the start.
type floorParts struct {
	readBLAKE3, zstd, shaTar, shaLayer time.Duration
}

// measureFloor times the parts of floorFigures once: files (relative to
// dir) are the inputs, layer the compressed zstd layer a bake wrote and
// tarStream its decompressed bytes.
func measureFloor(dir string, files []string, tarStream, layer []byte) (floorParts, error) {
	var p floorParts
	buf := make([]byte, 1<<20)
	var sum [32]byte
	start := time.Now()
	for _, rel := range files {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return floorParts{}, err
		}
		h := blake3.New()
		_, err = io.CopyBuffer(h, f, buf)
		f.Close()
		if err != nil {
			return floorParts{}, fmt.Errorf("hashing %s: %w", rel, err)
		}
		h.Sum(sum[:0])
	}
	p.readBLAKE3 = time.Since(start)

	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20), zstd.WithEncoderCRC(false))
	if err != nil {
		return floorParts{}, err
	}
	defer enc.Close()
	out := make([]byte, 0, 2<<20)
	start = time.Now()
	for off := 0; off < len(tarStream); off += 1 << 20 {
		out = enc.EncodeAll(tarStream[off:min(off+1<<20, len(tarStream))], out[:0])
	}
	p.zstd = time.Since(start)

	start = time.Now()
	sum = sha256.Sum256(tarStream)
	p.shaTar = time.Since(start)
	start = time.Now()
	sum = sha256.Sum256(layer)
	p.shaLayer = time.Since(start)
	return p, nil
}

// floorInputs reads the single zstd layer of the image digest in the OCI
// layout at home and decompresses it.
func floorInputs(home, digest string) (tarStream, layer []byte, err error) {
	ls, err := layoutLayers(home, digest)
	if err != nil {
		return nil, nil, err
	}
	if len(ls) != 1 {
		return nil, nil, fmt.Errorf("the bench image %s has %d layers, want 1", digest, len(ls))
	}
	layer, err = os.ReadFile(ls[0].Path)
	if err != nil {
		return nil, nil, err
	}
	dec, err := zstd.NewReader(bytes.NewReader(layer))
	if err != nil {
		return nil, nil, err
	}
	defer dec.Close()
	tarStream, err = io.ReadAll(dec)
	if err != nil {
		return nil, nil, fmt.Errorf("decompressing layer %s: %w", ls[0].Digest, err)
	}
	return tarStream, layer, nil
}

// medianFloor returns the floor figures of the median of each part over
// runs, with start the median start time and cpus the CPUs.
func medianFloor(runs []floorParts, start time.Duration, cpus int) floorFigures {
	med := func(get func(floorParts) time.Duration) float64 {
		ds := make([]time.Duration, len(runs))
		for i, r := range runs {
			ds[i] = get(r)
		}
		return medianDuration(ds).Seconds()
	}
	f := floorFigures{
		ReadBLAKE3S:  med(func(p floorParts) time.Duration { return p.readBLAKE3 }),
		ZstdS:        med(func(p floorParts) time.Duration { return p.zstd }),
		SHA256TarS:   med(func(p floorParts) time.Duration { return p.shaTar }),
		SHA256LayerS: med(func(p floorParts) time.Duration { return p.shaLayer }),
		StartS:       start.Seconds(),
		CPUs:         cpus,
	}
	f.total()
	return f
}

// floor times the floor n times (the start as `bakery version`, from
// workdir) and returns the medians; the layer is the one of image digest
// in the OCI layout at home.
func floor(ctx context.Context, bakery, workdir, dir string, files []string, home, digest string, n, cpus int) (floorFigures, error) {
	tarStream, layer, err := floorInputs(home, digest)
	if err != nil {
		return floorFigures{}, err
	}
	version := command{Dir: workdir, Args: []string{bakery, "version"}, NoRSS: true}
	var starts []time.Duration
	var runs []floorParts
	for range max(n, 1) {
		s, _, err := runTimed(ctx, version, false)
		if err != nil {
			return floorFigures{}, err
		}
		starts = append(starts, s.Wall)
		p, err := measureFloor(dir, files, tarStream, layer)
		if err != nil {
			return floorFigures{}, err
		}
		runs = append(runs, p)
	}
	return medianFloor(runs, medianDuration(starts), cpus), nil
}
