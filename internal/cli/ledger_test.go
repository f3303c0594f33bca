package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/ledger"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// ledgerAMIRecipe bakes an AMI without provisioners (no SSH) and has no
// stage blocks; extra is appended (a catalog block).
func ledgerAMIRecipe(extra string) string {
	return `variable "version" {
  type    = string
  default = "1.0.0"
}

recipe "base" {
  version = var.version
  stages  = ["dev", "staging", "prod"]
}

machine_image "base" {
  region         = "us-east-1"
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}
` + extra
}

// ledgerBucket creates a bucket in moto's default account (the one the
// CLI's environment acts in) and returns its name and a ledger on it
// under prefix "team", for the test to look at and hold locks in.
func ledgerBucket(t *testing.T, moto *mototest.Server) (string, *ledger.Ledger) {
	t.Helper()
	cfg := moto.Config(t, "us-east-1")
	name := "bakery-ledger-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(name) > 63 {
		name = name[:63]
	}
	name = strings.TrimRight(name, "-")
	if _, err := awsx.NewS3(cfg, "").CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	l, err := ledger.NewFromConfig(cfg, name, "team", "")
	if err != nil {
		t.Fatal(err)
	}
	return name, l
}

// objects lists the keys under prefix in bucket.
func objects(t *testing.T, moto *mototest.Server, bucket, prefix string) []string {
	t.Helper()
	out, err := awsx.NewS3(moto.Config(t, "us-east-1"), "").ListObjectsV2(context.Background(),
		&s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// TestPromoteWithLedgerLocksRecordsAndMergesHistory promotes an AMI with
// a ledger named by BAKERY_LEDGER: each event lands in the ledger once,
// the lock is released after each promotion, a lock another runner holds
// refuses the promotion (exit 1, naming the holder, nothing changed),
// --break-lock breaks it and says who broke whose lease, and history
// merges the ledger's events (one pruned from the AMI comes back) with
// the tags', one record per event. The catalog block names the same
// ledger; BAKERY_LEDGER wins over it.
func TestPromoteWithLedgerLocksRecordsAndMergesHistory(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	actor := callerARN(t, moto)
	bucket, l := ledgerBucket(t, moto)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"base.bake.hcl":  ledgerAMIRecipe(""),
		"block.bake.hcl": ledgerAMIRecipe(fmt.Sprintf("catalog {\n  bucket = %q\n  prefix = \"team\"\n}\n", bucket)),
		"wrong.bake.hcl": ledgerAMIRecipe("catalog {\n  bucket = \"no-such-ledger-bucket\"\n}\n"),
	})
	recipe := filepath.Join(dir, "base.bake.hcl")
	bakeJSON(t, env, recipe)
	withLedger := append(env[:len(env):len(env)], "BAKERY_LEDGER=s3://"+bucket+"/team")
	ctx := context.Background()

	mustRun(t, withLedger, "promote", "-f", recipe, "base@1.0.0", "--to", "dev")
	if evs := objects(t, moto, bucket, "team/base/events/"); len(evs) != 1 {
		t.Fatalf("after one promotion the ledger holds %v, want one event", evs)
	}
	if locks := objects(t, moto, bucket, "team/base/locks/"); len(locks) != 0 {
		t.Fatalf("the promotion left its lock behind: %v", locks)
	}

	// Another runner holds staging: refused, exit 1, nothing changes.
	held, err := l.Acquire(ctx, "base", "staging", "ci-runner-7 on host9 (pid 42)", "promote base@0.9.0 to staging")
	if err != nil {
		t.Fatal(err)
	}
	refusedAMI(t, moto, withLedger, []int{exitFailure},
		"stage staging of base is locked by ci-runner-7 on host9 (pid 42) since "+held.Acquired.Format(time.RFC3339)+" (promote base@0.9.0 to staging), until "+held.Expires.Format(time.RFC3339),
		"promote", "-f", recipe, "base@1.0.0", "--to", "staging")
	r := run(t, withLedger, "promote", "-f", recipe, "base@1.0.0", "--to", "staging")
	if !strings.Contains(r.stderr, "--break-lock") {
		t.Errorf("the refusal does not say --break-lock:\n%s", r.stderr)
	}
	if h, err := l.Holder(ctx, "base", "staging"); err != nil || h == nil || h.Holder != held.Holder {
		t.Fatalf("the refused promotion changed the lock: %+v, %v", h, err)
	}

	// --break-lock without a ledger is a usage error.
	if r := run(t, env, "promote", "-f", recipe, "base@1.0.0", "--to", "staging", "--break-lock"); r.code != exitUsage || !strings.Contains(r.stderr, "no ledger") {
		t.Errorf("--break-lock without a ledger: exit %d, stderr %q; want exit 2 saying there is no ledger", r.code, r.stderr)
	}

	r = mustRun(t, withLedger, "promote", "-f", recipe, "base@1.0.0", "--to", "staging", "--break-lock")
	for _, want := range []string{actor + " broke the lock on stage staging of base", "held by ci-runner-7 on host9 (pid 42)", "promote base@0.9.0 to staging"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("--break-lock stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if err := l.Release(ctx, held); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("the broken holder's Release: %v, want ErrLeaseLost", err)
	}
	if locks := objects(t, moto, bucket, "team/base/locks/"); len(locks) != 0 {
		t.Errorf("locks left after --break-lock and the promotion: %v", locks)
	}

	// An event pruned from the AMIs, in the ledger alone.
	created := decodeHistory(t, mustRun(t, env, "--output", "json", "history", "-f", recipe, "base").stdout)
	devs := findEvents(created.Events, catalog.ActionPromote, "1.0.0", "dev")
	if len(devs) != 1 {
		t.Fatalf("history without a ledger has %d promotions to dev, want 1: %+v", len(devs), created.Events)
	}
	pruned := catalog.Event{Time: devs[0].Time.Add(-time.Millisecond), Action: catalog.ActionPromote, Recipe: "base", Version: "1.0.0",
		Artifact: "base", Kind: catalog.KindAMI, Stage: "dev", Actor: "old-actor", Reason: "only in the ledger"}
	if err := l.Append(ctx, pruned); err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		env  []string
		file string
	}{
		"BAKERY_LEDGER":            {withLedger, recipe},
		"catalog block":            {env, filepath.Join(dir, "block.bake.hcl")},
		"BAKERY_LEDGER over block": {withLedger, filepath.Join(dir, "wrong.bake.hcl")},
	} {
		h := decodeHistory(t, mustRun(t, tc.env, "--output", "json", "history", "-f", tc.file, "base").stdout)
		if h.Ledger != "s3://"+bucket+"/team" {
			t.Errorf("%s: history read ledger %q, want s3://%s/team", name, h.Ledger, bucket)
		}
		dev := findEvents(h.Events, catalog.ActionPromote, "1.0.0", "dev")
		staging := findEvents(h.Events, catalog.ActionPromote, "1.0.0", "staging")
		if len(dev) != 2 || len(staging) != 1 || len(h.Events) != 4 {
			t.Errorf("%s: history has %d promotions to dev (want 2: the tags' and the pruned one), %d to staging (want 1), %d events (want 4):\n%+v",
				name, len(dev), len(staging), len(h.Events), h.Events)
		}
		if got := findEvents(h.Events, catalog.ActionPromote, "1.0.0", "dev"); len(got) == 2 && got[1].Reason != "only in the ledger" {
			t.Errorf("%s: the oldest promotion to dev is %+v, want the pruned one", name, got[1])
		}
		if h.Pruned != 0 {
			t.Errorf("%s: with a ledger history reports %d pruned events", name, h.Pruned)
		}
	}
	// Without a ledger: the tags alone, nothing said about pruning (the
	// AMI pruned nothing).
	h := mustRun(t, env, "history", "-f", recipe, "base")
	if strings.Contains(h.stdout, "only in the ledger") || strings.Contains(h.stderr, "no longer") {
		t.Errorf("history without a ledger:\n%s%s", h.stdout, h.stderr)
	}
}

// TestHistoryReportsPrunedEvents: without a ledger, the number of events
// the images pruned goes to stderr in text and to a field in JSON; none
// is said when nothing was pruned.
func TestHistoryReportsPrunedEvents(t *testing.T) {
	ev := catalog.Event{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Action: catalog.ActionBake, Version: "1.0.0", Artifact: "base", Kind: catalog.KindAMI}
	for _, tc := range []struct {
		json       bool
		pruned     int
		wantStdout string
		wantStderr string
	}{
		{false, 7, "bake", "bakery: 7 older event(s) of base are no longer on its images"},
		{false, 0, "bake", ""},
		{true, 7, `"pruned":7`, ""},
		{true, 0, `"events":[`, ""},
	} {
		var out, errb bytes.Buffer
		e := &env{stdout: &out, stderr: &errb}
		if err := e.writeHistory(globals{json: tc.json}, historyDoc{Recipe: "base", Events: []catalog.Event{ev}, Pruned: tc.pruned}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), tc.wantStdout) {
			t.Errorf("json=%v pruned=%d: stdout %q lacks %q", tc.json, tc.pruned, out.String(), tc.wantStdout)
		}
		switch {
		case tc.wantStderr == "" && errb.Len() > 0:
			t.Errorf("json=%v pruned=%d: stderr %q, want nothing", tc.json, tc.pruned, errb.String())
		case tc.wantStderr != "" && (!strings.Contains(errb.String(), tc.wantStderr) || !strings.Contains(errb.String(), "BAKERY_LEDGER")):
			t.Errorf("json=%v pruned=%d: stderr %q, want %q and how to configure a ledger", tc.json, tc.pruned, errb.String(), tc.wantStderr)
		}
		if tc.json && tc.pruned == 0 && strings.Contains(out.String(), "pruned") {
			t.Errorf("JSON with nothing pruned names pruned: %s", out.String())
		}
	}
}

// gatedProxy forwards to moto and holds every EC2 request until open is
// closed; reached is closed at its first EC2 request. A bakery process
// talking through it reaches EC2 only past the ledger's lock (promote
// takes the lock before it reads the catalog).
type gatedProxy struct {
	*httptest.Server
	reached chan struct{}
	once    sync.Once
}

func newGatedProxy(t *testing.T, target string, open <-chan struct{}) *gatedProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &gatedProxy{reached: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Authorization"), "/ec2/aws4_request") {
			p.once.Do(func() { close(p.reached) })
			select {
			case <-open:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// TestTwoPromoteProcessesRaceForTheLock starts two bakery processes
// promoting into the same stage through proxies that hold their EC2
// calls: exactly one gets past the lock (reaches EC2), the other exits 1
// naming the winner's process, and once the winner is let through it
// promotes and releases the lock. Were the lock not exclusive, both
// would reach EC2 and the test fails at once.
func TestTwoPromoteProcessesRaceForTheLock(t *testing.T) {
	bin := bakeryBinary(t)
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	bucket, l := ledgerBucket(t, moto)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.bake.hcl": ledgerAMIRecipe("")})
	recipe := filepath.Join(dir, "base.bake.hcl")
	bakeJSON(t, env, recipe)

	open := make(chan struct{})
	var openOnce sync.Once
	release := func() { openOnce.Do(func() { close(open) }) }
	defer release()
	type proc struct {
		cmd   *exec.Cmd
		out   bytes.Buffer
		proxy *gatedProxy
		done  chan struct{}
	}
	procs := make([]*proc, 2)
	for i := range procs {
		p := &proc{proxy: newGatedProxy(t, moto.URL, open), done: make(chan struct{})}
		p.cmd = exec.Command(bin, "promote", "-f", recipe, "base@1.0.0", "--to", "dev")
		p.cmd.Env = freshProcessEnv(t, moto, "BAKERY_AWS_ENDPOINT="+p.proxy.URL, "BAKERY_LEDGER=s3://"+bucket+"/team")
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
		procs[i] = p
	}
	for _, p := range procs {
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.cmd.Wait(); close(p.done) }()
	}
	defer func() {
		release()
		for _, p := range procs {
			<-p.done
		}
	}()

	winner, loser := -1, -1
	reached := [2]bool{}
	r0, r1 := procs[0].proxy.reached, procs[1].proxy.reached
	for loser < 0 {
		select {
		case <-r0:
			reached[0], r0 = true, nil
		case <-r1:
			reached[1], r1 = true, nil
		case <-procs[0].done:
			loser, winner = 0, 1
		case <-procs[1].done:
			loser, winner = 1, 0
		}
		if reached[0] && reached[1] {
			t.Fatalf("both processes got past the lock to EC2:\n%s\n%s", procs[0].out.String(), procs[1].out.String())
		}
	}
	lo, wi := procs[loser], procs[winner]
	if code := lo.cmd.ProcessState.ExitCode(); code != exitFailure ||
		!strings.Contains(lo.out.String(), "stage dev of base is locked by") ||
		!strings.Contains(lo.out.String(), fmt.Sprintf("(pid %d)", wi.cmd.Process.Pid)) {
		t.Fatalf("the first process to end exited %d, want 1 naming the other process (pid %d) as the holder:\n%s", code, wi.cmd.Process.Pid, lo.out.String())
	}
	if reached[loser] {
		t.Errorf("the refused process reached EC2")
	}
	h, err := l.Holder(context.Background(), "base", "dev")
	if err != nil || h == nil || !strings.Contains(h.Holder, fmt.Sprintf("(pid %d)", wi.cmd.Process.Pid)) || h.Purpose != "promote base@1.0.0 to dev" {
		t.Errorf("while the winner works, the lock is %+v, %v; want the winner's", h, err)
	}
	release()
	<-wi.done
	if code := wi.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(wi.out.String(), "promoted base@1.0.0 to dev") {
		t.Fatalf("the winner exited %d:\n%s", code, wi.out.String())
	}
	if locks := objects(t, moto, bucket, "team/base/locks/"); len(locks) != 0 {
		t.Errorf("the winner left its lock: %v", locks)
	}
	if evs := objects(t, moto, bucket, "team/base/events/"); len(evs) != 1 {
		t.Errorf("the ledger holds %v, want the one promotion", evs)
	}
}

// TestSIGINTDuringPromoteReleasesTheLock interrupts a promotion that
// holds the lock (its EC2 calls held by a proxy): bakery exits 1 and
// gives the lock back on a context of its own, so the next promotion
// needs no --break-lock.
func TestSIGINTDuringPromoteReleasesTheLock(t *testing.T) {
	bin := bakeryBinary(t)
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	bucket, l := ledgerBucket(t, moto)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.bake.hcl": ledgerAMIRecipe("")})
	recipe := filepath.Join(dir, "base.bake.hcl")
	bakeJSON(t, env, recipe)

	open := make(chan struct{})
	defer close(open)
	proxy := newGatedProxy(t, moto.URL, open)
	cmd := exec.Command(bin, "promote", "-f", recipe, "base@1.0.0", "--to", "dev")
	cmd.Env = freshProcessEnv(t, moto, "BAKERY_AWS_ENDPOINT="+proxy.URL, "BAKERY_LEDGER=s3://"+bucket+"/team")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-proxy.reached: // past the lock, reading the catalog
	case <-done:
		t.Fatalf("bakery exited before it reached EC2:\n%s", out.String())
	}
	if h, err := l.Holder(context.Background(), "base", "dev"); err != nil || h == nil {
		t.Fatalf("while the promotion works the lock is %+v, %v; want it held", h, err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-done
	if code := cmd.ProcessState.ExitCode(); code != exitFailure {
		t.Errorf("interrupted promote exited %d, want 1:\n%s", code, out.String())
	}
	if locks := objects(t, moto, bucket, "team/base/locks/"); len(locks) != 0 {
		t.Errorf("the interrupted promotion left its lock: %v\n%s", locks, out.String())
	}
	mustRun(t, append(env[:len(env):len(env)], "BAKERY_LEDGER=s3://"+bucket+"/team"), "promote", "-f", recipe, "base@1.0.0", "--to", "dev")
}
