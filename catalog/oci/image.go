package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// KindContainer is the catalog.Image Kind of OCI images.
const KindContainer = catalog.KindContainer

// Store finds baked images by reference.
type Store interface {
	// Lookup returns the image tagged ref, or (nil, nil) if there is none.
	Lookup(ctx context.Context, ref string) (*catalog.Image, error)
}

// ImageFromAnnotations returns the catalog entry for the container image (or
// image index) with the given digest and total size, found at reference,
// from its manifest annotations: recipe, artifact, version, bake key, base
// image name and digest, and creation time (RFC 3339). Missing annotations
// leave their fields empty; a creation time that is not RFC 3339 is an
// error.
func ImageFromAnnotations(reference string, digest v1.Hash, size int64, annotations map[string]string) (*catalog.Image, error) {
	img := &catalog.Image{
		Ref: catalog.Ref{
			Recipe:  annotations[catalog.AnnotationRecipe],
			Version: annotations[catalog.AnnotationVersion],
		},
		Artifact:   annotations[catalog.AnnotationArtifact],
		Kind:       KindContainer,
		BakeKey:    annotations[catalog.AnnotationBakeKey],
		Reference:  reference,
		Digest:     digest.String(),
		Size:       size,
		BaseName:   annotations[catalog.AnnotationBaseName],
		BaseDigest: annotations[catalog.AnnotationBaseDigest],
	}
	if c, ok := annotations[catalog.AnnotationCreated]; ok && c != "" {
		t, err := time.Parse(time.RFC3339, c)
		if err != nil {
			return nil, fmt.Errorf("reading image %s: annotation %s=%q is not an RFC 3339 time: fix the annotation or re-bake the image: %w", reference, catalog.AnnotationCreated, c, err)
		}
		img.Created = t
	}
	return img, nil
}

// imageFromManifest reads the annotations of a raw manifest or index.
func imageFromManifest(reference string, digest v1.Hash, raw []byte, size int64) (*catalog.Image, error) {
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("reading manifest %s of %s: %w", digest, reference, err)
	}
	return ImageFromAnnotations(reference, digest, size, m.Annotations)
}

// fetchFunc returns the raw bytes of a manifest or index.
type fetchFunc func(ctx context.Context, desc v1.Descriptor) ([]byte, error)

// collect adds desc and every descriptor reachable from it (child manifests,
// configs, layers) to into, keyed by digest so shared blobs appear once.
// raw is desc's content when the caller already has it, else nil; fetch
// reads the content of manifests and indexes, never of other blobs.
func collect(ctx context.Context, desc v1.Descriptor, raw []byte, fetch fetchFunc, into map[v1.Hash]v1.Descriptor) error {
	if _, seen := into[desc.Digest]; seen {
		return nil
	}
	into[desc.Digest] = desc
	if !isManifest(desc.MediaType) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if raw == nil {
		var err error
		if raw, err = fetch(ctx, desc); err != nil {
			return fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
		}
	}
	if desc.MediaType.IsIndex() {
		var im v1.IndexManifest
		if err := json.Unmarshal(raw, &im); err != nil {
			return fmt.Errorf("parsing index %s: %w", desc.Digest, err)
		}
		for _, child := range im.Manifests {
			if err := collect(ctx, child, nil, fetch, into); err != nil {
				return err
			}
		}
		return nil
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("parsing manifest %s: %w", desc.Digest, err)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if _, seen := into[d.Digest]; !seen {
			into[d.Digest] = d
		}
	}
	return nil
}

// totalSize sums the sizes of the collected blobs.
func totalSize(blobs map[v1.Hash]v1.Descriptor) int64 {
	var n int64
	for _, d := range blobs {
		n += d.Size
	}
	return n
}
