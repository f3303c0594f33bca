package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/bakery-sh/bakery/bake"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// amiProject writes an AMI recipe that provisions over SSH into the test's
// own sshd, with a key the sshd trusts, and returns the recipe path and
// the folder the provisioners write into.
func amiProject(t *testing.T, sshd *sshtest.Server, shell string) (recipe, target string) {
	t.Helper()
	dir := t.TempDir()
	target = t.TempDir()
	writeFiles(t, dir, map[string]string{
		"id_ed25519":      sshd.NewAuthorizedKey(),
		"site/index.html": "<h1>web</h1>\n",
		"web.bake.hcl": fmt.Sprintf(`recipe "web" {
  version = "1.0.0"
  stages  = ["dev", "prod"]
}
machine_image "web" {
  region               = "us-east-1"
  source_ami_ssm       = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
  ssh_host             = %q
  ssh_port             = %d
  ssh_username         = %q
  ssh_private_key_file = "id_ed25519"
  ssh_timeout          = "10s"
  regions              = ["eu-west-1"]
  provision "file" {
    source      = "site/index.html"
    destination = %q
  }
  provision "shell" {
    inline = [%q]
    env    = { GREETING = "hi" }
  }
}
`, sshd.Host, sshd.Port, sshd.User, filepath.Join(target, "index.html"), shell),
	})
	if err := os.Chmod(filepath.Join(dir, "id_ed25519"), 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "web.bake.hcl"), target
}

// awsEnv points bakery at moto with fake credentials.
func awsEnv(t *testing.T, moto *mototest.Server) []string {
	t.Setenv("AWS_ACCESS_KEY_ID", mototest.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", mototest.SecretAccessKey)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	// Every call is checked against its verb's IAM policy.
	return []string{"BAKERY_AWS_ENDPOINT=" + moto.URL, "BAKERY_HOME=" + t.TempDir(), awsx.StrictEnv + "=1"}
}

// leftovers lists what a bake could leak in region and was not there in
// before: instances that are not terminated, key pairs, non-default
// security groups, AMIs and snapshots owned by the account (moto's own
// images come with snapshots of their own, hence the baseline).
func leftovers(t *testing.T, moto *mototest.Server, region string, before map[string]bool) []string {
	var out []string
	for _, r := range resources(t, moto, region) {
		if !before[r] {
			out = append(out, r)
		}
	}
	return out
}

// baseline records what resources exists in each region before a bake.
func baseline(t *testing.T, moto *mototest.Server, regions ...string) map[string]bool {
	seen := map[string]bool{}
	for _, region := range regions {
		for _, r := range resources(t, moto, region) {
			seen[r] = true
		}
	}
	return seen
}

func resources(t *testing.T, moto *mototest.Server, region string) []string {
	ctx := context.Background()
	c := ec2.NewFromConfig(moto.Config(t, region))
	var out []string
	inst, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range inst.Reservations {
		for _, i := range r.Instances {
			if i.State.Name != ec2types.InstanceStateNameTerminated && i.State.Name != ec2types.InstanceStateNameShuttingDown {
				out = append(out, "instance "+aws.ToString(i.InstanceId)+" "+string(i.State.Name))
			}
		}
	}
	kps, err := c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kps.KeyPairs {
		out = append(out, "key pair "+aws.ToString(k.KeyName))
	}
	sgs, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range sgs.SecurityGroups {
		if aws.ToString(g.GroupName) != "default" {
			out = append(out, "security group "+aws.ToString(g.GroupId))
		}
	}
	imgs, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range imgs.Images {
		out = append(out, "AMI "+aws.ToString(i.ImageId))
	}
	snaps, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps.Snapshots {
		out = append(out, "snapshot "+aws.ToString(s.SnapshotId))
	}
	return out
}

func TestBakeAMIProvisionsOverSSHThenUpToDate(t *testing.T) {
	moto := mototest.Start(t)
	sshd := sshtest.Start(t)
	env := awsEnv(t, moto)
	recipe, target := amiProject(t, sshd, "echo provisioned $GREETING")
	before := baseline(t, moto, "us-east-1", "eu-west-1")

	r := mustRun(t, env, "--output", "json", "bake", recipe)
	var res bake.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("decoding %q: %v", r.stdout, err)
	}
	if res.Cached || len(res.Artifacts) != 2 {
		t.Fatalf("result = %+v, want two fresh AMI artifacts", res)
	}
	regions := map[string]bake.Artifact{}
	for _, a := range res.Artifacts {
		if a.Kind != "ami" || !strings.HasPrefix(a.ID, "ami-") || len(a.Snapshots) == 0 || a.BakeKey != res.BakeKey {
			t.Errorf("artifact = %+v", a)
		}
		regions[a.Region] = a
	}
	if _, ok := regions["us-east-1"]; !ok {
		t.Errorf("no AMI in the build region: %+v", res.Artifacts)
	}
	if _, ok := regions["eu-west-1"]; !ok {
		t.Errorf("no AMI copied to eu-west-1: %+v", res.Artifacts)
	}
	// The provisioners really ran over SSH, and their output was streamed.
	if got, err := os.ReadFile(filepath.Join(target, "index.html")); err != nil || string(got) != "<h1>web</h1>\n" {
		t.Errorf("file provisioner: %q, %v", got, err)
	}
	if !strings.Contains(r.stderr, "provisioned hi") {
		t.Errorf("shell output not streamed:\n%s", r.stderr)
	}
	// Each AMI carries the catalog tags, as read by the AWS SDK.
	for region, a := range regions {
		c := ec2.NewFromConfig(moto.Config(t, region))
		out, err := c.DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{a.ID}})
		if err != nil || len(out.Images) != 1 {
			t.Fatalf("describing %s in %s: %v", a.ID, region, err)
		}
		tags := map[string]string{}
		for _, tg := range out.Images[0].Tags {
			tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		if tags[catalog.TagBakeKey] != res.BakeKey || tags[catalog.TagRecipe] != "web" || tags[catalog.TagVersion] != "1.0.0" {
			t.Errorf("%s tags = %v", region, tags)
		}
		// Who baked it: the AWS caller identity.
		id, err := sts.NewFromConfig(moto.Config(t, region)).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
		if err != nil || tags[catalog.TagCreatedBy] != aws.ToString(id.Arn) {
			t.Errorf("%s: %s = %q, want the caller %v (%v)", region, catalog.TagCreatedBy, tags[catalog.TagCreatedBy], id, err)
		}
	}
	// Nothing temporary is left: builder terminated, key pair and group gone.
	for _, region := range []string{"us-east-1", "eu-west-1"} {
		for _, l := range leftovers(t, moto, region, before) {
			if !strings.HasPrefix(l, "AMI ") && !strings.HasPrefix(l, "snapshot ") {
				t.Errorf("%s: left behind: %s", region, l)
			}
		}
	}

	again := mustRun(t, env, "bake", recipe)
	if !strings.Contains(again.stdout, "up to date") || strings.Contains(again.stderr, "provisioned") {
		t.Fatalf("second bake: stdout %q stderr %q", again.stdout, again.stderr)
	}
}

func TestSIGINTDuringAMIBakeLeaksNothing(t *testing.T) {
	bin := bakeryBinary(t)
	moto := mototest.Start(t)
	sshd := sshtest.Start(t)
	env := awsEnv(t, moto)
	recipe, _ := amiProject(t, sshd, "echo started; sleep 30")
	before := baseline(t, moto, "us-east-1", "eu-west-1")

	cmd := exec.Command(bin, "bake", recipe)
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log []string
	signalled := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log = append(log, sc.Text())
		if !signalled && strings.Contains(sc.Text(), "started") {
			cmd.Process.Signal(syscall.SIGINT)
			signalled = true
		}
	}
	err := cmd.Wait()
	if !signalled {
		t.Fatalf("the provisioner never started:\n%s", strings.Join(log, "\n"))
	}
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("exit %d (%v), want 1:\n%s", cmd.ProcessState.ExitCode(), err, strings.Join(log, "\n"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, region := range []string{"us-east-1", "eu-west-1"} {
		for {
			l := leftovers(t, moto, region, before)
			if len(l) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the interrupted bake left %v\n%s", region, l, strings.Join(log, "\n"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func TestOnErrorAbortKeepsResourcesAndSweepRemovesThem(t *testing.T) {
	moto := mototest.Start(t)
	sshd := sshtest.Start(t)
	env := awsEnv(t, moto)
	recipe, _ := amiProject(t, sshd, "echo failing; exit 7")
	before := baseline(t, moto, "us-east-1", "eu-west-1")

	r := run(t, env, "bake", "--on-error", "abort", recipe)
	if r.code != 1 || !strings.Contains(r.stderr, "exit status 7") || !strings.Contains(r.stderr, "instance") {
		t.Fatalf("failing bake with --on-error abort: exit %d\n%s", r.code, r.stderr)
	}
	kept := leftovers(t, moto, "us-east-1", before)
	if len(kept) == 0 {
		t.Fatal("--on-error abort kept nothing")
	}

	// A young orphan is left alone by default (it may be a running bake).
	plan := mustRun(t, env, "sweep")
	if !strings.Contains(plan.stdout, "no orphaned bake or launch resources older than 1h0m0s") {
		t.Errorf("sweep of young orphans = %q", plan.stdout)
	}
	plan = mustRun(t, env, "sweep", "--older-than", "0s")
	if !strings.Contains(plan.stdout, "would remove") || !strings.Contains(plan.stdout, "run again with --yes") {
		t.Errorf("sweep plan = %q", plan.stdout)
	}
	if got := leftovers(t, moto, "us-east-1", before); len(got) != len(kept) {
		t.Fatalf("a sweep without --yes changed something: %v → %v", kept, got)
	}
	done := mustRun(t, env, "sweep", "--older-than", "0s", "--yes")
	if !strings.Contains(done.stdout, "removed") {
		t.Errorf("sweep --yes = %q", done.stdout)
	}
	if got := leftovers(t, moto, "us-east-1", before); len(got) != 0 {
		t.Fatalf("after sweep --yes left: %v", got)
	}
}

func TestUnreachableSSHHostTimesOutAndLeavesNothing(t *testing.T) {
	moto := mototest.Start(t)
	sshd := sshtest.Start(t)
	env := awsEnv(t, moto)
	recipe, _ := amiProject(t, sshd, "true")
	// Point SSH at a port nothing listens on, with a short timeout.
	src, _ := os.ReadFile(recipe)
	closed := strings.Replace(string(src), fmt.Sprintf("ssh_port             = %d", sshd.Port), "ssh_port             = 1", 1)
	closed = strings.Replace(closed, `ssh_timeout          = "10s"`, `ssh_timeout          = "2s"`, 1)
	if err := os.WriteFile(recipe, []byte(closed), 0o644); err != nil {
		t.Fatal(err)
	}
	before := baseline(t, moto, "us-east-1", "eu-west-1")
	r := run(t, env, "bake", recipe)
	if r.code != 1 || !strings.Contains(r.stderr, "timed out after 2s") || !strings.Contains(r.stderr, "web.bake.hcl:") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for _, region := range []string{"us-east-1", "eu-west-1"} {
		if l := leftovers(t, moto, region, before); len(l) > 0 {
			t.Errorf("%s: left %v", region, l)
		}
	}
}
