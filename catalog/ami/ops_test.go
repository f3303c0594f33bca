package ami_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// captured is what a test middleware saw bakery send: the input of each
// call of one operation, by region.
type captured[T any] struct {
	mu   sync.Mutex
	reqs map[string][]T
}

func (c *captured[T]) byRegion(region string) []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs[region])
}

// capture records the input of every call of op made through cfg.
func capture[T any](cfg aws.Config, op string) (aws.Config, *captured[T]) {
	c := &captured[T]{reqs: map[string][]T{}}
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("capture-"+op,
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetOperationName(ctx) == op {
					if p, ok := in.Parameters.(T); ok {
						c.mu.Lock()
						r := awsmiddleware.GetRegion(ctx)
						c.reqs[r] = append(c.reqs[r], p)
						c.mu.Unlock()
					}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	})
	return cfg, c
}

// TestPromotionCopiesKeepTheRegionsKey: a promotion copy is encrypted
// with the stage's key for the region, else the machine image's; moto
// ignores both parameters, so the test reads what bakery sent.
func TestPromotionCopiesKeepTheRegionsKey(t *testing.T) {
	a := newAccount(t)
	a.bake(t, "1.0.0", east)
	cfg, copies := capture[*ec2.CopyImageInput](a.config(t), "CopyImage")
	s := newStore(cfg, []string{east, eu, west}, catalogami.WithEncryption(true, map[string]string{eu: "alias/image-eu", west: "alias/image-west"}))
	spec := catalog.StageSpec{Name: "prod", Regions: []string{eu, west}, KMSKeyIDs: map[string]string{west: "arn:aws:kms:us-west-2:111122223333:key/stage"}}
	if err := s.Promote(context.Background(), entry(t, s, "1.0.0"), spec, catalog.Event{Actor: actor}); err != nil {
		t.Fatal(err)
	}
	for region, want := range map[string]string{eu: "alias/image-eu", west: "arn:aws:kms:us-west-2:111122223333:key/stage"} {
		reqs := copies.byRegion(region)
		if len(reqs) != 1 {
			t.Fatalf("%d CopyImage calls to %s, want 1", len(reqs), region)
		}
		in := reqs[0]
		if !aws.ToBool(in.Encrypted) || aws.ToString(in.KmsKeyId) != want {
			t.Errorf("CopyImage to %s: Encrypted=%v KmsKeyId=%q, want true and %q", region, aws.ToBool(in.Encrypted), aws.ToString(in.KmsKeyId), want)
		}
		if aws.ToString(in.SourceRegion) != east {
			t.Errorf("CopyImage to %s copies from %s, want the build region %s", region, aws.ToString(in.SourceRegion), east)
		}
	}
}

// TestPromotionCopyOfAnUnencryptedImage: without encryption and keys the
// copy asks for none.
func TestPromotionCopyOfAnUnencryptedImage(t *testing.T) {
	a := newAccount(t)
	a.bake(t, "1.0.0", east)
	cfg, copies := capture[*ec2.CopyImageInput](a.config(t), "CopyImage")
	s := newStore(cfg, []string{east, eu})
	if err := s.Promote(context.Background(), entry(t, s, "1.0.0"), catalog.StageSpec{Name: "dev", Regions: []string{eu}}, catalog.Event{Actor: actor}); err != nil {
		t.Fatal(err)
	}
	reqs := copies.byRegion(eu)
	if len(reqs) != 1 || reqs[0].Encrypted != nil || reqs[0].KmsKeyId != nil {
		t.Fatalf("CopyImage to %s = %+v, want one call without Encrypted or KmsKeyId", eu, reqs)
	}
}

// launchers returns the accounts that may launch AMI id, and those that
// may create volumes from each of its snapshots.
func (a *account) launchers(t *testing.T, region, id string) (image []string, snaps [][]string) {
	t.Helper()
	ctx := context.Background()
	c := a.client(t, region)
	attr, err := c.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: aws.String(id), Attribute: ec2types.ImageAttributeNameLaunchPermission})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range attr.LaunchPermissions {
		image = append(image, aws.ToString(p.UserId))
	}
	slices.Sort(image)
	for _, sn := range a.snapshots(t, region, id) {
		sa, err := c.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{SnapshotId: aws.String(sn), Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission})
		if err != nil {
			t.Fatal(err)
		}
		var users []string
		for _, p := range sa.CreateVolumePermissions {
			users = append(users, aws.ToString(p.UserId))
		}
		slices.Sort(users)
		snaps = append(snaps, users)
	}
	return image, snaps
}

// TestRevokeTakesLaunchPermissionAwayAndUnrevokeGivesItBack: a revoked
// AMI can be launched by no stage account, in any region; lifting the
// revocation restores exactly what was there.
func TestRevokeTakesLaunchPermissionAwayAndUnrevokeGivesItBack(t *testing.T) {
	a := newAccount(t)
	ids := a.bake(t, "1.0.0", east, eu)
	s := newStore(a.config(t), []string{east, eu})
	ctx := context.Background()
	accounts := []string{"111122223333", "444455556666"}
	if err := s.Promote(ctx, entry(t, s, "1.0.0"), catalog.StageSpec{Name: "prod", Accounts: accounts}, catalog.Event{Actor: actor}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{east, eu} {
		img, snaps := a.launchers(t, r, ids[r])
		if !slices.Equal(img, accounts) || len(snaps) == 0 || !slices.Equal(snaps[0], accounts) {
			t.Fatalf("after promotion %s: image launchers %v, snapshot users %v, want %v", r, img, snaps, accounts)
		}
	}

	if err := s.Revoke(ctx, entry(t, s, "1.0.0"), catalog.Event{Actor: actor, Reason: "CVE-2026-1"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{east, eu} {
		img, snaps := a.launchers(t, r, ids[r])
		if len(img) != 0 {
			t.Errorf("revoked AMI %s in %s can still be launched by %v", ids[r], r, img)
		}
		for i, users := range snaps {
			if len(users) != 0 {
				t.Errorf("revoked AMI %s in %s: snapshot %d can still be used by %v", ids[r], r, i, users)
			}
		}
		if got := a.imageTags(t, r, ids[r])[catalogami.TagRevokedAccess]; got != strings.Join(accounts, " ") {
			t.Errorf("%s = %q in %s, want %q", catalogami.TagRevokedAccess, got, r, strings.Join(accounts, " "))
		}
	}
	// A second revoke (a rerun after a crash) must not forget who had access.
	if err := s.Revoke(ctx, entry(t, s, "1.0.0"), catalog.Event{Actor: actor, Reason: "again"}); err != nil {
		t.Fatal(err)
	}

	if err := s.Unrevoke(ctx, entry(t, s, "1.0.0"), catalog.Event{Actor: actor, Reason: "false alarm"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{east, eu} {
		img, snaps := a.launchers(t, r, ids[r])
		if !slices.Equal(img, accounts) || len(snaps) == 0 || !slices.Equal(snaps[0], accounts) {
			t.Errorf("after unrevoke %s: image launchers %v, snapshot users %v, want %v back", r, img, snaps, accounts)
		}
		if _, ok := a.imageTags(t, r, ids[r])[catalogami.TagRevokedAccess]; ok {
			t.Errorf("%s still on %s after unrevoke", catalogami.TagRevokedAccess, ids[r])
		}
	}
}

// fakeClock is a clock that moves only when a wait asks it to: After
// returns at once, having moved the time by d.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	waited time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.waited += d
	now := c.t
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

// pendingAPI is moto's EC2, except that every AMI it describes is still
// pending (a copy that takes hours; moto makes AMIs available at once).
type pendingAPI struct {
	catalogami.API
	describes int
}

func (p *pendingAPI) DescribeImages(ctx context.Context, in *ec2.DescribeImagesInput, opts ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	out, err := p.API.DescribeImages(ctx, in, opts...)
	p.describes++
	if err == nil {
		for i := range out.Images {
			out.Images[i].State = ec2types.ImageStatePending
		}
	}
	return out, err
}

// TestWaitAvailableIsBounded: a wait for an AMI that never becomes
// available gives up after its timeout, saying which AMI and how long.
func TestWaitAvailableIsBounded(t *testing.T) {
	a := newAccount(t)
	ids := a.bake(t, "1.0.0", east)
	api := &pendingAPI{API: a.client(t, east)}
	clk := &fakeClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	ops := catalogami.NewOps(func(string) catalogami.API { return api }, 15*time.Second, clk)
	_, err := ops.WaitAvailable(context.Background(), east, ids[east], time.Hour)
	if !errors.Is(err, awsx.ErrTimeout) {
		t.Fatalf("WaitAvailable = %v, want a timeout", err)
	}
	for _, want := range []string{ids[east], east, "1h0m0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if clk.waited < time.Hour {
		t.Errorf("gave up after %s of (fake) waiting, want at least the 1h timeout", clk.waited)
	}
	if api.describes < 240 {
		t.Errorf("%d polls in an hour at 15 s, want one per interval (241)", api.describes)
	}
}

// quotaAPI answers the first n CopyImage calls with ResourceLimitExceeded,
// as EC2 does when too many copies are in flight.
type quotaAPI struct {
	catalogami.API
	n, calls int
}

func (q *quotaAPI) CopyImage(ctx context.Context, in *ec2.CopyImageInput, opts ...func(*ec2.Options)) (*ec2.CopyImageOutput, error) {
	q.calls++
	if q.calls <= q.n {
		return nil, &smithy.GenericAPIError{Code: "ResourceLimitExceeded", Message: "You have reached the maximum number of concurrent AMI copies"}
	}
	return q.API.CopyImage(ctx, in, opts...)
}

// TestCopyRetriesTheCopyQuota: a copy quota reached is waited out with
// backoff, not reported; beyond the timeout it is reported.
func TestCopyRetriesTheCopyQuota(t *testing.T) {
	a := newAccount(t)
	ids := a.bake(t, "1.0.0", east)
	src := catalogami.FromEC2(east, a.image(t, east, ids[east]))
	clients := map[string]*quotaAPI{east: {API: a.client(t, east)}, eu: {API: a.client(t, eu), n: 3}}
	clk := &fakeClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	ops := catalogami.NewOps(func(r string) catalogami.API { return clients[r] }, time.Second, clk)
	img, err := ops.Copy(context.Background(), catalogami.CopyRequest{Source: src, Region: eu, Description: "copy for the quota test"})
	if err != nil {
		t.Fatalf("Copy = %v, want success after the quota frees up", err)
	}
	if clients[eu].calls != 4 || img.State != "available" {
		t.Errorf("CopyImage called %d times, copy %s; want 4 calls and an available copy", clients[eu].calls, img.State)
	}
	if clk.waited < 90*time.Second {
		t.Errorf("waited %s between tries, want a pause (≥ 30 s) before each of the 3 retries", clk.waited)
	}

	clients[eu] = &quotaAPI{API: a.client(t, eu), n: 1 << 30}
	_, err = ops.Copy(context.Background(), catalogami.CopyRequest{Source: src, Region: eu, Description: "another copy", Timeout: 10 * time.Minute})
	if !errors.Is(err, awsx.ErrTimeout) || awsx.ErrorCode(err) != "ResourceLimitExceeded" {
		t.Fatalf("Copy under a quota that never frees = %v, want a timeout carrying ResourceLimitExceeded", err)
	}
}

// TestCopyResumesAnEarlierCopy: a copy with the same name and
// description in the region is taken over instead of copying again.
func TestCopyResumesAnEarlierCopy(t *testing.T) {
	a := newAccount(t)
	ids := a.bake(t, "1.0.0", east)
	src := catalogami.FromEC2(east, a.image(t, east, ids[east]))
	cfg, copies := capture[*ec2.CopyImageInput](a.config(t), "CopyImage")
	ops := catalogami.NewOps(func(r string) catalogami.API { return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.Region = r }) }, time.Millisecond, nil)
	first, err := ops.Copy(context.Background(), catalogami.CopyRequest{Source: src, Region: eu, Description: "resumable"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := ops.Copy(context.Background(), catalogami.CopyRequest{Source: src, Region: eu, Description: "resumable"})
	if err != nil {
		t.Fatal(err)
	}
	if first.ImageID != second.ImageID || len(copies.byRegion(eu)) != 1 {
		t.Errorf("copies %s and %s with %d CopyImage calls, want the same copy and one call", first.ImageID, second.ImageID, len(copies.byRegion(eu)))
	}
}

// TestEntriesPreferTheStagedDuplicate: of two complete AMIs of a version
// in one region (left by an older bakery, or a --force that stopped half
// way), the catalog shows the one in a stage, not the newer unstaged one.
func TestEntriesPreferTheStagedDuplicate(t *testing.T) {
	a := newAccount(t)
	ids := a.bake(t, "1.0.0", east)
	s := newStore(a.config(t), []string{east})
	ctx := context.Background()
	if err := s.Promote(ctx, entry(t, s, "1.0.0"), catalog.StageSpec{Name: "prod"}, catalog.Event{Actor: actor}); err != nil {
		t.Fatal(err)
	}
	newer := bakeAMI(t, a.client(t, east), east, tags("1.0.0", "sha256:key-1.0.0", "bk-again", "2026-06-01T00:00:00Z"))
	fresh := newStore(a.config(t), []string{east})
	e := entry(t, fresh, "1.0.0")
	if e.Reference != ids[east] || len(e.Locations) != 1 || e.Locations[0].ID != ids[east] {
		t.Errorf("entry = %s at %v, want the staged %s, not the newer duplicate %s", e.Reference, e.Locations, ids[east], newer)
	}
	if _, ok := e.Stages["prod"]; !ok {
		t.Errorf("entry stages = %v, want prod", e.Stages)
	}
}
