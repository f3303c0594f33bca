package oci

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bakery-sh/bakery/catalog"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LayoutStore is the lifecycle store ([catalog.Store]) of one container
// artifact whose images are in a local OCI image layout (bakery's embedded
// default). Everything it knows is in the layout's index.json and blobs:
//
//   - a version is the descriptor named NAME:VERSION (the
//     org.opencontainers.image.ref.name annotation) of a manifest carrying
//     the artifact's bakery annotations with that version;
//   - a version is in a stage when NAME:STAGE names its digest (a stage's
//     Repository does not apply to a layout and is ignored);
//   - its history is event artifacts like a registry's (see
//     [EventArtifactType]), listed in index.json without a ref name, so
//     that tools looking images up by name ignore them, with
//     [AnnotationSubject] naming the image and the event in the
//     descriptor's annotations.
//
// Every change happens in one [Tx] committed under the layout's lock, after
// reading the layout under that same lock: changes from any number of
// processes are serialised and each sees the previous one's result.
type LayoutStore struct {
	l                      *Layout
	name, recipe, artifact string
}

// Compile-time check that LayoutStore is a catalog.Store.
var _ catalog.Store = (*LayoutStore)(nil)

// Store returns the lifecycle store of recipe's container artifact whose
// images are tagged NAME:VERSION in the layout (name is the layout
// repository name: the container block label).
func (l *Layout) Store(name, recipe, artifact string) *LayoutStore {
	return &LayoutStore{l: l, name: name, recipe: recipe, artifact: artifact}
}

// Entries returns every version of the artifact in the layout, oldest
// first, with its stages, revocation, location (the layout directory) and
// history. It reads index.json once and each version's manifest.
func (s *LayoutStore) Entries(ctx context.Context) ([]catalog.Entry, error) {
	st, err := s.read(ctx)
	if err != nil {
		// The caller says whose catalog it reads (promote.Load: "reading
		// the catalog of container NAME"); this says where.
		return nil, fmt.Errorf("layout %s: %w", s.l.dir, err)
	}
	holders := map[string]v1.Hash{}
	for stage := range st.stageRepos() {
		if h, ok := st.others[stage]; ok {
			holders[stage] = h
		}
	}
	entries := make([]catalog.Entry, len(st.versions))
	for i, v := range st.versions {
		entries[i] = v.entry(holders, []catalog.Location{{Where: s.l.dir, ID: v.desc.Digest.String()}})
	}
	return entries, nil
}

// Promote puts version e into spec's stage, recording ev (its Time must be
// set; Action and Stage are filled in when empty), in one transaction under
// the layout lock: it records ev unless an identical event (action, stage,
// time) or a live promotion of the image into the stage is there, tags the
// winner NAME:STAGE (the newest live promotion into the stage, as for a
// [RegistryStore]) and records a demote event ("replaced by VERSION") on
// every other version that lost the stage. Running it again writes
// nothing. When another version's newer promotion holds the stage, the
// promotion is recorded (and demoted) and Promote returns an error wrapping
// [ErrSuperseded]. A revoked image is refused.
func (s *LayoutStore) Promote(ctx context.Context, e catalog.Entry, spec catalog.StageSpec, ev catalog.Event) error {
	fail := func(err error) error {
		return fmt.Errorf("promoting %s@%s (%s in layout %s) to %s: %w", s.recipe, e.Version, s.name, s.l.dir, spec.Name, err)
	}
	pe, err := checkEvent(ev, catalog.ActionPromote, spec.Name)
	if err != nil {
		return fail(err)
	}
	var v, w *version
	var we *event
	err = s.update(ctx, func(tx *Tx, st *layoutState) error {
		if v, err = st.find(e, s.l.dir); err != nil {
			return err
		}
		if _, isVersion := st.byTag[pe.Stage]; isVersion {
			return fmt.Errorf("the stage's tag %s:%s is a version tag: rename the stage", s.name, pe.Stage)
		}
		if revoked, reason := v.revoked(); revoked {
			return fmt.Errorf("the image is revoked (%s): unrevoke it first", cmp.Or(reason, "no reason given"))
		}
		if v.live(pe.Stage) == nil && !v.has(pe.key()) {
			if err := s.writeEvent(tx, v, pe); err != nil {
				return err
			}
		}
		if w, we = st.winner(pe.Stage); w == nil {
			return errors.New("no version claims the stage: check with bakery status")
		}
		if st.others[pe.Stage] != w.desc.Digest {
			if err := tx.Tag(s.name+":"+pe.Stage, w.desc); err != nil {
				return err
			}
		}
		for _, d := range st.demotions(pe.Stage, w, we) {
			if err := s.writeEvent(tx, d.v, d.e); err != nil {
				return fmt.Errorf("recording that %s left the stage: %w", d.v.ref(), err)
			}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if w != v {
		return fail(supersededError(v, w, we))
	}
	return nil
}

// Revoke records ev (a revoke; its Time must be set) on version e, unless
// the image is already revoked, and removes every NAME:STAGE tag of the
// image, in one transaction.
func (s *LayoutStore) Revoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	re, err := checkEvent(ev, catalog.ActionRevoke, "")
	if err == nil {
		err = s.update(ctx, func(tx *Tx, st *layoutState) error {
			v, err := st.find(e, s.l.dir)
			if err != nil {
				return err
			}
			if revoked, _ := v.revoked(); !revoked && !v.has(re.key()) {
				if err := s.writeEvent(tx, v, re); err != nil {
					return err
				}
			}
			for stage := range st.stageRepos() {
				if st.others[stage] == v.desc.Digest {
					if err := tx.Untag(s.name + ":" + stage); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("revoking %s@%s (%s in layout %s): %w", s.recipe, e.Version, s.name, s.l.dir, err)
	}
	return nil
}

// Unrevoke records ev (an unrevoke; its Time must be set) on version e if
// the image is revoked. The image enters no stage.
func (s *LayoutStore) Unrevoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	ue, err := checkEvent(ev, catalog.ActionUnrevoke, "")
	if err == nil {
		err = s.update(ctx, func(tx *Tx, st *layoutState) error {
			v, err := st.find(e, s.l.dir)
			if err != nil {
				return err
			}
			if revoked, _ := v.revoked(); revoked && !v.has(ue.key()) {
				return s.writeEvent(tx, v, ue)
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("unrevoking %s@%s (%s in layout %s): %w", s.recipe, e.Version, s.name, s.l.dir, err)
	}
	return nil
}

// update runs fn on the layout as read under the layout lock and commits
// what fn staged in tx before releasing the lock; on error the blobs fn
// wrote are removed (after the lock is released: Rollback takes it).
func (s *LayoutStore) update(ctx context.Context, fn func(tx *Tx, st *layoutState) error) error {
	tx := s.l.Begin()
	defer tx.Rollback()
	unlock, err := s.l.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.read(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx, st); err != nil {
		return err
	}
	return tx.commitLocked(ctx)
}

// layoutState is the layout as read: the artifact's versions with their
// events, and its other tags (stage tags, say) with their digests.
type layoutState struct {
	lifecycle
	byTag  map[string]*version
	others map[string]v1.Hash
}

// read reads index.json and the manifest of each of the artifact's tags.
func (s *LayoutStore) read(ctx context.Context) (*layoutState, error) {
	descs, err := s.l.Descriptors()
	if err != nil {
		return nil, err
	}
	st := &layoutState{byTag: map[string]*version{}, others: map[string]v1.Hash{}}
	events := map[string][]event{}
	for _, d := range descs {
		ref, named := d.Annotations[catalog.AnnotationRefName]
		if !named {
			if subject := d.Annotations[AnnotationSubject]; subject != "" {
				if e, ok := parseEvent(d); ok {
					events[subject] = append(events[subject], e)
				}
			}
			continue
		}
		i := strings.LastIndexByte(ref, ':')
		if i < 0 || ref[:i] != s.name || !isManifest(d.MediaType) {
			continue
		}
		tag := ref[i+1:]
		raw, err := s.l.readBlob(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w: the layout is damaged; re-bake the image", ref, err)
		}
		a, ours := isBakeryManifest(raw, s.recipe, s.artifact)
		if !ours {
			continue
		}
		if a[catalog.AnnotationVersion] != tag {
			st.others[tag] = d.Digest
			continue
		}
		blobs := map[v1.Hash]v1.Descriptor{}
		if err := collect(ctx, d, raw, s.l.fetchManifest, blobs); err != nil {
			return nil, fmt.Errorf("reading %s: %w: the layout is damaged; re-bake the image", ref, err)
		}
		img, err := imageFromManifest(ref, d.Digest, raw, totalSize(blobs))
		if err != nil {
			return nil, err
		}
		v := &version{image: *img, desc: v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, raw: raw}
		st.byTag[tag] = v
		st.versions = append(st.versions, v)
	}
	for _, v := range st.versions {
		for _, e := range events[v.desc.Digest.String()] {
			if !v.has(e.key()) {
				v.events = append(v.events, e)
			}
		}
		sortEvents(v.events)
	}
	sortVersions(st.versions)
	return st, nil
}

// writeEvent stages e on v in tx: the empty blob and the event manifest,
// and the manifest's descriptor in index.json with AnnotationSubject and
// the event's annotations. It also adds e to v in memory.
func (s *LayoutStore) writeEvent(tx *Tx, v *version, e event) error {
	raw, d, err := eventManifest(v.desc, e)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("recording the %s event of %s", e.Action, v.ref())
	empty := emptyDescriptor()
	if _, err := tx.WriteBlob(empty.Digest, strings.NewReader(emptyJSON)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := tx.WriteBlob(d.Digest, bytes.NewReader(raw)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	d.Annotations = e.annotations()
	d.Annotations[AnnotationSubject] = v.desc.Digest.String()
	if err := tx.attach(d); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	e.Digest = d.Digest
	v.add(e)
	return nil
}
