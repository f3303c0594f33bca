package oci

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// LayoutStore is the lifecycle store ([catalog.Store]) of one container
// artifact whose images are in a local OCI image layout (bakery's embedded
// default). Everything it knows is in the layout's index.json, its history
// file and blobs:
//
//   - a version is the descriptor named NAME:VERSION (the
//     org.opencontainers.image.ref.name annotation) of a manifest carrying
//     the artifact's bakery annotations with that version;
//   - a version is in a stage when NAME:STAGE names its digest or, for a
//     stage with its own repository, when STAGE_REPO:STAGE does in that
//     registry: promotion publishes the image there (bake locally, publish
//     on promotion; see [LayoutStore.Promote]);
//   - its history is event artifacts like a registry's (see
//     [EventArtifactType]), listed in the layout's history file
//     bakery-history.json (see [Layout.History]), not in index.json, so
//     that tools reading the layout see the images only, with
//     [AnnotationSubject] naming the image and the event in the
//     descriptor's annotations.
//
// Every change happens in one [Tx] committed under the layout's lock, after
// reading the layout under that same lock: changes from any number of
// processes are serialised and each sees the previous one's result.
type LayoutStore struct {
	l                      *Layout
	name, recipe, artifact string
	reg                    *Registry // for stages with their own repository
}

// Compile-time check that LayoutStore is a catalog.Store.
var _ catalog.Store = (*LayoutStore)(nil)

// Store returns the lifecycle store of recipe's container artifact whose
// images are tagged NAME:VERSION in the layout (name is the layout
// repository name: the container block label). opts are the [Registry]
// options used to reach the repositories of stages that have one
// (credentials, transport); the defaults are [NewRegistry]'s.
func (l *Layout) Store(name, recipe, artifact string, opts ...Option) *LayoutStore {
	return &LayoutStore{l: l, name: name, recipe: recipe, artifact: artifact, reg: NewRegistry(opts...)}
}

// Entries returns every version of the artifact in the layout, oldest
// first, with its stages, revocation, locations (the layout directory, and
// the stage repositories it was published to that still have it) and
// history. It reads index.json once and each version's manifest; a stage
// with its own repository costs one HEAD of its tag, and each stage
// repository a version was published to one HEAD of its digest.
func (s *LayoutStore) Entries(ctx context.Context) ([]catalog.Entry, error) {
	fail := func(err error) error {
		// The caller says whose catalog it reads (promote.Load: "reading
		// the catalog of container NAME"); this says where.
		return fmt.Errorf("layout %s: %w", s.l.dir, err)
	}
	st, err := s.read(ctx)
	if err != nil {
		return nil, fail(err)
	}
	var opts []remote.Option
	if st.hasRemote() {
		if opts, err = s.reg.sessionOptions(ctx); err != nil {
			return nil, fail(err)
		}
	}
	holders, locations, err := placements(ctx, opts, s.reg.jobs, &st.lifecycle, st.others, s.l.dir)
	if err != nil {
		return nil, fail(err)
	}
	entries := make([]catalog.Entry, len(st.versions))
	for i, v := range st.versions {
		entries[i] = v.entry(holders, locations[v])
	}
	return entries, nil
}

// hasRemote reports whether a version was ever promoted into a stage
// repository.
func (st *layoutState) hasRemote() bool {
	for _, v := range st.versions {
		for _, e := range v.events {
			if e.Action == catalog.ActionPromote && e.Repository != "" {
				return true
			}
		}
	}
	return false
}

// Promote puts version e into spec's stage, recording ev (its Time must be
// set; Action and Stage are filled in when empty), in one transaction under
// the layout lock: it records ev unless an identical event (action, stage,
// time) or a live promotion of the image into the stage (in the same
// repository) is there, tags the winner (the newest live promotion into
// the stage, as for a [RegistryStore]) and records a demote event
// ("replaced by VERSION") on every other version that lost the stage.
//
// The stage tag is NAME:STAGE in the layout, or, when spec names a
// Repository, STAGE_REPO:STAGE in that registry: the image is first
// published there from the layout (by digest, only the blobs the
// registry lacks, with the version tag STAGE_REPO:VERSION, which is never
// overwritten), and the remote stage tag is moved after the transaction
// commits, still under the lock; a NAME:STAGE tag left in the layout by an
// earlier configuration is removed.
//
// Running it again writes nothing and, after a failure, finishes the job.
// When another version's newer promotion holds the stage, the promotion
// is recorded (and demoted) and Promote returns an error wrapping
// [ErrSuperseded]. A revoked image is refused.
func (s *LayoutStore) Promote(ctx context.Context, e catalog.Entry, spec catalog.StageSpec, ev catalog.Event) error {
	fail := func(err error) error {
		return fmt.Errorf("promoting %s@%s (%s in layout %s) to %s: %w", s.recipe, e.Version, s.name, s.l.dir, spec.Name, err)
	}
	pe, err := checkEvent(ev, catalog.ActionPromote, spec.Name)
	if err != nil {
		return fail(err)
	}
	// Creating the options costs no request.
	opts, err := s.reg.sessionOptions(ctx)
	if err != nil {
		return fail(err)
	}
	if spec.Repository != "" {
		dst, err := name.NewRepository(spec.Repository)
		if err != nil {
			return fail(fmt.Errorf("stage repository %q: %w: write it as HOST/PATH", spec.Repository, err))
		}
		pe.Repository = dst.Name()
		// Publish first, outside the lock (it is idempotent): the
		// transaction then only records and tags.
		st, err := s.read(ctx)
		if err != nil {
			return fail(err)
		}
		v, err := st.find(e, s.l.dir)
		if err != nil {
			return fail(err)
		}
		if revoked, reason := v.revoked(); revoked {
			return fail(fmt.Errorf("the image is revoked (%s): unrevoke it first", cmp.Or(reason, "no reason given")))
		}
		if err := s.publish(ctx, opts, v, dst); err != nil {
			return fail(err)
		}
	}
	var v, w *version
	var we *event
	after := func() error { return nil }
	err = s.updateThen(ctx, func(tx *Tx, st *layoutState) error {
		if v, err = st.find(e, s.l.dir); err != nil {
			return err
		}
		if _, isVersion := st.byTag[pe.Stage]; isVersion && pe.Repository == "" {
			return fmt.Errorf("the stage's tag %s:%s is a version tag: rename the stage", s.name, pe.Stage)
		}
		if revoked, reason := v.revoked(); revoked {
			return fmt.Errorf("the image is revoked (%s): unrevoke it first", cmp.Or(reason, "no reason given"))
		}
		if l := v.live(pe.Stage); (l == nil || l.Repository != pe.Repository) && !v.has(pe.key()) {
			if err := s.writeEvent(tx, v, pe); err != nil {
				return err
			}
		}
		if w, we = st.winner(pe.Stage); w == nil {
			return errors.New("no version claims the stage: check with bakery status")
		}
		var where name.Repository // the stage's repository; zero: the layout
		if we.Repository == "" {
			if st.others[pe.Stage] != w.desc.Digest {
				if err := tx.Tag(s.name+":"+pe.Stage, w.desc); err != nil {
					return err
				}
			}
		} else {
			if where, err = name.NewRepository(we.Repository); err != nil {
				return fmt.Errorf("the promote event of %s names repository %q: %w", we.Stage, we.Repository, err)
			}
			if _, ok := st.others[pe.Stage]; ok {
				// The stage lives in a registry now: a layout tag left
				// by an earlier configuration would claim it still.
				if err := tx.Untag(s.name + ":" + pe.Stage); err != nil {
					return err
				}
			}
		}
		after = func() error {
			if we.Repository != "" {
				if err := s.tagRemoteStage(ctx, opts, w, we); err != nil {
					return err
				}
			}
			// A tag of the stage left in another stage repository by an
			// earlier configuration would keep serving an old version.
			return emptyLeftBehind(ctx, opts, s.recipe, s.artifact, &st.lifecycle, pe.Stage, name.Repository{}, where)
		}
		for _, d := range st.demotions(pe.Stage, w, we) {
			if err := s.writeEvent(tx, d.v, d.e); err != nil {
				return fmt.Errorf("recording that %s left the stage: %w", d.v.ref(), err)
			}
		}
		return nil
	}, func() error { return after() })
	if err != nil {
		return fail(err)
	}
	if w != v {
		return fail(supersededError(v, w, we))
	}
	return nil
}

// publish copies v from the layout into dst (see the package's publish).
func (s *LayoutStore) publish(ctx context.Context, opts []remote.Option, v *version, dst name.Repository) error {
	return publish(ctx, opts, v, dst, func() (any, error) {
		if v.desc.MediaType.IsIndex() {
			return s.l.Index(v.desc)
		}
		return s.l.Image(v.desc)
	}, func() ([]referrer, error) { return s.l.layoutReferrers(v.desc.Digest) })
}

// tagRemoteStage points the stage tag of promotion we, in its repository,
// at w, publishing w there first should it be missing.
func (s *LayoutStore) tagRemoteStage(ctx context.Context, opts []remote.Option, w *version, we *event) error {
	dst, err := name.NewRepository(we.Repository)
	if err != nil {
		return fmt.Errorf("the promote event of %s names repository %q: %w", we.Stage, we.Repository, err)
	}
	tag := dst.Tag(we.Stage)
	d, err := head(ctx, opts, tag)
	if err != nil || (d != nil && d.Digest == w.desc.Digest) {
		return err
	}
	if err := s.publish(ctx, opts, w, dst); err != nil {
		return err
	}
	if err := remote.Put(tag, rawManifest{w.raw, w.desc.MediaType}, opts...); err != nil {
		return fmt.Errorf("tagging %s as %s: %w: run the same command again to finish", w.ref(), tag, explain(ctx, dst, err))
	}
	return nil
}

// Revoke records ev (a revoke; its Time must be set) on version e, unless
// the image is already revoked, and removes every NAME:STAGE tag of the
// image, in one transaction. A stage tag of the image in a stage
// repository is then emptied (pointed at an empty stage artifact naming
// the revocation, see [EmptyStageArtifactType]), still under the lock.
// Running it again finishes the job.
func (s *LayoutStore) Revoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	re, err := checkEvent(ev, catalog.ActionRevoke, "")
	if err == nil {
		var v *version
		err = s.updateThen(ctx, func(tx *Tx, st *layoutState) error {
			if v, err = st.find(e, s.l.dir); err != nil {
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
		}, func() error { return s.emptyRemoteStages(ctx, v, re) })
	}
	if err != nil {
		return fmt.Errorf("revoking %s@%s (%s in layout %s): %w", s.recipe, e.Version, s.name, s.l.dir, err)
	}
	return nil
}

// emptyRemoteStages empties every stage tag in a stage repository that
// v was promoted into and that still points at it.
func (s *LayoutStore) emptyRemoteStages(ctx context.Context, v *version, re event) error {
	tags := map[string]name.Tag{}
	for _, p := range v.events {
		if p.Action != catalog.ActionPromote || p.Repository == "" {
			continue
		}
		r, err := name.NewRepository(p.Repository)
		if err != nil {
			continue // not a repository bakery wrote
		}
		t := r.Tag(p.Stage)
		tags[t.String()] = t
	}
	if len(tags) == 0 {
		return nil
	}
	opts, err := s.reg.sessionOptions(ctx)
	if err != nil {
		return err
	}
	why := revokedWhy(v, re)
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if err := emptyStageTag(ctx, opts, s.recipe, s.artifact, tags[k], v.desc.Digest, why); err != nil {
			return err
		}
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
	return s.updateThen(ctx, fn, nil)
}

// updateThen is update, running after (when not nil) once the commit
// succeeded, still holding the lock: the registry side of a change, done
// in the order the layout's history says.
func (s *LayoutStore) updateThen(ctx context.Context, fn func(tx *Tx, st *layoutState) error, after func() error) error {
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
	if err := tx.commitLocked(ctx); err != nil {
		return err
	}
	if after != nil {
		return after()
	}
	return nil
}

// layoutState is the layout as read: the artifact's versions with their
// events, and its other tags (stage tags, say) with their digests.
type layoutState struct {
	lifecycle
	byTag  map[string]*version
	others map[string]v1.Hash
}

// read reads index.json, the history file and the manifest of each of the
// artifact's tags.
func (s *LayoutStore) read(ctx context.Context) (*layoutState, error) {
	descs, err := s.l.allDescriptors()
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
// and the manifest's descriptor in the history file with AnnotationSubject
// and the event's annotations. It also adds e to v in memory.
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
