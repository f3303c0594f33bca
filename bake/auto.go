package bake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/bakery-sh/bakery/internal/awsx"

	catalogoci "github.com/bakery-sh/bakery/catalog/oci"

	bakeami "github.com/bakery-sh/bakery/bake/ami"
	bakeoci "github.com/bakery-sh/bakery/bake/oci"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/recipes"
)

// AutoVersioner is what a ContainerBaker also implements to bake
// auto-versioned recipes (version = "auto"); *bakeoci.Baker does.
type AutoVersioner interface {
	// FindKey returns the image of p's container carrying p's bake key
	// (nil if none) and the versions of the container that the recipe's
	// version_format could have assigned.
	FindKey(ctx context.Context, p *bakeoci.Plan) (*catalog.Image, []string, error)
	// Retarget points p at r's version, r being p's recipe with its
	// version resolved.
	Retarget(p *bakeoci.Plan, r *recipes.Recipe) error
}

// maxVersionClaims bounds how many versions one bake tries to claim
// while other runners keep taking them.
const maxVersionClaims = 10

// autoRun is the version one bake of an auto-versioned recipe assigns:
// the blocks that need a new image share it.
type autoRun struct {
	mu      sync.Mutex
	version string
	lease   *heldLease
}

// release gives back the lease on the assigned version.
func (a *autoRun) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lease.release()
	a.lease = nil
}

// resultVersion is the recipe's version in the Result: the one assigned,
// else the highest the artifacts were found at.
func (a *autoRun) resultVersion(arts []Artifact) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.version != "" {
		return a.version
	}
	var vs []string
	for _, art := range arts {
		if art.Version != "" {
			vs = append(vs, art.Version)
		}
	}
	if len(vs) == 0 {
		return recipes.AutoVersion
	}
	return slices.Max(vs)
}

// assign returns the recipe's new version for this bake: the one already
// assigned to another block of it, or the next one after existing (see
// recipes.NextAutoVersion) that the ledger lets this runner claim (with
// one) and whose tag free says is free.
func (a *autoRun) assign(ctx context.Context, e *Engine, r *recipes.Recipe, key string, existing []string, free func(v string) (bool, error)) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.version != "" {
		return a.version, nil
	}
	taken := slices.Clone(existing)
	for range maxVersionClaims {
		v := r.NextAutoVersion(e.now(), taken)
		taken = append(taken, v)
		lease, ok, err := e.claimVersion(ctx, r, v, key)
		if err != nil {
			return "", err
		}
		if !ok {
			continue // another runner is assigning it
		}
		ok, err = free(v)
		if err != nil || !ok {
			lease.release()
			if err != nil {
				return "", err
			}
			continue
		}
		a.version, a.lease = v, lease
		return v, nil
	}
	return "", fmt.Errorf("baking %s: other runners took %d versions in a row while this one tried to claim one: try again", r.Name, maxVersionClaims)
}

// bakeContainerAuto bakes container c of auto-versioned recipe r: it
// computes the bake key (which leaves the version out), reports the image
// that carries it up to date at that image's version, and otherwise bakes
// it under the recipe's next version.
func (e *Engine) bakeContainerAuto(ctx context.Context, r *recipes.Recipe, c *recipes.Container, run *autoRun) (*Artifact, error) {
	av, ok := e.containers.(AutoVersioner)
	if !ok {
		return nil, fmt.Errorf("baking %s: version = \"auto\" needs a container baker that finds images by bake key; this one does not", c.Name)
	}
	plan, err := e.containers.Prepare(ctx, r, c)
	if err != nil {
		return nil, err
	}
	if err := e.containers.Key(ctx, plan); err != nil {
		return nil, err
	}
	found, versions, err := av.FindKey(ctx, plan)
	if err != nil {
		return nil, err
	}
	if found == nil || e.force {
		lctx, lease, exists, err := e.leaseKey(ctx, r, c.Name, func(context.Context) (string, error) { return plan.Key, nil },
			func(ctx context.Context) (bool, error) {
				found, versions, err = av.FindKey(ctx, plan)
				return found != nil && !e.force, err
			})
		if err != nil {
			return nil, err
		}
		if !exists {
			defer lease.release()
			return e.buildAuto(lctx, av, r, c, plan, versions, run)
		}
	}
	if err := av.Retarget(plan, r.WithVersion(found.Version)); err != nil {
		return nil, err
	}
	e.progress.Info(fmt.Sprintf("%s up to date at version %s (%s)", plan.Target, found.Version, found.Digest))
	return artifact(c, plan, found, true), nil
}

// buildAuto bakes plan under the recipe's next version.
func (e *Engine) buildAuto(ctx context.Context, av AutoVersioner, r *recipes.Recipe, c *recipes.Container, plan *bakeoci.Plan, versions []string, run *autoRun) (*Artifact, error) {
	v, err := run.assign(ctx, e, r, plan.Key, versions, func(v string) (bool, error) {
		if err := av.Retarget(plan, r.WithVersion(v)); err != nil {
			return false, err
		}
		img, err := e.containers.Existing(ctx, plan)
		return img == nil, err
	})
	if err != nil {
		return nil, err
	}
	if err := av.Retarget(plan, r.WithVersion(v)); err != nil {
		return nil, err
	}
	e.progress.Info(fmt.Sprintf("%s: new version %s", c.Name, v))
	img, err := e.containers.Build(ctx, plan)
	if errors.Is(err, catalogoci.ErrTagTaken) {
		return nil, fmt.Errorf("baking %s: another process on this machine assigned version %s to other content first, and the layout keeps its image: bake again for the next version: %w", c.Name, v, err)
	}
	if err != nil {
		return nil, err
	}
	if img.BakeKey != plan.Key {
		// Only without a ledger: two runners assigned v at once, and the
		// other's push came last.
		return nil, fmt.Errorf("baking %s: version %s was assigned at the same time by another runner, whose image (bake key %s) now holds %s; this bake's image (key %s) is untagged: bake again, and configure a ledger (catalog block or BAKERY_LEDGER) so that runners claim versions in it",
			c.Name, v, shortKey(img.BakeKey), plan.Target, shortKey(plan.Key))
	}
	a := artifact(c, plan, img, false)
	a.Version = v
	return a, nil
}

// AutoMachineImageBaker is what a MachineImageBaker also implements to
// bake auto-versioned recipes; *bakeami.Baker does.
type AutoMachineImageBaker interface {
	// FindKey returns the AMIs carrying p's bake key and their version
	// (nil and "" if none), and the artifact's auto versions.
	FindKey(ctx context.Context, p *bakeami.Plan) (*bakeami.Existing, string, []string, error)
	// Retarget sets p's version to r's.
	Retarget(p *bakeami.Plan, r *recipes.Recipe)
}

// bakeMachineImageAuto bakes machine_image m of auto-versioned recipe r:
// the AMIs carrying its bake key are up to date at their version (copied
// to the regions that lack one); otherwise it bakes under the recipe's
// next version.
func (e *Engine) bakeMachineImageAuto(ctx context.Context, r *recipes.Recipe, m *recipes.MachineImage, run *autoRun) ([]Artifact, error) {
	am, ok := e.machines.(AutoMachineImageBaker)
	if !ok {
		return nil, fmt.Errorf("baking %s: version = \"auto\" needs a machine image baker that finds AMIs by bake key; this one does not", m.Name)
	}
	plan, err := e.machines.Prepare(ctx, r, m)
	if err != nil {
		return nil, err
	}
	existing, version, versions, err := am.FindKey(ctx, plan)
	if err != nil {
		return nil, err
	}
	if existing == nil || e.force {
		lctx, lease, exists, err := e.leaseKey(ctx, r, m.Name, func(context.Context) (string, error) { return plan.Key, nil },
			func(ctx context.Context) (bool, error) {
				existing, version, versions, err = am.FindKey(ctx, plan)
				return existing != nil && !e.force, err
			})
		if err != nil {
			return nil, err
		}
		if !exists {
			defer lease.release()
			return e.buildMachineImageAuto(lctx, am, r, m, plan, versions, run)
		}
	}
	am.Retarget(plan, r.WithVersion(version))
	missing := existing.Missing(plan)
	if len(missing) == 0 {
		e.progress.Info(fmt.Sprintf("%s up to date at version %s (%s)", m.Name, version, amiList(existing.Images)))
		return withVersion(amiArtifacts(m.Name, plan, existing.Images, true), version), nil
	}
	e.progress.Info(fmt.Sprintf("%s exists at version %s (%s): copying it to %s", m.Name, version, amiList(existing.Images), strings.Join(missing, ", ")))
	imgs, err := e.machines.Fill(ctx, plan, existing)
	if err != nil {
		return nil, err
	}
	arts := amiArtifacts(m.Name, plan, imgs, true)
	for i := range arts {
		arts[i].Cached = !slices.Contains(missing, arts[i].Region)
	}
	return withVersion(arts, version), nil
}

// buildMachineImageAuto bakes plan under the recipe's next version.
func (e *Engine) buildMachineImageAuto(ctx context.Context, am AutoMachineImageBaker, r *recipes.Recipe, m *recipes.MachineImage, plan *bakeami.Plan, versions []string, run *autoRun) ([]Artifact, error) {
	v, err := run.assign(ctx, e, r, plan.Key, versions, func(v string) (bool, error) {
		am.Retarget(plan, r.WithVersion(v))
		ex, err := e.machines.Existing(ctx, plan)
		return ex == nil, err
	})
	if err != nil {
		return nil, err
	}
	am.Retarget(plan, r.WithVersion(v))
	e.progress.Info(fmt.Sprintf("%s: new version %s", m.Name, v))
	res, err := e.machines.Build(ctx, plan)
	if m.AMIName == "" && awsx.ErrorCode(err) == bakeami.ErrAMINameTaken {
		return nil, fmt.Errorf("baking %s: another runner claimed version %s first (EC2 refused the AMI name, which holds the version); nothing is left of this bake: bake again for the next version, and configure a ledger (catalog block or BAKERY_LEDGER) so that runners wait for each other: %w", m.Name, v, err)
	}
	if err != nil {
		return nil, err
	}
	// Without a ledger another runner may have assigned v at the same
	// time: its AMIs then carry v with another key.
	after, err := e.machines.Existing(ctx, plan)
	if err != nil {
		return nil, fmt.Errorf("%w; configure a ledger (catalog block or BAKERY_LEDGER) so that runners claim versions in it", err)
	}
	if after != nil && after.BakeKey != plan.Key {
		return nil, fmt.Errorf("baking %s: version %s was assigned at the same time by another runner, whose AMIs (%s, bake key %s) carry it too; deregister one of them, and configure a ledger (catalog block or BAKERY_LEDGER) so that runners claim versions in it",
			m.Name, v, amiList(after.Images), shortKey(after.BakeKey))
	}
	return withVersion(amiArtifacts(m.Name, plan, res.Images, false), v), nil
}

// withVersion sets the version of arts.
func withVersion(arts []Artifact, v string) []Artifact {
	for i := range arts {
		arts[i].Version = v
	}
	return arts
}
