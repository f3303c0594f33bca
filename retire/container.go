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
)

// LayoutContainers observes and retires the versions of one container
// artifact in a local OCI image layout.
type LayoutContainers struct {
	recipe, artifact string
	store            *oci.LayoutStore
	layout           *oci.Layout
}

// NewLayoutContainers returns the retirer of recipe's container artifact
// whose catalog is store, in layout l.
func NewLayoutContainers(recipe, artifact string, l *oci.Layout, store *oci.LayoutStore) *LayoutContainers {
	return &LayoutContainers{recipe: recipe, artifact: artifact, store: store, layout: l}
}

// Observe reads every version of the artifact with its stages, history
// and lineage (BaseDigest). Nothing outside the plan uses a layout's
// images, so InUse is empty.
func (c *LayoutContainers) Observe(ctx context.Context) (Observed, error) {
	es, err := c.store.Entries(ctx)
	if err != nil {
		return Observed{}, fmt.Errorf("observing %s/%s: %w", c.recipe, c.artifact, err)
	}
	return Observed{Recipe: c.recipe, Artifact: c.artifact, Entries: es}, nil
}

// Apply retires the versions plan removes, oldest first. Right before
// each it reads the layout again and skips (and reports) a version that
// entered a stage or was revoked since the plan; the store checks the
// stage tags once more under the layout lock before it takes the version
// and its event artifacts out of index.json. Then the blobs they reached
// that nothing else references are deleted. A version already gone counts
// as retired, so running Apply again with a new plan finishes an
// interrupted run. No retire event is recorded: a layout keeps events as
// referrers of the image, which go with it. It goes on after an error
// and returns them all, with what it did.
func (c *LayoutContainers) Apply(ctx context.Context, plan *Plan) (*Report, error) {
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
		if err := c.retire(ctx, d, planned, rep); err != nil {
			errs = append(errs, fmt.Errorf("retiring %s: %w: run bakery retire --yes again to finish", d.Ref, err))
		}
	}
	return rep, errors.Join(errs...)
}

// retire re-checks and removes the version of d.
func (c *LayoutContainers) retire(ctx context.Context, d Decision, planned map[string]bool, rep *Report) error {
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
	rm, err := c.store.RemoveVersion(ctx, now)
	if err != nil {
		return err
	}
	pr, err := c.layout.Prune(ctx, rm.Candidates)
	rep.Blobs += pr.Blobs
	rep.Bytes += pr.Bytes
	if rm.Entries > 0 {
		rep.Manifests++
	}
	rep.Retired = append(rep.Retired, d.Ref)
	return err
}
