package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/recipes"
)

// autoLookups bounds how many manifests FindKey reads at once from a
// registry.
const autoLookups = 8

// Retarget points p, prepared for an auto-versioned recipe (version =
// "auto"), at the version r (r.WithVersion of the prepared recipe) holds:
// the target tag and the version written into the image change; the
// bake key, which leaves an auto version out, does not.
func (b *Baker) Retarget(p *Plan, r *recipes.Recipe) error {
	return b.target(p, r)
}

// FindKey returns, for p of an auto-versioned recipe whose key is known
// (Key), the image of p's container that carries p's bake key among the
// versions the recipe's version_format could have assigned (nil when
// none does), and all those versions, retired ones included (a version
// is never assigned twice). It reads the local layout's index, history
// and the manifests of those versions, or, for a registry, lists the
// repository's tags (a retired version's tombstone tag names it) and
// reads those versions' manifests, a few at once: its cost grows with
// the number of auto versions kept, which retire bounds.
func (b *Baker) FindKey(ctx context.Context, p *Plan) (*catalog.Image, []string, error) {
	if p.Key == "" {
		return nil, nil, fmt.Errorf("container %s: looking up the bake key before it is computed: call Key first", p.container.Name)
	}
	c := p.container
	var refs, versions, retired []string
	var store catalogoci.Store
	if p.Location != "" {
		l, err := catalogoci.OpenLayout(p.Location)
		if err != nil {
			return nil, nil, err
		}
		descs, err := l.Descriptors()
		if err != nil {
			return nil, nil, err
		}
		for _, d := range descs {
			v, ok := strings.CutPrefix(d.Annotations[catalog.AnnotationRefName], c.Name+":")
			if ok && p.recipe.IsAutoVersion(v) && !slices.Contains(versions, v) {
				versions = append(versions, v)
				refs = append(refs, c.Name+":"+v)
			}
		}
		// A retired version is not assigned again: a version names
		// one image for good.
		tombstones, err := l.Store(c.Name, p.recipe.Name, c.Name).RetiredEvents(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, ev := range tombstones {
			if p.recipe.IsAutoVersion(ev.Version) {
				retired = append(retired, ev.Version)
			}
		}
		store = l
	} else {
		repo := p.tag.Context()
		tags, err := remote.List(repo, b.remoteOptions(ctx)...)
		if err != nil && !isMissingRepo(err) {
			return nil, nil, fmt.Errorf("container %s: listing the tags of %s: %w", c.Name, repo, catalogoci.ExplainRegistryError(repo, err))
		}
		tombstone := catalogoci.RetiredTagPrefix + c.Name + "-"
		for _, t := range tags {
			if v, ok := strings.CutPrefix(t, tombstone); ok && p.recipe.IsAutoVersion(v) {
				// A retired version (its tombstone's tag) is not
				// assigned again: a version names one image for good.
				retired = append(retired, v)
			}
			if p.recipe.IsAutoVersion(t) {
				versions = append(versions, t)
				refs = append(refs, repo.Tag(t).String())
			}
		}
		store = catalogoci.NewRegistry(catalogoci.WithKeychain(b.keychain), catalogoci.WithTransport(b.transport))
	}
	imgs := make([]*catalog.Image, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(autoLookups)
	for i, ref := range refs {
		g.Go(func() error {
			img, err := store.Lookup(gctx, ref)
			if err != nil {
				return fmt.Errorf("container %s: %w", c.Name, err)
			}
			imgs[i] = img
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	// Of several versions with the key (a --force rebake), the first
	// listed wins.
	for i, img := range imgs {
		if img != nil && img.BakeKey == p.Key && img.Recipe == p.recipe.Name {
			if img.Version == "" {
				img.Version = versions[i]
			}
			return img, append(versions, retired...), nil
		}
	}
	return nil, append(versions, retired...), nil
}

// isMissingRepo reports whether listing tags failed because the
// repository does not exist yet (no version baked).
func isMissingRepo(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}
