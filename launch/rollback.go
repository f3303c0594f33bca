package launch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/steps"
)

// ErrNothingToRollBack is returned, wrapped, by Rollback when the stage
// has no disabled group left to bring back.
var ErrNothingToRollBack = errors.New("no disabled group is left to roll back to")

// Rollback brings back the newest disabled group of req's stage (the
// rollback target) and disables the groups that serve:
//
//  1. the target's min and desired are pinned to the serving group's
//     desired capacity, its processes resumed and its target groups
//     attached;
//  2. it passes the same health gate as a launch;
//  3. only then the serving groups are disabled, drained and scaled to 0
//     (the newest of them becomes the next rollback target), and the
//     target's min goes back to the serving group's min;
//  4. a rollback event is recorded on the target's image.
//
// If the gate fails, times out or the run is interrupted before the
// replaced groups are scaled down, both are put back exactly as they
// were. A target whose version was revoked, or whose AMI is gone, is
// refused. With no disabled group left, it launches the version that was
// in the stage before the current one (from the history) as a forced
// launch, recorded as a rollback; when there is none it fails with
// ErrNothingToRollBack, and when that version was revoked or its AMI is
// gone it says so and stops. req.Version and req.Capacity are ignored.
func (l *Launcher) Rollback(ctx context.Context, req Request) (*Result, error) {
	if req.Fleet == nil {
		return nil, fmt.Errorf("rolling back %s in %s: the recipe has no fleet \"%s\" block", req.Recipe, req.Stage, req.Stage)
	}
	if region := req.region(); region != "" {
		groups, err := l.inv.List(ctx, region, fleet.Selector{Recipe: req.Recipe, Stage: req.Stage})
		if err != nil {
			return nil, fmt.Errorf("rolling back %s in %s: %w", req.Recipe, req.Stage, err)
		}
		if _, ok := RollbackTarget(groups); !ok {
			return l.relaunchPrevious(ctx, req)
		}
	}
	st := &state{req: req, region: req.region(), action: catalog.ActionRollback}
	st.res = &Result{Recipe: req.Recipe, Stage: req.Stage, Region: st.region, Strategy: req.Fleet.Strategy,
		LaunchID: newLaunchID(), DryRun: req.DryRun, Disabled: []string{}, Deleted: []string{}, Instances: []fleet.Instance{}}
	what := fmt.Sprintf("rolling back %s in %s in %s", req.Recipe, req.Stage, st.region)
	if st.region == "" {
		return st.res, fmt.Errorf("%s: no region: set region in the fleet block or AWS_REGION", what)
	}
	runner := steps.Runner{Progress: l.progress, CleanupTimeout: l.cleanupTimeout}
	list := []steps.Step[state]{&targetStep{l}}
	if !req.DryRun {
		list = append(list, &enableStep{l}, &gateStep{l}, &disableStep{l}, &drainStep{l}, &pinStep{l}, &recordStep{l})
	}
	if err := steps.Run(ctx, runner, st, list...); err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("interrupted (%w): %w", cause, err)
		}
		if st.enabled && !st.committed {
			what += " (undone: " + st.target.Name + " disabled again"
			if len(st.disabled) > 0 {
				what += ", " + names(st.disabled) + " restored"
			}
			what += ")"
		}
		if steps.CleanupFailed(err) {
			what += " (undoing it failed too: check the groups with bakery fleets)"
		}
		return st.res, fmt.Errorf("%s: %w", what, err)
	}
	st.res.State = string(fleet.StateServing)
	if req.DryRun {
		st.res.State = "planned"
	}
	return st.res, nil
}

// RollbackTarget returns the group a rollback of groups (one stage's)
// brings back: the newest disabled or draining one (last disabled, then
// highest number); ok is false when there is none.
func RollbackTarget(groups []fleet.Group) (g fleet.Group, ok bool) {
	for _, c := range groups {
		if c.State != fleet.StateDisabled && c.State != fleet.StateDraining {
			continue
		}
		if !ok || cmp.Or(c.Disabled.Compare(g.Disabled), cmp.Compare(c.Number, g.Number)) > 0 {
			g, ok = c, true
		}
	}
	return g, ok
}

// targetStep finds the rollback target and the groups it replaces, and
// checks the target's image.
type targetStep struct{ l *Launcher }

func (*targetStep) Name() string { return "find the rollback target" }

func (s *targetStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	req := st.req
	groups, err := s.l.inv.List(ctx, st.region, fleet.Selector{Recipe: req.Recipe, Stage: req.Stage})
	if err != nil {
		return err
	}
	entries, err := s.l.cat.Entries(ctx)
	if err != nil {
		return fmt.Errorf("reading the versions of %s: %w", req.Recipe, err)
	}
	target, ok := RollbackTarget(groups)
	if !ok {
		// Rollback checked before; another run took it meanwhile.
		return fmt.Errorf("%w in %s of %s: run the rollback again", ErrNothingToRollBack, req.Stage, req.Recipe)
	}
	i := slices.IndexFunc(entries, func(e catalog.Entry) bool { return e.Version == target.Version })
	switch {
	case i < 0:
		return fmt.Errorf("%s runs %s@%s, which is no longer in the catalog (retired): launch another version", target.Name, req.Recipe, target.Version)
	case entries[i].Revoked:
		return fmt.Errorf("%s runs %s@%s, which is revoked (%s): launch another version, or delete %s", target.Name, req.Recipe, target.Version, cmpOr(entries[i].RevokeReason, "no reason given"), target.Name)
	}
	out, err := s.l.images(st.region).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{target.Image}})
	if err != nil && !awsx.IsNotFound(err) {
		return fmt.Errorf("reading AMI %s of %s: %w", target.Image, target.Name, awsx.ExplainError(err))
	}
	if err != nil || len(out.Images) == 0 || out.Images[0].State == ec2types.ImageStateDeregistered {
		return fmt.Errorf("%s runs AMI %s, which is deregistered or disabled (retired): it cannot launch instances; launch another version", target.Name, target.Image)
	}
	st.entry, st.target = entries[i], target
	var serving fleet.Group
	for _, g := range groups {
		if g.State == fleet.StateServing {
			st.plan.Disable = append(st.plan.Disable, g)
			serving = g
		}
	}
	p := &st.plan
	p.Name, p.Previous = target.Name, serving.Name
	if serving.Name != "" {
		p.Min, p.Desired, p.Max = serving.Min, serving.Desired, max(target.Max, serving.Desired)
	} else {
		p.Min, p.Desired, p.Max = req.Fleet.Sizes(0, 0, 0, 0)
		p.Max = max(p.Max, target.Max)
	}
	st.res.Group, st.res.Previous, st.res.Version, st.res.Image = target.Name, p.Previous, target.Version, target.Image
	st.res.Min, st.res.Desired, st.res.Max = p.Min, p.Desired, p.Max
	st.res.LaunchTemplate, st.res.LaunchTemplateVersion = target.TemplateID, target.TemplateVersion
	for _, g := range p.Disable {
		st.res.Disabled = append(st.res.Disabled, g.Name)
	}
	return nil
}

func (*targetStep) Cleanup(context.Context, *state, bool) error { return nil }

// relaunchPrevious rolls back by launching again the version that was in
// the stage before the current one, when no disabled group is left.
func (l *Launcher) relaunchPrevious(ctx context.Context, req Request) (*Result, error) {
	what := fmt.Sprintf("rolling back %s in %s", req.Recipe, req.Stage)
	entries, err := l.cat.Entries(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: reading the versions of %s: %w", what, req.Recipe, err)
	}
	prev := previousVersion(entries, req.Stage)
	if prev == "" {
		return nil, fmt.Errorf("%s: %w, and no other version was ever in %s: launch the version to go back to", what, ErrNothingToRollBack, req.Stage)
	}
	i := slices.IndexFunc(entries, func(e catalog.Entry) bool { return e.Version == prev })
	switch {
	case i < 0:
		return nil, fmt.Errorf("%s: %w, and %s@%s, the version before in %s, is retired: launch another version", what, ErrNothingToRollBack, req.Recipe, prev, req.Stage)
	case entries[i].Revoked:
		return nil, fmt.Errorf("%s: %w, and %s@%s, the version before in %s, is revoked (%s): launch another version", what, ErrNothingToRollBack, req.Recipe, prev, req.Stage, cmpOr(entries[i].RevokeReason, "no reason given"))
	}
	req.Version, req.Force, req.Capacity = prev, true, 0
	req.Reason = fmt.Sprintf("rollback: no disabled group was left, so %s, the version before in %s, was launched again", prev, req.Stage)
	return l.launch(ctx, req, catalog.ActionRollback)
}

// previousVersion returns the version that held stage before the one
// that holds it now, from the history ("" when none did).
func previousVersion(entries []catalog.Entry, stage string) string {
	var cur string
	for _, e := range entries {
		if _, ok := e.Stages[stage]; ok {
			cur = e.Version
		}
	}
	var best catalog.Event
	for _, e := range entries {
		for _, ev := range e.Events {
			if ev.Action == catalog.ActionPromote && ev.Stage == stage && e.Version != cur && ev.Time.After(best.Time) {
				best = ev
			}
		}
	}
	return best.Version
}

// enableStep brings the target back: min and desired pinned to the
// serving group's desired capacity, processes resumed, target groups
// attached, marked launching until it passes the gate. Its cleanup puts
// it back exactly as it was (disabled, scaled to 0).
type enableStep struct{ l *Launcher }

func (*enableStep) Name() string { return "enable the rollback target" }

func (s *enableStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	t, p := st.target, st.plan
	st.enabled = true
	want := withTags(t, t.Tags, fleet.TagLaunching, st.res.LaunchID, fleet.TagDisabled)
	want.Min, want.Desired, want.Max = p.Desired, p.Desired, p.Max
	want.Suspended, want.TargetGroups = nil, st.req.Fleet.TargetGroups
	return s.l.inv.Set(ctx, want)
}

// withTags returns g with tags, key set to value and the keys in drop
// removed: the state Restore puts it in.
func withTags(g fleet.Group, tags map[string]string, key, value string, drop ...string) fleet.Group {
	g.Tags = map[string]string{}
	for k, v := range tags {
		if !slices.Contains(drop, k) {
			g.Tags[k] = v
		}
	}
	g.Tags[key] = value
	return g
}

func (s *enableStep) Cleanup(ctx context.Context, st *state, failed bool) error {
	if !failed || st.committed || !st.enabled {
		return nil
	}
	return s.l.inv.Restore(ctx, st.target)
}

// pinStep gives the target the serving group's min back, once the
// replaced groups are scaled down.
type pinStep struct{ l *Launcher }

func (*pinStep) Name() string { return "restore the min" }

func (s *pinStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	p := st.plan
	if p.Min == p.Desired {
		return nil
	}
	return s.l.inv.Resize(ctx, st.region, st.target.Name, p.Min, p.Desired, p.Max)
}

func (*pinStep) Cleanup(context.Context, *state, bool) error { return nil }
