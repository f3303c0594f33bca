package main

import (
	"context"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/mototest"
)

func TestMain(m *testing.M) {
	if mib, _ := strconv.Atoi(os.Getenv("BENCH_TEST_HOLD_MIB")); mib > 0 {
		// The child of TestPeakRSSIsTheChildsOwn: hold mib MiB a moment.
		b := make([]byte, mib<<20)
		for i := range b {
			b[i] = 1
		}
		time.Sleep(300 * time.Millisecond)
		os.Exit(int(b[len(b)/2]) - 1)
	}
	os.Exit(mototest.Run(m))
}

// TestPeakRSSIsTheChildsOwn: the peak RSS runTimed reports is the
// child's, not the bench's: a child holding 64 MiB is reported at 64 MiB
// or more but below this test's own peak, and /bin/sleep at far less
// than the 256 MiB this test holds (ru_maxrss reports those 256 MiB for it).
func TestPeakRSSIsTheChildsOwn(t *testing.T) {
	held := make([]byte, 256<<20)
	for i := range held {
		held[i] = 1
	}
	ctx := context.Background()
	s, _, err := runTimed(ctx, command{Args: []string{"/bin/sleep", "0.2"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxRSSKiB <= 0 || s.MaxRSSKiB >= 32<<10 {
		t.Errorf("sleep's peak RSS = %d KiB, want its own (> 0, < 32 MiB), not this test's 256 MiB", s.MaxRSSKiB)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, _, err = runTimed(ctx, command{Args: []string{self, "-test.run=^$"}, Env: []string{"BENCH_TEST_HOLD_MIB=64"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	// Below this test's own peak, which the flawed measure reports (the
	// race detector's shadow memory grows both alike).
	own := readHWMKiB(os.Getpid())
	if s.MaxRSSKiB < 64<<10 || own <= 0 || s.MaxRSSKiB >= own {
		t.Errorf("peak RSS of a child holding 64 MiB = %d KiB, want 64 MiB or more and below this test's own peak (%d KiB)", s.MaxRSSKiB, own)
	}
	runtime.KeepAlive(held)
}

// TestTimedRunsDoNotMeasureMemory: a command with NoRSS runs without the
// /proc poller (which wakes every 5 ms on the cores a bake keeps busy)
// and reports no peak RSS at all, not ru_maxrss's figure, which holds the
// bench's own memory.
func TestTimedRunsDoNotMeasureMemory(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := runTimed(context.Background(), command{Args: []string{self, "-test.run=^$"}, Env: []string{"BENCH_TEST_HOLD_MIB=64"}, NoRSS: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxRSSKiB != 0 || s.Wall <= 0 {
		t.Errorf("a NoRSS run reports peak RSS %d KiB and wall time %v, want 0 and the time", s.MaxRSSKiB, s.Wall)
	}
	ser := &series{Samples: []sample{s}, ProbeRSSKiB: 70 << 10}
	if got := ser.peakRSSKiB(); got != 70<<10 {
		t.Errorf("peak RSS of a series whose warm-up measured 70 MiB = %d KiB", got)
	}
}

// TestSeededAMIsReadAsBakeryWroteThem: the seeded tags are bakery's own:
// catalog/ami's lifecycle store reads every version in the three regions,
// the stage holders (the newest version in dev, the newest tenth in
// staging, the newest hundredth in prod) and the promote/demote events.
// It holds on stock moto and on moto patched by motoscale.py, whose tag
// lookups must answer what stock moto answers.
func TestSeededAMIsReadAsBakeryWroteThem(t *testing.T) {
	t.Run("stock", func(t *testing.T) { checkSeededAMIs(t, mototest.Start(t).URL) })
	t.Run("patched", func(t *testing.T) { checkSeededAMIs(t, startScaleMoto(t).URL) })
}

func checkSeededAMIs(t *testing.T, url string) {
	var calls atomic.Int64
	var fig seedFigures
	const n = 12
	if _, err := seedAMIs(context.Background(), url, n, 4, &fig, &calls); err != nil {
		t.Fatal(err)
	}
	store := catalogami.NewLifecycleStore(awsConfig(url, scaleHome), scaleRecipe, scaleArtifact, scaleRegions)
	entries, err := store.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("read %d versions, want %d", len(entries), n)
	}
	holders := map[string]string{}
	events := map[string]int{}
	for _, e := range entries {
		if len(e.Locations) != len(scaleRegions) {
			t.Errorf("%s is in %d regions, want %d", e.Version, len(e.Locations), len(scaleRegions))
		}
		for stage := range e.Stages {
			holders[stage] += e.Version
		}
		for _, ev := range e.Events {
			events[ev.Action]++
		}
	}
	want := map[string]string{"dev": "1.0.11", "staging": "1.0.10", "prod": "1.0.0"}
	for stage, v := range want {
		if holders[stage] != v {
			t.Errorf("%s held by %q, want %s", stage, holders[stage], v)
		}
	}
	// Promotions: 12 into dev, 2 into staging, 1 into prod; every one
	// but the holders' was undone by a demotion.
	if events[catalog.ActionPromote] != 15 || events[catalog.ActionDemote] != 12 {
		t.Errorf("events = %v, want 15 promote and 12 demote", events)
	}
}

// TestPaginateTagsLetsAClientReadEveryPage: behind paginateTags,
// go-containerregistry's List (pages of 1000) reads past the first page
// of pkg/registry's tag list, and stops after a full last page (where
// pkg/registry would answer the whole list again).
func TestPaginateTagsLetsAClientReadEveryPage(t *testing.T) {
	for _, n := range []int{1000, 1003} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c := &requestCounter{n: map[string]int{}}
			srv := httptest.NewServer(c.wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
			defer srv.Close()
			repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/a/b")
			if err != nil {
				t.Fatal(err)
			}
			img, err := random.Image(16, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(repo.Tag(versionName(0)), img); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < n; i++ {
				if err := remote.Tag(repo.Tag(versionName(i)), img); err != nil {
					t.Fatal(err)
				}
			}
			c.take()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			tags, err := remote.List(repo, remote.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			if len(tags) != n {
				t.Errorf("listed %d tags, want %d", len(tags), n)
			}
			if got := c.take()["GET tags/list"]; got != 2 {
				t.Errorf("listing took %d pages, want 2", got)
			}
		})
	}
}

// startScaleMoto starts the bench's patched moto_server (motoscale.py)
// for this test alone. Without moto_server it fails when CI is set and
// skips otherwise.
func startScaleMoto(t *testing.T) *motoServer {
	t.Helper()
	root, err := moduleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bin, err := motoBinary(root, "")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI is set, so this fails instead of skipping)", err)
		}
		t.Skip(err)
	}
	m, err := startMoto(context.Background(), bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	return m
}

// TestPatchedMotoPagesDescribeImages: the bench's moto answers
// DescribeImages in pages of MaxResults with a NextToken, as EC2 does
// (stock moto answers everything at once), so the bench counts the pages
// bakery reads; without MaxResults it answers everything.
func TestPatchedMotoPagesDescribeImages(t *testing.T) {
	m := startScaleMoto(t)
	ctx := context.Background()
	var calls atomic.Int64
	var fig seedFigures
	const n = 12
	if _, err := seedAMIs(ctx, m.URL, n, 4, &fig, &calls); err != nil {
		t.Fatal(err)
	}
	c := ec2.NewFromConfig(awsConfig(m.URL, scaleHome))
	mine := []ec2types.Filter{{Name: aws.String("tag:" + catalog.TagRecipe), Values: []string{scaleRecipe}}}
	var sizes []int
	seen := map[string]bool{}
	p := ec2.NewDescribeImagesPaginator(c, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: mine, MaxResults: aws.Int32(5)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(page.Images))
		for _, img := range page.Images {
			seen[aws.ToString(img.ImageId)] = true
		}
	}
	if !slices.Equal(sizes, []int{5, 5, 2}) || len(seen) != n {
		t.Errorf("pages of 5 held %v (%d distinct AMIs), want [5 5 2] (%d)", sizes, len(seen), n)
	}
	all, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: mine})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Images) != n || all.NextToken != nil {
		t.Errorf("without MaxResults: %d AMIs, NextToken %v; want %d and none", len(all.Images), all.NextToken, n)
	}
}

// TestVerbCallsDoNotGrowWithAMIs: status, history, outdated and retire's
// plan make the same calls, API by API, for 8 versions and for 24 (each
// in three regions): every call is per region, per launch template or
// fixed, none per AMI. (Pages of 1000 are one page at both sizes.)
func TestVerbCallsDoNotGrowWithAMIs(t *testing.T) {
	ctx := context.Background()
	bakery := filepath.Join(t.TempDir(), "bakery")
	if out, err := exec.Command("go", "build", "-o", bakery, "github.com/bakery-sh/bakery/cmd/bakery").CombinedOutput(); err != nil {
		t.Fatalf("building bakery: %v\n%s", err, out)
	}
	measure := func(n int) map[string]map[string]int {
		m := startScaleMoto(t)
		var calls atomic.Int64
		var fig seedFigures
		source, err := seedAMIs(ctx, m.URL, n, 4, &fig, &calls)
		if err != nil {
			t.Fatal(err)
		}
		if err := seedFleets(ctx, m.URL, 20, 4, 4, &fig, &calls); err != nil {
			t.Fatal(err)
		}
		verbs, err := measureVerbs(ctx, bakery, t.TempDir(), m.URL, source)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]map[string]int{}
		for _, v := range verbs {
			out[v.Name] = v.Calls
		}
		return out
	}
	small, large := measure(8), measure(24)
	if len(small) != 4 {
		t.Fatalf("measured %d verbs, want 4", len(small))
	}
	for verb, calls := range small {
		if len(calls) == 0 {
			t.Errorf("%s made no calls", verb)
		}
		if !maps.Equal(calls, large[verb]) {
			t.Errorf("%s: calls for 8 versions %v, for 24 %v: want the same (none per AMI)", verb, calls, large[verb])
		}
	}
}
