package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/ledger"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

const region = "us-east-1"

// bucket is a fresh moto account with a new bucket in it.
type bucket struct {
	cfg  aws.Config
	name string
	s3   *s3.Client
}

var buckets atomic.Int64

func newBucket(t *testing.T) *bucket {
	t.Helper()
	srv := mototest.Shared(t)
	cfg := srv.ConfigForAccount(t, region, srv.NewAccount())
	b := &bucket{cfg: cfg, name: fmt.Sprintf("ledger-test-%d-%d", os.Getpid(), buckets.Add(1)), s3: awsx.NewS3(cfg, "")}
	if _, err := b.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(b.name)}); err != nil {
		t.Fatalf("creating bucket %s: %v", b.name, err)
	}
	return b
}

// ledger opens the bucket's ledger under prefix "bakery" with its own
// S3 client (a runner of its own).
func (b *bucket) ledger(t *testing.T, opts ...ledger.Option) *ledger.Ledger {
	t.Helper()
	return b.ledgerWith(t, b.cfg, opts...)
}

func (b *bucket) ledgerWith(t *testing.T, cfg aws.Config, opts ...ledger.Option) *ledger.Ledger {
	t.Helper()
	l, err := ledger.NewFromConfig(cfg, b.name, "/bakery/", "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// keys lists every object key in the bucket under prefix.
func (b *bucket) keys(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := b.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(b.name), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// calls records the S3 operations a config's clients make, with their
// input parameters.
type calls struct {
	mu  sync.Mutex
	ops []string
	in  []any
}

func (c *calls) record(cfg aws.Config) aws.Config {
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("record",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				c.mu.Lock()
				c.ops = append(c.ops, awsmiddleware.GetOperationName(ctx))
				c.in = append(c.in, in.Parameters)
				c.mu.Unlock()
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
	return cfg
}

func (c *calls) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, o := range c.ops {
		if o == op {
			n++
		}
	}
	return n
}

func event(t time.Time, action, version string) catalog.Event {
	return catalog.Event{Time: t, Action: action, Recipe: "web", Version: version, Artifact: "server", Kind: catalog.KindAMI,
		Stage: "prod", Actor: "arn:aws:iam::123456789012:user/alice"}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// TestAppendTwiceIsOneObject appends the same event twice, as a rerun
// of a promotion does: the first Append writes the chain's first link
// and its index entry, each with If-None-Match: *; the second finds the
// event in the index and writes nothing. Another event at the same
// instant is a link of its own.
func TestAppendTwiceIsOneObject(t *testing.T) {
	b := newBucket(t)
	var rec calls
	l := b.ledgerWith(t, rec.record(b.cfg))
	ctx := context.Background()
	ev := event(t0, catalog.ActionPromote, "1.0.0")
	for i := range 2 {
		if err := l.Append(ctx, ev); err != nil {
			t.Fatalf("Append #%d: %v", i+1, err)
		}
	}
	keys := b.keys(t, "bakery/web/events/")
	if want := []string{"bakery/web/events/00000000001.json"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("the ledger holds %v after appending one event twice, want %v", keys, want)
	}
	if idx := b.keys(t, "bakery/web/index/"); len(idx) != 1 || !strings.HasPrefix(idx[0], "bakery/web/index/00000000001-") {
		t.Errorf("index entries %v, want one for link 1", idx)
	}
	for _, in := range rec.in {
		if put, ok := in.(*s3.PutObjectInput); ok && aws.ToString(put.IfNoneMatch) != "*" {
			t.Errorf("PutObject %s sent without If-None-Match: *", aws.ToString(put.Key))
		}
	}
	if n := rec.count("PutObject"); n != 2 {
		t.Errorf("%d PutObject calls, want 2 (the link and its index entry, once)", n)
	}

	other := ev
	other.Action, other.Stage = catalog.ActionDemote, "staging"
	if err := l.Append(ctx, other); err != nil {
		t.Fatal(err)
	}
	if keys := b.keys(t, "bakery/web/events/"); len(keys) != 2 {
		t.Fatalf("the ledger holds %d objects after a second event at the same instant, want 2: %v", len(keys), keys)
	}
	evs, err := l.Events(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("Events returned %d events, want 2: %+v", len(evs), evs)
	}
}

// TestAppendRefusesAnEventWithoutTimeOrRecipe: a time-less event would
// get a new key on every retry, and a recipe-less one has no folder.
func TestAppendRefusesAnEventWithoutTimeOrRecipe(t *testing.T) {
	b := newBucket(t)
	l := b.ledger(t)
	ev := event(time.Time{}, catalog.ActionPromote, "1.0.0")
	if err := l.Append(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "no time") {
		t.Errorf("Append without a time: %v, want an error saying it has no time", err)
	}
	ev = event(t0, catalog.ActionPromote, "1.0.0")
	ev.Recipe = "a/b"
	if err := l.Append(context.Background(), ev); err == nil {
		t.Errorf("Append with recipe a/b succeeded")
	}
	if keys := b.keys(t, ""); len(keys) != 0 {
		t.Errorf("the bucket holds %v", keys)
	}
}

// TestEventsOldestFirst appends events out of order, with every field
// set (a reason longer than an EC2 tag holds), and for another recipe:
// Events returns the recipe's alone, whole, oldest first.
func TestEventsOldestFirst(t *testing.T) {
	b := newBucket(t)
	l := b.ledger(t)
	ctx := context.Background()
	var want []catalog.Event
	for i := range 5 {
		ev := event(t0.Add(time.Duration(i)*time.Hour), catalog.ActionPromote, fmt.Sprintf("1.0.%d", i))
		want = append(want, ev)
	}
	want[2].Reason = strings.Repeat("long reason ", 40)
	want[2].Forced, want[2].ApprovedBy = true, "bob"
	for _, i := range []int{3, 0, 4, 2, 1} {
		if err := l.Append(ctx, want[i]); err != nil {
			t.Fatal(err)
		}
	}
	api := event(t0, catalog.ActionPromote, "9.9.9")
	api.Recipe = "api"
	if err := l.Append(ctx, api); err != nil {
		t.Fatal(err)
	}
	got, err := l.Events(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Events =\n%+v\nwant\n%+v", got, want)
	}
	none, err := l.Events(ctx, "nothing")
	if err != nil || len(none) != 0 {
		t.Errorf("Events of a recipe without events = %v, %v; want none", none, err)
	}
}

// TestEventsReadsEveryPage lists with pages of 2 keys: all 5 events come
// back, with 3 ListObjectsV2 calls (calls grow with pages) and one
// GetObject per event.
func TestEventsReadsEveryPage(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	w := b.ledger(t)
	for i := range 5 {
		if err := w.Append(ctx, event(t0.Add(time.Duration(i)*time.Minute), catalog.ActionPromote, fmt.Sprintf("1.0.%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var rec calls
	l := b.ledgerWith(t, rec.record(b.cfg), ledger.WithPageSize(2), ledger.WithConcurrency(2))
	evs, err := l.Events(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("Events returned %d events over pages of 2, want 5", len(evs))
	}
	for i, ev := range evs {
		if want := fmt.Sprintf("1.0.%d", i); ev.Version != want {
			t.Errorf("event %d is version %s, want %s", i, ev.Version, want)
		}
	}
	if n := rec.count("ListObjectsV2"); n != 3 {
		t.Errorf("%d ListObjectsV2 calls for 5 keys in pages of 2, want 3", n)
	}
	if n := rec.count("GetObject"); n != 5 {
		t.Errorf("%d GetObject calls for 5 events, want 5", n)
	}
}

// clock is a fake clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestLockHeldExpiredAndTakenOver: a held lock refuses another holder
// with a *LockedError naming the holder, since when, until when and
// --break-lock; once the lease expires (fake clock), the other takes it
// over (If-Match), and the first one's Release then fails with
// ErrLeaseLost and deletes nothing. The new holder's Release frees it.
func TestLockHeldExpiredAndTakenOver(t *testing.T) {
	b := newBucket(t)
	clk := &clock{t: t0}
	ctx := context.Background()
	a := b.ledger(t, ledger.WithClock(clk.now), ledger.WithLeaseTTL(10*time.Minute))
	other := b.ledger(t, ledger.WithClock(clk.now), ledger.WithLeaseTTL(10*time.Minute))

	la, err := a.Acquire(ctx, "web", "prod", "alice on host1 pid 1", "promote web@1.0.0 to prod")
	if err != nil {
		t.Fatal(err)
	}
	if la.Replaced != nil || !la.Acquired.Equal(t0) || !la.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("lease %+v: want acquired at %s, expiring 10m later, replacing none", la, t0)
	}
	if keys := b.keys(t, "bakery/web/locks/"); !reflect.DeepEqual(keys, []string{"bakery/web/locks/prod.json"}) {
		t.Errorf("lock objects %v, want bakery/web/locks/prod.json", keys)
	}

	clk.add(9 * time.Minute)
	_, err = other.Acquire(ctx, "web", "prod", "bob on host2 pid 2", "promote web@1.0.1 to prod")
	var locked *ledger.LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("Acquire of a held lock: %v, want a *LockedError", err)
	}
	if locked.Lease.Holder != "alice on host1 pid 1" || !locked.Lease.Acquired.Equal(t0) || !locked.Lease.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("LockedError lease %+v", locked.Lease)
	}
	for _, want := range []string{"stage prod of web", "alice on host1 pid 1", "since 2026-03-01T12:00:00Z", "until 2026-03-01T12:10:00Z", "promote web@1.0.0 to prod", "--break-lock", "wait"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Another stage is another lock.
	lstaging, err := other.Acquire(ctx, "web", "staging", "bob on host2 pid 2", "")
	if err != nil {
		t.Fatalf("Acquire of another stage: %v", err)
	}

	clk.add(2 * time.Minute) // 11 minutes: alice's lease expired
	lb, err := other.Acquire(ctx, "web", "prod", "bob on host2 pid 2", "promote web@1.0.1 to prod")
	if err != nil {
		t.Fatalf("Acquire of an expired lease: %v", err)
	}
	if lb.Replaced == nil || lb.Replaced.Holder != "alice on host1 pid 1" {
		t.Errorf("the takeover replaced %+v, want alice's lease", lb.Replaced)
	}
	if err := a.Release(ctx, la); !errors.Is(err, ledger.ErrLeaseLost) || !strings.Contains(err.Error(), "bob on host2 pid 2") {
		t.Errorf("Release of a lease taken over: %v, want ErrLeaseLost naming bob", err)
	}
	if h, err := a.Holder(ctx, "web", "prod"); err != nil || h == nil || h.Holder != "bob on host2 pid 2" {
		t.Fatalf("after alice's late release the lock is %+v, %v; want bob's still", h, err)
	}
	if err := other.Release(ctx, lb); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if h, err := a.Holder(ctx, "web", "prod"); err != nil || h != nil {
		t.Errorf("after release the lock is %+v, %v; want free", h, err)
	}
	if err := other.Release(ctx, lstaging); err != nil {
		t.Fatal(err)
	}
	if keys := b.keys(t, "bakery/web/locks/"); len(keys) != 0 {
		t.Errorf("lock objects left: %v", keys)
	}
}

// TestLockRenew extends a lease: another runner is refused past the
// first expiry, and a renewed lease's stale predecessor can neither be
// renewed nor released.
func TestLockRenew(t *testing.T) {
	b := newBucket(t)
	clk := &clock{t: t0}
	ctx := context.Background()
	l := b.ledger(t, ledger.WithClock(clk.now), ledger.WithLeaseTTL(10*time.Minute))
	first, err := l.Acquire(ctx, "web", "prod", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	clk.add(8 * time.Minute)
	renewed, err := l.Renew(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.Expires.Equal(t0.Add(18*time.Minute)) || !renewed.Acquired.Equal(t0) {
		t.Errorf("renewed lease %+v: want acquired %s, expiring at 12:18", renewed, t0)
	}
	if !first.Expires.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("Renew changed the lease it was given: %+v", first)
	}
	clk.add(5 * time.Minute) // 13 minutes after acquisition, 5 after renewal
	var locked *ledger.LockedError
	if _, err := l.Acquire(ctx, "web", "prod", "bob", ""); !errors.As(err, &locked) {
		t.Fatalf("Acquire after the first expiry of a renewed lease: %v, want a *LockedError", err)
	}
	if _, err := l.Renew(ctx, first); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Renew of the stale lease: %v, want ErrLeaseLost", err)
	}
	if err := l.Release(ctx, first); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Release of the stale lease: %v, want ErrLeaseLost", err)
	}
	if err := l.Release(ctx, renewed); err != nil {
		t.Errorf("Release of the renewed lease: %v", err)
	}
}

// TestLockBreak breaks a lease that has not expired: Break returns it,
// another runner takes the lock at once, and the broken holder's late
// Release fails with ErrLeaseLost without deleting the new lease.
// Breaking a free lock does nothing.
func TestLockBreak(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	l := b.ledger(t)
	if br, err := l.Break(ctx, "web", "prod"); err != nil || br != nil {
		t.Fatalf("Break of a free lock = %+v, %v; want nil, nil", br, err)
	}
	la, err := l.Acquire(ctx, "web", "prod", "alice", "promote web@1.0.0 to prod")
	if err != nil {
		t.Fatal(err)
	}
	br, err := l.Break(ctx, "web", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if br == nil || br.Holder != "alice" || br.Purpose != "promote web@1.0.0 to prod" {
		t.Errorf("Break returned %+v, want alice's lease", br)
	}
	lb, err := l.Acquire(ctx, "web", "prod", "bob", "")
	if err != nil {
		t.Fatalf("Acquire after Break: %v", err)
	}
	if err := l.Release(ctx, la); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Release of a broken lease: %v, want ErrLeaseLost", err)
	}
	if h, err := l.Holder(ctx, "web", "prod"); err != nil || h == nil || h.Holder != "bob" {
		t.Errorf("the lock is %+v, %v after the broken holder's release; want bob's", h, err)
	}
	if err := l.Release(ctx, lb); err != nil {
		t.Fatal(err)
	}
}

// TestLockBreakUnreadableLease: an object that is not a lease blocks
// Acquire with an error that says to break it, and Break removes it.
func TestLockBreakUnreadableLease(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	if _, err := b.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.name), Key: aws.String("bakery/web/locks/prod.json"),
		Body: strings.NewReader("not json")}); err != nil {
		t.Fatal(err)
	}
	l := b.ledger(t)
	if _, err := l.Acquire(ctx, "web", "prod", "alice", ""); err == nil || !strings.Contains(err.Error(), "--break-lock") {
		t.Fatalf("Acquire over a corrupt lease: %v, want an error saying --break-lock", err)
	}
	if _, err := l.Break(ctx, "web", "prod"); err != nil {
		t.Fatal(err)
	}
	le, err := l.Acquire(ctx, "web", "prod", "alice", "")
	if err != nil {
		t.Fatalf("Acquire after breaking a corrupt lease: %v", err)
	}
	_ = l.Release(ctx, le)
}

// TestAcquireRace starts runners with S3 clients of their own at once
// on the same lock, several times over: exactly one wins each time, the
// others get a *LockedError naming the winner.
//
// moto checks If-None-Match and writes in two steps of a threaded
// server; S3 makes the check and the write one atomic step. A moto
// interleaving that let two runners win would fail this test, not pass
// it.
func TestAcquireRace(t *testing.T) {
	b := newBucket(t)
	const runners, rounds = 6, 4
	ctx := context.Background()
	for round := range rounds {
		stage := fmt.Sprintf("stage%d", round)
		ls := make([]*ledger.Ledger, runners)
		for i := range ls {
			ls[i] = b.ledgerWith(t, b.cfg.Copy())
		}
		start := make(chan struct{})
		leases := make([]*ledger.Lease, runners)
		errs := make([]error, runners)
		var wg sync.WaitGroup
		for i := range runners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				leases[i], errs[i] = ls[i].Acquire(ctx, "web", stage, fmt.Sprintf("runner %d", i), "race")
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i := range runners {
			var locked *ledger.LockedError
			switch {
			case errs[i] == nil && winner >= 0:
				t.Errorf("round %d: runners %d and %d both hold the lock", round, winner, i)
			case errs[i] == nil:
				winner = i
			case !errors.As(errs[i], &locked):
				t.Errorf("round %d: runner %d: %v, want a *LockedError", round, i, errs[i])
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no runner got the lock: %v", round, errs)
		}
		for i := range runners {
			var locked *ledger.LockedError
			if errors.As(errs[i], &locked) && locked.Lease.Holder != fmt.Sprintf("runner %d", winner) {
				t.Errorf("round %d: runner %d was refused by %q, but runner %d won", round, i, locked.Lease.Holder, winner)
			}
		}
		h, err := ls[0].Holder(ctx, "web", stage)
		if err != nil || h == nil || h.Holder != fmt.Sprintf("runner %d", winner) {
			t.Errorf("round %d: the lock object says %+v, %v; want runner %d", round, h, err, winner)
		}
	}
}

// TestParseURL reads BAKERY_LEDGER values.
func TestParseURL(t *testing.T) {
	for in, want := range map[string][3]string{
		"s3://acme-ledger":                         {"acme-ledger", "bakery", ""},
		"s3://acme-ledger/":                        {"acme-ledger", "bakery", ""},
		"s3://acme-ledger/teams/web/":              {"acme-ledger", "teams/web", ""},
		"s3://acme-ledger/x?region=eu-west-1":      {"acme-ledger", "x", "eu-west-1"},
		"https://acme-ledger.s3.amazonaws.com/x":   {},
		"acme-ledger/x":                            {},
		"s3://Acme/x":                              {},
		"s3://acme-ledger/x?profile=dev":           {},
		"s3://acme-ledger/x?region=eu-west-1#frag": {},
	} {
		bucket, prefix, region, err := ledger.ParseURL(in)
		got := [3]string{bucket, prefix, region}
		if want == ([3]string{}) {
			if err == nil {
				t.Errorf("ParseURL(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseURL(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
