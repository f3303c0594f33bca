package bake_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/bake"
	bakeami "github.com/bakery-sh/bakery/bake/ami"
	bakeoci "github.com/bakery-sh/bakery/bake/oci"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/recipes"
)

// graphFolder is six recipes with two levels of bases: os ← tools ←
// (app2, app3), os ← app1, and solo on scratch. File order differs from
// bake order.
var graphFolder = map[string]string{
	"a-app1.bake.hcl":  "os",
	"b-app2.bake.hcl":  "tools",
	"c-app3.bake.hcl":  "tools",
	"d-os.bake.hcl":    "",
	"e-solo.bake.hcl":  "",
	"f-tools.bake.hcl": "os",
}

// loadGraph loads graphFolder and checks its links.
func loadGraph(t *testing.T) *recipes.Graph {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("f\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var rs []*recipes.Recipe
	for _, file := range []string{"a-app1.bake.hcl", "b-app2.bake.hcl", "c-app3.bake.hcl", "d-os.bake.hcl", "e-solo.bake.hcl", "f-tools.bake.hcl"} {
		name := strings.TrimSuffix(file[2:], ".bake.hcl")
		base := "scratch"
		if b := graphFolder[file]; b != "" {
			base = "recipe:" + b
		}
		src := fmt.Sprintf("recipe %q {\n  version = \"1.0.0\"\n  stages = [\"dev\"]\n}\ncontainer %q {\n  base = %q\n  layer {\n    source = \"f\"\n    destination = \"/f\"\n  }\n}\n", name, name, base)
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		r, diags := recipes.NewLoader().Load(path, recipes.Options{})
		if diags.HasErrors() {
			t.Fatalf("loading %s: %v", file, diags)
		}
		rs = append(rs, r)
	}
	g, diags := recipes.LinkGraph(rs)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return g
}

// fakeContainers bakes nothing: it records what it was asked, how many
// builds ran at once, and fails the recipes named in fail. A build waits
// at the barrier, when one is set, until another build is running too.
type fakeContainers struct {
	mu       sync.Mutex
	inFlight int
	max      int
	bases    map[string]*recipes.Resolved
	fail     map[string]bool
	barrier  chan struct{}
}

func (f *fakeContainers) Prepare(_ context.Context, r *recipes.Recipe, c *recipes.Container) (*bakeoci.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.BaseLink != nil {
		f.bases[r.Name] = c.BaseLink.Resolved
	}
	return &bakeoci.Plan{Key: "sha256:" + r.Name, Target: c.Name + ":" + r.Version, Location: "/layout"}, nil
}

func (f *fakeContainers) Existing(context.Context, *bakeoci.Plan) (*catalog.Image, error) {
	return nil, nil
}

func (f *fakeContainers) Key(context.Context, *bakeoci.Plan) error { return nil }

func (f *fakeContainers) Build(ctx context.Context, p *bakeoci.Plan) (*catalog.Image, error) {
	f.mu.Lock()
	f.inFlight++
	f.max = max(f.max, f.inFlight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	if f.barrier != nil {
		select {
		case f.barrier <- struct{}{}: // another build is waiting: both run now
		case <-f.barrier:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	name, _, _ := strings.Cut(p.Target, ":")
	if f.fail[name] {
		return nil, errors.New("build failed")
	}
	return &catalog.Image{Digest: "sha256:d-" + name}, nil
}

// tickClock returns a clock that moves one second per reading.
func tickClock() func() time.Time {
	var n atomic.Int64
	t0 := time.Unix(1_700_000_000, 0)
	return func() time.Time { return t0.Add(time.Duration(n.Add(1)) * time.Second) }
}

// TestBakeGraphOrderAndParallel: each recipe starts after the recipes its
// base links to ended, and the linked image is its base; independent
// recipes bake at the same time, never more than the bound.
func TestBakeGraphOrderAndParallel(t *testing.T) {
	g := loadGraph(t)
	f := &fakeContainers{bases: map[string]*recipes.Resolved{}, barrier: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	outs := bake.New(f, bake.WithContainerParallel(2), bake.WithClock(tickClock(), nil)).BakeGraph(ctx, g)
	byName := map[string]*bake.Outcome{}
	var order []string
	for _, o := range outs {
		byName[o.Recipe.Name] = o
		order = append(order, o.Recipe.Name)
		if o.Err != nil || o.Status() != "baked" {
			t.Errorf("%s: %s %v", o.Recipe.Name, o.Status(), o.Err)
		}
	}
	if got := strings.Join(order, " "); got != "os app1 solo tools app2 app3" {
		t.Errorf("outcome order = %q", got)
	}
	for file, base := range graphFolder {
		name := strings.TrimSuffix(file[2:], ".bake.hcl")
		if base == "" {
			continue
		}
		if !byName[name].Start.After(byName[base].End) {
			t.Errorf("%s started at %v, before its base %s ended at %v", name, byName[name].Start, base, byName[base].End)
		}
		if r := f.bases[name]; r == nil || r.Ref != base+":1.0.0" || r.Layout != "/layout" || r.Version != "1.0.0" {
			t.Errorf("%s's base resolved to %+v, want %s:1.0.0 in /layout", name, r, base)
		}
	}
	if f.max != 2 {
		t.Errorf("at most %d builds ran at once, want 2", f.max)
	}
	overlap := 0
	for _, a := range outs {
		for _, b := range outs {
			if a != b && a.Start.Before(b.End) && b.Start.Before(a.End) {
				overlap++
			}
		}
	}
	if overlap == 0 {
		t.Error("no two recipes baked at the same time")
	}
}

// TestBakeGraphOneAtATime: with a bound of 1 the recipes bake one after
// the other, in order.
func TestBakeGraphOneAtATime(t *testing.T) {
	g := loadGraph(t)
	f := &fakeContainers{bases: map[string]*recipes.Resolved{}}
	outs := bake.New(f, bake.WithContainerParallel(1), bake.WithClock(tickClock(), nil)).BakeGraph(t.Context(), g)
	for i := 1; i < len(outs); i++ {
		if !outs[i].Start.After(outs[i-1].End) {
			t.Errorf("%s started before %s ended", outs[i].Recipe.Name, outs[i-1].Recipe.Name)
		}
	}
	if f.max != 1 {
		t.Errorf("%d builds ran at once, want 1", f.max)
	}
}

// TestBakeGraphFailedBaseSkipsDependents: tools fails; app2 and app3,
// built on it, are skipped and name it; the others bake.
func TestBakeGraphFailedBaseSkipsDependents(t *testing.T) {
	g := loadGraph(t)
	f := &fakeContainers{bases: map[string]*recipes.Resolved{}, fail: map[string]bool{"tools": true}}
	outs := bake.New(f, bake.WithContainerParallel(2), bake.WithClock(tickClock(), nil)).BakeGraph(t.Context(), g)
	want := map[string]string{"os": "baked", "app1": "baked", "solo": "baked", "tools": "failed", "app2": "skipped", "app3": "skipped"}
	for _, o := range outs {
		if got := o.Status(); got != want[o.Recipe.Name] {
			t.Errorf("%s: %s (%v), want %s", o.Recipe.Name, got, o.Err, want[o.Recipe.Name])
		}
		if o.Status() == "skipped" && (o.SkippedFor != "tools" || !o.Start.IsZero()) {
			t.Errorf("%s skipped for %q, started %v", o.Recipe.Name, o.SkippedFor, o.Start)
		}
	}
}

// fakeMachines bakes no AMI: it counts the builds running at once and
// records the source AMI each block was given. A build of a recipe in
// paired waits until another build runs too, or until every such build
// has started (the last may be alone).
type fakeMachines struct {
	mu       sync.Mutex
	cond     *sync.Cond
	inFlight int
	max      int
	started  int
	paired   map[string]bool
	total    int
	sources  map[string]string
}

func (f *fakeMachines) Prepare(_ context.Context, r *recipes.Recipe, m *recipes.MachineImage) (*bakeami.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sources[r.Name+"/"+m.Name] = m.SourceAMI
	return &bakeami.Plan{Recipe: r.Name, Key: "sha256:" + r.Name + m.Name, BuildRegion: "us-east-1", Regions: []string{"us-east-1"}, SourceAMI: m.SourceAMI}, nil
}

func (f *fakeMachines) Existing(context.Context, *bakeami.Plan) (*bakeami.Existing, error) {
	return nil, nil
}

func (f *fakeMachines) Build(_ context.Context, p *bakeami.Plan) (*bakeami.Result, error) {
	f.mu.Lock()
	f.inFlight++
	f.max = max(f.max, f.inFlight)
	if f.paired[p.Recipe] {
		f.started++
		f.cond.Broadcast()
		for f.inFlight < 2 && f.started < f.total {
			f.cond.Wait()
		}
		// Stay a while, so that a third build, if the bound let one
		// start, is caught running with these two. (A wait, never a
		// deadline: a correct bound passes however slow the machine.)
		f.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		f.mu.Lock()
	}
	f.inFlight--
	f.cond.Broadcast()
	f.mu.Unlock()
	return &bakeami.Result{Images: []bakeami.RegionImage{{Region: "us-east-1", ImageID: "ami-" + strings.TrimPrefix(p.Key, "sha256:")}}}, nil
}

func (f *fakeMachines) Fill(context.Context, *bakeami.Plan, *bakeami.Existing) ([]bakeami.RegionImage, error) {
	return nil, errors.New("not used")
}

func (f *fakeMachines) Replace(context.Context, *bakeami.Plan, *bakeami.Existing, *bakeami.Result) error {
	return errors.New("not used")
}

// TestBakeGraphBoundsBuildersAcrossRecipes: with a bound of 2, two
// recipes of two machine_image blocks each never run more than two
// builders at once, though each alone could run two; a recipe on
// "recipe:hardened/a" is given that block's AMI as its source.
func TestBakeGraphBoundsBuildersAcrossRecipes(t *testing.T) {
	dir := t.TempDir()
	block := func(name, source string) string {
		return fmt.Sprintf("machine_image %q {\n  %s\n  ssh_username = \"ec2-user\"\n}\n", name, source)
	}
	files := map[string]string{
		"hardened.bake.hcl": block("a", `source_ami = "ami-12345678"`) + block("b", `source_ami = "ami-12345678"`),
		"other.bake.hcl":    block("c", `source_ami = "ami-12345678"`) + block("d", `source_ami = "ami-12345678"`),
		"web.bake.hcl":      block("w", `source_ami = "recipe:hardened/a"`),
	}
	var rs []*recipes.Recipe
	for _, file := range []string{"hardened.bake.hcl", "other.bake.hcl", "web.bake.hcl"} {
		name := strings.TrimSuffix(file, ".bake.hcl")
		path := filepath.Join(dir, file)
		src := fmt.Sprintf("recipe %q {\n  version = \"1.0.0\"\n  stages = [\"dev\"]\n}\n", name) + files[file]
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		r, diags := recipes.NewLoader().Load(path, recipes.Options{})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", file, diags)
		}
		rs = append(rs, r)
	}
	g, diags := recipes.LinkGraph(rs)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	f := &fakeMachines{sources: map[string]string{}, paired: map[string]bool{"hardened": true, "other": true}, total: 4}
	f.cond = sync.NewCond(&f.mu)
	outs := bake.New(nil, bake.WithMachineImages(f), bake.WithParallel(2), bake.WithClock(tickClock(), nil)).BakeGraph(t.Context(), g)
	for _, o := range outs {
		if o.Err != nil {
			t.Errorf("%s: %v", o.Recipe.Name, o.Err)
		}
	}
	if f.max != 2 {
		t.Errorf("%d builders at once, want 2", f.max)
	}
	if got := f.sources["web/w"]; got != "ami-hardeneda" {
		t.Errorf("web was given source %q, want hardened/a's AMI ami-hardeneda", got)
	}
}
