package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// regionsRecipe bakes without SSH; its copy regions come from a variable
// (a var file, as a platform team keeps them per environment).
const regionsRecipe = `variable "version" {
  type    = string
  default = "1.0.0"
}

variable "regions" {
  type    = list(string)
  default = []
}

recipe "web" {
  version = var.version
  stages  = ["dev", "prod"]
}

machine_image "web" {
  region         = "us-east-1"
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
  encrypted      = false
  regions        = var.regions
}
`

// ownAMIs returns the account's AMIs in region, by id.
func ownAMIs(t *testing.T, moto *mototest.Server, region string) map[string]ec2types.Image {
	t.Helper()
	out, err := ec2.NewFromConfig(moto.Config(t, region)).DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]ec2types.Image{}
	for _, img := range out.Images {
		m[aws.ToString(img.ImageId)] = img
	}
	return m
}

// instanceCount counts the instances ever launched in region.
func instanceCount(t *testing.T, moto *mototest.Server, region string) int {
	t.Helper()
	out, err := ec2.NewFromConfig(moto.Config(t, region)).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range out.Reservations {
		n += len(r.Instances)
	}
	return n
}

// TestBakeCopiesToANewRegionAndForceReplaces: a region added to a baked
// version is filled by copying the existing AMI (no second builder, same
// bake key); --force bakes again and replaces the old AMIs in every
// region, the new ones taking over the stage marks; a version keeps one
// AMI per region.
func TestBakeCopiesToANewRegionAndForceReplaces(t *testing.T) {
	moto := mototest.Start(t)
	env := append(awsEnv(t, moto), "BAKERY_POLL_INTERVAL=20ms")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"recipes/web.bake.hcl": regionsRecipe,
		"eu.vars.hcl":          `regions = ["eu-west-1"]` + "\n",
	})
	recipe := filepath.Join(dir, "recipes", "web.bake.hcl")
	euVars := filepath.Join(dir, "eu.vars.hcl")

	first := bakeJSON(t, env, recipe)
	if len(first.Artifacts) != 1 || first.Cached {
		t.Fatalf("first bake = %+v, want one fresh AMI", first)
	}
	built := first.Artifacts[0].ID

	second := bakeJSON(t, env, "-var-file", euVars, recipe)
	if second.BakeKey != first.BakeKey || len(second.Artifacts) != 2 {
		t.Fatalf("bake with eu-west-1 added = %+v, want the same bake key and two regions", second)
	}
	east, eu := second.Artifacts[0], second.Artifacts[1]
	if east.Region != "us-east-1" || east.ID != built || !east.Cached {
		t.Errorf("us-east-1 after adding a region = %+v, want the same AMI %s, cached", east, built)
	}
	if eu.Region != "eu-west-1" || eu.Cached || eu.ID == "" {
		t.Errorf("eu-west-1 = %+v, want a new copy", eu)
	}
	if n := instanceCount(t, moto, "us-east-1"); n != 1 {
		t.Errorf("%d builders launched, want 1: adding a region must copy, not bake again", n)
	}
	copied := ownAMIs(t, moto, "eu-west-1")[eu.ID]
	tags := tagMap(copied.Tags)
	if tags[catalog.TagBakeKey] != first.BakeKey || tags[catalog.TagVersion] != "1.0.0" || !strings.Contains(aws.ToString(copied.Description), "copy of "+built) {
		t.Errorf("the eu-west-1 copy has tags %v and description %q, want the bake key, the version and its source", tags, aws.ToString(copied.Description))
	}
	third := bakeJSON(t, env, "-var-file", euVars, recipe)
	if !third.Cached {
		t.Errorf("a third bake = %+v, want everything up to date", third)
	}

	// The version enters dev; then it is baked again by force.
	t.Chdir(dir)
	mustRun(t, env, "promote", "-var-file", euVars, "web@1.0.0", "--to", "dev")
	old := map[string]string{"us-east-1": built, "eu-west-1": eu.ID}
	oldSnaps := map[string][]string{}
	for r, id := range old {
		for _, b := range ownAMIs(t, moto, r)[id].BlockDeviceMappings {
			oldSnaps[r] = append(oldSnaps[r], aws.ToString(b.Ebs.SnapshotId))
		}
	}
	forced := bakeJSON(t, env, "--force", "-var-file", euVars, recipe)
	if len(forced.Artifacts) != 2 || forced.Cached {
		t.Fatalf("forced bake = %+v, want two fresh AMIs", forced)
	}
	for _, a := range forced.Artifacts {
		amis := ownAMIs(t, moto, a.Region)
		if len(amis) != 1 || a.ID == old[a.Region] {
			t.Errorf("%s holds %d AMIs after --force (new %s, old %s), want only the new one", a.Region, len(amis), a.ID, old[a.Region])
		}
		if _, ok := tagMap(amis[a.ID].Tags)["bakery:stage:dev"]; !ok {
			t.Errorf("the new AMI %s in %s did not take over the dev stage: %v", a.ID, a.Region, tagMap(amis[a.ID].Tags))
		}
		snaps, err := ec2.NewFromConfig(moto.Config(t, a.Region)).DescribeSnapshots(context.Background(), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps.Snapshots {
			if slices.Contains(oldSnaps[a.Region], aws.ToString(s.SnapshotId)) {
				t.Errorf("snapshot %s of the replaced AMI %s is left in %s", aws.ToString(s.SnapshotId), old[a.Region], a.Region)
			}
		}
	}
	st := mustRun(t, env, "--output", "json", "status", "-var-file", euVars, "web")
	if !strings.Contains(st.stdout, forced.Artifacts[0].ID) || strings.Contains(st.stdout, built) {
		t.Errorf("status after --force = %s, want the new AMI %s and not the old %s", st.stdout, forced.Artifacts[0].ID, built)
	}
}

// TestBakeRefusesATakenFixedAMIName: a fixed ami_name that an AMI has
// already is refused before a builder is launched.
func TestBakeRefusesATakenFixedAMIName(t *testing.T) {
	moto := mototest.Start(t)
	env := append(awsEnv(t, moto), "BAKERY_POLL_INTERVAL=20ms")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"web.bake.hcl": strings.Replace(regionsRecipe, `  encrypted      = false`, `  encrypted      = false
  ami_name       = "web-golden"`, 1)})
	recipe := filepath.Join(dir, "web.bake.hcl")
	first := bakeJSON(t, env, recipe)
	before := instanceCount(t, moto, "us-east-1")
	r := run(t, env, "bake", "-var", "version=1.1.0", recipe)
	if r.code != exitFailure {
		t.Fatalf("bake of 1.1.0 with a taken name: exit %d, want 1\n%s", r.code, r.stderr)
	}
	for _, want := range []string{`an AMI named "web-golden" exists in us-east-1 already`, first.Artifacts[0].ID, "web@1.0.0", "change ami_name", "web.bake.hcl:"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if after := instanceCount(t, moto, "us-east-1"); after != before {
		t.Errorf("%d builders launched by the refused bake, want none", after-before)
	}
}

// TestSweepCoversTheRecipesRegions: without --region, sweep looks in
// every region the recipes in ./recipes name, not only the AWS config's.
func TestSweepCoversTheRecipesRegions(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"recipes/web.bake.hcl": strings.Replace(regionsRecipe, "default = []", `default = ["ap-southeast-2"]`, 1)})
	t.Chdir(dir)

	ctx := context.Background()
	c := ec2.NewFromConfig(moto.Config(t, "ap-southeast-2"))
	vpcs, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		t.Fatalf("DescribeVpcs: %v", err)
	}
	sg, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("bakery-bk-orphan"), Description: aws.String("orphan"), VpcId: vpcs.Vpcs[0].VpcId,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: []ec2types.Tag{
			{Key: aws.String(catalog.TagBakeID), Value: aws.String("bk-orphan")},
			{Key: aws.String(catalog.TagCreated), Value: aws.String(time.Now().Add(-3 * time.Hour).UTC().Format(time.RFC3339))},
		}}}})
	if err != nil {
		t.Fatal(err)
	}

	var plan struct {
		Regions []string `json:"regions"`
		Remove  []struct {
			ID     string `json:"id"`
			Region string `json:"region"`
		} `json:"remove"`
	}
	r := mustRun(t, env, "--output", "json", "sweep")
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
		t.Fatalf("decoding %q: %v", r.stdout, err)
	}
	if !slices.Contains(plan.Regions, "ap-southeast-2") || !slices.Contains(plan.Regions, "us-east-1") {
		t.Errorf("sweep looked in %v, want the recipe's ap-southeast-2 and the config's us-east-1", plan.Regions)
	}
	if len(plan.Remove) != 1 || plan.Remove[0].ID != aws.ToString(sg.GroupId) || plan.Remove[0].Region != "ap-southeast-2" {
		t.Errorf("sweep plan %+v, want the orphaned group %s in ap-southeast-2", plan.Remove, aws.ToString(sg.GroupId))
	}

	all := mustRun(t, env, "--output", "json", "sweep", "--all-regions")
	if err := json.Unmarshal([]byte(all.stdout), &plan); err != nil {
		t.Fatalf("decoding %q: %v", all.stdout, err)
	}
	if len(plan.Regions) < 10 || !slices.Contains(plan.Regions, "sa-east-1") {
		t.Errorf("sweep --all-regions looked in %v, want every enabled region", plan.Regions)
	}
	if r := run(t, env, "sweep", "--all-regions", "--region", "us-east-1"); r.code != exitUsage {
		t.Errorf("--all-regions with --region: exit %d, want a usage error", r.code)
	}
}

// TestLifecycleVerbsSeeEveryCopy: a version baked to two regions through
// a var file is revoked without it (the recipe alone names one region):
// the copy in the other region is revoked too, and status shows both.
func TestLifecycleVerbsSeeEveryCopy(t *testing.T) {
	moto := mototest.Start(t)
	env := append(awsEnv(t, moto), "BAKERY_POLL_INTERVAL=20ms")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"recipes/web.bake.hcl": regionsRecipe,
		"eu.vars.hcl":          `regions = ["eu-west-1"]` + "\n",
	})
	res := bakeJSON(t, env, "-var-file", filepath.Join(dir, "eu.vars.hcl"), filepath.Join(dir, "recipes", "web.bake.hcl"))
	if len(res.Artifacts) != 2 {
		t.Fatalf("bake = %+v, want AMIs in two regions", res)
	}
	t.Chdir(dir)

	st := mustRun(t, env, "--output", "json", "status", "web")
	for _, a := range res.Artifacts {
		if !strings.Contains(st.stdout, a.Region+`","id":"`+a.ID) {
			t.Errorf("status without the var file lacks %s %s:\n%s", a.Region, a.ID, st.stdout)
		}
	}
	mustRun(t, env, "revoke", "web@1.0.0", "--reason", "CVE-2026-0001")
	for _, a := range res.Artifacts {
		tags := tagMap(ownAMIs(t, moto, a.Region)[a.ID].Tags)
		if _, ok := tags["bakery:revoked"]; !ok {
			t.Errorf("the copy %s in %s is not revoked: %v", a.ID, a.Region, tags)
		}
	}
}
