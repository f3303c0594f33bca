package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/launch"
)

// launchRecipe bakes without provisioners (no SSH) and runs prod as a
// fleet of one instance behind target group tg.
func launchRecipe(tg string) string {
	return `variable "version" {
  type    = string
  default = "1.0.0"
}

recipe "web" {
  version = var.version
  stages  = ["dev", "prod"]
}

machine_image "web" {
  region         = "us-east-1"
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

fleet "prod" {
  instance_type    = "t3.small"
  min_size         = 1
  max_size         = 2
  desired_capacity = 1
  target_groups    = ["` + tg + `"]
  healthy_timeout  = "1m"
  tags             = { team = "web" }
}
`
}

// accountState is what launch may change: groups (NAME:STATE:MIN/DESIRED/MAX),
// launch templates and running instances.
func accountState(t *testing.T, moto *mototest.Server) string {
	t.Helper()
	ctx := context.Background()
	cfg := moto.Config(t, "us-east-1")
	var groups, templates, instances []string
	gs, err := autoscaling.NewFromConfig(cfg).DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs.AutoScalingGroups {
		groups = append(groups, fmt.Sprintf("%s:%d/%d/%d:%d suspended:%v", aws.ToString(g.AutoScalingGroupName), aws.ToInt32(g.MinSize),
			aws.ToInt32(g.DesiredCapacity), aws.ToInt32(g.MaxSize), len(g.TargetGroupARNs), len(g.SuspendedProcesses)))
	}
	lts, err := ec2.NewFromConfig(cfg).DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, lt := range lts.LaunchTemplates {
		templates = append(templates, aws.ToString(lt.LaunchTemplateName))
	}
	inst, err := ec2.NewFromConfig(cfg).DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range inst.Reservations {
		for _, i := range r.Instances {
			if i.State.Name == ec2types.InstanceStateNameRunning {
				instances = append(instances, aws.ToString(i.InstanceId))
			}
		}
	}
	sort.Strings(groups)
	sort.Strings(templates)
	sort.Strings(instances)
	return fmt.Sprintf("groups %v\ntemplates %v\ninstances %v", groups, templates, instances)
}

// webTargetGroup creates target group "web" in moto's default VPC of
// us-east-1 and returns its ARN.
func webTargetGroup(t *testing.T, moto *mototest.Server) string {
	t.Helper()
	ctx := context.Background()
	cfg := moto.Config(t, "us-east-1")
	vpcs, err := ec2.NewFromConfig(cfg).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		t.Fatalf("moto has no VPC: %v", err)
	}
	out, err := elb.NewFromConfig(cfg).CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{Name: aws.String("web"), Protocol: elbtypes.ProtocolEnumHttp,
		Port: aws.Int32(80), VpcId: vpcs.Vpcs[0].VpcId, TargetType: elbtypes.TargetTypeEnumInstance})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.TargetGroups[0].TargetGroupArn)
}

func TestLaunchAndFleetsCommands(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	tg := webTargetGroup(t, moto)
	project := t.TempDir()
	writeFiles(t, project, map[string]string{"recipes/web.bake.hcl": launchRecipe(tg)})
	recipe := filepath.Join(project, "recipes", "web.bake.hcl")
	t.Chdir(project)
	mustRun(t, env, "validate", recipe)
	baked := map[string]string{}
	release := func(version string) {
		t.Helper()
		res := bakeJSON(t, env, "-var", "version="+version, recipe)
		baked[version] = res.Artifacts[0].ID
		mustRun(t, env, "promote", "web@"+version, "--to", "dev")
		mustRun(t, env, "promote", "web@"+version, "--to", "prod")
	}

	// Refused before anything exists: a clear message, nothing changes.
	empty := accountState(t, moto)
	refused := func(code int, want string, args ...string) {
		t.Helper()
		before := accountState(t, moto)
		r := run(t, env, args...)
		if r.code != code || !strings.Contains(r.stderr, want) {
			t.Errorf("bakery %v: exit %d (want %d), stderr lacks %q:\n%s%s", args, r.code, code, want, r.stdout, r.stderr)
		}
		if after := accountState(t, moto); after != before {
			t.Errorf("bakery %v was refused but changed the account:\nbefore %s\nafter  %s", args, before, after)
		}
	}
	refused(exitUsage, "launch needs the stage", "launch", "web")
	refused(exitUsage, `unknown stage "qa"; the recipe's stages are dev → prod`, "launch", "web", "--stage", "qa")
	refused(exitFailure, `recipe web has no fleet "dev" block`, "launch", "web", "--stage", "dev")
	refused(exitFailure, "no version of web is in stage prod: promote one first", "launch", "web", "--stage", "prod")

	release("1.0.0")
	refused(exitFailure, "web has no version 9.9.9 (known: 1.0.0)", "launch", "web", "--stage", "prod", "--version", "9.9.9")
	refused(exitUsage, "--force needs --version and --reason", "launch", "web", "--stage", "prod", "--version", "1.0.0", "--force")
	refused(exitUsage, "--on-error must be cleanup or abort", "launch", "web", "--stage", "prod", "--on-error", "keep")

	// --dry-run prints the plan and changes nothing.
	before := accountState(t, moto)
	r := mustRun(t, env, "launch", "web", "--stage", "prod", "--dry-run")
	if want := "would launch web@1.0.0 (" + baked["1.0.0"] + ") to prod as web-prod-v001 in us-east-1, 1/1/2 (min/desired/max)\n"; r.stdout != want {
		t.Errorf("dry run printed %q, want %q", r.stdout, want)
	}
	if after := accountState(t, moto); after != before {
		t.Errorf("--dry-run changed the account:\nbefore %s\nafter  %s", before, after)
	}

	r = mustRun(t, env, "-q", "launch", "web", "--stage", "prod")
	if want := "launched web@1.0.0 (" + baked["1.0.0"] + ") to prod as web-prod-v001 in us-east-1, 1/1/2 (min/desired/max)\n"; r.stdout != want {
		t.Errorf("launch printed %q, want %q", r.stdout, want)
	}

	// The second launch, as a pipeline reads it.
	release("1.1.0")
	r = mustRun(t, env, "-q", "-o", "json", "launch", "web", "--stage", "prod", "--capacity", "2")
	var res launch.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("decoding launch JSON %q: %v", r.stdout, err)
	}
	if res.Recipe != "web" || res.Stage != "prod" || res.Version != "1.1.0" || res.Group != "web-prod-v002" || res.Previous != "web-prod-v001" ||
		res.State != "serving" || len(res.Instances) != 2 || res.Desired != 2 || !slices.Equal(res.Disabled, []string{"web-prod-v001"}) {
		t.Errorf("launch JSON: %+v", res)
	}

	// status: which version each stage's fleet runs.
	r = mustRun(t, env, "-o", "json", "status", "web")
	var st statusDoc
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("decoding status JSON %q: %v", r.stdout, err)
	}
	if runs := st.Fleets["prod"]; len(runs) != 1 || runs[0].Group != "web-prod-v002" || runs[0].Version != "1.1.0" || runs[0].Image != baked["1.1.0"] {
		t.Errorf("status fleets = %+v, want prod served by web-prod-v002 running 1.1.0", st.Fleets)
	}
	if _, ok := st.Fleets["dev"]; ok {
		t.Errorf("status reports a fleet for dev, which has no fleet block: %+v", st.Fleets)
	}
	r = mustRun(t, env, "status", "web")
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "VERSION" && !slices.Contains(f, "FLEET"):
			t.Errorf("status header lacks FLEET: %q", line)
		case len(f) > 0 && f[0] == "1.1.0" && !strings.Contains(line, "prod web-prod-v002"):
			t.Errorf("status row of 1.1.0 does not say prod's fleet runs it: %q", line)
		case len(f) > 0 && f[0] == "1.0.0" && strings.Contains(line, "web-prod-v"):
			t.Errorf("status row of 1.0.0 names a fleet, but no group serving runs it: %q", line)
		}
	}

	// fleets: the table and the JSON.
	r = mustRun(t, env, "fleets", "web")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "RECIPE") {
		t.Fatalf("fleets printed:\n%s", r.stdout)
	}
	for i, tc := range []struct {
		fields   []string
		rollback bool
	}{
		{[]string{"web", "prod", "web-prod-v001", "1.0.0", baked["1.0.0"], "1", "disabled", "0/0/2", "0/0"}, true},
		{[]string{"web", "prod", "web-prod-v002", "1.1.0", baked["1.1.0"], "1", "serving", "1/2/2", "2/2,", "tg", "web", "2/2"}, false},
	} {
		// The fields, then the age, then "yes" for the rollback target;
		// a disabled group is detached, so it has no target group count.
		got := strings.Fields(lines[i+1])
		if len(got) != len(tc.fields)+1+boolToInt(tc.rollback) || !slices.Equal(got[:len(tc.fields)], tc.fields) ||
			tc.rollback != (got[len(got)-1] == "yes") {
			t.Errorf("fleets row %d = %q, want %v then the age (rollback target: %v)", i+1, lines[i+1], tc.fields, tc.rollback)
		}
	}
	r = mustRun(t, env, "-o", "json", "fleets", "--stage", "prod")
	var doc fleetsDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("decoding fleets JSON %q: %v", r.stdout, err)
	}
	if len(doc.Groups) != 2 || doc.Groups[1].TargetHealthy[tg] != 2 || !doc.Groups[0].RollbackTarget || doc.Groups[1].RollbackTarget || len(doc.Anomalies) != 0 {
		t.Errorf("fleets JSON: %+v", doc)
	}

	// The launches are in the history.
	hist := decodeHistory(t, mustRun(t, env, "-o", "json", "history", "web").stdout)
	for v, g := range map[string]string{"1.0.0": "web-prod-v001", "1.1.0": "web-prod-v002"} {
		evs := findEvents(hist.Events, catalog.ActionLaunch, v, "prod")
		if len(evs) != 1 || !strings.Contains(evs[0].Reason, g) {
			t.Errorf("history has launch events %+v for %s, want one naming %s", evs, v, g)
		}
	}

	// Rollback: v001 serves again, with v002's capacity and the fleet's
	// min; v002 is the next rollback target.
	if r := mustRun(t, env, "rollback", "web", "--stage", "prod", "--dry-run"); r.stdout != "would roll back web in prod to web-prod-v001 (web@1.0.0, "+baked["1.0.0"]+"), 1/2/2 (min/desired/max)\nwould disable web-prod-v002\n" {
		t.Errorf("rollback --dry-run printed %q", r.stdout)
	}
	if r := mustRun(t, env, "-q", "rollback", "web", "--stage", "prod"); r.stdout != "rolled back web in prod to web-prod-v001 (web@1.0.0, "+baked["1.0.0"]+"), 1/2/2 (min/desired/max)\ndisabled web-prod-v002\n" {
		t.Errorf("rollback printed %q", r.stdout)
	}
	hist = decodeHistory(t, mustRun(t, env, "-o", "json", "history", "web").stdout)
	if evs := findEvents(hist.Events, catalog.ActionRollback, "1.0.0", "prod"); len(evs) != 1 || !strings.Contains(evs[0].Reason, "web-prod-v001") {
		t.Errorf("history has rollback events %+v, want one naming web-prod-v001", evs)
	}

	// fleets flags a group whose version was revoked since.
	mustRun(t, env, "revoke", "web@1.1.0", "--reason", "CVE-2026-3")
	r = mustRun(t, env, "-o", "json", "fleets", "web")
	doc = fleetsDoc{}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("decoding fleets JSON %q: %v", r.stdout, err)
	}
	want := "web-prod-v002 runs web@1.1.0, which is revoked: launch another version"
	if !slices.Equal(doc.Anomalies, []string{want}) || !strings.Contains(r.stderr, "bakery: warning: "+want) {
		t.Errorf("fleets after the revocation: anomalies %q, stderr %q", doc.Anomalies, r.stderr)
	}

	// Nothing else is left: the two groups, their templates, v001's instances.
	got := accountState(t, moto)
	for _, want := range []string{"web-prod-v002:0/0/2:0 suspended:3", "web-prod-v001:1/2/2:1 suspended:0", "templates [web-prod-v001 web-prod-v002]"} {
		if !strings.Contains(got, want) {
			t.Errorf("the account lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "web-prod-v") != 4 || strings.Count(strings.SplitN(got, "instances", 2)[1], "i-") != 2 {
		t.Errorf("unexpected leftovers (want 2 groups, 2 templates, 2 instances):\n%s\n(before any launch: %s)", got, empty)
	}
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestLaunchTakesTheLedgersStageLock: with a ledger, launch holds the
// lock promotions of the stage take, is refused while another runner
// holds it, and records its event in the ledger.
func TestLaunchTakesTheLedgersStageLock(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	ctx := context.Background()
	bucket, l := ledgerBucket(t, moto)
	env = append(env, "BAKERY_LEDGER=s3://"+bucket+"/team")
	project := t.TempDir()
	writeFiles(t, project, map[string]string{"recipes/web.bake.hcl": launchRecipe(webTargetGroup(t, moto))})
	recipe := filepath.Join(project, "recipes", "web.bake.hcl")
	t.Chdir(project)
	bakeJSON(t, env, recipe)
	mustRun(t, env, "promote", "web@1.0.0", "--to", "dev")
	mustRun(t, env, "promote", "web@1.0.0", "--to", "prod")

	lease, err := l.Acquire(ctx, "web", "prod", "ci on runner-9", "promote web@2.0.0 to prod")
	if err != nil {
		t.Fatal(err)
	}
	before := accountState(t, moto)
	r := run(t, env, "launch", "web", "--stage", "prod")
	if r.code != exitFailure || !strings.Contains(r.stderr, "locked by ci on runner-9") {
		t.Errorf("launch while the stage is locked: exit %d\n%s", r.code, r.stderr)
	}
	if after := accountState(t, moto); after != before {
		t.Errorf("a launch refused by the lock changed the account:\nbefore %s\nafter  %s", before, after)
	}
	if err := l.Release(ctx, lease); err != nil {
		t.Fatal(err)
	}
	mustRun(t, env, "-q", "launch", "web", "--stage", "prod")
	evs, err := l.Events(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got := findEvents(evs, catalog.ActionLaunch, "1.0.0", "prod"); len(got) != 1 || !strings.Contains(got[0].Reason, "web-prod-v001") {
		t.Errorf("ledger launch events = %+v, want one naming web-prod-v001", got)
	}
	// The lock was given back: a promotion of the stage takes it again.
	mustRun(t, env, "promote", "web@1.0.0", "--to", "prod")
}
