package oci

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/recipes"
)

// defaultPlatform is the platform of a scratch image when the recipe
// names none. It is fixed, not the host's, so the same recipe gives the
// same digest on every machine.
const defaultPlatform = "linux/amd64"

// base is a resolved base image: pinned by digest, narrowed to the
// platforms the recipe asks for.
type base struct {
	// name is the base as a full reference ("index.docker.io/library/alpine:3.20"),
	// the layout path, or "scratch".
	name string
	// digest pins the base; empty for scratch.
	digest string
	// images has one entry per platform, in output order.
	images []platformImage
	// multi is true when the result must be an image index.
	multi bool
}

type platformImage struct {
	platform v1.Platform
	img      v1.Image
}

// resolveBase pins c's base image by digest and selects its platforms.
func (b *Baker) resolveBase(ctx context.Context, c *recipes.Container) (*base, error) {
	switch c.BaseKind {
	case recipes.BaseScratch:
		return scratchBase(c)
	case recipes.BaseLayout:
		return b.layoutBase(c)
	case recipes.BaseRecipe:
		return b.linkedBase(ctx, c)
	default:
		return b.registryBase(ctx, c)
	}
}

func scratchBase(c *recipes.Container) (*base, error) {
	plats := c.Platforms
	if len(plats) == 0 {
		plats = []string{defaultPlatform}
	}
	bs := &base{name: "scratch", multi: len(plats) > 1}
	for _, s := range plats {
		p, err := v1.ParsePlatform(s)
		if err != nil {
			return nil, fmt.Errorf("container %s: platform %q: %w", c.Name, s, err)
		}
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("container %s: reading empty config: %w", c.Name, err)
		}
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture, cfg.Variant, cfg.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			return nil, fmt.Errorf("container %s: setting platform: %w", c.Name, err)
		}
		bs.images = append(bs.images, platformImage{platform: *p, img: img})
	}
	return bs, nil
}

// layoutBase reads a base from an OCI image layout: "oci:PATH[:REF]" or a path.
func (b *Baker) layoutBase(c *recipes.Container) (*base, error) {
	path, ref := c.BaseLayoutPath, c.BaseLayoutRef
	idx, err := layout.ImageIndexFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("container %s: reading base OCI layout %s: %w; check that it is an OCI image layout (it has an oci-layout file)", c.Name, path, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("container %s: reading base OCI layout %s: %w", c.Name, path, err)
	}
	var matches []v1.Descriptor
	var names []string
	for _, d := range im.Manifests {
		n, named := d.Annotations[catalog.AnnotationRefName]
		if !named && d.Annotations[catalogoci.AnnotationSubject] != "" {
			continue // a bakery history entry (older layouts list them here), not an image
		}
		names = append(names, n)
		if (ref == "" || n == ref || strings.HasSuffix(n, ":"+ref)) && !slices.ContainsFunc(matches, func(m v1.Descriptor) bool { return m.Digest == d.Digest }) {
			matches = append(matches, d) // one image under several tags (a version and its stage) is one
		}
	}
	switch {
	case len(matches) == 0 && ref != "":
		return nil, fmt.Errorf("container %s: base OCI layout %s has no image named %q; it has: %s", c.Name, path, ref, strings.Join(names, ", "))
	case len(matches) == 0:
		return nil, fmt.Errorf("container %s: base OCI layout %s is empty", c.Name, path)
	case len(matches) > 1:
		return nil, fmt.Errorf("container %s: base OCI layout %s holds %d images; name one as oci:%s:REF (it has: %s)", c.Name, path, len(matches), path, strings.Join(names, ", "))
	}
	d := matches[0]
	name := "oci:" + path
	if ref != "" {
		name += ":" + ref
	}
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("container %s: reading base index %s from %s: %w", c.Name, d.Digest, path, err)
		}
		return fromIndex(c, name, d.Digest.String(), child)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("container %s: reading base image %s from %s: %w", c.Name, d.Digest, path, err)
	}
	return fromImage(c, name, d.Digest.String(), img)
}

// linkedBase reads the image a "recipe:NAME" base stands for, as the
// bake orchestration resolved it: in a local layout or a registry.
func (b *Baker) linkedBase(ctx context.Context, c *recipes.Container) (*base, error) {
	l := c.BaseLink
	if l == nil || l.Resolved == nil {
		return nil, fmt.Errorf("container %s: base %s is not resolved: bake the recipes together (bakery bake FOLDER) so that %s bakes first", c.Name, c.Base, c.Base)
	}
	cp := *c
	if l.Resolved.Layout != "" {
		cp.BaseKind, cp.BaseLayoutPath, cp.BaseLayoutRef = recipes.BaseLayout, l.Resolved.Layout, l.Resolved.Ref
		bs, err := b.layoutBase(&cp)
		if err != nil {
			return nil, err
		}
		bs.name = l.String() + "@" + l.Resolved.Version // the key does not depend on where the layout is
		return bs, nil
	}
	cp.BaseKind, cp.Base = recipes.BaseRegistry, l.Resolved.Image
	bs, err := b.registryBase(ctx, &cp)
	if err != nil {
		return nil, err
	}
	bs.name = l.String() + "@" + l.Resolved.Version
	return bs, nil
}

// registryBase pins a registry base by digest with one manifest GET.
func (b *Baker) registryBase(ctx context.Context, c *recipes.Container) (*base, error) {
	ref, err := name.ParseReference(c.Base)
	if err != nil {
		return nil, fmt.Errorf("container %s: base %q is not a valid image reference: %w", c.Name, c.Base, err)
	}
	desc, err := remote.Get(ref, b.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("container %s: resolving base image %s: %w", c.Name, ref.Name(), catalogoci.ExplainRegistryError(ref.Context(), err))
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("container %s: reading base index %s: %w", c.Name, ref.Name(), err)
		}
		return fromIndex(c, ref.Name(), desc.Digest.String(), idx)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("container %s: reading base image %s: %w", c.Name, ref.Name(), err)
	}
	return fromImage(c, ref.Name(), desc.Digest.String(), img)
}

func fromImage(c *recipes.Container, name, digest string, img v1.Image) (*base, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("container %s: reading config of base %s: %w", c.Name, name, err)
	}
	p := cfg.Platform()
	if p == nil {
		p = &v1.Platform{}
	}
	if p.OS == "" || p.Architecture == "" {
		// The OCI spec requires both in a config; a base without them
		// takes them from the one platform the recipe names, or else
		// from the default platform, as a scratch image does.
		plat := defaultPlatform
		switch len(c.Platforms) {
		case 0:
		case 1:
			plat = c.Platforms[0]
		default:
			return nil, fmt.Errorf("container %s: base %s is a single-platform image that does not say its os and architecture; it cannot be %s: name one platform", c.Name, name, strings.Join(c.Platforms, " and "))
		}
		want, err := v1.ParsePlatform(plat)
		if err != nil {
			return nil, fmt.Errorf("container %s: platform %q: %w", c.Name, plat, err)
		}
		filled := *p
		if filled.OS == "" {
			filled.OS = want.OS
		}
		if filled.Architecture == "" {
			filled.Architecture, filled.Variant = want.Architecture, want.Variant
		}
		p = &filled
	}
	for _, s := range c.Platforms {
		want, err := v1.ParsePlatform(s)
		if err != nil {
			return nil, fmt.Errorf("container %s: platform %q: %w", c.Name, s, err)
		}
		if !p.Satisfies(*want) {
			return nil, fmt.Errorf("container %s: base %s is a single-platform image for %s, not %s; remove platforms or choose a multi-platform base", c.Name, name, p.String(), s)
		}
	}
	return &base{name: name, digest: digest, images: []platformImage{{platform: *p, img: img}}}, nil
}

func fromIndex(c *recipes.Container, name, digest string, idx v1.ImageIndex) (*base, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("container %s: reading base index %s: %w", c.Name, name, err)
	}
	var avail []v1.Descriptor
	var names []string
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS == "unknown" || !d.MediaType.IsImage() {
			continue // attestations and nested indexes are not runnable platforms
		}
		avail = append(avail, d)
		names = append(names, d.Platform.String())
	}
	var chosen []v1.Descriptor
	if len(c.Platforms) == 0 {
		chosen = avail
	}
	for _, s := range c.Platforms {
		want, err := v1.ParsePlatform(s)
		if err != nil {
			return nil, fmt.Errorf("container %s: platform %q: %w", c.Name, s, err)
		}
		i := slices.IndexFunc(avail, func(d v1.Descriptor) bool { return d.Platform.Satisfies(*want) })
		if i < 0 {
			return nil, fmt.Errorf("container %s: base %s has no platform %s; it has: %s", c.Name, name, s, strings.Join(names, ", "))
		}
		chosen = append(chosen, avail[i])
	}
	if len(chosen) == 0 {
		return nil, fmt.Errorf("container %s: base %s has no runnable platform images", c.Name, name)
	}
	bs := &base{name: name, digest: digest, multi: len(chosen) > 1}
	for _, d := range chosen {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("container %s: reading base %s for %s: %w", c.Name, name, d.Platform, err)
		}
		bs.images = append(bs.images, platformImage{platform: *d.Platform, img: img})
	}
	return bs, nil
}

// ResolveBase returns c's base image name and the digest it has now
// (empty for scratch), with one manifest request for a registry base.
func (b *Baker) ResolveBase(ctx context.Context, c *recipes.Container) (name, digest string, err error) {
	bs, err := b.resolveBase(ctx, c)
	if err != nil {
		return "", "", err
	}
	return bs.name, bs.digest, nil
}
