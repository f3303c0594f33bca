package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// descriptor is the part of an OCI descriptor the benchmark reads.
type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// manifestOrIndex decodes either an OCI image manifest or an image index.
type manifestOrIndex struct {
	MediaType string       `json:"mediaType"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

// layoutLayer is one layer blob found in an OCI layout.
type layoutLayer struct {
	descriptor
	Path string
}

// layoutLayers returns the layers of the image whose manifest (or index) has
// digest in the OCI layout at home. An index is followed to its first manifest.
func layoutLayers(home, digest string) ([]layoutLayer, error) {
	for range 4 { // index → manifest, with room for one nested index
		b, err := os.ReadFile(blobPath(home, digest))
		if err != nil {
			return nil, fmt.Errorf("reading %s from the layout %s: %w", digest, home, err)
		}
		var m manifestOrIndex
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", digest, err)
		}
		if len(m.Manifests) > 0 && len(m.Layers) == 0 {
			digest = m.Manifests[0].Digest
			continue
		}
		out := make([]layoutLayer, 0, len(m.Layers))
		for _, l := range m.Layers {
			p := blobPath(home, l.Digest)
			fi, err := os.Stat(p)
			if err != nil {
				return nil, fmt.Errorf("layer %s of %s is missing from the layout: %w", l.Digest, digest, err)
			}
			if fi.Size() != l.Size {
				return nil, fmt.Errorf("layer %s: manifest says %d bytes, blob has %d", l.Digest, l.Size, fi.Size())
			}
			out = append(out, layoutLayer{descriptor: l, Path: p})
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: index nesting too deep", digest)
}

func blobPath(home, digest string) string {
	alg, hexPart, _ := strings.Cut(digest, ":")
	return filepath.Join(home, "blobs", alg, hexPart)
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 {
	_, n, _ := treeSize(dir)
	return n
}

// craneLayer describes the single layer blob inside crane's tarball output.
type craneLayer struct {
	Name string // entry name inside out.tar
	Size int64
}

// craneTarballLayer reads the tarball image crane wrote and returns its layer
// (crane append of one tar on an empty base makes exactly one).
func craneTarballLayer(p string) (craneLayer, error) {
	f, err := os.Open(p)
	if err != nil {
		return craneLayer{}, err
	}
	defer f.Close()
	sizes := map[string]int64{}
	var manifest []struct {
		Layers []string `json:"Layers"`
	}
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return craneLayer{}, fmt.Errorf("reading %s: %w", p, err)
		}
		sizes[h.Name] = h.Size
		if h.Name == "manifest.json" {
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				return craneLayer{}, fmt.Errorf("decoding manifest.json in %s: %w", p, err)
			}
		}
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != 1 {
		return craneLayer{}, fmt.Errorf("%s: expected one image with one layer in manifest.json, got %+v", p, manifest)
	}
	name := manifest[0].Layers[0]
	size, ok := sizes[name]
	if !ok {
		return craneLayer{}, fmt.Errorf("%s: layer %s named in manifest.json is not in the tarball", p, name)
	}
	return craneLayer{Name: name, Size: size}, nil
}

// openTarEntry opens the entry name inside the tar file p.
func openTarEntry(p, name string) (io.Reader, io.Closer, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("finding %s in %s: %w", name, p, err)
		}
		if h.Name == name {
			return tr, f, nil
		}
	}
}

// verifyLayer checks that the compressed layer stream holds exactly the input
// files, at prefix/<relative path>, with the same bytes (by sha256). It returns
// a short description on success.
func verifyLayer(r io.Reader, prefix string, want map[string]string) (string, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(4)
	var tarStream io.Reader
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", err
		}
		defer zr.Close()
		tarStream = zr
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return "", err
		}
		defer zr.Close()
		tarStream = zr
	default:
		tarStream = br // uncompressed
	}
	tr := tar.NewReader(tarStream)
	seen := make(map[string]bool, len(want))
	h := sha256.New()
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading layer tar: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := cleanEntryName(hdr.Name)
		rel, ok := strings.CutPrefix(name, prefix+"/")
		if !ok {
			return "", fmt.Errorf("unexpected file %q outside %s/", hdr.Name, prefix)
		}
		sum, ok := want[rel]
		if !ok {
			return "", fmt.Errorf("unexpected file %q in layer", hdr.Name)
		}
		if seen[rel] {
			return "", fmt.Errorf("file %q appears twice in layer", hdr.Name)
		}
		h.Reset()
		if _, err := io.Copy(h, tr); err != nil {
			return "", fmt.Errorf("reading %s from layer: %w", hdr.Name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != sum {
			return "", fmt.Errorf("content of %s in layer differs from the input file", hdr.Name)
		}
		seen[rel] = true
	}
	if len(seen) != len(want) {
		return "", fmt.Errorf("layer holds %d of the %d input files", len(seen), len(want))
	}
	return fmt.Sprintf("all %d files present under /%s/ with identical content", len(seen), prefix), nil
}
