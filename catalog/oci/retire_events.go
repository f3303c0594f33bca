package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bakery-sh/bakery/catalog"
)

// A retired version's events go with it (they are referrers of its
// manifest), so its retire event is kept apart, as a tombstone: an event
// artifact without a subject that names the version in its own
// annotations. In a layout its descriptor stays in the history file
// (bakery-history.json, with the events; see Layout.History); in a
// registry it is tagged RetiredTagPrefix + ARTIFACT-VERSION. Stores
// list them with RetiredEvents, so that history shows a version's end.
const (
	// AnnotationRetiredDigest is, on a tombstone, the digest of the
	// manifest retired.
	AnnotationRetiredDigest = "dev.bakery.retired.digest"
	// AnnotationRetiredRecipe, AnnotationRetiredArtifact and
	// AnnotationRetiredVersion name the version retired.
	AnnotationRetiredRecipe   = "dev.bakery.retired.recipe"
	AnnotationRetiredArtifact = "dev.bakery.retired.artifact"
	AnnotationRetiredVersion  = "dev.bakery.retired.version"
	// RetiredTagPrefix starts the tag of a tombstone in a registry.
	RetiredTagPrefix = "bakery-retired-"
)

// tombstone returns the manifest of the retire event ev of version v
// (digest) of recipe's artifact, and its descriptor.
func tombstone(recipe, artifact, version string, digest v1.Hash, ev catalog.Event) ([]byte, v1.Descriptor, error) {
	a := event{Event: ev}.annotations()
	a[AnnotationRetiredDigest] = digest.String()
	a[AnnotationRetiredRecipe] = recipe
	a[AnnotationRetiredArtifact] = artifact
	a[AnnotationRetiredVersion] = version
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  EventArtifactType,
		Config:        emptyDescriptor(),
		Layers:        []v1.Descriptor{emptyDescriptor()},
		Annotations:   a,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("encoding the retire event of %s@%s: %w", recipe, version, err)
	}
	return raw, v1.Descriptor{MediaType: types.OCIManifestSchema1, ArtifactType: EventArtifactType, Digest: hashOfBytes(raw),
		Size: int64(len(raw)), Annotations: a}, nil
}

// retiredEvent reads a tombstone's annotations: the event, when they are
// a tombstone of recipe's artifact.
func retiredEvent(a map[string]string, recipe, artifact string, kind catalog.Kind) (catalog.Event, bool) {
	if a[AnnotationRetiredRecipe] != recipe || a[AnnotationRetiredArtifact] != artifact || a[AnnotationRetiredVersion] == "" {
		return catalog.Event{}, false
	}
	e, ok := parseEvent(v1.Descriptor{Annotations: a})
	if !ok || e.Action != catalog.ActionRetire {
		return catalog.Event{}, false
	}
	ev := e.Event
	ev.Recipe, ev.Artifact, ev.Version, ev.Kind = recipe, artifact, a[AnnotationRetiredVersion], kind
	return ev, true
}

// RetireVersion removes version e as [LayoutStore.RemoveVersion] does and,
// in the same transaction, records ev (a retire event) as the version's
// tombstone, which stays in the layout's history file:
// [LayoutStore.RetiredEvents] lists it. Running it again for a version gone already records nothing.
func (s *LayoutStore) RetireVersion(ctx context.Context, e catalog.Entry, ev catalog.Event) (*Removal, error) {
	return s.removeVersion(ctx, e, &ev)
}

// RetiredEvents returns the retire events of the artifact's versions
// retired from the layout, oldest first.
func (s *LayoutStore) RetiredEvents(ctx context.Context) ([]catalog.Event, error) {
	descs, err := s.l.allDescriptors() // the history file holds them; older layouts index.json
	if err != nil {
		return nil, fmt.Errorf("reading the retired versions of %s in layout %s: %w", s.name, s.l.dir, err)
	}
	var out []catalog.Event
	for _, d := range descs {
		if ev, ok := retiredEvent(d.Annotations, s.recipe, s.artifact, catalog.KindContainer); ok {
			out = append(out, ev)
		}
	}
	slices.SortStableFunc(out, func(a, b catalog.Event) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// writeTombstone stages the tombstone of v in tx.
func (s *LayoutStore) writeTombstone(tx *Tx, version string, digest v1.Hash, ev catalog.Event) error {
	raw, d, err := tombstone(s.recipe, s.artifact, version, digest, ev)
	if err != nil {
		return err
	}
	empty := emptyDescriptor()
	if _, err := tx.WriteBlob(empty.Digest, strings.NewReader(emptyJSON)); err != nil {
		return fmt.Errorf("recording the retire event of %s@%s: %w", s.recipe, version, err)
	}
	if _, err := tx.WriteBlob(d.Digest, bytes.NewReader(raw)); err != nil {
		return fmt.Errorf("recording the retire event of %s@%s: %w", s.recipe, version, err)
	}
	return tx.attach(d)
}

var invalidTagChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// retiredTag is the tag of version's tombstone.
func (s *RegistryStore) retiredTag(version string) name.Tag {
	t := RetiredTagPrefix + invalidTagChars.ReplaceAllString(version, "_")
	if s.artifact != "" {
		t = RetiredTagPrefix + invalidTagChars.ReplaceAllString(s.artifact, "_") + "-" + invalidTagChars.ReplaceAllString(version, "_")
	}
	return s.repo.Tag(t[:min(len(t), 128)])
}

// RetireVersion removes version e as [RegistryStore.RemoveVersion] does,
// recording ev (a retire event) as its tombstone, tagged RetiredTagPrefix
// + ARTIFACT-VERSION in the repository, once the checks passed and before
// anything is deleted: an interrupted run leaves the end of the version
// recorded, and running it again rewrites the same tombstone (the time of
// an earlier one is kept) and finishes the removal. A tombstone whose
// version is still there (the registry refused the deletion) is not
// listed by [RegistryStore.RetiredEvents].
func (s *RegistryStore) RetireVersion(ctx context.Context, e catalog.Entry, ev catalog.Event) (int, error) {
	return s.removeVersion(ctx, e, func(digest v1.Hash) error { return s.writeTombstone(ctx, e.Version, digest, ev) })
}

func (s *RegistryStore) writeTombstone(ctx context.Context, version string, digest v1.Hash, ev catalog.Event) error {
	what := fmt.Sprintf("recording the retire event of %s@%s in %s", s.recipe, version, s.repo)
	ss, err := s.session(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	tag := s.retiredTag(version)
	if desc, err := remote.Get(tag, ss.with(ctx)...); err == nil {
		var m v1.Manifest
		if json.Unmarshal(desc.Manifest, &m) == nil {
			if old, ok := retiredEvent(m.Annotations, s.recipe, s.artifact, catalog.KindContainer); ok && m.Annotations[AnnotationRetiredDigest] == digest.String() {
				ev.Time = old.Time // an interrupted run recorded it
			}
		}
	}
	raw, d, err := tombstone(s.recipe, s.artifact, version, digest, ev)
	if err != nil {
		return err
	}
	if err := remote.WriteLayer(s.repo, static.NewLayer([]byte(emptyJSON), types.OCIEmptyJSON), ss.with(ctx)...); err != nil {
		return fmt.Errorf("%s: uploading the empty blob: %w", what, ss.explain(s.repo, err))
	}
	if err := remote.Put(tag, rawManifest{raw, d.MediaType}, ss.with(ctx)...); err != nil {
		return fmt.Errorf("%s: %w", what, ss.explain(s.repo, err))
	}
	return nil
}

// RetiredEvents returns the retire events of the artifact's versions
// retired from the repository (its RetiredTagPrefix tags), oldest first.
func (s *RegistryStore) RetiredEvents(ctx context.Context) ([]catalog.Event, error) {
	what := fmt.Sprintf("reading the retired versions of %s", s.repo)
	ss, err := s.session(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	tags, err := remote.List(s.repo, ss.with(ctx)...)
	if err != nil {
		if ctx.Err() == nil && repoAbsent(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: %w", what, ss.explain(s.repo, err))
	}
	var out []catalog.Event
	for _, tag := range tags {
		if !strings.HasPrefix(tag, RetiredTagPrefix) {
			continue
		}
		desc, err := remote.Get(s.repo.Tag(tag), ss.with(ctx)...)
		if err != nil {
			if ctx.Err() == nil && isAbsent(err) {
				continue
			}
			return nil, fmt.Errorf("%s: %w", what, ss.explain(s.repo, err))
		}
		var m v1.Manifest
		if json.Unmarshal(desc.Manifest, &m) != nil {
			continue
		}
		if ev, ok := retiredEvent(m.Annotations, s.recipe, s.artifact, catalog.KindContainer); ok && !slices.Contains(tags, ev.Version) {
			out = append(out, ev)
		}
	}
	slices.SortStableFunc(out, func(a, b catalog.Event) int { return a.Time.Compare(b.Time) })
	return out, nil
}
