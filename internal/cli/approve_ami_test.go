package cli

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// approvalAMIRecipe gates staging with any other person's approval and
// prod with a release manager's, valid for two days.
const approvalAMIRecipe = `variable "version" {
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

stage "staging" {
  gate {
    require_approval = true
  }
}

stage "prod" {
  gate {
    require_approval   = true
    approvers          = ["arn:aws:iam::123456789012:role/release-managers"]
    approval_valid_for = "2d"
  }
}
`

// assumeRole returns the environment of a session of role in moto's
// account: moto's AssumeRole needs no role to exist, and its
// GetCallerIdentity then answers with the assumed-role session ARN, as
// AWS does.
func assumeRole(t *testing.T, moto *mototest.Server, role, session string) (arn string, env []string) {
	t.Helper()
	out, err := sts.NewFromConfig(moto.Config(t, "us-east-1")).AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::123456789012:role/" + role), RoleSessionName: aws.String(session)})
	if err != nil {
		t.Fatalf("sts AssumeRole on moto: %v", err)
	}
	c := out.Credentials
	return aws.ToString(out.AssumedRoleUser.Arn), []string{"AWS_ACCESS_KEY_ID=" + aws.ToString(c.AccessKeyId),
		"AWS_SECRET_ACCESS_KEY=" + aws.ToString(c.SecretAccessKey), "AWS_SESSION_TOKEN=" + aws.ToString(c.SessionToken)}
}

// TestApprovalsOfAMIs: approvals carry the verified AWS caller ARN; an
// approval by the promoter (or another session of the promoter's role),
// by someone outside approvers, for another version or stage, or
// expired, is refused with one message and no AMI changes; a release
// manager's approval lets the promotion through, and the tags and the
// history hold both events.
func TestApprovalsOfAMIs(t *testing.T) {
	bin := bakeryBinary(t)
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	ci := callerARN(t, moto)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.bake.hcl": approvalAMIRecipe})
	recipe := filepath.Join(dir, "base.bake.hcl")
	carol, asCarol := assumeRole(t, moto, "release-managers", "carol")
	_, asDave := assumeRole(t, moto, "release-managers", "dave")
	eve, asEve := assumeRole(t, moto, "developers", "eve")
	as := func(creds []string, args ...string) result {
		t.Helper()
		return runBinary(t, bin, freshProcessEnv(t, moto, creds...), append(args, "-f", recipe)...)
	}
	refused := func(r func() result, want string) {
		t.Helper()
		before := readAMIs(t, moto)
		res := r()
		if res.code != exitFailure || !strings.Contains(res.stderr, want) || strings.Count(res.stderr, "bakery: ") != 1 {
			t.Errorf("exit %d, stderr %q; want exit 1 and one message with %q", res.code, res.stderr, want)
		}
		if after := readAMIs(t, moto); !reflect.DeepEqual(before, after) {
			t.Errorf("a refusal (%q) changed the AMIs:\nbefore %+v\nafter  %+v", want, before, after)
		}
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		bakeJSON(t, env, "-var", "version="+v, recipe)
	}
	mustRun(t, env, "promote", "base@1.0.0", "--to", "dev", "-f", recipe)

	// Who may approve.
	refused(func() result { return as(asEve, "approve", "base@1.0.0", "--for", "prod") },
		"approving base@1.0.0 for prod: you are "+eve+", which matches none of stage prod's approvers (arn:aws:iam::123456789012:role/release-managers): ask one of them to approve")
	refused(func() result { return as(asCarol, "approve", "base@1.0.0", "--for", "dev") }, "stage dev has no require_approval gate")

	// No approval, then approvals for another stage and another version.
	refused(func() result { return run(t, env, "promote", "base@1.0.0", "--to", "staging", "-f", recipe) },
		"staging requires approval (gate require_approval) and base@1.0.0 has no approval for staging: run `bakery approve base@1.0.0 --for staging` as someone other than you ("+ci+")")
	if r := as(asCarol, "approve", "base@1.0.0", "--for", "prod", "--reason", "release 1.0"); r.code != 0 || !strings.Contains(r.stdout, "approved base@1.0.0 for prod as "+carol+", until ") {
		t.Fatalf("carol approving 1.0.0 for prod (not in staging yet): exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := as(asCarol, "approve", "base@1.1.0", "--for", "staging"); r.code != 0 {
		t.Fatalf("carol approving 1.1.0 for staging: exit %d\n%s", r.code, r.stderr)
	}
	refused(func() result { return run(t, env, "promote", "base@1.0.0", "--to", "staging", "-f", recipe) },
		"base@1.0.0 has no approval for staging (only for prod): run `bakery approve base@1.0.0 --for staging`")

	// Eve approves staging (no approvers there), but may not promote it herself.
	if r := as(asEve, "approve", "base@1.0.0", "--for", "staging"); r.code != 0 {
		t.Fatalf("eve approving 1.0.0 for staging: exit %d\n%s", r.code, r.stderr)
	}
	refused(func() result { return as(asEve, "promote", "base@1.0.0", "--to", "staging") },
		"the approval by "+eve+" at ")
	refused(func() result { return as(asEve, "promote", "base@1.0.0", "--to", "staging") }, "is by the promoter (four eyes: someone else must approve)")
	mustRun(t, env, "promote", "base@1.0.0", "--to", "staging", "-f", recipe)

	// prod: not by another session of carol's role, not after two days.
	refused(func() result { return as(asDave, "promote", "base@1.0.0", "--to", "prod") }, "by "+carol+" at ")
	refused(func() result { return as(asDave, "promote", "base@1.0.0", "--to", "prod") }, "is by the promoter (four eyes")
	later := time.Now().Add(49 * time.Hour)
	refused(func() result { return runAt(t, later, env, "promote", "base@1.0.0", "--to", "prod", "-f", recipe) },
		"(approvals count for 48h0m0s, gate approval_valid_for); run `bakery approve base@1.0.0 --for prod` as an AWS identity matching the stage's approvers (arn:aws:iam::123456789012:role/release-managers), not yours ("+ci+")")
	if got := inStage(statusOf(t, env, recipe), "prod"); len(got) != 0 {
		t.Fatalf("prod holds %v after refusals", got)
	}

	// Carol's approval, by ci: through.
	r := mustRun(t, env, "promote", "base@1.0.0", "--to", "prod", "-f", recipe)
	if want := "promoted base@1.0.0 to prod (1 artifact(s)) as " + ci + ", approved by " + carol + "\n"; r.stdout != want {
		t.Errorf("promote printed %q, want %q", r.stdout, want)
	}
	requireInStage(t, readAMIs(t, moto), "1.0.0", "prod", ci, "us-east-1")
	tagged := false
	for _, a := range amisOf(readAMIs(t, moto), "1.0.0") {
		for k, v := range a.Tags {
			tagged = tagged || strings.HasPrefix(k, "bakery:event:") && v == "v1;approve;prod;"+carol+";;;release 1.0"
		}
	}
	if !tagged {
		t.Errorf("no AMI of 1.0.0 has carol's approval as an event tag")
	}
	h := decodeHistory(t, mustRun(t, env, "--output", "json", "history", "-f", recipe, "base").stdout)
	approvals := findEvents(h.Events, catalog.ActionApprove, "1.0.0", "prod")
	promoted := findEvents(h.Events, catalog.ActionPromote, "1.0.0", "prod")
	if len(approvals) != 1 || approvals[0].Actor != carol || approvals[0].Unverified || approvals[0].Reason != "release 1.0" || approvals[0].Kind != catalog.KindAMI {
		t.Errorf("approve events of 1.0.0 for prod = %+v, want carol's, verified", approvals)
	}
	if len(promoted) != 1 || promoted[0].Actor != ci || promoted[0].ApprovedBy != carol {
		t.Errorf("promote events of 1.0.0 into prod = %+v, want by %s, approved by %s", promoted, ci, carol)
	}

	// --force --reason overrides the gates, and status says so.
	mustRun(t, env, "promote", "base@1.1.0", "--to", "prod", "--force", "--reason", "CVE-2026-7 hotfix", "-f", recipe)
	v := versionStatus(t, statusOf(t, env, recipe), "1.1.0")
	if f, ok := v.Forced["prod"]; !ok || f.Reason != "CVE-2026-7 hotfix" || f.By != ci {
		t.Errorf("status of 1.1.0: forced = %+v, want prod forced by %s with the reason", v.Forced, ci)
	}
	if text := mustRun(t, env, "status", "-f", recipe).stdout; !strings.Contains(text, "FORCED into prod: CVE-2026-7 hotfix") {
		t.Errorf("status does not mark the forced promotion:\n%s", text)
	}
}

// TestApprovalsWithLedger: with a ledger the approval of an AMI is in it
// (history outlives the tags), and even a recipe of containers only then
// approves as the verified AWS caller, whatever $BAKERY_ACTOR says.
func TestApprovalsWithLedger(t *testing.T) {
	bin := bakeryBinary(t)
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	ci := callerARN(t, moto)
	bucket, l := ledgerBucket(t, moto)
	withLedger := append(env[:len(env):len(env)], "BAKERY_LEDGER=s3://"+bucket+"/team", "BAKERY_ACTOR=ann")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.bake.hcl": ledgerAMIRecipe("stage \"prod\" {\n  gate {\n    require_approval = true\n  }\n}\n")})
	recipe := filepath.Join(dir, "base.bake.hcl")
	bakeJSON(t, env, recipe)
	carol, asCarol := assumeRole(t, moto, "release-managers", "carol")
	if r := runBinary(t, bin, freshProcessEnv(t, moto, append(asCarol, "BAKERY_LEDGER=s3://"+bucket+"/team")...), "approve", "-f", recipe, "base@1.0.0", "--for", "prod"); r.code != 0 {
		t.Fatalf("approving with a ledger: exit %d\n%s", r.code, r.stderr)
	}
	evs, err := l.Events(context.Background(), "base")
	if err != nil {
		t.Fatal(err)
	}
	if a := findEvents(evs, catalog.ActionApprove, "1.0.0", "prod"); len(a) != 1 || a[0].Actor != carol || a[0].Unverified || a[0].Artifact != "base" {
		t.Errorf("approve events in the ledger = %+v, want carol's", a)
	}

	hello := approvalRecipe(t, "")
	withLedger = append(withLedger, "BAKERY_HOME="+t.TempDir())
	bakeJSON(t, withLedger, hello)
	r := mustRun(t, withLedger, "--output", "json", "approve", "hello@1.0.0", "--for", "prod", "-f", hello)
	if !strings.Contains(r.stdout, `"approver":"`+ci+`"`) || strings.Contains(r.stdout, "unverified") {
		t.Errorf("a container approval with AWS in use printed %s, want %s, verified", r.stdout, ci)
	}
}
