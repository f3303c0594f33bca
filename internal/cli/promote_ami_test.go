package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/promote"
)

// promoteAMIRegions are every region the promotion recipe's AMIs may be
// in: the build region and the stages' regions.
var promoteAMIRegions = []string{"us-east-1", "eu-west-1", "us-west-2"}

// prodAccount is the account the prod stage shares with.
const prodAccount = "111122223333"

// promoteAMIRecipe has no provisioners (so no SSH): launch, stop, image.
// The KMS key is needed because prod shares the (encrypted) AMI.
const promoteAMIRecipe = `variable "version" {
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
  kms_key_id     = "alias/x"
}

stage "staging" {
  regions            = ["eu-west-1"]
  region_kms_key_ids = { "eu-west-1" = "alias/x-eu" }
}

stage "prod" {
  accounts           = ["` + prodAccount + `"]
  regions            = ["eu-west-1", "us-west-2"]
  region_kms_key_ids = { "eu-west-1" = "alias/x-eu", "us-west-2" = "alias/x-us" }
  gate {
    require_approval = true
  }
}
`

// amiSeen is one AMI owned by the account as the AWS SDK reads it: its
// tags, who may launch it, and its snapshots' tags and volume
// permissions.
type amiSeen struct {
	Region, ID  string
	Tags        map[string]string
	LaunchPerms []string
	Snapshots   map[string]snapSeen
}

type snapSeen struct {
	Tags        map[string]string
	VolumePerms []string
}

// version is the bakery version the AMI carries.
func (a amiSeen) version() string { return a.Tags[catalog.TagVersion] }

// readAMIs reads every AMI of the account in promoteAMIRegions, sorted by
// region and id, for before/after comparisons and tag assertions.
func readAMIs(t *testing.T, moto *mototest.Server) []amiSeen {
	t.Helper()
	ctx := context.Background()
	var out []amiSeen
	for _, region := range promoteAMIRegions {
		c := ec2.NewFromConfig(moto.Config(t, region))
		imgs, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
		if err != nil {
			t.Fatalf("describing AMIs in %s: %v", region, err)
		}
		for _, img := range imgs.Images {
			a := amiSeen{Region: region, ID: aws.ToString(img.ImageId), Tags: tagMap(img.Tags), Snapshots: map[string]snapSeen{}}
			perms, err := c.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{ImageId: img.ImageId, Attribute: ec2types.ImageAttributeNameLaunchPermission})
			if err != nil {
				t.Fatalf("reading launch permissions of %s in %s: %v", a.ID, region, err)
			}
			for _, p := range perms.LaunchPermissions {
				a.LaunchPerms = append(a.LaunchPerms, aws.ToString(p.UserId)+string(p.Group))
			}
			sort.Strings(a.LaunchPerms)
			for _, bdm := range img.BlockDeviceMappings {
				if bdm.Ebs == nil || bdm.Ebs.SnapshotId == nil {
					continue
				}
				id := aws.ToString(bdm.Ebs.SnapshotId)
				snaps, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
				if err != nil || len(snaps.Snapshots) != 1 {
					t.Fatalf("describing snapshot %s of %s in %s: %v", id, a.ID, region, err)
				}
				vp, err := c.DescribeSnapshotAttribute(ctx, &ec2.DescribeSnapshotAttributeInput{SnapshotId: aws.String(id), Attribute: ec2types.SnapshotAttributeNameCreateVolumePermission})
				if err != nil {
					t.Fatalf("reading volume permissions of %s in %s: %v", id, region, err)
				}
				s := snapSeen{Tags: tagMap(snaps.Snapshots[0].Tags)}
				for _, p := range vp.CreateVolumePermissions {
					s.VolumePerms = append(s.VolumePerms, aws.ToString(p.UserId)+string(p.Group))
				}
				sort.Strings(s.VolumePerms)
				a.Snapshots[id] = s
			}
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b amiSeen) int { return strings.Compare(a.Region+a.ID, b.Region+b.ID) })
	return out
}

func tagMap(tags []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, tg := range tags {
		m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return m
}

// amisOf returns the AMIs of version (every region).
func amisOf(all []amiSeen, version string) []amiSeen {
	var out []amiSeen
	for _, a := range all {
		if a.version() == version {
			out = append(out, a)
		}
	}
	return out
}

func regionsOf(as []amiSeen) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Region)
	}
	slices.Sort(out)
	return out
}

// stageHolders returns the versions whose AMIs or snapshots, in any
// region, carry the stage mark of stage.
func stageHolders(all []amiSeen, stage string) []string {
	key := "bakery:stage:" + stage
	var out []string
	for _, a := range all {
		held := a.Tags[key] != ""
		for _, s := range a.Snapshots {
			held = held || s.Tags[key] != ""
		}
		if held && !slices.Contains(out, a.version()) {
			out = append(out, a.version())
		}
	}
	slices.Sort(out)
	return out
}

// requireInStage fails unless every AMI of version in wantRegions, and
// every snapshot of them, carries stage's mark "<time> <actor>".
func requireInStage(t *testing.T, all []amiSeen, version, stage, actor string, wantRegions ...string) {
	t.Helper()
	as := amisOf(all, version)
	if got := regionsOf(as); !reflect.DeepEqual(got, slices.Sorted(slices.Values(wantRegions))) {
		t.Fatalf("%s is in %v, want %v", version, got, wantRegions)
	}
	key := "bakery:stage:" + stage
	for _, a := range as {
		if !strings.HasSuffix(a.Tags[key], " "+actor) {
			t.Errorf("%s %s in %s: %s = %q, want a mark by %s", version, a.ID, a.Region, key, a.Tags[key], actor)
		}
		if len(a.Snapshots) == 0 {
			t.Errorf("%s %s in %s has no snapshots", version, a.ID, a.Region)
		}
		for id, s := range a.Snapshots {
			if s.Tags[key] != a.Tags[key] {
				t.Errorf("snapshot %s of %s in %s: %s = %q, want %q", id, a.ID, a.Region, key, s.Tags[key], a.Tags[key])
			}
		}
	}
}

// requireNoStage fails if an AMI or snapshot of version carries any stage
// mark.
func requireNoStage(t *testing.T, all []amiSeen, version string) {
	t.Helper()
	for _, a := range amisOf(all, version) {
		for k := range a.Tags {
			if strings.HasPrefix(k, "bakery:stage:") {
				t.Errorf("%s %s in %s still has %s", version, a.ID, a.Region, k)
			}
		}
		for id, s := range a.Snapshots {
			for k := range s.Tags {
				if strings.HasPrefix(k, "bakery:stage:") {
					t.Errorf("snapshot %s of %s %s in %s still has %s", id, version, a.ID, a.Region, k)
				}
			}
		}
	}
}

// callerARN is who moto says the test credentials are.
func callerARN(t *testing.T, moto *mototest.Server) string {
	t.Helper()
	out, err := sts.NewFromConfig(moto.Config(t, "us-east-1")).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil || aws.ToString(out.Arn) == "" {
		t.Fatalf("sts GetCallerIdentity on moto: %v", err)
	}
	return aws.ToString(out.Arn)
}

// refusedAMI runs bakery, wants one of codes and a stderr containing
// want, and proves via the SDK that no AMI, snapshot, tag or permission
// changed.
func refusedAMI(t *testing.T, moto *mototest.Server, env []string, codes []int, want string, args ...string) {
	t.Helper()
	before := readAMIs(t, moto)
	r := run(t, env, args...)
	if !slices.Contains(codes, r.code) || !strings.Contains(r.stderr, want) {
		t.Errorf("bakery %v: exit %d (want %v), stderr lacks %q:\n%s%s", args, r.code, codes, want, r.stdout, r.stderr)
	}
	if after := readAMIs(t, moto); !reflect.DeepEqual(before, after) {
		t.Errorf("bakery %v was refused but changed the AMIs:\nbefore %+v\nafter  %+v", args, before, after)
	}
}

// freshProcessEnv is the environment of a bakery process on "another
// machine": the same AWS credentials and endpoint, an empty $HOME and
// $BAKERY_HOME, nothing inherited.
func freshProcessEnv(t *testing.T, moto *mototest.Server, extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"BAKERY_HOME=" + t.TempDir(),
		"AWS_ACCESS_KEY_ID=" + mototest.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + mototest.SecretAccessKey,
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none"),
		"BAKERY_AWS_ENDPOINT=" + moto.URL,
		awsx.StrictEnv + "=1", // every call is checked against its verb's IAM policy
		awsx.RecordEnv + "=" + os.Getenv(awsx.RecordEnv),
	}, extra...)
}

// runBinary runs the built bakery in an empty folder with env only.
func runBinary(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("running bakery %v: %v", args, err)
	}
	return result{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
}

// decodeStatuses reads status's JSON lines, by recipe.
func decodeStatuses(t *testing.T, out string) map[string]promote.RecipeStatus {
	t.Helper()
	docs := map[string]promote.RecipeStatus{}
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var st promote.RecipeStatus
		if err := dec.Decode(&st); err != nil {
			t.Fatalf("decoding status %q: %v", out, err)
		}
		docs[st.Recipe] = st
	}
	return docs
}

func versionStatus(t *testing.T, st promote.RecipeStatus, version string) promote.VersionStatus {
	t.Helper()
	for _, v := range st.Versions {
		if v.Version == version {
			return v
		}
	}
	t.Fatalf("status of %s has no version %s: %+v", st.Recipe, version, st)
	return promote.VersionStatus{}
}

func decodeHistory(t *testing.T, out string) historyDoc {
	t.Helper()
	var doc historyDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("decoding history %q: %v", out, err)
	}
	for i := 1; i < len(doc.Events); i++ {
		if doc.Events[i].Time.After(doc.Events[i-1].Time) {
			t.Errorf("history is not newest first: %v before %v", doc.Events[i-1], doc.Events[i])
		}
	}
	return doc
}

// findEvents returns the events matching action, version and stage ("" for
// any stage).
func findEvents(evs []catalog.Event, action, version, stage string) []catalog.Event {
	var out []catalog.Event
	for _, ev := range evs {
		if ev.Action == action && ev.Version == version && (stage == "" || ev.Stage == stage) {
			out = append(out, ev)
		}
	}
	return out
}

func TestPromoteAMIThroughStagesRevokeAndReadFromAnotherProcess(t *testing.T) {
	bin := bakeryBinary(t) // before t.Chdir: it builds from the module
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	actor := callerARN(t, moto)
	project := t.TempDir()
	writeFiles(t, project, map[string]string{"recipes/base.bake.hcl": promoteAMIRecipe})
	recipe := filepath.Join(project, "recipes", "base.bake.hcl")
	t.Chdir(project) // the verbs look in ./recipes without -f

	build := map[string]string{} // version → build-region AMI id
	bakeKey := map[string]string{}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		res := bakeJSON(t, env, "-var", "version="+v, recipe)
		if len(res.Artifacts) != 1 || res.Artifacts[0].Region != "us-east-1" || res.Cached {
			t.Fatalf("bake %s: %+v, want one fresh AMI in us-east-1", v, res)
		}
		build[v], bakeKey[v] = res.Artifacts[0].ID, res.BakeKey
	}
	promoteTo := func(version, stage string, extra ...string) result {
		t.Helper()
		return mustRun(t, env, append([]string{"promote", "-f", recipe, "base@" + version, "--to", stage}, extra...)...)
	}

	// Bad inputs: a clear message, and nothing changes.
	fail, usage := []int{exitFailure}, []int{exitUsage}
	refusedAMI(t, moto, env, fail, `unknown recipe "nosuch"; ./recipes has: base`, "promote", "nosuch@1.0.0", "--to", "dev")
	refusedAMI(t, moto, env, fail, "has no version 9.9.9; known versions: 1.0.0, 1.1.0", "promote", "-f", recipe, "base@9.9.9", "--to", "dev")
	refusedAMI(t, moto, env, fail, `unknown stage "qa"; the recipe's stages are dev → staging → prod`, "promote", "-f", recipe, "base@1.0.0", "--to", "qa")
	refusedAMI(t, moto, env, fail, "ami base is not in dev, the stage before staging: promote it to dev first", "promote", "-f", recipe, "base@1.0.0", "--to", "staging")
	refusedAMI(t, moto, env, usage, `--force needs --reason`, "promote", "-f", recipe, "base@1.0.0", "--to", "staging", "--force")
	refusedAMI(t, moto, env, usage, "RECIPE@VERSION", "promote", "-f", recipe, "base", "--to", "dev")
	refusedAMI(t, moto, env, usage, "--to", "promote", "-f", recipe, "base@1.0.0")

	// 1.0.0: dev, then staging copies it to eu-west-1 with every tag.
	if r := promoteTo("1.0.0", "dev"); r.stdout != "promoted base@1.0.0 to dev (1 artifact(s)) as "+actor+"\n" {
		t.Errorf("promote to dev printed %q", r.stdout)
	}
	promoteTo("1.0.0", "staging")
	all := readAMIs(t, moto)
	requireInStage(t, all, "1.0.0", "staging", actor, "us-east-1", "eu-west-1")
	requireInStage(t, all, "1.0.0", "dev", actor, "us-east-1", "eu-west-1")
	for _, a := range amisOf(all, "1.0.0") {
		if a.Region != "eu-west-1" {
			continue
		}
		if a.ID == build["1.0.0"] || a.Tags[catalog.TagRecipe] != "base" || a.Tags[catalog.TagArtifact] != "base" ||
			a.Tags[catalog.TagBakeKey] != bakeKey["1.0.0"] || a.Tags[catalog.TagSourceAMI] == "" {
			t.Errorf("the eu-west-1 copy %s lacks the bakery tags: %v", a.ID, a.Tags)
		}
		if len(a.LaunchPerms) != 0 {
			t.Errorf("staging shares with no account, but %s may be launched by %v", a.ID, a.LaunchPerms)
		}
	}

	// prod needs someone else's approval; with one it copies to
	// us-west-2 and shares every AMI and snapshot with the prod account.
	refusedAMI(t, moto, env, fail, "prod requires approval (gate require_approval) and base@1.0.0 has no approval for prod: run `bakery approve base@1.0.0 --for prod` as someone other than you ("+actor+")", "promote", "-f", recipe, "base@1.0.0", "--to", "prod")
	manager, asManager := assumeRole(t, moto, "release-managers", "carol")
	approve := func(version string) {
		t.Helper()
		if r := runBinary(t, bin, freshProcessEnv(t, moto, asManager...), "approve", "-f", recipe, "base@"+version, "--for", "prod"); r.code != 0 {
			t.Fatalf("approving %s for prod: exit %d\n%s", version, r.code, r.stderr)
		}
	}
	approve("1.0.0")
	promoteTo("1.0.0", "prod")
	all = readAMIs(t, moto)
	requireInStage(t, all, "1.0.0", "prod", actor, promoteAMIRegions...)
	for _, a := range amisOf(all, "1.0.0") {
		if !slices.Contains(a.LaunchPerms, prodAccount) {
			t.Errorf("%s in %s: launch permissions %v lack %s", a.ID, a.Region, a.LaunchPerms, prodAccount)
		}
		for id, s := range a.Snapshots {
			if !slices.Contains(s.VolumePerms, prodAccount) {
				t.Errorf("snapshot %s of %s in %s: volume permissions %v lack %s", id, a.ID, a.Region, s.VolumePerms, prodAccount)
			}
		}
	}
	before := readAMIs(t, moto)
	if r := promoteTo("1.0.0", "prod"); r.stdout != "base@1.0.0 is already in prod: nothing to do\n" {
		t.Errorf("promoting again printed %q", r.stdout)
	}
	if after := readAMIs(t, moto); !reflect.DeepEqual(before, after) {
		t.Errorf("a no-op promotion changed the AMIs:\nbefore %+v\nafter  %+v", before, after)
	}

	// 1.1.0 through the same stages: one version per stage, so 1.0.0
	// leaves each of them in turn.
	promoteTo("1.1.0", "dev")
	promoteTo("1.1.0", "staging")
	approve("1.1.0")
	promoteTo("1.1.0", "prod")
	all = readAMIs(t, moto)
	for _, stage := range []string{"dev", "staging", "prod"} {
		requireInStage(t, all, "1.1.0", stage, actor, promoteAMIRegions...)
		if got := stageHolders(all, stage); !reflect.DeepEqual(got, []string{"1.1.0"}) {
			t.Errorf("%s is held by %v, want only 1.1.0", stage, got)
		}
	}
	requireNoStage(t, all, "1.0.0")

	// Another machine: nothing local, the same answers, from the tags.
	other := freshProcessEnv(t, moto)
	r := runBinary(t, bin, other, "--output", "json", "status", "-f", recipe)
	if r.code != 0 {
		t.Fatalf("status from another process: exit %d\n%s", r.code, r.stderr)
	}
	st := decodeStatuses(t, r.stdout)["base"]
	if len(st.Versions) != 2 || st.Versions[0].Version != "1.1.0" || st.Versions[1].Version != "1.0.0" {
		t.Fatalf("status versions = %+v, want 1.1.0 then 1.0.0", st.Versions)
	}
	v11, v10 := st.Versions[0], st.Versions[1]
	for _, stage := range []string{"dev", "staging", "prod"} {
		if se, ok := v11.Stages[stage]; !ok || se.By != actor || se.Since.IsZero() {
			t.Errorf("1.1.0 in %s = %+v (held %v), want since a time, by %s", stage, se, ok, actor)
		}
	}
	if len(v10.Stages) != 0 || v10.Revoked || v11.Revoked {
		t.Errorf("1.0.0 = %+v, want in no stage and not revoked", v10)
	}
	if len(v11.Artifacts) != 1 || len(v11.Artifacts[0].Locations) != 3 || v11.Artifacts[0].Reference != build["1.1.0"] {
		t.Errorf("1.1.0 artifacts = %+v, want the build AMI %s and three regions", v11.Artifacts, build["1.1.0"])
	}
	r = runBinary(t, bin, other, "--output", "json", "history", "-f", recipe, "base")
	if r.code != 0 {
		t.Fatalf("history from another process: exit %d\n%s", r.code, r.stderr)
	}
	h := decodeHistory(t, r.stdout)
	promoted := findEvents(h.Events, catalog.ActionPromote, "1.1.0", "prod")
	if len(promoted) != 1 || promoted[0].Actor != actor || promoted[0].ApprovedBy != manager || promoted[0].Kind != "ami" || promoted[0].Artifact != "base" {
		t.Errorf("promotion of 1.1.0 to prod in history: %+v", promoted)
	} else if !promoted[0].Time.Equal(v11.Stages["prod"].Since) {
		t.Errorf("1.1.0 entered prod at %v by status, at %v by history", v11.Stages["prod"].Since, promoted[0].Time)
	}
	for _, stage := range []string{"dev", "staging", "prod"} {
		d := findEvents(h.Events, catalog.ActionDemote, "1.0.0", stage)
		if len(d) != 1 || d[0].Reason != "replaced by 1.1.0" || d[0].Actor != actor {
			t.Errorf("demotion of 1.0.0 from %s in history: %+v", stage, d)
		}
		if p := findEvents(h.Events, catalog.ActionPromote, "1.0.0", stage); len(p) != 1 || p[0].Actor != actor {
			t.Errorf("promotion of 1.0.0 to %s in history: %+v", stage, p)
		}
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		// (Bake events carry no actor for AMIs: the bake records none.)
		if b := findEvents(h.Events, catalog.ActionBake, v, ""); len(b) != 1 || b[0].Time.IsZero() {
			t.Errorf("bake of %s in history: %+v", v, b)
		}
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if a := findEvents(h.Events, catalog.ActionApprove, v, "prod"); len(a) != 1 || a[0].Actor != manager || a[0].Unverified {
			t.Errorf("approval of %s for prod in history: %+v", v, a)
		}
	}
	if len(h.Events) != 2+3+3+3+2 {
		t.Errorf("history has %d events, want 2 bakes, 6 promotions, 3 demotions, 2 approvals: %+v", len(h.Events), h.Events)
	}

	// An image baked from 1.0.0's AMI, in the same ./recipes.
	writeFiles(t, project, map[string]string{"recipes/app.bake.hcl": fmt.Sprintf(`recipe "app" {
  version = "2.0.0"
  stages  = ["dev"]
}

machine_image "app" {
  region     = "us-east-1"
  source_ami = %q
}
`, build["1.0.0"])})
	bakeJSON(t, env, filepath.Join(project, "recipes", "app.bake.hcl"))

	// Revoke 1.0.0 while it is in dev: it leaves every stage, and the stage
	// is left empty (1.1.0 does not come back). $BAKERY_ACTOR names who.
	promoteTo("1.0.0", "dev")
	security := append(slices.Clone(env), "BAKERY_ACTOR=security team")
	refusedAMI(t, moto, security, usage, "give a --reason", "revoke", "-f", recipe, "base@1.0.0")
	if r := mustRun(t, security, "revoke", "-f", recipe, "base@1.0.0", "--reason", "CVE-1"); r.stdout != "revoked base@1.0.0\n" {
		t.Errorf("revoke printed %q", r.stdout)
	}
	all = readAMIs(t, moto)
	requireNoStage(t, all, "1.0.0")
	if got := stageHolders(all, "dev"); len(got) != 0 {
		t.Errorf("dev is held by %v after its holder was revoked", got)
	}
	for _, a := range amisOf(all, "1.0.0") {
		if v := a.Tags["bakery:revoked"]; !strings.HasSuffix(v, " CVE-1") {
			t.Errorf("%s in %s: bakery:revoked = %q", a.ID, a.Region, v)
		}
		for id, s := range a.Snapshots {
			if s.Tags["bakery:revoked"] != a.Tags["bakery:revoked"] {
				t.Errorf("snapshot %s of %s: bakery:revoked = %q", id, a.ID, s.Tags["bakery:revoked"])
			}
		}
	}
	refusedAMI(t, moto, env, fail, "ami base is revoked (CVE-1); a revoked image cannot be promoted", "promote", "-f", recipe, "base@1.0.0", "--to", "dev")
	refusedAMI(t, moto, env, fail, "is revoked (CVE-1)", "promote", "-f", recipe, "base@1.0.0", "--to", "dev", "--force", "--reason", "we need it")

	// status of every recipe in ./recipes: base@1.0.0 revoked, app tainted.
	text := mustRun(t, env, "status")
	if !strings.Contains(text.stdout, "REVOKED: CVE-1") || !strings.Contains(text.stdout, "TAINTED: baked from revoked base@1.0.0") {
		t.Errorf("status does not mark the revoked and the tainted image:\n%s", text.stdout)
	}
	docs := decodeStatuses(t, mustRun(t, env, "--output", "json", "status").stdout)
	if v := versionStatus(t, docs["base"], "1.0.0"); !v.Revoked || v.RevokeReason != "CVE-1" || len(v.Stages) != 0 {
		t.Errorf("base@1.0.0 = %+v, want revoked (CVE-1) and in no stage", v)
	}
	if v := versionStatus(t, docs["base"], "1.1.0"); v.Revoked || len(v.TaintedBy) != 0 {
		t.Errorf("base@1.1.0 = %+v, want neither revoked nor tainted", v)
	}
	if v := versionStatus(t, docs["app"], "2.0.0"); !reflect.DeepEqual(v.TaintedBy, []string{"base@1.0.0"}) {
		t.Errorf("app@2.0.0 tainted by %v, want [base@1.0.0]", v.TaintedBy)
	}
	h = decodeHistory(t, mustRun(t, env, "--output", "json", "history", "base").stdout)
	if rv := findEvents(h.Events, catalog.ActionRevoke, "1.0.0", ""); len(rv) != 1 || rv[0].Actor != "security team" || rv[0].Reason != "CVE-1" || h.Events[0].Action != catalog.ActionRevoke {
		t.Errorf("revocation in history: %+v (newest %+v)", rv, h.Events[0])
	}

	// Unrevoke: promotion is allowed again, and nothing is tainted.
	if r := mustRun(t, env, "unrevoke", "-f", recipe, "base@1.0.0"); r.stdout != "unrevoked base@1.0.0\n" {
		t.Errorf("unrevoke printed %q", r.stdout)
	}
	promoteTo("1.0.0", "dev")
	docs = decodeStatuses(t, mustRun(t, env, "--output", "json", "status").stdout)
	if v := versionStatus(t, docs["base"], "1.0.0"); v.Revoked || v.Stages["dev"].By != actor {
		t.Errorf("base@1.0.0 after unrevoke and promote = %+v", v)
	}
	if v := versionStatus(t, docs["app"], "2.0.0"); len(v.TaintedBy) != 0 {
		t.Errorf("app@2.0.0 still tainted by %v", v.TaintedBy)
	}
}

func TestConcurrentAMIPromotionsLeaveOneVersionInProd(t *testing.T) {
	bin := bakeryBinary(t)
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	actor := callerARN(t, moto)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.bake.hcl": promoteAMIRecipe})
	recipe := filepath.Join(dir, "base.bake.hcl")
	for _, v := range []string{"1.0.0", "1.1.0"} {
		bakeJSON(t, env, "-var", "version="+v, recipe)
	}
	// One version per stage: 1.1.0 takes staging from 1.0.0, so 1.0.0 has
	// to be forced into prod.
	for _, v := range []string{"1.0.0", "1.1.0"} {
		for _, stage := range []string{"dev", "staging"} {
			mustRun(t, env, "promote", "-f", recipe, "base@"+v, "--to", stage)
		}
	}
	args := map[string][]string{
		"1.0.0": {"promote", "-f", recipe, "base@1.0.0", "--to", "prod", "--force", "--reason", "hotfix"},
		"1.1.0": {"promote", "-f", recipe, "base@1.1.0", "--to", "prod"},
	}
	// 1.1.0 goes in with a release manager's approval.
	_, asManager := assumeRole(t, moto, "release-managers", "carol")
	if r := runBinary(t, bin, freshProcessEnv(t, moto, asManager...), "approve", "-f", recipe, "base@1.1.0", "--for", "prod"); r.code != 0 {
		t.Fatalf("approving 1.1.0 for prod: exit %d\n%s", r.code, r.stderr)
	}
	cmds := map[string]*exec.Cmd{}
	outs := map[string]*bytes.Buffer{}
	for v, a := range args {
		cmd := exec.Command(bin, a...)
		cmd.Env = freshProcessEnv(t, moto)
		outs[v] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[v], outs[v]
		cmds[v] = cmd
	}
	for _, cmd := range cmds { // started together
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	codes := map[string]int{}
	for v, cmd := range cmds {
		cmd.Wait()
		codes[v] = cmd.ProcessState.ExitCode()
	}

	all := readAMIs(t, moto)
	holders := stageHolders(all, "prod")
	if len(holders) != 1 {
		t.Fatalf("prod is held by %v, want exactly one version\n1.0.0: %s\n1.1.0: %s", holders, outs["1.0.0"], outs["1.1.0"])
	}
	winner := holders[0]
	loser := map[string]string{"1.0.0": "1.1.0", "1.1.0": "1.0.0"}[winner]
	t.Logf("%s won prod; the loser %s exited %d: %s", winner, loser, codes[loser], strings.TrimSpace(outs[loser].String()))
	requireInStage(t, all, winner, "prod", actor, promoteAMIRegions...)
	if codes[winner] != 0 {
		t.Errorf("the winner %s exited %d:\n%s", winner, codes[winner], outs[winner])
	}
	// The loser says it lost the race (its promotion is recorded all the
	// same), unless it finished before the winner started.
	if codes[loser] != 0 && !strings.Contains(outs[loser].String(), "a concurrent promotion won the race") {
		t.Errorf("the loser %s exited %d:\n%s", loser, codes[loser], outs[loser])
	}
	for _, a := range amisOf(all, loser) {
		if a.Region == "us-west-2" && a.Tags[catalog.TagBakeKey] == "" {
			t.Errorf("the loser's us-west-2 copy %s is unfinished: %v", a.ID, a.Tags)
		}
	}

	st := decodeStatuses(t, mustRun(t, env, "--output", "json", "status", "-f", recipe).stdout)["base"]
	if got := inStage(st, "prod"); !reflect.DeepEqual(got, []string{winner}) {
		t.Errorf("status: prod holds %v, want [%s]", got, winner)
	}
	h := decodeHistory(t, mustRun(t, env, "--output", "json", "history", "-f", recipe, "base").stdout)
	pw, pl := findEvents(h.Events, catalog.ActionPromote, winner, "prod"), findEvents(h.Events, catalog.ActionPromote, loser, "prod")
	if len(pw) != 1 || len(pl) != 1 {
		t.Fatalf("history lacks a promotion to prod: winner %+v, loser %+v", pw, pl)
	}
	if pw[0].Time.Before(pl[0].Time) {
		t.Errorf("the earlier promotion won: %s at %v beat %s at %v", winner, pw[0].Time, loser, pl[0].Time)
	}
	if loser == "1.0.0" && (!pl[0].Forced || pl[0].Reason != "hotfix") {
		t.Errorf("the forced promotion is recorded as %+v", pl[0])
	}
	if d := findEvents(h.Events, catalog.ActionDemote, loser, "prod"); len(d) != 1 || d[0].Reason != "replaced by "+winner || d[0].Actor != actor {
		t.Errorf("demotion of the loser %s from prod: %+v", loser, d)
	}
	if d := findEvents(h.Events, catalog.ActionDemote, winner, "prod"); len(d) != 0 {
		t.Errorf("the winner %s was demoted from prod: %+v", winner, d)
	}
}

func TestOutdatedAMISourceMovesOn(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	ec := ec2.NewFromConfig(moto.Config(t, "us-east-1"))
	register := func(name string) string {
		t.Helper()
		out, err := ec.RegisterImage(context.Background(), &ec2.RegisterImageInput{
			Name: aws.String(name), Architecture: ec2types.ArchitectureValuesX8664,
			RootDeviceName: aws.String("/dev/xvda"), VirtualizationType: aws.String("hvm"),
		})
		if err != nil {
			t.Fatalf("registering %s: %v", name, err)
		}
		return aws.ToString(out.ImageId)
	}
	// moto refuses to overwrite the /aws/service SSM parameters, so the
	// moving base is our own AMI found by a filter. The filter must not
	// match the bakes themselves (named golden-VERSION-...).
	first := register("src-golden-2026.1")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"base.bake.hcl": promoteAMIRecipe,
		"golden.bake.hcl": `variable "version" {
  type    = string
  default = "1.0.0"
}

recipe "golden" {
  version = var.version
  stages  = ["dev"]
}

machine_image "golden" {
  region = "us-east-1"
  source_ami_filter {
    owners      = ["self"]
    name        = "src-golden-*"
    most_recent = true
  }
}
`,
		"never.bake.hcl": strings.Replace(strings.Replace(promoteAMIRecipe, `recipe "base"`, `recipe "never"`, 1), `machine_image "base"`, `machine_image "never"`, 1),
	})
	base, golden, never := filepath.Join(dir, "base.bake.hcl"), filepath.Join(dir, "golden.bake.hcl"), filepath.Join(dir, "never.bake.hcl")
	bakeJSON(t, env, base)
	bakeJSON(t, env, golden)
	if r := run(t, env, "outdated", base, golden); r.code != 0 || r.stdout != "all 2 recipe(s) are up to date with their bases\n" {
		t.Fatalf("outdated after the bakes: exit %d %q %q", r.code, r.stdout, r.stderr)
	}

	second := register("src-golden-2026.2") // a newer base
	r := run(t, env, "outdated", base, golden, never)
	want := "golden: ami golden: source AMI is now " + second + " (src-golden-2026.2); golden@1.0.0 was baked from " + first + "\n" +
		"never: ami never: never baked\n"
	if r.code != exitOutdated || r.stdout != want {
		t.Fatalf("outdated: exit %d\n%s\nwant exit 3 and\n%s\n%s", r.code, r.stdout, want, r.stderr)
	}
	r = run(t, env, "-q", "outdated", "--files", base, golden, never)
	if r.code != exitOutdated || r.stdout != golden+"\n"+never+"\n" {
		t.Fatalf("outdated --files: exit %d %q", r.code, r.stdout)
	}
	var doc struct {
		Outdated []struct {
			Recipe    string `json:"recipe"`
			Version   string `json:"version"`
			BakedFrom string `json:"baked_from"`
			Current   string `json:"current"`
		} `json:"outdated"`
	}
	r = run(t, env, "--output", "json", "outdated", golden)
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != exitOutdated || len(doc.Outdated) != 1 {
		t.Fatalf("outdated JSON: exit %d %q: %v", r.code, r.stdout, err)
	}
	if o := doc.Outdated[0]; o.Recipe != "golden" || o.Version != "1.0.0" || o.BakedFrom != first || o.Current != second {
		t.Errorf("outdated JSON = %+v", o)
	}

	// The nightly job: bake a new version of what is outdated, then
	// nothing is.
	mustRun(t, env, "-q", "bake", "-var", "version=1.0.1", golden, never)
	if r := run(t, env, "outdated", base, golden, never); r.code != 0 {
		t.Errorf("outdated after rebaking: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}
