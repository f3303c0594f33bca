package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrDeleteRefused is wrapped by the error of [RegistryStore.RemoveVersion]
// when the registry refuses to delete manifests (many do unless their
// operator enables it).
var ErrDeleteRefused = errors.New("the registry refuses to delete manifests")

// RemoveVersion deletes version e of the artifact from the registry: its
// event artifacts and documents (SBOM, provenance; referrers) by digest,
// its version tag, and its
// manifest by digest in its repository and in every stage repository it
// was copied to. Right before, it reads the repository again and refuses
// (an error) when a stage tag, or any other tag of the artifact, names the
// version's digest. A version no longer there is not an error; it returns
// how many manifests it deleted. Registries that refuse deletion give an
// error wrapping [ErrDeleteRefused]. On a registry without the referrers
// API the version's referrers fallback tag (sha256-HEX) goes too. Blobs
// are the registry's to collect.
func (s *RegistryStore) RemoveVersion(ctx context.Context, e catalog.Entry) (deleted int, err error) {
	return s.removeVersion(ctx, e, nil)
}

// removeVersion removes e; before, when not nil, runs once the checks
// passed and before anything is deleted.
func (s *RegistryStore) removeVersion(ctx context.Context, e catalog.Entry, before func(digest v1.Hash) error) (deleted int, err error) {
	fail := func(err error) (int, error) {
		return deleted, fmt.Errorf("removing %s@%s from %s: %w", s.recipe, e.Version, s.repo, err)
	}
	ss, err := s.session(ctx)
	if err != nil {
		return fail(err)
	}
	st, err := ss.read()
	if err != nil {
		return fail(err)
	}
	var v *version
	for _, w := range st.versions {
		if w.image.Version == e.Version {
			v = w
		}
	}
	if v == nil {
		return 0, nil
	}
	if e.Digest != "" && e.Digest != v.desc.Digest.String() {
		return fail(fmt.Errorf("the version is now %s, not %s as planned: plan again", v.desc.Digest, e.Digest))
	}
	holders, locations, err := ss.placements(st)
	if err != nil {
		return fail(err)
	}
	for stage, h := range holders {
		if h == v.desc.Digest {
			return fail(fmt.Errorf("it is in %s now: demote it first or leave it", stage))
		}
	}
	for tag, h := range st.others {
		if h == v.desc.Digest {
			return fail(fmt.Errorf("the tag %s:%s points at it: remove that tag first or leave it", s.repo, tag))
		}
	}
	if before != nil {
		if err := before(v.desc.Digest); err != nil {
			return fail(err)
		}
	}
	del := func(ref name.Reference) error {
		err := remote.Delete(ref, ss.with(ctx)...)
		switch {
		case err == nil:
			deleted++
			return nil
		case ctx.Err() == nil && isAbsent(err):
			return nil
		case refused(err):
			return fmt.Errorf("deleting %s: %w (%w): enable deletion on the registry or delete it there by hand", ref, ErrDeleteRefused, err)
		default:
			return fmt.Errorf("deleting %s: %w", ref, ss.explain(ref.Context(), err))
		}
	}
	for _, ev := range v.events {
		if ev.Digest.Hex == "" {
			continue
		}
		if err := del(s.repo.Digest(ev.Digest.String())); err != nil {
			return fail(err)
		}
	}
	var repos []name.Repository
	for _, l := range locations[v] {
		if r, err := name.NewRepository(l.Where); err == nil {
			repos = append(repos, r)
		}
	}
	// Its SBOM and provenance, here and in the stage repositories a
	// promotion copied them to, with those repositories' fallback tags.
	docRepos := []name.Repository{s.repo}
	for _, r := range repos {
		if !slices.ContainsFunc(docRepos, func(d name.Repository) bool { return d.Name() == r.Name() }) {
			docRepos = append(docRepos, r)
		}
	}
	for _, r := range docRepos {
		docs, err := registryReferrers(ctx, r, v.desc.Digest, ss.with(ctx))
		if err != nil {
			return fail(err)
		}
		for _, d := range docs {
			if err := del(r.Digest(d.desc.Digest.String())); err != nil {
				return fail(err)
			}
		}
		if err := deleteFallbackTag(ctx, ss, r, v.desc.Digest, del); err != nil {
			return fail(err)
		}
	}
	// The manifest by digest everywhere (Docker Distribution deletes its
	// tags with it), then the version tags left where a registry keeps
	// tags apart from manifests.
	for _, r := range repos {
		if err := del(r.Digest(v.desc.Digest.String())); err != nil {
			return fail(err)
		}
	}
	for _, r := range repos {
		if err := deleteTag(ctx, ss.with(ctx), r.Tag(e.Version)); err != nil {
			return fail(err)
		}
	}
	return deleted, nil
}

// deleteTag deletes tag by name where the registry allows it. A registry
// that deletes no tag by name (Docker Distribution answers
// DIGEST_INVALID or UNSUPPORTED; others refuse with 405) has removed it
// with its manifest already, so a refusal is not an error, nor is a tag
// already gone.
func deleteTag(ctx context.Context, opts []remote.Option, tag name.Tag) error {
	err := remote.Delete(tag, opts...)
	if err == nil || ctx.Err() == nil && (isAbsent(err) || refused(err) || tagDeleteUnsupported(err)) {
		return nil
	}
	return fmt.Errorf("deleting %s: %w", tag, explain(ctx, tag.Context(), err))
}

// tagDeleteUnsupported reports whether err is Docker Distribution's
// answer to deleting a manifest by tag: it expects a digest and says
// DIGEST_INVALID.
func tagDeleteUnsupported(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusBadRequest {
		return false
	}
	for _, d := range terr.Errors {
		if d.Code == transport.DigestInvalidErrorCode {
			return true
		}
	}
	return false
}

// deleteFallbackTag deletes the referrers fallback tag of digest
// (sha256-HEX, the index a registry without the referrers API keeps the
// image's referrers in, go-containerregistry's tag schema): the index by
// digest, then the tag itself where the registry deletes tags (many
// delete a manifest's tags with it and refuse deleting a tag alone: that
// refusal is not an error). A registry with the referrers API has no
// such tag.
func deleteFallbackTag(ctx context.Context, ss *regSession, repo name.Repository, digest v1.Hash, del func(name.Reference) error) error {
	tag := repo.Tag(digest.Algorithm + "-" + digest.Hex)
	desc, err := remote.Head(tag, ss.with(ctx)...)
	if err != nil {
		if ctx.Err() == nil && isAbsent(err) {
			return nil
		}
		return fmt.Errorf("reading the referrers tag %s: %w", tag, ss.explain(repo, err))
	}
	if err := del(repo.Digest(desc.Digest.String())); err != nil {
		return err
	}
	return deleteTag(ctx, ss.with(ctx), tag)
}

// refused reports whether err says the registry does not allow deleting.
func refused(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	switch terr.StatusCode {
	case http.StatusMethodNotAllowed, http.StatusForbidden:
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.UnsupportedErrorCode || d.Code == transport.DeniedErrorCode {
			return true
		}
	}
	return false
}
