package bake

import (
	"context"
	"fmt"
	"slices"
	"strings"

	bakeami "github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// MachineImageBaker bakes AMIs; *bakeami.Baker implements it.
type MachineImageBaker interface {
	Prepare(ctx context.Context, r *recipes.Recipe, m *recipes.MachineImage) (*bakeami.Plan, error)
	Existing(ctx context.Context, p *bakeami.Plan) (*bakeami.Existing, error)
	Build(ctx context.Context, p *bakeami.Plan) (*bakeami.Result, error)
	// Fill copies existing AMIs to the plan's regions that lack one.
	Fill(ctx context.Context, p *bakeami.Plan, e *bakeami.Existing) ([]bakeami.RegionImage, error)
	// Replace retires the AMIs a forced rebake replaced.
	Replace(ctx context.Context, p *bakeami.Plan, old *bakeami.Existing, res *bakeami.Result) error
}

// WithMachineImages sets the AMI baker. Default: none, and a recipe with a
// machine_image block fails with a message saying AWS is not configured.
func WithMachineImages(b MachineImageBaker) Option { return func(e *Engine) { e.machines = b } }

// bakeMachineImage bakes one machine_image block, or reports the AMIs that
// already carry its bake key in every region.
func (e *Engine) bakeMachineImage(ctx context.Context, r *recipes.Recipe, m *recipes.MachineImage, run *autoRun) ([]Artifact, error) {
	if e.machines == nil {
		return nil, fmt.Errorf("machine image %s at %s: no AWS configuration; set AWS credentials and a region (AWS_REGION, a profile, or region in the block)", m.Name, m.Pos("region"))
	}
	if r.VersionAuto {
		return e.bakeMachineImageAuto(ctx, r, m, run)
	}
	plan, err := e.machines.Prepare(ctx, r, m)
	if err != nil {
		return nil, err
	}
	existing, err := e.machines.Existing(ctx, plan)
	if err != nil {
		return nil, err
	}
	if existing != nil && catalog.Adopted(existing.BakeKey) {
		return nil, fmt.Errorf("machine image %s: version %s was adopted (%s, bakery adopt): bakery did not bake it and cannot tell whether this recipe makes the same image, so it never takes it for up to date; %s",
			m.Name, r.Version, amiList(existing.Images), r.NewVersionHint())
	}
	if existing != nil && existing.BakeKey != plan.Key {
		return nil, fmt.Errorf("machine image %s: version %s already exists as %s with other content (bake key %s, this bake %s); a version is immutable: %s",
			m.Name, r.Version, amiList(existing.Images), shortKey(existing.BakeKey), shortKey(plan.Key), r.NewVersionHint())
	}
	if existing != nil && !e.force {
		missing := existing.Missing(plan)
		if len(missing) == 0 {
			progress.For(ctx, e.progress).Info(fmt.Sprintf("%s up to date (%s)", m.Name, amiList(existing.Images)))
			return amiArtifacts(m.Name, plan, existing.Images, true), nil
		}
		// The version exists: copy it where it is missing rather than
		// bake other bytes under the same version.
		progress.For(ctx, e.progress).Info(fmt.Sprintf("%s exists (%s): copying it to %s", m.Name, amiList(existing.Images), strings.Join(missing, ", ")))
		imgs, err := e.machines.Fill(ctx, plan, existing)
		if err != nil {
			return nil, err
		}
		arts := amiArtifacts(m.Name, plan, imgs, true)
		for i := range arts {
			arts[i].Cached = !slices.Contains(missing, arts[i].Region)
		}
		return arts, nil
	}
	if existing == nil {
		// With a ledger, one runner bakes the key; the others wait, and
		// then find its AMIs as existing ones.
		lctx, lease, exists, err := e.leaseKey(ctx, r, m.Name, func(context.Context) (string, error) { return plan.Key, nil },
			func(ctx context.Context) (bool, error) {
				ex, err := e.machines.Existing(ctx, plan)
				return ex != nil, err
			})
		if err != nil {
			return nil, err
		}
		if exists {
			return e.bakeMachineImage(ctx, r, m, run)
		}
		defer lease.release()
		ctx = lctx
	}
	res, err := e.machines.Build(ctx, plan)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		// --force: one version, one AMI per region.
		if err := e.machines.Replace(ctx, plan, existing, res); err != nil {
			return nil, err
		}
	}
	return amiArtifacts(m.Name, plan, res.Images, false), nil
}

// amiArtifacts are the artifacts of plan's AMIs imgs. The source is the
// plan's also for AMIs baked before: the source AMI is in the bake key.
func amiArtifacts(name string, plan *bakeami.Plan, imgs []bakeami.RegionImage, cached bool) []Artifact {
	out := make([]Artifact, 0, len(imgs))
	src := &Source{ID: plan.SourceAMI, Name: plan.SourceAMIName, Owner: plan.SourceAMIOwner, Created: plan.SourceAMICreated}
	for _, img := range imgs {
		out = append(out, Artifact{
			Kind:      catalog.KindAMI,
			Name:      name,
			Ref:       img.ImageID,
			Region:    img.Region,
			ID:        img.ImageID,
			Snapshots: img.Snapshots,
			BakeKey:   plan.Key,
			Cached:    cached,
			Source:    src,
		})
	}
	return out
}

func amiList(imgs []bakeami.RegionImage) string {
	parts := make([]string, len(imgs))
	for i, img := range imgs {
		parts[i] = img.Region + ":" + img.ImageID
	}
	return strings.Join(parts, ", ")
}
