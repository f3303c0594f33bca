// Package bake is the bake engine: for every artifact of a recipe it
// computes the bake key, skips the artifact if an image with that key
// already exists at its destination, and otherwise bakes it. The
// container builder lives in bake/oci.
package bake

import (
	"context"
	"fmt"

	"github.com/bakery-sh/bakery/bake/bakekey"
	bakeoci "github.com/bakery-sh/bakery/bake/oci"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// Artifact is one baked (or found up to date) image.
type Artifact struct {
	// Kind is the kind of image.
	Kind catalog.Kind `json:"kind"`
	// Name is the artifact block's label.
	Name string `json:"name"`
	// Ref is where the image is: "repo:tag" in a registry, "NAME:TAG" in
	// the local OCI layout (see Location), or the AMI id.
	Ref string `json:"ref"`
	// Digest is the manifest (or index) digest of a container image.
	Digest string `json:"digest,omitempty"`
	// Size is a container image's size in bytes: manifest, config and layers.
	Size int64 `json:"size,omitempty"`
	// BakeKey is this artifact's bake key.
	BakeKey string `json:"bake_key"`
	// Cached is true when the image already existed and nothing was baked.
	Cached bool `json:"cached"`
	// Location is the OCI layout folder for local images, empty for
	// registry images.
	Location string `json:"location,omitempty"`
	// Region is the AWS region of an AMI artifact (one artifact per region).
	Region string `json:"region,omitempty"`
	// ID is the AMI id.
	ID string `json:"id,omitempty"`
	// Snapshots are the EBS snapshot ids behind the AMI.
	Snapshots []string `json:"snapshots,omitempty"`
	// Source is the AMI an AMI artifact was baked from, as its source_ami,
	// source_ami_filter or source_ami_ssm resolved; nil for a container.
	Source *Source `json:"source,omitempty"`
}

// Source is the source AMI of an AMI artifact.
type Source struct {
	// ID is the AMI id, in the build region.
	ID string `json:"id"`
	// Name is the AMI's name.
	Name string `json:"name,omitempty"`
	// Owner is the id of the account that owns it.
	Owner string `json:"owner,omitempty"`
	// Created is its creation date as EC2 gives it (ISO 8601, UTC).
	Created string `json:"created,omitempty"`
}

// Result is the outcome of baking one recipe.
type Result struct {
	// Recipe is the recipe name.
	Recipe string `json:"recipe"`
	// Version is the recipe version.
	Version string `json:"version"`
	// BakeKey is the recipe's bake key: its artifact's key, or a key over
	// all its artifacts' keys when it has several.
	BakeKey string `json:"bake_key"`
	// Cached is true when every artifact was up to date.
	Cached bool `json:"cached"`
	// Artifacts are the recipe's images, in recipe order.
	Artifacts []Artifact `json:"artifacts"`
}

// ContainerBaker bakes container images; *bakeoci.Baker implements it.
type ContainerBaker interface {
	Prepare(ctx context.Context, r *recipes.Recipe, c *recipes.Container) (*bakeoci.Plan, error)
	Existing(ctx context.Context, p *bakeoci.Plan) (*catalog.Image, error)
	Build(ctx context.Context, p *bakeoci.Plan) (*catalog.Image, error)
}

// Engine bakes recipes.
type Engine struct {
	containers ContainerBaker
	machines   MachineImageBaker
	progress   progress.Reporter
	force      bool
}

// Option configures an Engine.
type Option func(*Engine)

// WithProgress sets where step lines go. Default: nowhere.
func WithProgress(r progress.Reporter) Option { return func(e *Engine) { e.progress = r } }

// WithForce rebakes artifacts even when an image with the same bake key
// exists. Default: false. A version tag that holds other content is still
// refused.
func WithForce(force bool) Option { return func(e *Engine) { e.force = force } }

// New returns an Engine that bakes container images with containers.
func New(containers ContainerBaker, opts ...Option) *Engine {
	e := &Engine{containers: containers, progress: progress.Discard()}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Bake bakes every artifact of r that is not up to date.
func (e *Engine) Bake(ctx context.Context, r *recipes.Recipe) (*Result, error) {
	res := &Result{Recipe: r.Name, Version: r.Version, Cached: true}
	if len(r.Containers)+len(r.MachineImages) == 0 {
		return nil, fmt.Errorf("baking %s: the recipe has no container or machine_image block; add one (see README, \"Recipe reference\")", r.Name)
	}
	for _, c := range r.Containers {
		a, err := e.bakeContainer(ctx, r, c)
		if err != nil {
			return nil, err
		}
		res.Cached = res.Cached && a.Cached
		res.Artifacts = append(res.Artifacts, *a)
	}
	for _, m := range r.MachineImages {
		arts, err := e.bakeMachineImage(ctx, r, m)
		if err != nil {
			return nil, err
		}
		for _, a := range arts {
			res.Cached = res.Cached && a.Cached
		}
		res.Artifacts = append(res.Artifacts, arts...)
	}
	res.BakeKey = recipeKey(res.Artifacts)
	return res, nil
}

// recipeKey is the artifact's key when the recipe bakes one artifact
// (in one or several regions), else a key over every artifact's key.
func recipeKey(arts []Artifact) string {
	keys := map[string]string{}
	var order []string
	for _, a := range arts {
		id := string(a.Kind) + "/" + a.Name
		if _, ok := keys[id]; !ok {
			order = append(order, id)
		}
		keys[id] = a.BakeKey
	}
	if len(order) == 1 {
		return keys[order[0]]
	}
	k := bakekey.New("recipe/v1")
	for _, id := range order {
		k.AddString(id, keys[id])
	}
	return k.Sum()
}

func (e *Engine) bakeContainer(ctx context.Context, r *recipes.Recipe, c *recipes.Container) (*Artifact, error) {
	plan, err := e.containers.Prepare(ctx, r, c)
	if err != nil {
		return nil, err
	}
	existing, err := e.containers.Existing(ctx, plan)
	if err != nil {
		return nil, err
	}
	if existing != nil && existing.BakeKey != plan.Key {
		return nil, fmt.Errorf("baking %s: version %s already holds other content at %s (bake key %s, this bake %s); a version is immutable: bump the recipe version (for example -var version=...) to bake a new one",
			c.Name, r.Version, plan.Target, shortKey(existing.BakeKey), shortKey(plan.Key))
	}
	if existing != nil && !e.force {
		e.progress.Info(fmt.Sprintf("%s up to date (%s)", plan.Target, existing.Digest))
		return artifact(c, plan, existing, true), nil
	}
	img, err := e.containers.Build(ctx, plan)
	if err != nil {
		return nil, err
	}
	if existing != nil && existing.Digest != img.Digest {
		return nil, fmt.Errorf("baking %s: the rebake of %s produced digest %s but the same bake key is stored with %s; the recipe is not reproducible (does it use timestamp() or env()?)",
			c.Name, plan.Target, img.Digest, existing.Digest)
	}
	return artifact(c, plan, img, false), nil
}

func artifact(c *recipes.Container, p *bakeoci.Plan, img *catalog.Image, cached bool) *Artifact {
	return &Artifact{
		Kind:     catalog.KindContainer,
		Name:     c.Name,
		Ref:      p.Target,
		Digest:   img.Digest,
		Size:     img.Size,
		BakeKey:  p.Key,
		Cached:   cached,
		Location: p.Location,
	}
}

func shortKey(k string) string {
	const n = len("sha256:") + 12
	if len(k) > n {
		return k[:n]
	}
	return k
}
