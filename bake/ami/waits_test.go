package ami_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/recipes"
)

// handler is the body of an Initialize middleware.
type handler = func(context.Context, middleware.InitializeInput, middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error)

// withMiddleware returns e's config with one more Initialize middleware.
func (e *bakeEnv) withMiddleware(name string, fn handler) aws.Config {
	cfg := e.cfg
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc(name, fn), middleware.Before)
	})
	return cfg
}

// TestBakeCopiesAreEncryptedWithEachRegionsKey: each region's copy asks
// EC2 for encryption with that region's key (region_kms_key_ids). moto
// ignores both parameters, so the test reads what bakery sent.
func TestBakeCopiesAreEncryptedWithEachRegionsKey(t *testing.T) {
	e := newBakeEnv(t)
	var mu sync.Mutex
	sent := map[string][]*ec2.CopyImageInput{}
	e.cfg = e.withMiddleware("capture-copies", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		if p, ok := in.Parameters.(*ec2.CopyImageInput); ok {
			mu.Lock()
			sent[awsmiddleware.GetRegion(ctx)] = append(sent[awsmiddleware.GetRegion(ctx)], p)
			mu.Unlock()
		}
		return next.HandleInitialize(ctx, in)
	})
	b := e.baker(fixedID("bk-kms"))
	r, m := bakeRecipe(t, `
  region             = "us-east-1"
  source_ami         = "`+bakeAL2023+`"
  kms_key_id         = "alias/build"
  regions            = ["eu-west-1", "us-west-2"]
  region_kms_key_ids = { "eu-west-1" = "alias/eu", "us-west-2" = "arn:aws:kms:us-west-2:111122223333:key/west" }`)
	ctx := context.Background()
	p, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(ctx, p); err != nil {
		t.Fatal(err)
	}
	for region, key := range map[string]string{"eu-west-1": "alias/eu", "us-west-2": "arn:aws:kms:us-west-2:111122223333:key/west"} {
		reqs := sent[region]
		if len(reqs) != 1 {
			t.Fatalf("%d CopyImage calls to %s, want 1", len(reqs), region)
		}
		if !aws.ToBool(reqs[0].Encrypted) || aws.ToString(reqs[0].KmsKeyId) != key {
			t.Errorf("CopyImage to %s: Encrypted=%v KmsKeyId=%q, want true and %q", region, aws.ToBool(reqs[0].Encrypted), aws.ToString(reqs[0].KmsKeyId), key)
		}
	}
}

// TestBakeTimeoutSaysWhatAndThatCleanupRan: an AMI that never becomes
// available (moto makes AMIs available at once, so a middleware reports
// it pending) ends the bake after the bound, with a message naming the
// AMI, the time waited and that cleanup ran; nothing is left.
func TestBakeTimeoutSaysWhatAndThatCleanupRan(t *testing.T) {
	e := newBakeEnv(t)
	e.cfg = e.withMiddleware("pending-images", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		out, md, err := next.HandleInitialize(ctx, in)
		if o, ok := out.Result.(*ec2.DescribeImagesOutput); ok && err == nil {
			if p, ok := in.Parameters.(*ec2.DescribeImagesInput); ok && len(p.ImageIds) == 1 && p.ImageIds[0] != bakeAL2023 {
				for i := range o.Images {
					o.Images[i].State = ec2types.ImageStatePending
				}
			}
		}
		return out, md, err
	})
	b := e.baker(fixedID("bk-slow"), ami.WithMaxWait(300*time.Millisecond))
	r, m := bakeRecipe(t, `
  region     = "us-east-1"
  source_ami = "`+bakeAL2023+`"
  timeouts {
    image = "2h"
  }`)
	ctx := context.Background()
	p, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ctx, p)
	if !errors.Is(err, awsx.ErrTimeout) {
		t.Fatalf("Build = %v, want a timeout", err)
	}
	for _, want := range []string{"waiting for AMI ami-", "to be available", "gave up after 300ms", "cleanup ran"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\ndoes not say %q", err, want)
		}
	}
	e.assertNoLeftovers("us-east-1")
}

// TestBakeRefreshesItsHeartbeat: while a bake runs, its builder carries a
// bakery:heartbeat tag that moves on, so sweep never takes it for an
// orphan.
func TestBakeRefreshesItsHeartbeat(t *testing.T) {
	e := newBakeEnv(t)
	var beat string
	look := func() {
		// The step waits here (the bake is paused) until the heartbeat
		// has been written at least once.
		for range 400 {
			for _, tg := range e.tagsOfBake("us-east-1", "bk-beat") {
				if v, ok := tg[catalog.TagHeartbeat]; ok {
					beat = v
					return
				}
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	b := e.baker(fixedID("bk-beat"), ami.WithHeartbeat(20*time.Millisecond), ami.WithProgress(&onStart{name: "stop builder", f: look}))
	r, m := bakeRecipe(t, `
  region     = "us-east-1"
  source_ami = "`+bakeAL2023+`"`)
	ctx := context.Background()
	p, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339, beat); err != nil {
		t.Fatalf("the running builder's %s tag = %q, want an RFC 3339 time", catalog.TagHeartbeat, beat)
	}
}

// tagsOfBake returns the tags of the instances of bake bakeID in region.
func (e *bakeEnv) tagsOfBake(region, bakeID string) []map[string]string {
	e.t.Helper()
	var out []map[string]string
	for id := range e.instancesOf(region, bakeID) {
		out = append(out, e.tagsOf(region, id))
	}
	return out
}

// TestSweepJudgesAgeByTheLastSignOfLife: a security group created two
// hours ago whose bake wrote a heartbeat a minute ago belongs to a bake
// still running: sweep leaves it; one without a heartbeat is an orphan.
func TestSweepJudgesAgeByTheLastSignOfLife(t *testing.T) {
	e := newBakeEnv(t)
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c := e.ec2("us-east-1")
	vpcs, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		t.Fatalf("DescribeVpcs: %v", err)
	}
	group := func(name string, tags map[string]string) string {
		out, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name), VpcId: vpcs.Vpcs[0].VpcId})
		if err != nil {
			t.Fatal(err)
		}
		var ts []ec2types.Tag
		for k, v := range tags {
			ts = append(ts, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{aws.ToString(out.GroupId)}, Tags: ts}); err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.GroupId)
	}
	created := now.Add(-2 * time.Hour).Format(time.RFC3339)
	live := group("bakery-bk-live", map[string]string{catalog.TagBakeID: "bk-live", catalog.TagCreated: created, catalog.TagHeartbeat: now.Add(-time.Minute).Format(time.RFC3339)})
	dead := group("bakery-bk-dead", map[string]string{catalog.TagBakeID: "bk-dead", catalog.TagCreated: created, catalog.TagHeartbeat: now.Add(-90 * time.Minute).Format(time.RFC3339)})

	b := e.baker(ami.WithClock(func() time.Time { return now }))
	plan, err := b.Sweep(ctx, []string{"us-east-1"}, time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, it := range plan.Remove {
		listed = append(listed, it.ID)
	}
	if !slices.Contains(listed, dead) || slices.Contains(listed, live) {
		t.Errorf("sweep lists %v; want %s (last heartbeat 90m ago) and not %s (heartbeat 1m ago)", listed, dead, live)
	}
}

// TestSweepReportsDuplicates: a second complete AMI of a version in a
// region is reported (not removed); the one in a stage is the keeper.
func TestSweepReportsDuplicates(t *testing.T) {
	e := newBakeEnv(t)
	ctx := context.Background()
	b := e.baker()
	r, m := bakeRecipe(t, `
  region     = "us-east-1"
  source_ami = "`+bakeAL2023+`"`)
	p, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	first, err := b.Build(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.Build(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	staged, dup := first.Images[0].ImageID, second.Images[0].ImageID
	if _, err := e.ec2("us-east-1").CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{staged},
		Tags: []ec2types.Tag{{Key: aws.String("bakery:stage:prod"), Value: aws.String("2026-01-01T00:00:00Z ann")}}}); err != nil {
		t.Fatal(err)
	}
	plan, err := b.Sweep(ctx, []string{"us-east-1"}, time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Duplicates) != 1 || plan.Duplicates[0].ID != dup || !strings.Contains(plan.Duplicates[0].Reason, "duplicate of "+staged) {
		t.Fatalf("duplicates = %+v, want %s reported as a duplicate of the staged %s", plan.Duplicates, dup, staged)
	}
	if !strings.Contains(plan.String(), "1 duplicate AMIs") {
		t.Errorf("the plan's text does not report the duplicate:\n%s", plan)
	}
	imgs, err := e.ec2("us-east-1").DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{staged, dup}})
	if err != nil || len(imgs.Images) != 2 {
		t.Errorf("sweep --yes removed a complete AMI: %v, %d left", err, len(imgs.Images))
	}
}

// TestBakeSetsTheDeprecationTime: retain.deprecate_after makes every AMI
// of the bake deprecated that long after it, in every region. moto has no
// image deprecation, so a middleware answers EnableImageDeprecation and
// the test reads what bakery sent.
func TestBakeSetsTheDeprecationTime(t *testing.T) {
	e := newBakeEnv(t)
	var mu sync.Mutex
	sent := map[string]time.Time{}
	e.cfg = e.withMiddleware("fake-deprecation", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		if p, ok := in.Parameters.(*ec2.EnableImageDeprecationInput); ok {
			mu.Lock()
			sent[aws.ToString(p.ImageId)] = aws.ToTime(p.DeprecateAt)
			mu.Unlock()
			return middleware.InitializeOutput{Result: &ec2.EnableImageDeprecationOutput{Return: aws.Bool(true)}}, middleware.Metadata{}, nil
		}
		return next.HandleInitialize(ctx, in)
	})
	baked := time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)
	b := e.baker(ami.WithClock(func() time.Time { return baked }))
	dir := t.TempDir()
	src := `recipe "web" {
  version = "1.0.0"
  stages  = ["dev", "prod"]
}

retain {
  deprecate_after = "60d"
}

machine_image "server" {
  region     = "us-east-1"
  source_ami = "` + bakeAL2023 + `"
  regions    = ["eu-west-1"]
}
`
	path := filepath.Join(dir, "web.bake.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, diags := recipes.NewLoader().Load(path, recipes.Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ctx := context.Background()
	p, err := b.Prepare(ctx, r, r.MachineImages[0])
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Build(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	want := baked.Add(60 * 24 * time.Hour).Truncate(time.Minute)
	if len(sent) != len(res.Images) {
		t.Errorf("deprecation set on %v, want every AMI of %+v", sent, res.Images)
	}
	for _, img := range res.Images {
		if got, ok := sent[img.ImageID]; !ok || !got.Equal(want) {
			t.Errorf("AMI %s in %s: DeprecateAt %v (sent: %v), want %v", img.ImageID, img.Region, got, ok, want)
		}
	}
}
