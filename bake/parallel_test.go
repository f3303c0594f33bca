package bake_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/bake"
	bakeami "github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// TestMachineImagesBakeInParallel: the builders of two machine_image
// blocks of one recipe run at the same time. A progress hook holds each
// block when it is about to stop its builder until the other block is
// there too, and then looks at moto: both builders are running. Baked one
// after the other, the second block never starts while the first waits,
// so the hook gives up at its guard deadline and the test fails instead
// of hanging. The result keeps recipe order.
func TestMachineImagesBakeInParallel(t *testing.T) {
	moto := mototest.Start(t)
	cfg := moto.Config(t, "us-east-1")
	ctx := context.Background()

	hook := &barrier{
		at:  map[string]bool{"first: stop builder": true, "second: stop builder": true},
		all: make(chan struct{}),
		look: func() int {
			out, err := ec2.NewFromConfig(cfg).DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
				{Name: aws.String("tag-key"), Values: []string{catalog.TagBakeID}},
				{Name: aws.String("instance-state-name"), Values: []string{"running"}},
			}})
			if err != nil {
				t.Errorf("describing the builders: %v", err)
				return 0
			}
			n := 0
			for _, r := range out.Reservations {
				n += len(r.Instances)
			}
			return n
		},
	}
	amis, err := bakeami.NewBaker(cfg, bakeami.WithPollInterval(20*time.Millisecond), bakeami.WithProgress(hook))
	if err != nil {
		t.Fatal(err)
	}
	engine := bake.New(nil, bake.WithMachineImages(amis), bake.WithParallel(2))
	r := loadRecipe(t, `recipe "pair" {
  version = "1.0.0"
  stages  = ["dev"]
}
machine_image "first" {
  region         = "us-east-1"
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
}
machine_image "second" {
  region         = "us-east-1"
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
}
`)
	res, err := engine.Bake(ctx, r)
	if err != nil {
		t.Fatalf("Bake: %v", err)
	}
	met, builders := hook.outcome()
	if !met {
		t.Fatal("the two blocks' builders never ran at the same time: the blocks baked one after the other")
	}
	if builders != 2 {
		t.Errorf("while both blocks waited to stop their builders, moto had %d running builders, want 2", builders)
	}
	if len(res.Artifacts) != 2 || res.Artifacts[0].Name != "first" || res.Artifacts[1].Name != "second" {
		t.Fatalf("artifacts = %+v, want first then second (recipe order)", res.Artifacts)
	}
	for _, a := range res.Artifacts {
		if a.Kind != catalog.KindAMI || a.ID == "" || a.Cached {
			t.Errorf("artifact = %+v, want a fresh AMI", a)
		}
	}
}

// barrier is a progress.Reporter that holds every step named in at when
// it starts until all of them have started (or a guard deadline passes).
// The last to arrive counts the builders with look, then releases the
// others.
type barrier struct {
	at   map[string]bool
	all  chan struct{} // closed when every step of at has started
	look func() int

	mu       sync.Mutex
	arrived  int
	met      bool // every step arrived while the others waited
	gaveUp   bool // a step stopped waiting at the guard deadline
	builders int
}

// barrierGuard bounds the wait at the barrier, so that blocks baking in
// turn make the test fail rather than hang. It is not a bound on how
// fast anything must be: with parallel blocks the wait ends as soon as
// the second block arrives.
const barrierGuard = 2 * time.Minute

func (b *barrier) Step(name string) progress.Step {
	if !b.at[name] {
		return progress.Discard().Step(name)
	}
	b.mu.Lock()
	b.arrived++
	last := b.arrived == len(b.at)
	b.mu.Unlock()
	if last {
		n := b.look()
		b.mu.Lock()
		b.met, b.builders = true, n
		b.mu.Unlock()
		close(b.all)
		return progress.Discard().Step(name)
	}
	guard, cancel := context.WithTimeout(context.Background(), barrierGuard)
	defer cancel()
	select {
	case <-b.all:
	case <-guard.Done():
		b.mu.Lock()
		b.gaveUp = true
		b.mu.Unlock()
	}
	return progress.Discard().Step(name)
}

func (b *barrier) Info(string) {}

func (b *barrier) outcome() (met bool, builders int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.met && !b.gaveUp, b.builders
}

// loadRecipe writes src as a recipe file and loads it.
func loadRecipe(t *testing.T, src string) *recipes.Recipe {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.bake.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, diags := recipes.NewLoader().Load(path, recipes.Options{})
	if diags.HasErrors() {
		t.Fatalf("loading recipe:\n%s\n%v", src, diags)
	}
	return r
}
