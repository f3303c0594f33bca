package ami_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/faultproxy"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// These tests run bakes through faultproxy, which gives moto what real
// EC2 has and moto lacks: throttling, and resources that other calls do
// not know for a while after they were created (*.NotFound when named,
// missing from lists).

// faultEpoch is where the proxies' fake clocks start.
var faultEpoch = time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)

// faultFresh is how long a new resource stays unknown to other calls, in
// the proxies' time, which moves faultStep with every request: the
// resource becomes known after 30 more requests, without a test sleeping.
const (
	faultFresh = 30 * time.Second
	faultStep  = time.Second
)

// faultEnv is e with its calls going through a fault proxy with opts
// (after a fake clock and a seed), retried as bakery retries them
// (awsx.Load's retryer) but without waiting long between tries.
func faultEnv(e *bakeEnv, opts ...faultproxy.Option) (*bakeEnv, *faultproxy.Proxy) {
	e.t.Helper()
	clock := faultproxy.NewClock(faultEpoch, faultStep)
	p := faultproxy.Start(e.t, e.srv.URL, append([]faultproxy.Option{faultproxy.WithClock(clock.Now), faultproxy.WithSeed(42)}, opts...)...)
	pe := *e
	pe.cfg = p.Config(e.cfg)
	pe.cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = awsx.DefaultMaxAttempts
			o.RateLimiter = ratelimit.None
			o.Backoff = retry.NewExponentialJitterBackoff(20 * time.Millisecond)
		})
	}
	return &pe, p
}

// assertNoBakeLeftovers checks that moto holds nothing temporary of bake
// bakeID in regions (its builder terminated, no key pair, no security
// group but the default ones, no snapshot without its AMI) and that
// every image of res is complete: tagged with the plan's bake key, as
// are its snapshots.
func (e *bakeEnv) assertNoBakeLeftovers(bakeID, key string, res *ami.Result, regions ...string) {
	e.t.Helper()
	ctx := context.Background()
	insts := e.instancesOf(regions[0], bakeID)
	if len(insts) != 1 {
		e.t.Errorf("builders of %s = %v, want one", bakeID, insts)
	}
	for id, state := range insts {
		if state != ec2types.InstanceStateNameTerminated {
			e.t.Errorf("builder %s is %s, want terminated", id, state)
		}
	}
	for _, region := range regions {
		c := e.ec2(region)
		e.assertNoTemporaries(region)
		e.assertNoOrphanSnapshots(region)
		own, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
		if err != nil {
			e.t.Fatal(err)
		}
		var ids []string
		for _, img := range own.Images {
			ids = append(ids, aws.ToString(img.ImageId))
		}
		if res == nil {
			continue
		}
		i := slices.IndexFunc(res.Images, func(img ami.RegionImage) bool { return img.Region == region })
		if i < 0 {
			e.t.Errorf("%s: the result has no image", region)
			continue
		}
		img := res.Images[i]
		if !slices.Equal(ids, []string{img.ImageID}) {
			e.t.Errorf("%s: AMIs %v, want only the baked %s", region, ids, img.ImageID)
		}
		for _, id := range append([]string{img.ImageID}, img.Snapshots...) {
			if got := e.tagsOf(region, id)[catalog.TagBakeKey]; got != key {
				e.t.Errorf("%s: %s has bake key %q, want %q (a complete bake)", region, id, got, key)
			}
		}
	}
}

// TestFaultBakeSurvivesThrottlingAndFreshNotFound bakes through a proxy
// that throttles a fifth of the calls and keeps every new instance, AMI
// and copy unknown to other calls for a while: the bake must wait the
// NotFound out instead of failing or counting the resource as gone, and
// end complete with nothing left behind.
func TestFaultBakeSurvivesThrottlingAndFreshNotFound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		regions   []string
		provision bool
	}{
		{"build region only", []string{"us-east-1"}, false},
		{"with a copy region", []string{"us-east-1", "eu-west-1"}, false},
		// A key pair and a security group, authorized a moment after it
		// was created, and a builder reached over SSH.
		{"with provisioners", []string{"us-east-1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, p := faultEnv(newBakeEnv(t), faultproxy.Throttle(0.2), faultproxy.FreshNotFound(faultFresh))
			ctx := context.Background()
			body := `
  region     = "us-east-1"
  source_ami = "` + bakeAL2023 + `"`
			if tc.provision {
				srv := sshtest.Start(t)
				keyFile, pub := bakeKeyFile(t)
				srv.AuthorizeKey(pub)
				body = sshRecipeBody(t, srv, keyFile, t.TempDir())
			}
			if len(tc.regions) > 1 {
				body += `
  regions    = ["` + tc.regions[1] + `"]`
			}
			r, m := bakeRecipe(t, body)
			b := e.baker(fixedID("bk-fault"))
			plan, err := b.Prepare(ctx, r, m)
			if err != nil {
				t.Fatalf("Prepare: %v\n%s", err, p.Summary())
			}
			res, err := b.Build(ctx, plan)
			if err != nil {
				t.Fatalf("Build: %v\ncalls through the proxy:\n%s", err, p.Summary())
			}
			if len(res.Images) != len(tc.regions) {
				t.Errorf("result = %+v, want an image in each of %v", res, tc.regions)
			}
			e.assertNoBakeLeftovers("bk-fault", plan.Key, res, tc.regions...)
			// The faults were there to survive.
			if p.Faults("", faultproxy.FaultThrottled) == 0 || p.Faults("", faultproxy.FaultNotFound)+p.Faults("", faultproxy.FaultHidden) == 0 {
				t.Errorf("the bake met no throttling or no fresh resource:\n%s", p.Summary())
			}
			if tc.provision && !p.RetriedAfter("AuthorizeSecurityGroupIngress", faultproxy.FaultNotFound) {
				t.Errorf("the new security group was never authorized after EC2 did not know it:\n%s", p.Summary())
			}
		})
	}
}

// cancelAfter cancels the bake's context as soon as op has returned
// successfully in region; the caller still gets the answer.
func cancelAfter(op, region string, cancel context.CancelFunc) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("bakery-test-cancel-after",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if err == nil && awsmiddleware.GetOperationName(ctx) == op && awsmiddleware.GetRegion(ctx) == region {
					cancel()
				}
				return out, md, err
			}), middleware.After)
	}
}

// TestFaultCancelledBakeTerminatesItsFreshBuilder interrupts a bake right
// after RunInstances answered, while EC2 does not know the builder yet:
// TerminateInstances and DescribeInstances answer
// InvalidInstanceID.NotFound and lists leave it out. The cleanup must not
// take that for "already gone": the builder has to end terminated.
func TestFaultCancelledBakeTerminatesItsFreshBuilder(t *testing.T) {
	t.Parallel()
	e, p := faultEnv(newBakeEnv(t), faultproxy.FreshNotFound(faultFresh))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.cfg.APIOptions = append(slices.Clone(e.cfg.APIOptions), cancelAfter("RunInstances", "us-east-1", cancel))
	r, m := bakeRecipe(t, `
  region     = "us-east-1"
  source_ami = "`+bakeAL2023+`"`)
	b := e.baker(fixedID("bk-fault-cancel"))
	plan, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ctx, plan)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build = %v, want context.Canceled\n%s", err, p.Summary())
	}
	insts := e.instancesOf("us-east-1", "bk-fault-cancel")
	if len(insts) != 1 {
		t.Fatalf("builders = %v, want the one launched", insts)
	}
	for id, state := range insts {
		if state != ec2types.InstanceStateNameTerminated {
			t.Errorf("builder %s is %s after the cleanup, want terminated (EC2 answered NotFound while it was new)\ncalls through the proxy:\n%s", id, state, p.Summary())
		}
	}
	e.assertNoLeftovers("us-east-1")
	if p.Faults("", faultproxy.FaultNotFound)+p.Faults("", faultproxy.FaultHidden) == 0 {
		t.Errorf("the cleanup never met the fresh builder:\n%s", p.Summary())
	}
}

// TestFaultBakeSurvivesLostAnswersOfItsOwnNamedResources loses the
// answers of ImportKeyPair, CreateSecurityGroup and
// AuthorizeSecurityGroupIngress after they took effect: the SDK tries
// again and EC2 says the key pair, group or rule already exists. They are
// the bake's own (named after its id): the bake goes on and ends
// complete, with nothing left behind.
func TestFaultBakeSurvivesLostAnswersOfItsOwnNamedResources(t *testing.T) {
	t.Parallel()
	e, p := faultEnv(newBakeEnv(t), faultproxy.LoseAnswer("ImportKeyPair", 1), faultproxy.LoseAnswer("CreateSecurityGroup", 1),
		faultproxy.LoseAnswer("AuthorizeSecurityGroupIngress", 1))
	ctx := context.Background()
	srv := sshtest.Start(t)
	keyFile, pub := bakeKeyFile(t)
	srv.AuthorizeKey(pub)
	r, m := bakeRecipe(t, sshRecipeBody(t, srv, keyFile, t.TempDir()))
	b := e.baker(fixedID("bk-lost"))
	plan, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatalf("Prepare: %v\n%s", err, p.Summary())
	}
	res, err := b.Build(ctx, plan)
	if err != nil {
		t.Fatalf("Build: %v\ncalls through the proxy:\n%s", err, p.Summary())
	}
	for _, action := range []string{"ImportKeyPair", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress"} {
		if p.Faults(action, faultproxy.FaultLost) != 1 || p.Count(action) < 2 {
			t.Errorf("%s was not lost once and tried again:\n%s", action, p.Summary())
		}
	}
	e.assertNoBakeLeftovers("bk-lost", plan.Key, res, "us-east-1")
}
