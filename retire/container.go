package retire

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/oci"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Containers observes and retires the versions of one container artifact,
// in a local OCI image layout or in a registry.
type Containers struct {
	recipe, artifact string
	store            interface {
		Entries(ctx context.Context) ([]catalog.Entry, error)
	}
	// remove deletes the version e, recording ev, adding what it did to
	// rep.
	remove func(ctx context.Context, e catalog.Entry, ev catalog.Event, rep *Report) error
	// layout is the local layout, nil for a registry.
	layout *oci.Layout
	options
}

// NewLayoutContainers returns the retirer of recipe's container artifact
// whose catalog is store, in layout l: a version removed leaves index.json
// with its event artifacts, its retire event staying as a tombstone
// (oci.LayoutStore.RetireVersion), then the blobs nothing else references
// are deleted. WithClock and WithActor apply.
func NewLayoutContainers(recipe, artifact string, l *oci.Layout, store *oci.LayoutStore, opts ...Option) *Containers {
	return &Containers{recipe: recipe, artifact: artifact, store: store, options: newOptions(opts), layout: l,
		remove: func(ctx context.Context, e catalog.Entry, ev catalog.Event, rep *Report) error {
			rm, err := store.RetireVersion(ctx, e, ev)
			if err != nil {
				return err
			}
			if rm.Entries > 0 {
				rep.Manifests++
			}
			pr, err := l.Prune(ctx, rm.Candidates)
			rep.Blobs += pr.Blobs
			rep.Bytes += pr.Bytes
			return err
		}}
}

// NewRegistryContainers returns the retirer of recipe's container artifact
// whose catalog is the registry store: a version removed has its retire
// event recorded as a tombstone first, then its events, referrers
// fallback tag, tag and manifest deleted by digest
// (oci.RegistryStore.RetireVersion). A registry that refuses deletion is
// reported in the Report's Skipped, with the version kept. WithClock and
// WithActor apply.
func NewRegistryContainers(recipe, artifact string, store *oci.RegistryStore, opts ...Option) *Containers {
	return &Containers{recipe: recipe, artifact: artifact, store: store, options: newOptions(opts),
		remove: func(ctx context.Context, e catalog.Entry, ev catalog.Event, rep *Report) error {
			n, err := store.RetireVersion(ctx, e, ev)
			rep.Manifests += n
			if errors.Is(err, oci.ErrDeleteRefused) {
				rep.Skipped = append(rep.Skipped, Skipped{Ref: e.Ref, Where: store.Repository(), Reason: err.Error()})
				return errSkipped
			}
			return err
		}}
}

// errSkipped says that remove reported the version in Skipped.
var errSkipped = errors.New("skipped")

// Artifact names the container artifact c retires.
func (c *Containers) Artifact() (catalog.Kind, string) { return catalog.KindContainer, c.artifact }

// Observe reads every version of the artifact with its stages, history
// and lineage (BaseDigest). What runs a container image is not observed,
// so InUse is empty: stages and the keep_* rules decide. A version's
// Created is its first bake event's time when it has one: the image's own
// created annotation is SOURCE_DATE_EPOCH (reproducible digests), not
// when it was baked, and keep_last and keep_within go by bake time.
func (c *Containers) Observe(ctx context.Context) (Observed, error) {
	es, err := c.store.Entries(ctx)
	if err != nil {
		return Observed{}, fmt.Errorf("observing %s/%s: %w", c.recipe, c.artifact, err)
	}
	for i, e := range es {
		for _, ev := range e.Events {
			if ev.Action == catalog.ActionBake && !ev.Time.IsZero() {
				es[i].Created = ev.Time
				break
			}
		}
	}
	o := Observed{Recipe: c.recipe, Artifact: c.artifact, Entries: es}
	if c.layout != nil {
		blobs, err := c.layout.UnreferencedBlobs(ctx)
		if err != nil {
			return Observed{}, fmt.Errorf("observing %s/%s: %w", c.recipe, c.artifact, err)
		}
		for _, b := range blobs {
			o.Orphans = append(o.Orphans, Orphan{Ref: catalog.Ref{Recipe: c.recipe}, Artifact: c.artifact, Kind: OrphanBlob,
				Where: c.layout.Dir(), ID: b.Digest.String(), Created: b.Modified, Bytes: b.Size,
				Reason: "blob no manifest of the layout references (left by a killed bake or prune)"})
		}
	}
	return o, nil
}

// Apply retires the versions plan removes, oldest first. Right before
// each it reads the catalog again and skips (and reports) a version that
// entered a stage, was revoked or re-baked, or became the base of an image
// baked since the plan; the store checks the stage tags once more (in a
// layout, under its lock) as it removes the version. A version already gone counts
// as retired, so running Apply again with a new plan finishes an
// interrupted run. A retire event is recorded per version as a
// tombstone that outlives it (the version's own events are referrers of
// its manifest and go with it); history reads it. It goes on after an error
// and returns them all, with what it did.
func (c *Containers) Apply(ctx context.Context, plan *Plan) (*Report, error) {
	rep := &Report{Retired: []catalog.Ref{}, Skipped: []Skipped{}}
	remove := plan.Remove()
	slices.Reverse(remove)
	planned := map[string]bool{}
	for _, d := range plan.Decisions {
		planned[d.Ref.Version] = true
	}
	var errs []error
	for _, d := range remove {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("retiring %s: %w: run bakery retire --yes again to finish", d.Ref, err))
			break
		}
		e, ok := d.EntryOf(catalog.KindContainer, c.artifact)
		if !ok {
			continue // a version with no image of this artifact
		}
		d.Entry = e
		if err := c.retire(ctx, d, planned, rep); err != nil {
			errs = append(errs, fmt.Errorf("retiring %s: %w: run bakery retire --yes again to finish", d.Ref, err))
		}
	}
	if err := c.deleteBlobs(ctx, plan, rep); err != nil {
		errs = append(errs, fmt.Errorf("deleting the unreferenced blobs of layout %s: %w: run bakery retire --yes again to finish", c.layout.Dir(), err))
	}
	return rep, errors.Join(errs...)
}

// deleteBlobs deletes the plan's orphaned blobs that are this artifact's
// to delete, with oci.Layout.Prune: under the layout lock, a blob that a
// manifest references by then (a bake committed since the plan) stays.
func (c *Containers) deleteBlobs(ctx context.Context, plan *Plan, rep *Report) error {
	if c.layout == nil {
		return nil
	}
	var hs []v1.Hash
	for _, o := range plan.Orphans {
		if o.Kind != OrphanBlob || o.Artifact != c.artifact || o.Where != c.layout.Dir() {
			continue
		}
		h, err := v1.NewHash(o.ID)
		if err != nil {
			return err
		}
		hs = append(hs, h)
	}
	pr, err := c.layout.Prune(ctx, hs)
	rep.Blobs += pr.Blobs
	rep.Bytes += pr.Bytes
	return err
}

// retire re-checks and removes the version of d.
func (c *Containers) retire(ctx context.Context, d Decision, planned map[string]bool, rep *Report) error {
	es, err := c.store.Entries(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(es, func(e catalog.Entry) bool { return e.Version == d.Ref.Version })
	if i < 0 {
		rep.Retired = append(rep.Retired, d.Ref)
		return nil
	}
	now := es[i]
	if len(now.Stages) > 0 {
		rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Reason: "in " + strings.Join(slices.Sorted(maps.Keys(now.Stages)), ", ") + " since the plan: kept"})
		return nil
	}
	if now.Revoked && !d.Entry.Revoked {
		rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Reason: "revoked since the plan: kept for keep_revoked"})
		return nil
	}
	if now.Digest != d.Entry.Digest {
		rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Reason: "re-baked since the plan (digest " + now.Digest + "): kept"})
		return nil
	}
	for _, e := range es {
		if !planned[e.Version] && e.BaseDigest != "" && e.BaseDigest == now.Digest {
			rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Reason: "base of " + e.Ref.String() + " baked since the plan: kept"})
			return nil
		}
	}
	ev := catalog.Event{Time: c.now().UTC(), Action: catalog.ActionRetire, Recipe: c.recipe, Version: d.Ref.Version,
		Artifact: c.artifact, Kind: catalog.KindContainer, Actor: c.actor, Reason: strings.Join(d.Reasons, "; ")}
	err = c.remove(ctx, now, ev, rep)
	if errors.Is(err, errSkipped) {
		return nil
	}
	if err == nil {
		rep.Retired = append(rep.Retired, d.Ref)
	}
	return err
}
