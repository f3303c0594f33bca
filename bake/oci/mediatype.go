package oci

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ociLayerType returns the OCI media type of a layer with media type mt:
// the same bytes under the name the OCI image spec gives them. ok is
// false for a type that has no OCI name.
func ociLayerType(mt types.MediaType) (_ types.MediaType, ok bool) {
	switch mt {
	case types.DockerLayer:
		return types.OCILayer, true
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer, true
	case types.DockerForeignLayer:
		return types.OCIRestrictedLayer, true
	case types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer,
		types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer:
		return mt, true
	}
	return mt, false
}

// ociImage returns img as an OCI image: an OCI manifest, an OCI config
// and OCI layer media types, with the same config content and the same
// layer bytes (so the same layer digests and diffIDs). A Docker-format
// base (what most registries serve) needs this: tools that read OCI
// images, like umoci and skopeo, refuse an OCI manifest that lists
// Docker layer types. An image already in OCI format only has its
// manifest and config types set, as before.
func ociImage(img v1.Image) (v1.Image, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading its manifest: %w", err)
	}
	convert := false
	for _, d := range m.Layers {
		if _, ok := ociLayerType(d.MediaType); !ok {
			return nil, fmt.Errorf("layer %s has media type %s, which an OCI image cannot hold; choose a base made of image layers", d.Digest, d.MediaType)
		}
		if mt, _ := ociLayerType(d.MediaType); mt != d.MediaType {
			convert = true
		}
	}
	if !convert {
		out := mutate.MediaType(img, types.OCIManifestSchema1)
		return mutate.ConfigMediaType(out, types.OCIConfigJSON), nil
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading its config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing its layers: %w", err)
	}
	if len(layers) != len(m.Layers) {
		return nil, fmt.Errorf("its manifest lists %d layers but the image has %d", len(m.Layers), len(layers))
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		mt, _ := ociLayerType(m.Layers[i].MediaType)
		adds[i] = mutate.Addendum{
			Layer:       withMediaType(l, mt),
			MediaType:   mt,
			URLs:        m.Layers[i].URLs,
			Annotations: m.Layers[i].Annotations,
		}
	}
	out := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	out = mutate.ConfigMediaType(out, types.OCIConfigJSON)
	if out, err = mutate.Append(out, adds...); err != nil {
		return nil, fmt.Errorf("relabelling its layers: %w", err)
	}
	// The base's own config replaces the one Append computed: same
	// diffIDs, and the base's history instead of empty entries.
	if out, err = mutate.ConfigFile(out, cfg.DeepCopy()); err != nil {
		return nil, fmt.Errorf("copying its config: %w", err)
	}
	if len(m.Annotations) > 0 {
		out = mutate.Annotations(out, m.Annotations).(v1.Image)
	}
	return out, nil
}

// mediaTypeLayer is a layer under another media type.
type mediaTypeLayer struct {
	v1.Layer
	mt types.MediaType
}

// MediaType implements v1.Layer.
func (l mediaTypeLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// withMediaType returns l reporting media type mt. A layer that a push
// may mount from the base's repository stays mountable.
func withMediaType(l v1.Layer, mt types.MediaType) v1.Layer {
	if ml, ok := l.(*remote.MountableLayer); ok {
		return &remote.MountableLayer{Layer: mediaTypeLayer{ml.Layer, mt}, Reference: ml.Reference}
	}
	return mediaTypeLayer{l, mt}
}
