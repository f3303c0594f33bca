package cli

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// approvalRecipe is the hello recipe whose prod requires an approval
// valid for an hour; gate lines are added to prod's gate block.
func approvalRecipe(t *testing.T, repo string, gate ...string) string {
	return stagedRecipe(t, repo, `
stage "prod" {
  gate {
    require_approval   = true
    approval_valid_for = "1h"
`+strings.Join(append(gate, ""), "\n")+`  }
}
`)
}

// TestApprovalsOfContainerImages: without AWS the approver is
// $BAKERY_ACTOR, unverified; an approval by the promoter, for another
// version or stage, or expired, is refused with one message and changes
// nothing; another person's approval lets the promotion through, and
// history shows both events.
func TestApprovalsOfContainerImages(t *testing.T) {
	recipe := approvalRecipe(t, "")
	home := t.TempDir()
	as := func(who string) []string { return []string{"BAKERY_HOME=" + home, "BAKERY_ACTOR=" + who} }
	t0 := time.Now().UTC().Truncate(time.Second)
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		bakeJSON(t, as("ci"), "-var", "version="+v, recipe)
	}
	for _, stage := range []string{"dev", "staging"} {
		mustRunAt(t, t0, as("ann"), "promote", "hello@1.0.0", "--to", stage, "-f", recipe)
	}
	mustRunAt(t, t0, as("ann"), "revoke", "hello@1.2.0", "--reason", "CVE-2026-9", "-f", recipe)

	refused := func(at time.Time, who string, code int, want string, args ...string) {
		t.Helper()
		before := snapshot(t, home)
		r := runAt(t, at, as(who), append(args, "-f", recipe)...)
		if r.code != code || !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "bakery: ") != 1 {
			t.Errorf("bakery %v as %s: exit %d, stderr %q; want exit %d and one message with %q", args, who, r.code, r.stderr, code, want)
		}
		sameTree(t, before, snapshot(t, home))
	}
	refused(t0, "bob", 1, "stage staging has no require_approval gate, so promoting into it needs no approval", "approve", "hello@1.0.0", "--for", "staging")
	refused(t0, "bob", 1, `unknown stage "qa"; the recipe's stages are dev → staging → prod`, "approve", "hello@1.0.0", "--for", "qa")
	refused(t0, "bob", 1, "container hello is revoked (CVE-2026-9); a revoked image cannot be approved", "approve", "hello@1.2.0", "--for", "prod")
	refused(t0, "bob", exitUsage, "--for STAGE", "approve", "hello@1.0.0")
	refused(t0, "ann", exitUsage, "--approved-by is gone (a name on the command line proves nothing): the approver runs `bakery approve hello@1.0.0 --for prod`",
		"promote", "hello@1.0.0", "--to", "prod", "--approved-by", "bob")

	// An approval of another version does not count.
	mustRunAt(t, t0, as("bob"), "approve", "hello@1.1.0", "--for", "prod", "-f", recipe)
	refused(t0, "ann", 1, "prod requires approval (gate require_approval) and hello@1.0.0 has no approval for prod: run `bakery approve hello@1.0.0 --for prod` as someone other than you (ann, unverified)",
		"promote", "hello@1.0.0", "--to", "prod")
	// Nor one by the promoter.
	mustRunAt(t, t0, as("ann"), "approve", "hello@1.0.0", "--for", "prod", "-f", recipe)
	refused(t0.Add(time.Minute), "ann", 1, "is by the promoter (four eyes: someone else must approve)", "promote", "hello@1.0.0", "--to", "prod")
	// Nor an expired one.
	r := mustRunAt(t, t0.Add(2*time.Minute), as("bob"), "approve", "hello@1.0.0", "--for", "prod", "--reason", "reviewed the changelog", "-f", recipe)
	if want := "approved hello@1.0.0 for prod as bob (unverified), until " + t0.Add(62*time.Minute).Format("2006-01-02 15:04 UTC"); !strings.HasPrefix(r.stdout, want) {
		t.Errorf("approve printed %q, want it to start with %q", r.stdout, want)
	}
	refused(t0.Add(63*time.Minute), "ann", 1, "the approval by bob (unverified) at "+t0.Add(2*time.Minute).Format(time.RFC3339)+" expired at "+t0.Add(62*time.Minute).Format(time.RFC3339),
		"promote", "hello@1.0.0", "--to", "prod")
	if st := statusOf(t, as("ann"), recipe); len(inStage(st, "prod")) != 0 {
		t.Fatalf("prod holds %v after refusals", inStage(st, "prod"))
	}

	// Within the hour, bob's approval lets ann promote.
	r = mustRunAt(t, t0.Add(30*time.Minute), as("ann"), "promote", "hello@1.0.0", "--to", "prod", "-f", recipe)
	if want := "promoted hello@1.0.0 to prod (1 artifact(s)) as ann, approved by bob\n"; r.stdout != want {
		t.Errorf("promote printed %q, want %q", r.stdout, want)
	}
	h := decodeHistory(t, mustRun(t, as("ann"), "--output", "json", "history", "-f", recipe, "hello").stdout)
	promoted := findEvents(h.Events, catalog.ActionPromote, "1.0.0", "prod")
	approvals := findEvents(h.Events, catalog.ActionApprove, "1.0.0", "prod")
	if len(promoted) != 1 || promoted[0].ApprovedBy != "bob" || promoted[0].Actor != "ann" {
		t.Errorf("promote events into prod = %+v, want ann's, approved by bob", promoted)
	}
	if len(approvals) != 2 || approvals[0].Actor != "bob" || !approvals[0].Unverified || approvals[0].Reason != "reviewed the changelog" ||
		!approvals[0].Time.Equal(t0.Add(2*time.Minute)) || approvals[1].Actor != "ann" {
		t.Errorf("approve events of 1.0.0 for prod = %+v, want bob's (unverified, with the reason) then ann's", approvals)
	}
	text := mustRun(t, as("ann"), "history", "-f", recipe, "hello").stdout
	if !strings.Contains(text, "approve  1.0.0    prod") || !strings.Contains(text, "bob (unverified)  reviewed the changelog") {
		t.Errorf("history table lacks bob's approval:\n%s", text)
	}
}

// TestApproversRefuseUnverifiedNames: a gate with approvers takes only
// verified AWS identities, which a recipe of containers without AWS has
// none of.
func TestApproversRefuseUnverifiedNames(t *testing.T) {
	recipe := approvalRecipe(t, "", `    approvers = ["arn:aws:iam::123456789012:role/release-managers"]`)
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home, "BAKERY_ACTOR=arn:aws:sts::123456789012:assumed-role/release-managers/carol"}
	bakeJSON(t, env, recipe)
	before := snapshot(t, home)
	r := run(t, env, "approve", "hello@1.0.0", "--for", "prod", "-f", recipe)
	if r.code != 1 || !strings.Contains(r.stderr, "stage prod accepts approvals by verified AWS identities matching its approvers (arn:aws:iam::123456789012:role/release-managers) only, and arn:aws:sts::123456789012:assumed-role/release-managers/carol (unverified) is a name nobody verified") {
		t.Errorf("approve by an unverified name: exit %d %q", r.code, r.stderr)
	}
	sameTree(t, before, snapshot(t, home))
}

// TestApproverIsTheRegistryUser: without AWS and $BAKERY_ACTOR, the
// approver is the user of the registry's credentials, unverified.
func TestApproverIsTheRegistryUser(t *testing.T) {
	host := referrersRegistry(t, nil)
	cfg := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("carol:secret"))
	if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", cfg)
	recipe := approvalRecipe(t, host+"/team/hello")
	env := []string{"BAKERY_HOME=" + t.TempDir(), "USER=dave"}
	bakeJSON(t, env, recipe)
	r := mustRun(t, env, "--output", "json", "approve", "hello@1.0.0", "--for", "prod", "-f", recipe)
	var doc approvalDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("decoding %q: %v", r.stdout, err)
	}
	if doc.Approver != "carol@"+host || !doc.Unverified || doc.Stage != "prod" {
		t.Errorf("approve printed %+v, want carol@%s, unverified", doc, host)
	}
	h := decodeHistory(t, mustRun(t, env, "--output", "json", "history", "-f", recipe, "hello").stdout)
	if a := findEvents(h.Events, catalog.ActionApprove, "1.0.0", "prod"); len(a) != 1 || a[0].Actor != "carol@"+host || !a[0].Unverified {
		t.Errorf("approve events in the registry = %+v", a)
	}
}
