package bake_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bakery-sh/bakery/bake"
	bakeami "github.com/bakery-sh/bakery/bake/ami"
	bakeoci "github.com/bakery-sh/bakery/bake/oci"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/ledger"
	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// bakeDay is the injected clock's day: auto versions are 2026.11.26.N.
var bakeDay = time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)

// autoFolder writes an auto-versioned recipe with one container (into
// repo, or the local layout when repo is empty) and its input file.
func autoFolder(t *testing.T, repo string) string {
	t.Helper()
	dir := t.TempDir()
	repoLine := ""
	if repo != "" {
		repoLine = fmt.Sprintf("  repository = %q\n", repo)
	}
	src := `recipe "app" {
  version = "auto"
  stages  = ["dev"]
}
container "app" {
  base = "scratch"
` + repoLine + `  layer {
    source      = "files/"
    destination = "/srv/"
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "app.bake.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	writeInput(t, dir, "one")
	return dir
}

func writeInput(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "files", "a.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func loadFolder(t *testing.T, dir string) *recipes.Recipe {
	t.Helper()
	r, diags := recipes.NewLoader().Load(filepath.Join(dir, "app.bake.hcl"), recipes.Options{})
	if diags.HasErrors() {
		t.Fatalf("loading recipe: %v", diags)
	}
	return r
}

// autoEngine is one runner: its own baker on home (the local layout),
// transport, clock and leases.
func autoEngine(t *testing.T, home string, rep progress.Reporter, opts ...bake.Option) *bake.Engine {
	t.Helper()
	b, err := bakeoci.NewBaker(bakeoci.WithHome(home), bakeoci.WithProgress(rep), bakeoci.WithClock(func() time.Time { return bakeDay }))
	if err != nil {
		t.Fatal(err)
	}
	return bake.New(b, append([]bake.Option{bake.WithProgress(rep), bake.WithClock(func() time.Time { return bakeDay }, nil)}, opts...)...)
}

// lines is a progress.Reporter that keeps the Info lines.
type lines struct {
	mu    sync.Mutex
	infos []string
	// hook, if set, is called with each Info line.
	hook func(string)
}

func (l *lines) Step(name string) progress.Step {
	if l.hook != nil {
		l.hook("step " + name)
	}
	return progress.Discard().Step(name)
}
func (l *lines) Info(msg string) {
	l.mu.Lock()
	l.infos = append(l.infos, msg)
	l.mu.Unlock()
	if l.hook != nil {
		l.hook(msg)
	}
}
func (l *lines) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.infos {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// layoutTags lists the tags of image name in the layout at home.
func layoutTags(t *testing.T, home, name string) []string {
	t.Helper()
	l, err := catalogoci.OpenLayout(home)
	if err != nil {
		t.Fatal(err)
	}
	descs, err := l.Descriptors()
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, d := range descs {
		if v, ok := strings.CutPrefix(d.Annotations[catalog.AnnotationRefName], name+":"); ok {
			tags = append(tags, v)
		}
	}
	return tags
}

// checkAutoSequence bakes the recipe of dir three times: first (version
// DATE.1 baked), again with nothing changed (up to date at DATE.1, no new
// image), and with a changed input (DATE.2). tags lists the image's tags.
func checkAutoSequence(t *testing.T, dir string, engine *bake.Engine, tags func() []string) {
	t.Helper()
	ctx := context.Background()
	first := bakeDay.Format("2006.01.02") + ".1"
	second := bakeDay.Format("2006.01.02") + ".2"

	res, err := engine.Bake(ctx, loadFolder(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != first || res.Cached || res.Artifacts[0].Version != first {
		t.Fatalf("first bake: version %q (artifact %q), cached %v; want %s, baked", res.Version, res.Artifacts[0].Version, res.Cached, first)
	}
	if !strings.HasSuffix(res.Artifacts[0].Ref, ":"+first) {
		t.Errorf("first bake: ref %s, want tag %s", res.Artifacts[0].Ref, first)
	}
	key := res.BakeKey

	res, err = engine.Bake(ctx, loadFolder(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != first || !res.Cached || res.BakeKey != key || !strings.HasSuffix(res.Artifacts[0].Ref, ":"+first) {
		t.Fatalf("second bake: version %q, cached %v, ref %s; want up to date at %s", res.Version, res.Cached, res.Artifacts[0].Ref, first)
	}
	if got := tags(); len(got) != 1 || got[0] != first {
		t.Fatalf("after an up-to-date bake the image has tags %v, want only %s", got, first)
	}

	writeInput(t, dir, "two")
	res, err = engine.Bake(ctx, loadFolder(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != second || res.Cached || res.BakeKey == key {
		t.Fatalf("bake after a change: version %q, cached %v; want %s, baked with a new key", res.Version, res.Cached, second)
	}
	if got := tags(); len(got) != 2 {
		t.Fatalf("after the changed bake the image has tags %v, want %s and %s", got, first, second)
	}
}

func TestAutoVersionLocalLayout(t *testing.T) {
	dir := autoFolder(t, "")
	home := filepath.Join(t.TempDir(), "layout")
	engine := autoEngine(t, home, progress.Discard())
	checkAutoSequence(t, dir, engine, func() []string { return layoutTags(t, home, "app") })
}

func registryTags(t *testing.T, repo string) []string {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	all, err := remote.List(r)
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, tag := range all {
		if !strings.HasPrefix(tag, "sha256-") { // the referrers tag schema's attestation index
			tags = append(tags, tag)
		}
	}
	return tags
}

func TestAutoVersionRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/team/app"
	dir := autoFolder(t, repo)
	engine := autoEngine(t, t.TempDir(), progress.Discard())
	checkAutoSequence(t, dir, engine, func() []string { return registryTags(t, repo) })
}

// TestFixedVersionKeyIncludesVersion checks that a fixed-version recipe
// keeps the version in its key (two versions of the same content have
// different keys, as before version = "auto"), while an auto recipe's
// key is the same whatever version it is assigned.
func TestFixedVersionKeyIncludesVersion(t *testing.T) {
	dir := autoFolder(t, "")
	r := loadFolder(t, dir)
	b, err := bakeoci.NewBaker(bakeoci.WithHome(filepath.Join(t.TempDir(), "layout")))
	if err != nil {
		t.Fatal(err)
	}
	key := func(r *recipes.Recipe) string {
		p, err := b.Prepare(context.Background(), r, r.Containers[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Key(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		return p.Key
	}
	fixed := func(v string) *recipes.Recipe {
		f := r.WithVersion(v)
		f.VersionAuto = false
		return f
	}
	if key(fixed("1.0.0")) == key(fixed("1.0.1")) {
		t.Errorf("a fixed-version key does not depend on the version")
	}
	if key(r.WithVersion("2026.11.26.1")) != key(r.WithVersion("2026.11.26.2")) || key(r) != key(r.WithVersion("2026.11.26.1")) {
		t.Errorf("an auto-version key depends on the version assigned")
	}
	if key(r) == key(fixed("auto")) {
		t.Errorf("an auto recipe has the key of a fixed recipe whose version is \"auto\"")
	}
}

// ledgerBucket is a fresh moto S3 bucket; each call of open is another
// runner's ledger on it.
func ledgerBucket(t *testing.T) (open func(...ledger.Option) *ledger.Ledger) {
	open, _ = ledgerBucketLocks(t)
	return open
}

// ledgerBucketLocks is ledgerBucket, and a function that lists the lease
// objects of recipe app in it.
func ledgerBucketLocks(t *testing.T) (open func(...ledger.Option) *ledger.Ledger, locks func() []string) {
	t.Helper()
	srv := mototest.Shared(t)
	cfg := srv.ConfigForAccount(t, "us-east-1", srv.NewAccount())
	bucket := fmt.Sprintf("bake-lease-%d", time.Now().UnixNano())
	client := awsx.NewS3(cfg, "")
	locks = func() []string {
		out, err := client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("bakery/app/locks/")})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		return keys
	}
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	return func(opts ...ledger.Option) *ledger.Ledger {
		l, err := ledger.NewFromConfig(cfg, bucket, "bakery", "", opts...)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}, locks
}

func leasesOf(l *ledger.Ledger) bake.LeasesFunc {
	return func(*recipes.Recipe) (bake.Leases, error) { return l, nil }
}

// guard bounds the waits of the concurrency test so that a broken lease
// fails it instead of hanging it; not a bound on speed.
const guard = 2 * time.Minute

// TestConcurrentRunnersBakeOnce: two runners bake the same recipe (auto
// and fixed version) into one registry with one ledger at the same time.
// Runner A is held at its first build step (after it took the bake lease)
// until runner B says it is waiting for A; then A goes on. Exactly one
// image results, under one version; B reports it up to date.
func TestConcurrentRunnersBakeOnce(t *testing.T) {
	for _, fixed := range []bool{false, true} {
		t.Run(map[bool]string{false: "auto", true: "fixed"}[fixed], func(t *testing.T) {
			srv := httptest.NewServer(registry.New())
			t.Cleanup(srv.Close)
			repo := strings.TrimPrefix(srv.URL, "http://") + "/team/app"
			dir := autoFolder(t, repo)
			want := bakeDay.Format("2006.01.02") + ".1"
			load := func() *recipes.Recipe { return loadFolder(t, dir) }
			if fixed {
				want = "1.0.0"
				load = func() *recipes.Recipe {
					r := loadFolder(t, dir).WithVersion(want)
					r.VersionAuto = false
					return r
				}
			}
			open := ledgerBucket(t)

			bWaits := make(chan struct{})
			var once sync.Once
			started := make(chan struct{})
			var startOnce sync.Once
			repA := &lines{hook: func(msg string) {
				if strings.Contains(msg, "prepare staging folder") {
					startOnce.Do(func() { close(started) })
					select {
					case <-bWaits:
					case <-time.After(guard):
					}
				}
			}}
			repB := &lines{hook: func(msg string) {
				if strings.Contains(msg, "waiting for runner-a") {
					once.Do(func() { close(bWaits) })
				}
			}}
			engA := autoEngine(t, t.TempDir(), repA, bake.WithLeases(leasesOf(open()), "runner-a"), bake.WithLeasePoll(20*time.Millisecond))
			engB := autoEngine(t, t.TempDir(), repB, bake.WithLeases(leasesOf(open()), "runner-b"), bake.WithLeasePoll(20*time.Millisecond))

			ctx := context.Background()
			var resA, resB *bake.Result
			var errA, errB error
			var wg sync.WaitGroup
			wg.Go(func() { resA, errA = engA.Bake(ctx, load()) })
			// B starts once A holds the lease and is held before it builds.
			select {
			case <-started:
			case <-time.After(guard):
			}
			wg.Go(func() { resB, errB = engB.Bake(ctx, load()) })
			wg.Wait()
			if errA != nil || errB != nil {
				t.Fatalf("runner a: %v; runner b: %v", errA, errB)
			}
			if !repB.has("waiting for runner-a baking sha256:") {
				t.Errorf("runner b never said it waited for runner a; its lines: %q", repB.infos)
			}
			if resA.Cached || resA.Version != want {
				t.Errorf("runner a: cached %v, version %s; want baked %s", resA.Cached, resA.Version, want)
			}
			if !resB.Cached || resB.Version != want || resB.Artifacts[0].Digest != resA.Artifacts[0].Digest {
				t.Errorf("runner b: cached %v, version %s, digest %s; want up to date at %s, %s", resB.Cached, resB.Version, resB.Artifacts[0].Digest, want, resA.Artifacts[0].Digest)
			}
			if got := registryTags(t, repo); len(got) != 1 || got[0] != want {
				t.Errorf("registry tags %v, want only %s", got, want)
			}
		})
	}
}

// TestExpiredBakeLeaseTakenOver: a lease on the bake key left by a runner
// that died (expired) does not block the bake: it is taken over, said so,
// and released afterwards.
func TestExpiredBakeLeaseTakenOver(t *testing.T) {
	dir := autoFolder(t, "")
	// The key, from a bake into a scratch layout.
	res, err := autoEngine(t, filepath.Join(t.TempDir(), "scratch"), progress.Discard()).Bake(context.Background(), loadFolder(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	open := ledgerBucket(t)
	dead := open(ledger.WithClock(func() time.Time { return bakeDay.Add(-time.Hour) }))
	stage := "bake-" + strings.TrimPrefix(res.BakeKey, "sha256:")
	if _, err := dead.Acquire(context.Background(), "app", stage, "dead-runner", "bake"); err != nil {
		t.Fatal(err)
	}
	live := open(ledger.WithClock(func() time.Time { return bakeDay }))
	rep := &lines{}
	home := filepath.Join(t.TempDir(), "layout")
	res2, err := autoEngine(t, home, rep, bake.WithLeases(leasesOf(live), "runner-b"), bake.WithLeasePoll(time.Millisecond)).Bake(context.Background(), loadFolder(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Cached || res2.BakeKey != res.BakeKey {
		t.Errorf("bake after a dead runner's lease: cached %v, key %s; want baked with key %s", res2.Cached, res2.BakeKey, res.BakeKey)
	}
	if !rep.has("took over the expired lease of dead-runner") {
		t.Errorf("the takeover is not reported; lines: %q", rep.infos)
	}
	if le, err := live.Holder(context.Background(), "app", stage); err != nil || le != nil {
		t.Errorf("after the bake the lease is %v (%v), want released", le, err)
	}
}

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

// amiRecipe is an auto-versioned recipe with one machine image of
// instance type typ.
func amiRecipe(t *testing.T, dir, typ string) *recipes.Recipe {
	t.Helper()
	src := fmt.Sprintf(`recipe "golden" {
  version = "auto"
  stages  = ["dev"]
}
machine_image "golden" {
  region         = "us-east-1"
  instance_type  = %q
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
}
`, typ)
	path := filepath.Join(dir, "golden.bake.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, diags := recipes.NewLoader().Load(path, recipes.Options{})
	if diags.HasErrors() {
		t.Fatalf("loading recipe: %v", diags)
	}
	return r
}

// TestAutoVersionMachineImage: on moto, the first bake of an auto AMI
// recipe gets DATE.1 (the AMI's bakery:version tag says so), a second
// run finds it by its bake key tag and bakes nothing, and a changed
// recipe gets DATE.2.
func TestAutoVersionMachineImage(t *testing.T) {
	moto := mototest.Start(t)
	cfg := moto.Config(t, "us-east-1")
	ctx := context.Background()
	amis, err := bakeami.NewBaker(cfg, bakeami.WithPollInterval(20*time.Millisecond), bakeami.WithClock(func() time.Time { return bakeDay }))
	if err != nil {
		t.Fatal(err)
	}
	engine := bake.New(nil, bake.WithMachineImages(amis), bake.WithClock(func() time.Time { return bakeDay }, nil))
	dir := t.TempDir()
	day := bakeDay.Format("2006.01.02")
	versions := func() map[string]int {
		out, err := ec2.NewFromConfig(cfg).DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"},
			Filters: []ec2types.Filter{{Name: aws.String("tag:" + catalog.TagRecipe), Values: []string{"golden"}}}})
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, img := range out.Images {
			for _, tag := range img.Tags {
				if aws.ToString(tag.Key) == catalog.TagVersion {
					n[aws.ToString(tag.Value)]++
				}
			}
		}
		return n
	}

	res, err := engine.Bake(ctx, amiRecipe(t, dir, "t3.micro"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != day+".1" || res.Cached || res.Artifacts[0].Version != day+".1" {
		t.Fatalf("first bake: version %s, cached %v; want %s.1 baked", res.Version, res.Cached, day)
	}
	id := res.Artifacts[0].ID
	if got := versions(); len(got) != 1 || got[day+".1"] != 1 {
		t.Fatalf("AMIs by version tag: %v, want one at %s.1", got, day)
	}

	res, err = engine.Bake(ctx, amiRecipe(t, dir, "t3.micro"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != day+".1" || !res.Cached || res.Artifacts[0].ID != id {
		t.Fatalf("second bake: version %s, cached %v, AMI %s; want up to date at %s.1, %s", res.Version, res.Cached, res.Artifacts[0].ID, day, id)
	}
	if got := versions(); len(got) != 1 {
		t.Fatalf("an up-to-date bake made an AMI: %v", got)
	}

	res, err = engine.Bake(ctx, amiRecipe(t, dir, "t3.small"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != day+".2" || res.Cached {
		t.Fatalf("bake of a changed recipe: version %s, cached %v; want %s.2 baked", res.Version, res.Cached, day)
	}
	if got := versions(); len(got) != 2 || got[day+".2"] != 1 {
		t.Fatalf("AMIs by version tag: %v, want one at %s.1 and one at %s.2", got, day, day)
	}
}

// TestBakeLeaseRenewedWhileBaking: while a runner bakes, it renews its
// leases on the bake key and on the version. The engine's sleep is faked: a renewal happens
// when the test says so, just before the build; the ledger's clock moves
// a minute a call, so a renewed lease expires later than the one taken.
func TestBakeLeaseRenewedWhileBaking(t *testing.T) {
	dir := autoFolder(t, "")
	res, err := autoEngine(t, filepath.Join(t.TempDir(), "scratch"), progress.Discard()).Bake(context.Background(), loadFolder(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	stage := "bake-" + strings.TrimPrefix(res.BakeKey, "sha256:")
	var mu sync.Mutex
	calls := 0
	open := ledgerBucket(t)
	l := open(ledger.WithClock(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return bakeDay.Add(time.Duration(calls) * time.Minute)
	}))
	renew := make(chan struct{})
	sleep := func(ctx context.Context, d time.Duration) error {
		select {
		case <-renew:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var taken, renewed *ledger.Lease
	rep := &lines{hook: func(msg string) {
		if !strings.Contains(msg, "new version") {
			return
		}
		taken, _ = l.Holder(context.Background(), "app", stage)
		// Two leases renew now: the key's and the version's.
		for range 2 {
			select {
			case renew <- struct{}{}:
			case <-time.After(guard):
			}
		}
		deadline := time.Now().Add(guard)
		for time.Now().Before(deadline) {
			le, err := l.Holder(context.Background(), "app", stage)
			if err == nil && le != nil && taken != nil && le.Expires.After(taken.Expires) {
				renewed = le
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}}
	engine := autoEngine(t, filepath.Join(t.TempDir(), "layout"), rep, bake.WithLeases(leasesOf(l), "runner-a"), bake.WithClock(nil, sleep))
	if _, err := engine.Bake(context.Background(), loadFolder(t, dir)); err != nil {
		t.Fatal(err)
	}
	if taken == nil || taken.Holder != "runner-a" {
		t.Fatalf("before the build the lease on the key is %v, want runner-a's", taken)
	}
	if renewed == nil {
		t.Fatalf("the lease taken at %s, until %s, was not renewed while baking", taken.Acquired, taken.Expires)
	}
	if le, err := l.Holder(context.Background(), "app", stage); err != nil || le != nil {
		t.Errorf("after the bake the lease is %v (%v), want released", le, err)
	}
}

// TestBakeLeasesReleasedOnInterrupt: a bake interrupted (its context
// cancelled) after it took its leases gives both back.
func TestBakeLeasesReleasedOnInterrupt(t *testing.T) {
	dir := autoFolder(t, "")
	open, locks := ledgerBucketLocks(t)
	l := open()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var held []string
	rep := &lines{hook: func(msg string) {
		if strings.Contains(msg, "new version") {
			held = locks()
			cancel()
		}
	}}
	engine := autoEngine(t, filepath.Join(t.TempDir(), "layout"), rep, bake.WithLeases(leasesOf(l), "runner-a"))
	if _, err := engine.Bake(ctx, loadFolder(t, dir)); err == nil {
		t.Fatal("the interrupted bake succeeded")
	}
	if len(held) != 2 {
		t.Fatalf("before the build the runner held %v, want the key's and the version's leases", held)
	}
	if left := locks(); len(left) != 0 {
		t.Errorf("after the interrupted bake the ledger still holds %v", left)
	}
}

// raceTransport pushes another runner's image to the tag right after
// this runner's push of it succeeds, as a runner without a ledger that
// assigned the same version would.
type raceTransport struct {
	tag   string
	other func()
	once  sync.Once
}

func (rt *raceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/manifests/"+rt.tag) && resp.StatusCode < 300 {
		rt.once.Do(rt.other)
	}
	return resp, err
}

// TestAutoVersionRaceWithoutLedgerFails: without a ledger, another
// runner pushes other content under the version this runner assigned,
// right after this runner's push: the bake fails, naming the version and
// asking for a ledger, instead of reporting an image the tag no longer
// names.
func TestAutoVersionRaceWithoutLedgerFails(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/team/app"
	dir := autoFolder(t, repo)
	version := bakeDay.Format("2006.01.02") + ".1"
	rt := &raceTransport{tag: version, other: func() {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Error(err)
			return
		}
		img = mutate.Annotations(img, map[string]string{catalog.AnnotationRecipe: "app", catalog.AnnotationVersion: version,
			catalog.AnnotationBakeKey: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}).(v1.Image)
		tag, err := name.NewTag(repo + ":" + version)
		if err != nil {
			t.Error(err)
			return
		}
		if err := remote.Write(tag, img); err != nil {
			t.Errorf("pushing the other runner's image: %v", err)
		}
	}}
	b, err := bakeoci.NewBaker(bakeoci.WithHome(t.TempDir()), bakeoci.WithTransport(rt))
	if err != nil {
		t.Fatal(err)
	}
	_, err = bake.New(b, bake.WithClock(func() time.Time { return bakeDay }, nil)).Bake(context.Background(), loadFolder(t, dir))
	if err == nil || !strings.Contains(err.Error(), "version "+version+" was assigned at the same time by another runner") || !strings.Contains(err.Error(), "configure a ledger") {
		t.Fatalf("bake raced by another runner: %v; want it to fail naming version %s and asking for a ledger", err, version)
	}
}

// TestWaitingRunnerTakesOverWhenTheLeaseExpires: a runner finds the bake
// key leased by a runner that then dies; it waits (saying for whom),
// polling on a fake clock, and takes the lease over once it expired,
// then bakes.
func TestWaitingRunnerTakesOverWhenTheLeaseExpires(t *testing.T) {
	dir := autoFolder(t, "")
	res, err := autoEngine(t, filepath.Join(t.TempDir(), "scratch"), progress.Discard()).Bake(context.Background(), loadFolder(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := bakeDay
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	polls := 0
	sleep := func(ctx context.Context, d time.Duration) error {
		if d != time.Minute {
			<-ctx.Done() // lease renewals: not in this test
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(d)
		polls++
		return nil
	}
	open := ledgerBucket(t)
	l := open(ledger.WithClock(clock))
	stage := "bake-" + strings.TrimPrefix(res.BakeKey, "sha256:")
	dead, err := l.Acquire(context.Background(), "app", stage, "dead-runner", "bake")
	if err != nil {
		t.Fatal(err)
	}
	rep := &lines{}
	engine := autoEngine(t, filepath.Join(t.TempDir(), "layout"), rep, bake.WithLeases(leasesOf(l), "runner-b"),
		bake.WithClock(clock, sleep), bake.WithLeasePoll(time.Minute))
	res2, err := engine.Bake(context.Background(), loadFolder(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Cached {
		t.Errorf("the bake after the takeover found the image up to date; want it baked")
	}
	if !rep.has("waiting for dead-runner baking " + res.BakeKey[:len("sha256:")+12] + " since " + dead.Acquired.Format(time.RFC3339)) {
		t.Errorf("the wait is not reported as HOLDER, KEY and since when; lines: %q", rep.infos)
	}
	if !rep.has("took over the expired lease of dead-runner") {
		t.Errorf("the takeover is not reported; lines: %q", rep.infos)
	}
	if ttl := dead.Expires.Sub(dead.Acquired); polls < int(ttl/time.Minute) {
		t.Errorf("the runner took over after %d polls of a minute, before the %s lease expired", polls, ttl)
	}
}

// TestAutoVersionNotReusedAfterRetire: a retired auto version is not
// assigned again, in the local layout and in a registry: after DATE.1 is
// retired, the same content bakes as DATE.2.
func TestAutoVersionNotReusedAfterRetire(t *testing.T) {
	ctx := context.Background()
	first := bakeDay.Format("2006.01.02") + ".1"
	second := bakeDay.Format("2006.01.02") + ".2"
	type store interface {
		Entries(context.Context) ([]catalog.Entry, error)
	}
	for _, where := range []string{"layout", "registry"} {
		t.Run(where, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "layout")
			repo := ""
			if where == "registry" {
				srv := httptest.NewServer(registry.New())
				t.Cleanup(srv.Close)
				repo = strings.TrimPrefix(srv.URL, "http://") + "/team/app"
			}
			dir := autoFolder(t, repo)
			engine := autoEngine(t, home, progress.Discard())
			res, err := engine.Bake(ctx, loadFolder(t, dir))
			if err != nil || res.Version != first {
				t.Fatalf("first bake: %v, %v; want %s", res, err, first)
			}
			var s store
			var retire func(catalog.Entry, catalog.Event) error
			if repo == "" {
				l, err := catalogoci.OpenLayout(home)
				if err != nil {
					t.Fatal(err)
				}
				ls := l.Store("app", "app", "app")
				s, retire = ls, func(e catalog.Entry, ev catalog.Event) error { _, err := ls.RetireVersion(ctx, e, ev); return err }
			} else {
				rs, err := catalogoci.NewRegistryStore(repo, "app", "app")
				if err != nil {
					t.Fatal(err)
				}
				s, retire = rs, func(e catalog.Entry, ev catalog.Event) error { _, err := rs.RetireVersion(ctx, e, ev); return err }
			}
			es, err := s.Entries(ctx)
			if err != nil || len(es) != 1 || es[0].Version != first {
				t.Fatalf("entries %v (%v), want %s", es, err, first)
			}
			ev := catalog.Event{Time: bakeDay, Action: catalog.ActionRetire, Recipe: "app", Version: first, Artifact: "app", Kind: catalog.KindContainer, Actor: "ops"}
			if err := retire(es[0], ev); err != nil {
				t.Fatal(err)
			}
			res, err = engine.Bake(ctx, loadFolder(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			if res.Version != second || res.Cached {
				t.Fatalf("bake after %s was retired: version %s, cached %v; want %s baked", first, res.Version, res.Cached, second)
			}
		})
	}
}

// TestConcurrentRunnersBakeAMIOnce: two runners bake the same auto AMI
// recipe on moto with one ledger (moto's S3). Runner A is held after it
// took the bake lease and its version until runner B says it waits for
// A. One AMI results, at DATE.1, and B reports it up to date.
func TestConcurrentRunnersBakeAMIOnce(t *testing.T) {
	moto := mototest.Start(t)
	cfg := moto.Config(t, "us-east-1")
	ctx := context.Background()
	open := ledgerBucket(t)
	dir := t.TempDir()
	day := bakeDay.Format("2006.01.02")

	bWaits := make(chan struct{})
	var once sync.Once
	started := make(chan struct{})
	var startOnce sync.Once
	repA := &lines{hook: func(msg string) {
		if strings.Contains(msg, "new version") {
			startOnce.Do(func() { close(started) })
			select {
			case <-bWaits:
			case <-time.After(guard):
			}
		}
	}}
	repB := &lines{hook: func(msg string) {
		if strings.Contains(msg, "waiting for runner-a") {
			once.Do(func() { close(bWaits) })
		}
	}}
	engine := func(rep progress.Reporter, holder string) *bake.Engine {
		amis, err := bakeami.NewBaker(cfg, bakeami.WithPollInterval(20*time.Millisecond), bakeami.WithClock(func() time.Time { return bakeDay }))
		if err != nil {
			t.Fatal(err)
		}
		return bake.New(nil, bake.WithMachineImages(amis), bake.WithProgress(rep), bake.WithClock(func() time.Time { return bakeDay }, nil),
			bake.WithLeases(leasesOf(open()), holder), bake.WithLeasePoll(20*time.Millisecond))
	}
	engA, engB := engine(repA, "runner-a"), engine(repB, "runner-b")
	recipe := amiRecipe(t, dir, "t3.micro")

	var resA, resB *bake.Result
	var errA, errB error
	var wg sync.WaitGroup
	wg.Go(func() { resA, errA = engA.Bake(ctx, recipe) })
	select {
	case <-started:
	case <-time.After(guard):
	}
	wg.Go(func() { resB, errB = engB.Bake(ctx, recipe) })
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("runner a: %v; runner b: %v", errA, errB)
	}
	if resA.Cached || resA.Version != day+".1" {
		t.Errorf("runner a: cached %v, version %s; want baked %s.1", resA.Cached, resA.Version, day)
	}
	if !resB.Cached || resB.Version != day+".1" || resB.Artifacts[0].ID != resA.Artifacts[0].ID {
		t.Errorf("runner b: cached %v, version %s, AMI %s; want up to date at %s.1, %s", resB.Cached, resB.Version, resB.Artifacts[0].ID, day, resA.Artifacts[0].ID)
	}
	out, err := ec2.NewFromConfig(cfg).DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("tag:" + catalog.TagRecipe), Values: []string{"golden"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 1 {
		t.Errorf("%d AMIs of the recipe, want 1", len(out.Images))
	}
}

// createImageTransport records the Name of each EC2 CreateImage request
// and, when refuse is set, answers it as EC2 does for a name another AMI
// of the region holds (moto 5.2.5 does not refuse duplicate AMI names).
type createImageTransport struct {
	refuse bool
	mu     sync.Mutex
	names  []string
}

func (c *createImageTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Method == http.MethodPost {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		if form.Get("Action") == "CreateImage" {
			c.mu.Lock()
			c.names = append(c.names, form.Get("Name"))
			c.mu.Unlock()
			if c.refuse {
				msg := `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>InvalidAMIName.Duplicate</Code><Message>AMI name ` +
					form.Get("Name") + ` is already in use by AMI ami-0123456789abcdef0</Message></Error></Errors><RequestID>x</RequestID></Response>`
				return &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
					Header: http.Header{"Content-Type": []string{"text/xml"}}, Body: io.NopCloser(strings.NewReader(msg)), Request: req}, nil
			}
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestAutoVersionAMINameClaimsTheVersion: without a ledger, an auto AMI's
// default name is RECIPE-VERSION with no timestamp, so that EC2, which
// refuses a second AMI of one name in a region, lets one runner claim a
// version; a bake whose name EC2 refuses fails saying the version was
// claimed first, and leaves no AMI and no running builder.
func TestAutoVersionAMINameClaimsTheVersion(t *testing.T) {
	moto := mototest.Start(t)
	ctx := context.Background()
	day := bakeDay.Format("2006.01.02")
	for _, refuse := range []bool{false, true} {
		rt := &createImageTransport{refuse: refuse}
		cfg := moto.Config(t, "us-east-1")
		cfg.HTTPClient = &http.Client{Transport: rt}
		amis, err := bakeami.NewBaker(cfg, bakeami.WithPollInterval(20*time.Millisecond), bakeami.WithClock(func() time.Time { return bakeDay }))
		if err != nil {
			t.Fatal(err)
		}
		engine := bake.New(nil, bake.WithMachineImages(amis), bake.WithClock(func() time.Time { return bakeDay }, nil))
		res, err := engine.Bake(ctx, amiRecipe(t, t.TempDir(), map[bool]string{false: "t3.micro", true: "t3.small"}[refuse]))
		want := fmt.Sprintf("golden-%s.%d", day, map[bool]int{false: 1, true: 2}[refuse])
		if len(rt.names) != 1 || rt.names[0] != want {
			t.Errorf("refuse=%v: CreateImage names %q, want [%s]", refuse, rt.names, want)
		}
		if !refuse {
			if err != nil || res.Version != day+".1" {
				t.Fatalf("bake: %v, %v; want %s.1", res, err, day)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "another runner claimed version "+day+".2 first") {
			t.Fatalf("bake refused its AMI name: %v; want it to say the version was claimed first", err)
		}
		out, err := ec2.NewFromConfig(moto.Config(t, "us-east-1")).DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
			{Name: aws.String("tag-key"), Values: []string{catalog.TagBakeID}},
			{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(out.Reservations); n != 0 {
			t.Errorf("the refused bake left %d builder reservations", n)
		}
	}
}
