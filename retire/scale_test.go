package retire_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/faultproxy"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/retire"
)

// TestObserveCallsGrowWithRegionsNotAMIs: with stage accounts, retire's
// plan reads who may launch the artifact's AMIs with one listing per
// region and account, not one DescribeImageAttribute per AMI, so that
// 10,000 versions × 3 regions do not take 30,000 calls. The calls are
// counted by the fault proxy (no faults) in front of moto.
func TestObserveCallsGrowWithRegionsNotAMIs(t *testing.T) {
	const (
		versions = 150
		account  = "111122223333"
	)
	ctx := context.Background()
	moto := mototest.Shared(t)
	direct := moto.ConfigForAccount(t, east, moto.NewAccount())
	regions := []string{east, west}
	// shared is the AMI of the newest version in each region, which prod's
	// account may launch.
	shared := map[string]bool{}
	for _, region := range regions {
		c := awsx.NewEC2(direct, region)
		ids := make([]string, versions)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		for i := range versions {
			g.Go(func() error {
				out, err := c.RegisterImage(gctx, &ec2.RegisterImageInput{Name: aws.String(fmt.Sprintf("web-%d", i)), RootDeviceName: aws.String("/dev/xvda")})
				if err != nil {
					return err
				}
				ids[i] = aws.ToString(out.ImageId)
				_, err = c.CreateTags(gctx, &ec2.CreateTagsInput{Resources: ids[i : i+1], Tags: catalogami.EC2Tags(map[string]string{
					catalog.TagRecipe: "web", catalog.TagArtifact: "web", catalog.TagVersion: fmt.Sprintf("1.0.%d", i),
					catalog.TagBakeKey: fmt.Sprintf("key-%d", i), catalog.TagCreated: now.Add(-time.Duration(versions-i) * time.Hour).Format(time.RFC3339),
				})})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("seeding %s: %v", region, err)
		}
		newest := ids[versions-1]
		if _, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(newest),
			LaunchPermission: &ec2types.LaunchPermissionModifications{Add: []ec2types.LaunchPermission{{UserId: aws.String(account)}}}}); err != nil {
			t.Fatal(err)
		}
		shared[newest] = true
	}

	p := faultproxy.Start(t, moto.URL)
	cfg := p.Config(direct)
	clients := awsx.NewRegional(func(r string) *ec2.Client { return awsx.NewEC2(cfg, r) })
	ops := catalogami.NewOps(func(r string) catalogami.API { return clients.Get(r) }, time.Millisecond, nil)
	store := catalogami.NewLifecycleStore(cfg, "web", "web", regions, catalogami.WithClock(func() time.Time { return now }))
	r := retire.NewAMIs("web", "web", store, catalogami.NewStoreFromConfig(cfg), ops, fleet.UsageClientsFromConfig(cfg),
		retire.WithClock(func() time.Time { return now }),
		retire.WithEnabledRegions(func(context.Context) ([]string, error) { return regions, nil }),
		retire.WithStageAccounts(map[string][]string{"prod": {account}}))
	o, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Entries) != versions {
		t.Fatalf("observed %d versions, want %d", len(o.Entries), versions)
	}
	for id := range shared {
		if got := o.Shares[id]; len(got) != 1 || got[0] != account {
			t.Errorf("shares of %s = %v, want [%s]", id, got, account)
		}
	}
	if len(o.Shares) != len(shared) {
		t.Errorf("shares = %v, want only the %d shared AMIs", o.Shares, len(shared))
	}
	if n := p.Count("DescribeImageAttribute"); n != 0 {
		t.Errorf("DescribeImageAttribute called %d times for %d AMIs, want 0", n, versions*len(regions))
	}
	// Per region: the versions, the orphans, the shares (one account),
	// the images baked from them.
	if n := p.Count("DescribeImages"); n > 4*len(regions) {
		t.Errorf("DescribeImages called %d times, want at most %d for %d regions", n, 4*len(regions), len(regions))
	}
	if n, max := len(p.Calls()), 10*len(regions); n > max {
		t.Errorf("Observe made %d calls for %d AMIs, want at most %d (calls grow with regions, not AMIs):\n%s", n, versions*len(regions), max, p.Summary())
	}
}
