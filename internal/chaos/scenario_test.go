package chaos_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/faultproxy"
	"github.com/bakery-sh/bakery/internal/lifecycletest"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// The scenario's fixed parts.
var (
	versions = []string{"1.0.0", "1.1.0", "1.2.0"}
	stages   = []string{"dev", "staging", "prod"}
	regions  = []string{"us-east-1", "eu-west-1"}
)

const (
	// killP is the chance that a run of a command is interrupted (half
	// SIGINT, half SIGKILL); only the first killedAttempts runs of a step
	// are.
	killP          = 0.3
	killedAttempts = 2
	// maxAttempts bounds the runs of one step: with 20% faults a run may
	// fail on its own, and a run after the kills must finish the job.
	maxAttempts = 6
	// commandTimeout is how long one run may take before it counts as
	// hung (and is killed).
	commandTimeout = 4 * time.Minute
)

// faultOptions inject about 20% faults of every kind, with seed. Few
// are throttles: the SDK waits about a second after one (50 ms after
// the others), which would make a seed take minutes.
func faultOptions(seed uint64, account string) []faultproxy.Option {
	return []faultproxy.Option{
		faultproxy.WithSeed(seed), faultproxy.WithAccount(account), faultproxy.ApplyCopyTags(),
		faultproxy.Throttle(0.02),
		faultproxy.Unavailable(0.04),
		faultproxy.InternalError(0.04),
		faultproxy.ResetBefore(0.03),
		faultproxy.ResetAfter(0.03),
		faultproxy.Latency(0.02, 200*time.Millisecond),
		faultproxy.StaleDescribes(0.02, 3*time.Second),
	}
}

// seeds returns the seeds to run: -seed, else BAKERY_CHAOS_SEED, else
// 1..BAKERY_CHAOS_SEEDS (default 2).
func seeds(t *testing.T) []uint64 {
	if *seedFlag != 0 {
		return []uint64{*seedFlag}
	}
	if s := os.Getenv("BAKERY_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			t.Fatalf("BAKERY_CHAOS_SEED=%q is not a positive number", s)
		}
		return []uint64{n}
	}
	n := 2
	if s := os.Getenv("BAKERY_CHAOS_SEEDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("BAKERY_CHAOS_SEEDS=%q is not a positive number", s)
		}
		n = v
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// tally sums what the seeds did, for the closing summary.
type tally struct {
	mu                               sync.Mutex
	seeds, failedSeeds               int
	calls                            int
	faults                           map[faultproxy.Fault]int
	runs, failedRuns                 int
	sigints, sigkills                int
	orphans, unsafe, leftOvers       int
	unclear, unfinished, stageFaults int
}

func (s *tally) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kinds []string
	total := 0
	for f, n := range s.faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", f, n))
		total += n
	}
	sort.Strings(kinds)
	return fmt.Sprintf("chaos: %d seeds run (%d failed); %d AWS calls, %d faults injected (%s); %d bakery runs (%d failed on their own), %d SIGINTs, %d SIGKILLs; "+
		"%d resources left for sweep after the scenarios; after the final sweep: %d orphans, %d unsafe deletions, %d unclear failures, %d steps unfinished, %d stage/serving violations",
		s.seeds, s.failedSeeds, s.calls, total, strings.Join(kinds, ", "), s.runs, s.failedRuns, s.sigints, s.sigkills,
		s.leftOvers, s.orphans, s.unsafe, s.unclear, s.unfinished, s.stageFaults)
}

func TestChaos(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bakery")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/bakery-sh/bakery/cmd/bakery").CombinedOutput(); err != nil {
		t.Fatalf("building bakery: %v\n%s", err, out)
	}
	moto := mototest.Shared(t)
	sshd := sshtest.Start(t)
	total := &tally{faults: map[faultproxy.Fault]int{}}
	for _, seed := range seeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			w := newWorld(t, bin, moto, sshd, seed, total)
			w.scenario()
			w.finish()
			total.mu.Lock()
			total.seeds++
			if t.Failed() {
				total.failedSeeds++
			}
			total.mu.Unlock()
			t.Logf("seed %d: %v reading the account", seed, w.inventoryTime.Round(time.Second))
			if testing.Verbose() && !t.Failed() {
				t.Logf("commands run:\n%s", w.transcript.String())
			}
			if t.Failed() {
				var writes []string
				for _, c := range w.proxy.Calls() {
					if c.Fault != faultproxy.FaultNone && !strings.HasPrefix(c.Action, "Describe") && !strings.HasPrefix(c.Action, "Get") && !strings.HasPrefix(c.Action, "List") {
						writes = append(writes, c.String())
					}
				}
				t.Logf("faulted calls that change things:\n  %s", strings.Join(writes, "\n  "))
				t.Errorf("replay this seed: make chaos SEED=%d  (or: go test -count=1 -run TestChaos ./internal/chaos -seed=%d)\ncommands run:\n%s", seed, seed, w.transcript.String())
			}
		})
	}
	t.Log(total.String())
	fmt.Println(total.String())
}

// world is one seed's account, project and dice.
type world struct {
	t             *testing.T
	seed          uint64
	dice          *mrand.Rand
	bin, dir      string
	env           []string
	moto          *mototest.Server
	account       string
	proxy         *faultproxy.Proxy
	total         *tally
	snapshots0    map[string]bool // snapshots the account had before bakery ran
	inventoryTime time.Duration
	launched      bool            // a launch finished: prod must have a serving group
	baked         map[string]bool // versions whose bake finished
	reRun         [][]string      // interrupted commands safe to run again
	transcript    strings.Builder
	ctx           context.Context
}

func newWorld(t *testing.T, bin string, moto *mototest.Server, sshd *sshtest.Server, seed uint64, total *tally) *world {
	w := &world{t: t, seed: seed, dice: mrand.New(mrand.NewPCG(seed, 0xc4a05)), bin: bin, dir: t.TempDir(), moto: moto,
		account: moto.NewAccount(), total: total, baked: map[string]bool{}, ctx: context.Background()}
	w.proxy = faultproxy.Start(t, moto.URL, faultOptions(seed, w.account)...)
	tg := w.targetGroup()

	lifecycletest.WriteProject(t, w.dir, sshd, t.TempDir(), tg, w.account)
	w.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"BAKERY_HOME=" + t.TempDir(),
		"AWS_ACCESS_KEY_ID=" + mototest.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + mototest.SecretAccessKey,
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none"),
		"BAKERY_AWS_ENDPOINT=" + w.proxy.URL,
		"BAKERY_POLL_INTERVAL=50ms",
		"NO_COLOR=1",
	}
	// Every call is checked against its verb's IAM policy.
	w.env = append(w.env, awsx.StrictEnv+"=1", awsx.RecordEnv+"="+os.Getenv(awsx.RecordEnv))
	w.snapshots0 = map[string]bool{}
	for _, region := range regions {
		for _, s := range w.snapshotIDs(region) {
			w.snapshots0[region+" "+s] = true
		}
	}
	return w
}

// direct is an EC2 client on the seed's account that bypasses the proxy.
func (w *world) direct(region string) *ec2.Client {
	return ec2.NewFromConfig(w.moto.ConfigForAccount(w.t, region, w.account))
}

// targetGroup creates the fleet's target group in the default VPC.
func (w *world) targetGroup() string {
	cfg := w.moto.ConfigForAccount(w.t, "us-east-1", w.account)
	vpcs, err := ec2.NewFromConfig(cfg).DescribeVpcs(w.ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		w.t.Fatalf("moto has no VPC: %v", err)
	}
	out, err := elb.NewFromConfig(cfg).CreateTargetGroup(w.ctx, &elb.CreateTargetGroupInput{Name: aws.String("web"), Protocol: elbtypes.ProtocolEnumHttp,
		Port: aws.Int32(80), VpcId: vpcs.Vpcs[0].VpcId, TargetType: elbtypes.TargetTypeEnumInstance})
	if err != nil {
		w.t.Fatal(err)
	}
	return aws.ToString(out.TargetGroups[0].TargetGroupArn)
}

// run is one run of the bakery binary.
type run struct {
	code           int
	stdout, stderr string
	signal         string // "SIGINT", "SIGKILL" or ""
}

// exec runs bakery with args, interrupting it as the dice say when
// killable.
func (w *world) exec(killable bool, args ...string) run {
	w.t.Helper()
	cmd := exec.Command(w.bin, args...)
	cmd.Dir, cmd.Env = w.dir, w.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	var sig syscall.Signal
	var after time.Duration
	if killable && w.dice.Float64() < killP {
		sig = syscall.SIGINT
		if w.dice.IntN(2) == 0 {
			sig = syscall.SIGKILL
		}
		// From 150ms: a SIGINT before main installs its handler kills
		// any Go program, which says nothing about bakery.
		// Most runs take 1 to 5 seconds: a signal later than 2s would
		// often find the process gone.
		after = 150*time.Millisecond + time.Duration(w.dice.Int64N(int64(2*time.Second)))
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("starting bakery: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r := run{}
	var fire <-chan time.Time
	if sig != 0 {
		fire = time.After(after)
	}
	timeout := time.After(commandTimeout)
wait:
	for {
		select {
		case <-done:
			break wait
		case <-fire:
			fire = nil
			if err := cmd.Process.Signal(sig); err == nil {
				r.signal = map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGKILL: "SIGKILL"}[sig]
			}
		case <-timeout:
			_ = cmd.Process.Kill()
			<-done
			w.t.Errorf("bakery %s hung for %v:\n%s%s", strings.Join(args, " "), commandTimeout, out.String(), errb.String())
			break wait
		}
	}
	r.code, r.stdout, r.stderr = cmd.ProcessState.ExitCode(), out.String(), errb.String()
	w.total.mu.Lock()
	w.total.runs++
	switch r.signal {
	case "SIGINT":
		w.total.sigints++
	case "SIGKILL":
		w.total.sigkills++
	default:
		if r.code != 0 {
			w.total.failedRuns++
		}
	}
	w.total.mu.Unlock()
	note := ""
	if r.signal != "" {
		note = fmt.Sprintf(" (%s after %v)", r.signal, after.Round(time.Millisecond))
	}
	fmt.Fprintf(&w.transcript, "  bakery %s%s: exit %d in %v %s\n", strings.Join(args, " "), note, r.code, time.Since(began).Round(10*time.Millisecond), firstLine(r.stderr))
	w.checkClear(args, r)
	return r
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// checkClear fails the seed when a run failed without a clear message: a
// non-zero exit with a "bakery: ..." line on stderr. A SIGKILL leaves no
// message, and a run that a SIGINT came too late for may succeed.
func (w *world) checkClear(args []string, r run) {
	if r.signal == "SIGKILL" || r.code == 0 {
		return
	}
	clear := false
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(line, "bakery: ") && len(line) > len("bakery: ") {
			clear = true
		}
	}
	if r.code < 0 || !clear {
		w.total.mu.Lock()
		w.total.unclear++
		w.total.mu.Unlock()
		w.t.Errorf("bakery %s (%s) failed without a clear message: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.signal, r.code, r.stdout, r.stderr)
	}
}

// step is one command of the lifecycle.
type step struct {
	args []string
	// done tells, from the account, whether the step's job is done; nil
	// when a zero exit says so and running it again is harmless.
	done func() bool
	// again: running the command again after it finished is harmless
	// (bake, retire, sweep), so an interrupted one is run once more at
	// the end.
	again bool
}

// do runs s until its job is done, interrupting the first runs as the
// dice say, and checks that nothing protected disappeared meanwhile. It
// returns false when the job is not done after maxAttempts runs.
func (w *world) do(s step) bool {
	w.t.Helper()
	// Deleted ids do not come back: checking once after all the runs
	// of the step sees what any of them deleted.
	before := w.protected()
	defer w.checkProtected(s.args, before)
	interrupted := false
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 && s.done != nil && s.done() {
			return true
		}
		r := w.exec(attempt < killedAttempts, s.args...)
		if r.code != 0 {
			interrupted = true
			continue
		}
		if interrupted && s.again {
			w.reRun = append(w.reRun, s.args)
		}
		if s.done != nil && !s.done() {
			w.t.Errorf("bakery %s exited 0 but its job is not done", strings.Join(s.args, " "))
			return false
		}
		return true
	}
	if s.done != nil && s.done() {
		return true
	}
	w.total.mu.Lock()
	w.total.unfinished++
	w.total.mu.Unlock()
	w.t.Errorf("bakery %s did not finish its job in %d runs", strings.Join(s.args, " "), maxAttempts)
	return false
}

// scenario drives the lifecycle: three versions baked, promoted through
// the three stages and launched in prod; a rollback, a revocation,
// retire and sweep.
func (w *world) scenario() {
	for _, v := range versions {
		if !w.do(step{args: []string{"-q", "bake", "-var", "version=" + v, "recipes/web.bake.hcl"}, again: true}) {
			return
		}
		w.baked[v] = true
	}
	for _, v := range versions {
		for _, stage := range stages {
			if !w.do(step{args: []string{"-q", "promote", "web@" + v, "--to", stage}, done: func() bool { return w.inStage(v, stage) }}) {
				return
			}
		}
		if !w.do(step{args: []string{"-q", "launch", "web", "--stage", "prod"}, done: func() bool { return w.serving() == v }}) {
			return
		}
		w.launched = true
	}
	if !w.do(step{args: []string{"-q", "rollback", "web", "--stage", "prod"}, done: func() bool { return w.serving() == versions[1] }}) {
		return
	}
	if !w.do(step{args: []string{"-q", "revoke", "web@" + versions[2], "--reason", "chaos"}, done: func() bool { return w.revoked(versions[2]) }}) {
		return
	}
	if !w.do(step{args: []string{"-q", "retire", "--yes"}, again: true}) {
		return
	}
	w.do(step{args: []string{"-q", "sweep", "--yes", "--older-than", "0s"}, again: true})
}

// finish checks the account after the scenario, then sweeps, runs the
// interrupted commands again and checks it once more, orphans included.
func (w *world) finish() {
	w.t.Helper()
	left := w.orphans()
	w.total.mu.Lock()
	w.total.leftOvers += len(left)
	w.total.mu.Unlock()
	if len(left) > 0 {
		w.t.Logf("seed %d: after the scenario, before the final sweep: %d left over: %v", w.seed, len(left), left)
	}
	w.checkStages()

	before := w.protected()
	if r := w.exec(false, "-q", "sweep", "--yes", "--older-than", "0s"); r.code != 0 {
		w.t.Errorf("the final sweep failed: exit %d\n%s", r.code, r.stderr)
	}
	w.checkProtected([]string{"sweep"}, before)
	for _, args := range w.reRun {
		before := w.protected()
		if r := w.exec(false, args...); r.code != 0 {
			w.t.Errorf("running the interrupted bakery %s again failed: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
		w.checkProtected(args, before)
	}

	orphans := w.orphans()
	w.checkStages()
	calls := w.proxy.Calls()
	w.total.mu.Lock()
	w.total.orphans += len(orphans)
	w.total.calls += len(calls)
	for f, n := range w.proxy.FaultCounts() {
		w.total.faults[f] += n
	}
	w.total.mu.Unlock()
	if len(orphans) > 0 {
		w.t.Errorf("%d resources bakery created and cannot name:\n  %s", len(orphans), strings.Join(orphans, "\n  "))
	}
}

// checkStages checks that prod has exactly one serving group (once a
// launch finished) and that every stage holds at most one version.
func (w *world) checkStages() {
	w.t.Helper()
	inv := w.inventory()
	var bad []string
	serving := 0
	for _, g := range inv.groups {
		if g.serving && g.tags["bakery:stage"] == "prod" {
			serving++
		}
	}
	if w.launched && serving != 1 {
		bad = append(bad, fmt.Sprintf("prod has %d serving groups, want 1", serving))
	}
	for _, stage := range stages {
		in := map[string]bool{}
		for _, im := range inv.images {
			if _, ok := im.tags["bakery:stage:"+stage]; ok {
				in[im.tags["bakery:version"]] = true
			}
		}
		if len(in) > 1 {
			bad = append(bad, fmt.Sprintf("stage %s holds %d versions: %v", stage, len(in), slices.Sorted(maps.Keys(in))))
		}
	}
	if len(bad) > 0 {
		w.total.mu.Lock()
		w.total.stageFaults += len(bad)
		w.total.mu.Unlock()
		w.t.Errorf("stages: %s", strings.Join(bad, "; "))
	}
}

// checkProtected fails the seed when something protected before a
// command (staged, revoked and kept, in use, a rollback target, or their
// snapshots) is gone after it.
func (w *world) checkProtected(args []string, before map[string]string) {
	w.t.Helper()
	inv := w.inventory()
	var gone []string
	for res, why := range before {
		if !inv.exists[res] {
			gone = append(gone, res+" ("+why+")")
		}
	}
	sort.Strings(gone)
	if len(gone) > 0 {
		w.total.mu.Lock()
		w.total.unsafe += len(gone)
		w.total.mu.Unlock()
		w.t.Errorf("bakery %s deleted what was protected:\n  %s", strings.Join(args, " "), strings.Join(gone, "\n  "))
	}
}
