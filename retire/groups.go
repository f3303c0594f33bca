package retire

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bakery-sh/bakery/catalog/fleet"
)

// GroupDecision is what a plan does with one of bakery's Auto Scaling
// groups.
type GroupDecision struct {
	// Name, Region, Stage, Version and State describe the group.
	Name    string      `json:"name"`
	Region  string      `json:"region"`
	Stage   string      `json:"stage"`
	Version string      `json:"version"`
	State   fleet.State `json:"state"`
	// Keep is true when the group is kept.
	Keep bool `json:"keep"`
	// Reasons say why it is kept or removed.
	Reasons []string `json:"reasons"`
	// Group is the group as observed.
	Group fleet.Group `json:"-"`
}

// PlanGroups decides, for groups (those of one recipe, any stages), which
// to delete: the disabled groups of a stage beyond the newest
// keepDisabled[stage] (by the time they were disabled, then number), and
// the failed groups (kept by launch --on-error abort for debugging,
// disabled, with their instances) beyond the newest
// max(1, keepDisabled[stage]) of the stage (by number, then creation):
// the last failure is always there to debug. The newest disabled group,
// the rollback target, is always kept, and so is every group that
// serves, launches or drains. It is a pure function; the decisions come
// stage by stage, newest group first.
func PlanGroups(groups []fleet.Group, keepDisabled map[string]int) []GroupDecision {
	sorted := slices.Clone(groups)
	slices.SortStableFunc(sorted, func(a, b fleet.Group) int {
		return cmp.Or(strings.Compare(a.Stage, b.Stage), b.Disabled.Compare(a.Disabled), cmp.Compare(b.Number, a.Number), strings.Compare(b.Name, a.Name))
	})
	disabled := map[string]int{} // disabled groups seen per stage
	failed := map[string]int{}   // failed groups seen per stage
	failedOrder := slices.Clone(sorted)
	slices.SortStableFunc(failedOrder, func(a, b fleet.Group) int {
		return cmp.Or(cmp.Compare(b.Number, a.Number), b.Created.Compare(a.Created), strings.Compare(b.Name, a.Name))
	})
	failedRank := map[string]int{} // name → how many failed groups of its stage are newer
	for _, g := range failedOrder {
		if g.State == fleet.StateFailed {
			failedRank[g.Region+"/"+g.Name] = failed[g.Stage]
			failed[g.Stage]++
		}
	}
	out := make([]GroupDecision, 0, len(sorted))
	for _, g := range sorted {
		d := GroupDecision{Name: g.Name, Region: g.Region, Stage: g.Stage, Version: g.Version, State: g.State, Keep: true, Group: g}
		switch g.State {
		case fleet.StateDisabled:
			n := disabled[g.Stage]
			disabled[g.Stage]++
			keep := keepDisabled[g.Stage]
			if n == 0 {
				d.Reasons = append(d.Reasons, "rollback target of "+g.Stage)
			}
			if n < keep {
				d.Reasons = append(d.Reasons, fmt.Sprintf("one of the newest %d disabled", keep))
			}
			if len(d.Reasons) == 0 {
				d.Keep = false
				d.Reasons = []string{fmt.Sprintf("disabled, beyond keep_disabled %d", keep)}
			}
		case fleet.StateDraining:
			d.Reasons = []string{"draining: it still has instances"}
		case fleet.StateFailed:
			keep := max(1, keepDisabled[g.Stage])
			if failedRank[g.Region+"/"+g.Name] < keep {
				d.Reasons = []string{fmt.Sprintf("failed: one of the newest %d failed, kept for debugging", keep)}
			} else {
				d.Keep = false
				d.Reasons = []string{fmt.Sprintf("failed (kept by launch --on-error abort), beyond the newest %d failed", keep)}
			}
		default:
			d.Reasons = []string{string(g.State)}
		}
		out = append(out, d)
	}
	return out
}

// Groups are the Auto Scaling groups of a recipe as retire sees them.
type Groups struct {
	inv *fleet.Inventory
}

// NewGroups returns the retirer of the groups inv reads and deletes.
func NewGroups(inv *fleet.Inventory) *Groups { return &Groups{inv: inv} }

// Observe lists the groups of recipe in each of regions.
func (gs *Groups) Observe(ctx context.Context, recipe string, regions []string) ([]fleet.Group, error) {
	var out []fleet.Group
	for _, region := range dedupe(regions) {
		groups, err := gs.inv.List(ctx, region, fleet.Selector{Recipe: recipe})
		if err != nil {
			return nil, fmt.Errorf("observing the Auto Scaling groups of %s: %w", recipe, err)
		}
		out = append(out, groups...)
	}
	return out, nil
}

// GroupReport is what ApplyGroups deleted and skipped.
type GroupReport struct {
	// Deleted are the names of the groups deleted, with their launch
	// templates.
	Deleted []string `json:"deleted"`
	// Skipped are the groups whose state changed since the plan.
	Skipped []string `json:"skipped"`
}

// Apply deletes the groups the decisions remove: right before each it
// reads the group again, and one whose state changed since the plan (a
// disabled one brought back by a rollback) is skipped; otherwise it deletes the
// group and its launch template (fleet.Inventory.Delete). One that is
// gone already counts as deleted. It goes on after an error and returns
// them all.
func (gs *Groups) Apply(ctx context.Context, decisions []GroupDecision) (*GroupReport, error) {
	rep := &GroupReport{Deleted: []string{}, Skipped: []string{}}
	var errs []error
	for _, d := range decisions {
		if d.Keep {
			continue
		}
		cur, ok, err := gs.inv.Get(ctx, d.Region, d.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok && cur.State != d.State {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s in %s: %s since the plan", d.Name, d.Region, cur.State))
			continue
		}
		if err := gs.inv.Delete(ctx, d.Group); err != nil {
			errs = append(errs, fmt.Errorf("%w: run bakery retire --yes again to finish", err))
			continue
		}
		rep.Deleted = append(rep.Deleted, d.Name)
	}
	return rep, errors.Join(errs...)
}
