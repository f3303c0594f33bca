package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"

	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/sbom"
	"github.com/bakery-sh/bakery/internal/sbom/intoto"
	"github.com/bakery-sh/bakery/internal/sbom/spdx"
	"github.com/bakery-sh/bakery/recipes"
)

// ContainerBuildType is the SLSA buildType of bakery's container bakes.
const ContainerBuildType = "https://bakery.dev/container/v1"

// sbomCacheFile is where, in the layout folder, the SBOM's digest cache
// lives (see sbom.Cache).
const sbomCacheFile = "cache/sbom-file-digests.json"

// WithBakeryVersion sets the bakery version the provenance names as the
// builder's and the SBOM as its creator's. Default: "dev".
func WithBakeryVersion(v string) Option { return func(b *Baker) { b.version = v } }

// recorder returns the SBOM recorder of the layer built by lb: its cache
// key for an entry is the content hash Prepare computed for its input
// (the file's, or the tarball's with the entry's name).
func (st *buildState) recorder(lb *layerBuild) *sbom.Recorder {
	var sums inputSums
	if lb.index < len(st.plan.sums) {
		sums = st.plan.sums[lb.index]
	}
	return sbom.NewRecorder(st.cache, func(name, src string) string {
		if src != "" {
			if s, ok := sums[src]; ok {
				return hex.EncodeToString(s[:])
			}
			return ""
		}
		if s, ok := sums[""]; ok {
			return hex.EncodeToString(s[:]) + ":" + name
		}
		return ""
	})
}

// observer is the layer writer's hook that feeds rec and remembers which
// source file each in-image name came from (for the provenance).
func (lb *layerBuild) observer(rec *sbom.Recorder) EntryObserver {
	lb.sources = map[string]string{}
	return func(h *tar.Header, src string) io.Writer {
		if src != "" && h.Typeflag == tar.TypeReg {
			lb.sources[h.Name] = src
		}
		return rec.Entry(h, src)
	}
}

// attestStep writes the image's SBOM (SPDX 2.3) and provenance (in-toto
// SLSA v1), which the write steps attach to it as OCI referrers.
type attestStep struct{ b *Baker }

func (attestStep) Name() string { return "write SBOM and provenance" }

func (s attestStep) Run(_ context.Context, st *buildState, _ progress.Step) error {
	desc, err := partial.Descriptor(st.out)
	if err != nil {
		return fmt.Errorf("describing image: %w", err)
	}
	prov, err := s.provenance(st, desc.Digest)
	if err != nil {
		return err
	}
	st.docs = []catalogoci.Attestation{{ArtifactType: catalogoci.ProvenanceArtifactType, Data: prov}}
	if st.plan.container.NoSBOM {
		return nil
	}
	sb, err := s.sbom(st, desc.Digest)
	if err != nil {
		return err
	}
	st.docs = append([]catalogoci.Attestation{{ArtifactType: catalogoci.SBOMArtifactType, Data: sb}}, st.docs...)
	return nil
}

func (attestStep) Cleanup(context.Context, *buildState, bool) error { return nil }

func (b *Baker) tool() string { return "bakery-" + b.version }

// layerName names a layer build in the documents.
func layerName(c *recipes.Container, lb *layerBuild) string {
	l := c.Layers[lb.index]
	return fmt.Sprintf("layer %d: %s → %s", lb.index+1, l.Source, l.Destination)
}

func (s attestStep) sbom(st *buildState, digest v1.Hash) ([]byte, error) {
	p := st.plan
	in := spdx.Input{
		Tool:    s.b.tool(),
		Created: s.b.epoch,
		Image:   spdx.Image{Name: p.container.Name, Version: p.recipe.Version, Digest: digest.String()},
	}
	if p.Location == "" {
		in.Image.Repository = p.tag.Context().Name()
	}
	for _, lb := range st.builds {
		in.Layers = append(in.Layers, spdx.Layer{
			Name: layerName(p.container, lb), Digest: lb.built.Digest.String(),
			Platforms: lb.platforms, Files: lb.files.Files(),
		})
	}
	if p.base.digest != "" {
		for i, pi := range p.base.images {
			d, err := pi.img.Digest()
			if err != nil {
				return nil, fmt.Errorf("reading the digest of base %s (%s): %w", p.base.name, pi.platform.String(), err)
			}
			var pkgs []sbom.Package
			if i < len(st.pkgdbs) {
				pkgs = sbom.Packages(st.pkgdbs[i])
			}
			in.Bases = append(in.Bases, spdx.Base{Name: p.base.name, Digest: d.String(), Platform: pi.platform.String(), Packages: pkgs})
		}
	}
	return spdx.Build(in)
}

func (s attestStep) provenance(st *buildState, digest v1.Hash) ([]byte, error) {
	p := st.plan
	r := p.recipe
	dir := filepath.Clean(r.Dir)
	rel := func(path string) string {
		if r.Dir != "" {
			// The common case, a clean path inside the recipe's folder,
			// without filepath.Rel's work for each of many files.
			if x, ok := strings.CutPrefix(path, dir+string(filepath.Separator)); ok && x != "" && filepath.Clean(path) == path && dir != "." {
				return filepath.ToSlash(x)
			}
			if x, err := filepath.Rel(r.Dir, path); err == nil && !strings.HasPrefix(x, "..") {
				return filepath.ToSlash(x)
			}
		}
		return filepath.ToSlash(path)
	}
	var deps []intoto.ResourceDescriptor
	if r.File != "" {
		raw, err := os.ReadFile(r.File)
		if err != nil {
			return nil, fmt.Errorf("reading the recipe file for the provenance: %w", err)
		}
		sum := sha256.Sum256(raw)
		deps = append(deps, intoto.ResourceDescriptor{Name: "recipe", URI: "file:" + rel(r.File), Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}})
	}
	if p.base.digest != "" {
		alg, hexd, _ := strings.Cut(p.base.digest, ":")
		deps = append(deps, intoto.ResourceDescriptor{Name: "base", URI: p.base.name, Digest: map[string]string{alg: hexd}})
	}
	seen := map[string]bool{}
	for _, lb := range st.builds {
		l := p.container.Layers[lb.index]
		sums := inputSums{}
		if lb.index < len(p.sums) {
			sums = p.sums[lb.index]
		}
		if l.Kind == recipes.SourceTarball {
			uri := "file:" + rel(l.Path)
			if seen[uri] {
				continue
			}
			seen[uri] = true
			d := intoto.ResourceDescriptor{Name: "input", URI: uri, Digest: map[string]string{}}
			if s, ok := sums[""]; ok {
				d.Digest["blake3"] = hex.EncodeToString(s[:])
			}
			deps = append(deps, d)
			continue
		}
		if lb.files == nil {
			// sbom = false: no SHA-256 of the files, their BLAKE3 only.
			for _, src := range slices.Sorted(maps.Keys(sums)) {
				uri := "file:" + rel(src)
				if seen[uri] {
					continue
				}
				seen[uri] = true
				s := sums[src]
				deps = append(deps, intoto.ResourceDescriptor{Name: "input", URI: uri, Digest: map[string]string{"blake3": hex.EncodeToString(s[:])}})
			}
			continue
		}
		for _, f := range lb.files.Files() {
			src, ok := lb.sources[f.Path]
			if !ok {
				continue
			}
			uri := "file:" + rel(src)
			if seen[uri] {
				continue
			}
			seen[uri] = true
			d := intoto.ResourceDescriptor{Name: "input", URI: uri, Digest: map[string]string{"sha256": f.SHA256}}
			if s, ok := sums[src]; ok {
				d.Digest["blake3"] = hex.EncodeToString(s[:])
			}
			deps = append(deps, d)
		}
	}
	return intoto.Build(intoto.Input{
		Subjects:  []intoto.ResourceDescriptor{{Name: p.Target, Digest: map[string]string{digest.Algorithm: digest.Hex}}},
		BuildType: ContainerBuildType,
		ExternalParameters: map[string]any{
			"recipe": r.Name, "version": r.Version, "container": p.container.Name, "target": p.Target,
		},
		InternalParameters: map[string]any{
			"bakeKey": p.Key, "keyScheme": keyScheme, "epoch": s.b.epoch.UTC().Format(time.RFC3339),
			"compression": compressionFormat(p.container.Compression),
		},
		Dependencies:  deps,
		BakeryVersion: s.b.version,
		InvocationID:  p.Key,
	})
}

// rememberDigests puts the digests of the files lb's layer read from disk
// into the SBOM's digest cache, under their input sums (see recorder):
// for a bake that computed its key while building, whose recorder could
// not look them up.
func (st *buildState) rememberDigests(lb *layerBuild) {
	if lb.files == nil || lb.index >= len(st.plan.sums) {
		return
	}
	sums := st.plan.sums[lb.index]
	for _, f := range lb.files.Files() {
		src, ok := lb.sources[f.Path]
		if !ok {
			continue
		}
		if s, ok := sums[src]; ok {
			st.cache.Put(hex.EncodeToString(s[:]), f.FileDigest)
		}
	}
}
