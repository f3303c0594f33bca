package oci

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// publish makes version v available in the stage repository dst, the way
// a promotion into a stage with its own repository needs it: the manifest
// by digest (same bytes, nothing rebuilt) and the version tag
// dst:VERSION. A version tag is immutable: when dst:VERSION already names
// another digest, publish refuses and writes nothing. When the tag is
// there already, nothing is written; when only the manifest is, only the
// tag is. source reads the image (a v1.Image) or index (a
// v1.ImageIndex) to copy; remote.Write uploads only the blobs dst lacks
// (mounting them within one registry). docs reads the documents attached
// to the image (its SBOM and provenance), which are copied too, before
// the version tag, and also when the tag is there already (an image
// published before bakery copied them gets them then).
func publish(ctx context.Context, opts []remote.Option, v *version, dst name.Repository, source func() (any, error), docs func() ([]referrer, error)) error {
	vtag := dst.Tag(v.image.Version)
	what := fmt.Sprintf("publishing %s in %s", v.ref(), dst)
	held, err := head(ctx, opts, vtag)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if held != nil {
		if held.Digest != v.desc.Digest {
			return fmt.Errorf("%s: %s already holds %s, not this image's %s: a version tag is never overwritten; remove or rename that tag in %s by hand, or bake a new version", what, vtag, held.Digest, v.desc.Digest, dst)
		}
		return publishDocs(ctx, opts, dst, docs, what)
	}
	there, err := head(ctx, opts, dst.Digest(v.desc.Digest.String()))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if there == nil {
		src, err := source()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		ref := dst.Digest(v.desc.Digest.String())
		switch src := src.(type) {
		case v1.ImageIndex:
			err = remote.WriteIndex(ref, src, opts...)
		case v1.Image:
			err = remote.Write(ref, src, opts...)
		default:
			err = fmt.Errorf("cannot copy a %T", src)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, explain(ctx, dst, err))
		}
	}
	if err := publishDocs(ctx, opts, dst, docs, what); err != nil {
		return err
	}
	if err := remote.Put(vtag, rawManifest{v.raw, v.desc.MediaType}, opts...); err != nil {
		return fmt.Errorf("%s: tagging %s: %w", what, vtag, explain(ctx, dst, err))
	}
	return nil
}

// publishDocs copies the documents docs reads into dst.
func publishDocs(ctx context.Context, opts []remote.Option, dst name.Repository, docs func() ([]referrer, error), what string) error {
	rs, err := docs()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := copyReferrers(ctx, opts, dst, rs); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
