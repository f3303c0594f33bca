// Package bake is the bake engine: for every artifact of a recipe it
// computes the bake key, skips the artifact if an image with that key
// already exists at its destination, and otherwise bakes it. The
// container builder lives in bake/oci.
package bake

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

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
	// Version is the image's version: the recipe's, or for an
	// auto-versioned recipe the one the image was found or baked at.
	Version string `json:"version,omitempty"`
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
	// Version is the recipe version. For an auto-versioned recipe
	// (version = "auto") it is the version this bake assigned, or, when
	// every artifact was up to date, the version they were found at
	// (the highest, should they differ).
	Version string `json:"version"`
	// BakeKey is the recipe's bake key: its artifact's key, or a key over
	// all its artifacts' keys when it has several.
	BakeKey string `json:"bake_key"`
	// Cached is true when every artifact was up to date.
	Cached bool `json:"cached"`
	// Artifacts are the recipe's images, in recipe order.
	Artifacts []Artifact `json:"artifacts"`
	// Failed are the blocks that failed to bake, in recipe order. The
	// images of the other blocks are in Artifacts and stay baked; the
	// recipe's BakeKey is then empty and Cached false.
	Failed []Failure `json:"failed,omitempty"`
	// Outcome is "skipped" for a recipe of a graph bake that was not
	// baked because a recipe it is built on did not bake (SkippedFor
	// names it, Artifacts is empty); empty otherwise.
	Outcome string `json:"result,omitempty"`
	// SkippedFor names the recipe whose failure skipped this one.
	SkippedFor string `json:"skipped_for,omitempty"`
}

// Failure is a block of a recipe that failed to bake.
type Failure struct {
	// Kind is the kind of image the block bakes.
	Kind catalog.Kind `json:"kind"`
	// Name is the block's label.
	Name string `json:"name"`
	// Error says why.
	Error string `json:"error"`
}

// BlockError is the error of one block of a recipe.
type BlockError struct {
	// Kind is the kind of image the block bakes.
	Kind catalog.Kind
	// Name is the block's label.
	Name string
	// Err is what went wrong.
	Err error
}

// Error returns the block's error message.
func (e *BlockError) Error() string { return e.Err.Error() }

// Unwrap returns the block's error.
func (e *BlockError) Unwrap() error { return e.Err }

// FailedError is what Bake returns when blocks of a recipe failed; the
// Result returned with it holds the images of the blocks that did not.
type FailedError struct {
	// Recipe is the recipe name.
	Recipe string
	// Blocks is how many blocks the recipe baked, failed or not.
	Blocks int
	// Failed are the failed blocks, in recipe order.
	Failed []*BlockError
}

// Error is the failed block's own message when the recipe has one block;
// otherwise it names the failed blocks, then gives each one's error.
func (e *FailedError) Error() string {
	if e.Blocks == 1 && len(e.Failed) == 1 {
		return e.Failed[0].Err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "baking %s: %d of %d blocks failed (%s)", e.Recipe, len(e.Failed), e.Blocks, strings.Join(e.Names(), ", "))
	if len(e.Failed) < e.Blocks {
		b.WriteString("; the images of the others are baked")
	}
	for _, f := range e.Failed {
		fmt.Fprintf(&b, "; %s %q: %v", blockKind(f.Kind), f.Name, f.Err)
	}
	return b.String()
}

// Unwrap returns the blocks' errors.
func (e *FailedError) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f
	}
	return out
}

// Names returns the labels of the failed blocks, in recipe order.
func (e *FailedError) Names() []string {
	out := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f.Name
	}
	return out
}

// blockKind is the recipe block type that bakes images of kind k.
func blockKind(k catalog.Kind) string {
	if k == catalog.KindAMI {
		return "machine_image"
	}
	return "container"
}

// ContainerBaker bakes container images; *bakeoci.Baker implements it.
type ContainerBaker interface {
	Prepare(ctx context.Context, r *recipes.Recipe, c *recipes.Container) (*bakeoci.Plan, error)
	Existing(ctx context.Context, p *bakeoci.Plan) (*catalog.Image, error)
	Key(ctx context.Context, p *bakeoci.Plan) error
	Build(ctx context.Context, p *bakeoci.Plan) (*catalog.Image, error)
}

// Engine bakes recipes.
type Engine struct {
	containers ContainerBaker
	machines   MachineImageBaker
	progress   progress.Reporter
	force      bool
	parallel   int
	leases     LeasesFunc
	holder     string
	now        func() time.Time
	sleep      func(context.Context, time.Duration) error
	poll       time.Duration
	// containerParallel bounds the recipes without machine images that
	// BakeGraph bakes at once.
	containerParallel int
	// amiSlots bound the machine_image blocks baking at once across
	// every recipe of the engine (parallel of them).
	amiSlots chan struct{}
}

// DefaultParallel is how many blocks of a recipe bake at once unless
// WithParallel says otherwise.
const DefaultParallel = 4

// WithParallel bounds how many blocks of a recipe bake at once, as
// Packer's -parallel-builds, and how many machine_image blocks bake at
// once across the recipes of the engine (BakeGraph): each machine_image
// block takes a slot, and
// the container blocks, which bake one after the other (they share the
// local layout), take one together. Default: DefaultParallel (4). Values
// below 1 mean 1: every block in turn, in recipe order.
func WithParallel(n int) Option { return func(e *Engine) { e.parallel = max(1, n) } }

// WithContainerParallel bounds how many recipes without machine_image
// blocks BakeGraph bakes at once: they use the local CPUs (hashing,
// compressing), not builders in the cloud. Default: DefaultParallel, but
// no more than the CPUs (GOMAXPROCS). Values below 1 mean 1.
func WithContainerParallel(n int) Option {
	return func(e *Engine) { e.containerParallel = max(1, n) }
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
	e := &Engine{containers: containers, progress: progress.Discard(), parallel: DefaultParallel,
		now: time.Now, sleep: sleepTimer, poll: DefaultLeasePoll, holder: "bakery",
		containerParallel: min(DefaultParallel, runtime.GOMAXPROCS(0))}
	for _, o := range opts {
		o(e)
	}
	e.amiSlots = make(chan struct{}, e.parallel)
	return e
}

// Bake bakes every artifact of r that is not up to date. Its
// machine_image blocks bake in parallel (see WithParallel), and one block
// failing does not stop the others: Bake then returns the Result of the
// blocks that succeeded, whose images stay, with their failures in
// Result.Failed, together with a *FailedError naming the failed blocks.
// The Result is nil when no block succeeded (or r has none).
func (e *Engine) Bake(ctx context.Context, r *recipes.Recipe) (*Result, error) {
	if len(r.Containers)+len(r.MachineImages) == 0 {
		return nil, fmt.Errorf("baking %s: the recipe has no container or machine_image block; add one (see README, \"Recipe reference\")", r.Name)
	}
	blocks := make([]block, 0, len(r.Containers)+len(r.MachineImages))
	run := &autoRun{}
	defer run.release()
	for _, c := range r.Containers {
		blocks = append(blocks, block{kind: catalog.KindContainer, name: c.Name, bake: func(ctx context.Context) ([]Artifact, error) {
			var a *Artifact
			var err error
			if r.VersionAuto {
				a, err = e.bakeContainerAuto(ctx, r, c, run)
			} else {
				a, err = e.bakeContainer(ctx, r, c)
			}
			if err != nil {
				return nil, err
			}
			return []Artifact{*a}, nil
		}})
	}
	// The containers are one unit: they bake in turn.
	units := [][]int{}
	if len(r.Containers) > 0 {
		units = append(units, nil)
		for i := range r.Containers {
			units[0] = append(units[0], i)
		}
	}
	for _, m := range r.MachineImages {
		units = append(units, []int{len(blocks)})
		blocks = append(blocks, block{kind: catalog.KindAMI, name: m.Name, bake: func(ctx context.Context) ([]Artifact, error) {
			return e.bakeMachineImage(ctx, r, m, run)
		}})
	}
	e.run(ctx, blocks, units)

	res := &Result{Recipe: r.Name, Version: r.Version, Cached: true}
	failed := &FailedError{Recipe: r.Name, Blocks: len(blocks)}
	for _, b := range blocks {
		if b.err != nil {
			failed.Failed = append(failed.Failed, &BlockError{Kind: b.kind, Name: b.name, Err: b.err})
			res.Failed = append(res.Failed, Failure{Kind: b.kind, Name: b.name, Error: b.err.Error()})
			continue
		}
		for _, a := range b.arts {
			res.Cached = res.Cached && a.Cached
		}
		res.Artifacts = append(res.Artifacts, b.arts...)
	}
	switch {
	case len(failed.Failed) == len(blocks):
		return nil, failed
	case len(failed.Failed) > 0:
		res.Cached = false
		if r.VersionAuto {
			res.Version = run.resultVersion(res.Artifacts)
		}
		return res, failed
	}
	res.BakeKey = recipeKey(res.Artifacts)
	if r.VersionAuto {
		res.Version = run.resultVersion(res.Artifacts)
	}
	return res, nil
}

// block is one container or machine_image block of a recipe being baked.
type block struct {
	kind catalog.Kind
	name string
	bake func(context.Context) ([]Artifact, error)
	// Set by run.
	arts []Artifact
	err  error
}

// run bakes blocks: each unit (indexes into blocks, baked in turn) in a
// goroutine of its own, at most e.parallel units at once, started in
// order. A failed block does not stop the others; once ctx is done, units
// not yet started are marked as not started.
func (e *Engine) run(ctx context.Context, blocks []block, units [][]int) {
	slots := make(chan struct{}, e.parallel)
	var wg sync.WaitGroup
	for _, u := range units {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			for _, i := range u {
				blocks[i].err = fmt.Errorf("%s %s not started: %w", blockKind(blocks[i].kind), blocks[i].name, ctx.Err())
			}
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			for _, i := range u {
				if blocks[i].kind == catalog.KindAMI {
					// Builders of every recipe of a run share the bound.
					select {
					case e.amiSlots <- struct{}{}:
					case <-ctx.Done():
						blocks[i].err = fmt.Errorf("%s %s not started: %w", blockKind(blocks[i].kind), blocks[i].name, ctx.Err())
						continue
					}
					blocks[i].arts, blocks[i].err = blocks[i].bake(ctx)
					<-e.amiSlots
					continue
				}
				blocks[i].arts, blocks[i].err = blocks[i].bake(ctx)
			}
		})
	}
	wg.Wait()
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
	if existing != nil {
		// There is a key to compare with: read the inputs now. Without
		// one, Build computes the key as it reads them for the layers.
		if err := e.containers.Key(ctx, plan); err != nil {
			return nil, err
		}
	}
	if existing != nil && existing.BakeKey == "" {
		return nil, fmt.Errorf("baking %s: %s already holds an image bakery did not bake (it has no bake key), and bakery does not overwrite it: remove that tag, or %s",
			c.Name, plan.Target, r.NewVersionHint())
	}
	if existing != nil && existing.BakeKey != plan.Key {
		return nil, fmt.Errorf("baking %s: version %s already holds other content at %s (bake key %s, this bake %s); a version is immutable: %s",
			c.Name, r.Version, plan.Target, shortKey(existing.BakeKey), shortKey(plan.Key), r.NewVersionHint())
	}
	if existing != nil && !e.force {
		progress.For(ctx, e.progress).Info(fmt.Sprintf("%s up to date (%s)", plan.Target, existing.Digest))
		return artifact(c, plan, existing, true), nil
	}
	if existing == nil {
		// With a ledger, one runner bakes the key; the others wait, and
		// then find its image as an existing one.
		lctx, lease, exists, err := e.leaseKey(ctx, r, c.Name, func(ctx context.Context) (string, error) {
			// The key is known only once Key has read the inputs (Go does
			// not order a field read before a call in one return).
			if err := e.containers.Key(ctx, plan); err != nil {
				return "", err
			}
			return plan.Key, nil
		}, func(ctx context.Context) (bool, error) {
			img, err := e.containers.Existing(ctx, plan)
			return img != nil, err
		})
		if err != nil {
			return nil, err
		}
		if exists {
			return e.bakeContainer(ctx, r, c)
		}
		defer lease.release()
		ctx = lctx
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
		Version:  img.Version,
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
