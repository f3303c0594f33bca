package retire

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/bakery-sh/bakery/catalog"
)

// Merge joins the observations of a recipe's artifacts (its
// machine_image and container blocks) into one, so that MakePlan decides
// each version once for all its images: a recipe version with an AMI
// and a container image is kept or removed whole.
func Merge(recipe string, obs ...Observed) Observed {
	out := Observed{Recipe: recipe, InUse: map[string][]Use{}, Shares: map[string][]string{}, StageAccounts: map[string][]string{}}
	var artifacts []string
	seen := map[[3]string]bool{}
	for _, o := range obs {
		artifacts = append(artifacts, o.Artifact)
		out.Entries = append(out.Entries, o.Entries...)
		for id, us := range o.InUse {
			out.InUse[id] = append(out.InUse[id], us...)
		}
		out.Dependents = append(out.Dependents, o.Dependents...)
		for _, orphan := range o.Orphans {
			// A layout's blobs are every artifact's of the layout: each
			// is listed once.
			k := [3]string{orphan.Kind, orphan.Where, orphan.ID}
			if !seen[k] {
				seen[k] = true
				out.Orphans = append(out.Orphans, orphan)
			}
		}
		maps.Copy(out.Shares, o.Shares)
		for st, as := range o.StageAccounts {
			out.StageAccounts[st] = dedupe(append(out.StageAccounts[st], as...))
		}
	}
	out.Artifact = strings.Join(dedupe(artifacts), ",")
	return out
}

// Retirer observes one artifact's versions and applies the part of a
// plan that is that artifact's: AMIs and Containers.
type Retirer interface {
	// Artifact names the artifact whose images it retires.
	Artifact() (catalog.Kind, string)
	// Observe reads the artifact's versions and what keeps them.
	Observe(ctx context.Context) (Observed, error)
	// Apply retires the images of the versions plan removes that are
	// the artifact's.
	Apply(ctx context.Context, plan *Plan) (*Report, error)
}

// ApplyAll retires the versions plan removes with each of rs in turn
// (give the AMIs first: their re-checks, what uses them, are the ones
// that find something new). A version one of them does not retire
// (skipped: in use, staged or revoked since the plan) is kept by the
// ones after it, so a version is never half retired; it is retired when
// every artifact's image of it is gone. The report adds up theirs. It
// goes on after an error and returns them all.
func ApplyAll(ctx context.Context, plan *Plan, rs ...Retirer) (*Report, error) {
	cur := *plan
	cur.Decisions = slices.Clone(plan.Decisions)
	total := &Report{Retired: []catalog.Ref{}, Skipped: []Skipped{}}
	var errs []error
	for _, r := range rs {
		rep, err := r.Apply(ctx, &cur)
		if err != nil {
			errs = append(errs, err)
		}
		if rep == nil {
			continue
		}
		total.AMIs += rep.AMIs
		total.Snapshots += rep.Snapshots
		total.GiB += rep.GiB
		total.Manifests += rep.Manifests
		total.Blobs += rep.Blobs
		total.Bytes += rep.Bytes
		total.Skipped = append(total.Skipped, rep.Skipped...)
		kind, artifact := r.Artifact()
		for i, d := range cur.Decisions {
			if _, ok := d.EntryOf(kind, artifact); ok && !d.Keep && !slices.Contains(rep.Retired, d.Ref) {
				cur.Decisions[i].Keep = true
				cur.Decisions[i].Reasons = append(slices.Clone(d.Reasons), "its "+artifact+" image was not retired")
			}
		}
	}
	for _, d := range cur.Decisions {
		if !d.Keep {
			total.Retired = append(total.Retired, d.Ref)
		}
	}
	return total, errors.Join(errs...)
}
