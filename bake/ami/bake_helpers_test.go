package ami_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// TestMain stops the shared moto_server when the tests end. It is the
// package's only TestMain.
func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

// bakeAL2023 is the Amazon Linux 2023 (kernel 6.1, x86_64) AMI moto ships
// in us-east-1, and the value of its SSM parameter bakeAL2023SSM there.
const (
	bakeAL2023    = "ami-03c3da4cfa8e8943a"
	bakeAL2023SSM = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
)

// bakeEnv is one test's AWS: a fresh moto account on the shared server.
type bakeEnv struct {
	t       *testing.T
	srv     *mototest.Server
	account string
	cfg     aws.Config // us-east-1
}

func newBakeEnv(t *testing.T) *bakeEnv {
	t.Helper()
	srv := mototest.Shared(t)
	account := srv.NewAccount()
	return &bakeEnv{t: t, srv: srv, account: account, cfg: srv.ConfigForAccount(t, "us-east-1", account)}
}

// ec2 returns an EC2 client of the test's account in region (without the
// test's API options: it sees what moto holds).
func (e *bakeEnv) ec2(region string) *ec2.Client {
	return ec2.NewFromConfig(e.srv.ConfigForAccount(e.t, region, e.account))
}

// baker returns a Baker on e's account that polls fast.
func (e *bakeEnv) baker(opts ...ami.Option) *ami.Baker {
	e.t.Helper()
	b, err := ami.NewBaker(e.cfg, append([]ami.Option{ami.WithPollInterval(20 * time.Millisecond), ami.WithCleanupTimeout(time.Minute)}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// bakeRecipe writes body (the inside of the machine_image "server" block)
// into DIR/web.bake.hcl and loads it. The machine_image block starts at
// line 6, so its first attribute is on line 7.
func bakeRecipe(t *testing.T, body string) (*recipes.Recipe, *recipes.MachineImage) {
	t.Helper()
	dir := t.TempDir()
	src := "recipe \"web\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\", \"prod\"]\n}\n\nmachine_image \"server\" {\n" + body + "\n}\n"
	path := filepath.Join(dir, "web.bake.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, diags := recipes.NewLoader().Load(path, recipes.Options{})
	if diags.HasErrors() {
		t.Fatalf("loading recipe:\n%s\n%v", src, diags)
	}
	return r, r.MachineImages[0]
}

// cancelAt is a progress.Reporter that cancels a context when a step
// whose name ends in name reports Done (or, with onStart, when it starts).
type cancelAt struct {
	name    string
	onStart bool
	cancel  context.CancelFunc

	mu    sync.Mutex
	steps []string // names of the steps that finished, in order
	hit   bool
}

func (c *cancelAt) Step(name string) progress.Step {
	if c.onStart && strings.HasSuffix(name, c.name) {
		c.fire()
	}
	return &cancelStep{c: c, name: name}
}

func (c *cancelAt) Info(string) {}

func (c *cancelAt) fire() {
	c.mu.Lock()
	c.hit = true
	c.mu.Unlock()
	c.cancel()
}

func (c *cancelAt) fired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hit
}

type cancelStep struct {
	c    *cancelAt
	name string
}

func (s *cancelStep) SetTotal(int64) {}
func (s *cancelStep) Add(int64)      {}
func (s *cancelStep) Done(err error) {
	s.c.mu.Lock()
	s.c.steps = append(s.c.steps, s.name)
	s.c.mu.Unlock()
	if !s.c.onStart && err == nil && strings.HasSuffix(s.name, s.c.name) {
		s.c.fire()
	}
}

// loseAnswer makes the call op in region look lost: it reaches moto and
// takes effect, then cancel is called and the caller gets
// context.Canceled instead of the answer, as when a bake is interrupted
// while the call is on the wire.
func loseAnswer(op, region string, cancel context.CancelFunc) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("bakery-test-lose-answer",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if err == nil && awsmiddleware.GetOperationName(ctx) == op && awsmiddleware.GetRegion(ctx) == region {
					cancel()
					return out, md, fmt.Errorf("answer of %s lost: %w", op, context.Canceled)
				}
				return out, md, err
			}), middleware.After)
	}
}

var amiInText = regexp.MustCompile(`ami-[0-9a-z]+`)

// assertNoLeftovers checks that moto holds nothing a bake made in any of
// regions: no instance that is not terminated, no key pair, no security
// group but the default ones, no AMI of this account, and no snapshot
// tagged by a bake or made for an AMI that no longer exists.
func (e *bakeEnv) assertNoLeftovers(regions ...string) {
	e.t.Helper()
	ctx := context.Background()
	for _, region := range regions {
		c := e.ec2(region)
		insts, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
			{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}},
		}})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, r := range insts.Reservations {
			for _, i := range r.Instances {
				e.t.Errorf("%s: instance %s left %s", region, aws.ToString(i.InstanceId), i.State.Name)
			}
		}
		e.assertNoTemporaries(region)
		own, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, img := range own.Images {
			e.t.Errorf("%s: AMI %s (%s) left", region, aws.ToString(img.ImageId), aws.ToString(img.Name))
		}
		e.assertNoOrphanSnapshots(region)
	}
}

// assertNoTemporaries checks that region holds no key pair and no
// security group but the default ones.
func (e *bakeEnv) assertNoTemporaries(region string) {
	e.t.Helper()
	ctx := context.Background()
	c := e.ec2(region)
	kps, err := c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, k := range kps.KeyPairs {
		e.t.Errorf("%s: key pair %s left", region, aws.ToString(k.KeyName))
	}
	sgs, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, g := range sgs.SecurityGroups {
		if aws.ToString(g.GroupName) != "default" {
			e.t.Errorf("%s: security group %s (%s) left", region, aws.ToString(g.GroupId), aws.ToString(g.GroupName))
		}
	}
}

// assertNoOrphanSnapshots checks that every snapshot of the account in
// region belongs to an AMI that still exists, and that none carries a bake
// id without belonging to a complete AMI. (moto's default AMIs' snapshots
// belong to Amazon's account, so the owner-id filter leaves them out.)
func (e *bakeEnv) assertNoOrphanSnapshots(region string) {
	e.t.Helper()
	ctx := context.Background()
	c := e.ec2(region)
	own, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil {
		e.t.Fatal(err)
	}
	registered := map[string]bool{}
	complete := map[string]bool{}
	for _, img := range own.Images {
		registered[aws.ToString(img.ImageId)] = true
		for _, t := range img.Tags {
			if aws.ToString(t.Key) == catalog.TagBakeKey {
				for _, b := range img.BlockDeviceMappings {
					complete[aws.ToString(b.Ebs.SnapshotId)] = true
				}
			}
		}
	}
	snaps, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{Filters: []ec2types.Filter{
		{Name: aws.String("owner-id"), Values: []string{e.account}},
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range snaps.Snapshots {
		id := aws.ToString(s.SnapshotId)
		for _, t := range s.Tags {
			if aws.ToString(t.Key) == catalog.TagBakeID && !complete[id] {
				e.t.Errorf("%s: snapshot %s of bake %s left", region, id, aws.ToString(t.Value))
			}
		}
		for _, a := range amiInText.FindAllString(aws.ToString(s.Description), -1) {
			if !registered[a] {
				e.t.Errorf("%s: snapshot %s (%q) left behind its AMI", region, id, aws.ToString(s.Description))
			}
		}
	}
}

// instancesOf returns the instances in region tagged with bake bakeID, by state.
func (e *bakeEnv) instancesOf(region, bakeID string) map[string]ec2types.InstanceStateName {
	e.t.Helper()
	out, err := e.ec2(region).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + catalog.TagBakeID), Values: []string{bakeID}},
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]ec2types.InstanceStateName{}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			m[aws.ToString(i.InstanceId)] = i.State.Name
		}
	}
	return m
}

// tagsOf returns the tags of resource id in region.
func (e *bakeEnv) tagsOf(region, id string) map[string]string {
	e.t.Helper()
	out, err := e.ec2(region).DescribeTags(context.Background(), &ec2.DescribeTagsInput{Filters: []ec2types.Filter{
		{Name: aws.String("resource-id"), Values: []string{id}},
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]string{}
	for _, tg := range out.Tags {
		m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return m
}

// fixedID returns a WithBakeID function that always names bakes id.
func fixedID(id string) ami.Option { return ami.WithBakeID(func() string { return id }) }

// wantErrContains fails unless err's message contains every one of subs.
func wantErrContains(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q\ndoes not contain %q", err, s)
		}
	}
}

var (
	_ = errors.Is
	_ = slices.Contains[[]string]
)
