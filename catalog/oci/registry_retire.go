package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrDeleteRefused is wrapped by the error of [RegistryStore.RemoveVersion]
// when the registry refuses to delete manifests (many do unless their
// operator enables it).
var ErrDeleteRefused = errors.New("the registry refuses to delete manifests")

// RemoveVersion deletes version e of the artifact from the registry: its
// event artifacts (referrers) by digest, its version tag, and its
// manifest by digest in its repository and in every stage repository it
// was copied to. Right before, it reads the repository again and refuses
// (an error) when a stage tag, or any other tag of the artifact, names the
// version's digest. A version no longer there is not an error; it returns
// how many manifests it deleted. Registries that refuse deletion give an
// error wrapping [ErrDeleteRefused]. Blobs are the registry's to collect.
func (s *RegistryStore) RemoveVersion(ctx context.Context, e catalog.Entry) (deleted int, err error) {
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
	if err := del(s.repo.Tag(e.Version)); err != nil {
		return fail(err)
	}
	for _, l := range locations[v] {
		r, err := name.NewRepository(l.Where)
		if err != nil {
			continue
		}
		if err := del(r.Digest(v.desc.Digest.String())); err != nil {
			return fail(err)
		}
	}
	return deleted, nil
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
