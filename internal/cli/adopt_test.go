package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
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

// packerImage makes an AMI in region as Packer's amazon-ebs builder
// does (an instance, CreateImage, the template's Name tag) and returns
// its id.
func packerImage(t *testing.T, moto *mototest.Server, region, name string) string {
	t.Helper()
	ctx := context.Background()
	c := ec2.NewFromConfig(moto.Config(t, region))
	src, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(src.Images) == 0 {
		t.Fatalf("moto has no AMI in %s: %v", region, err)
	}
	run, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: src.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatal(err)
	}
	img, err := c.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: run.Instances[0].InstanceId, Name: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{aws.ToString(img.ImageId)}, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(name)}}}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(img.ImageId)
}

// packerManifest writes adopt/testdata/packer-manifest.json (as Packer
// writes it) to dir with its AMI ids replaced by ids (old → new), and
// returns its path.
func packerManifest(t *testing.T, dir string, ids map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "adopt", "testdata", "packer-manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for old, id := range ids {
		if !strings.Contains(s, old) {
			t.Fatalf("the manifest has no %s", old)
		}
		s = strings.ReplaceAll(s, old, id)
	}
	p := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAdoptPackerManifestThenManageIt adopts the AMIs of a Packer
// manifest (the last run: two regions) as web@0.9.0 and the older run's
// as web@0.8.0, then uses every verb on them: status and history say
// they were adopted, bake refuses the version, promote and launch's
// plan take 0.9.0 as any version, and retire removes 0.8.0 by policy.
func TestAdoptPackerManifestThenManageIt(t *testing.T) {
	moto := mototest.Start(t)
	env := append(awsEnv(t, moto), "BAKERY_ACTOR=alice")
	project := t.TempDir()
	east, eu := packerImage(t, moto, "us-east-1", "web-packer-2"), packerImage(t, moto, "eu-west-1", "web-packer-2")
	older := packerImage(t, moto, "us-east-1", "web-packer-1")
	spare := packerImage(t, moto, "us-east-1", "web-packer-3")
	manifest := packerManifest(t, project, map[string]string{"ami-0123456789abcdef0": east, "ami-0fedcba9876543210": eu, "ami-0a1b2c3d4e5f60718": older})
	writeFiles(t, project, map[string]string{"recipes/web.bake.hcl": retireRecipe})
	t.Chdir(project)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	adoptedAt := now.Add(-10 * 24 * time.Hour)

	r := mustRunAt(t, adoptedAt, env, "adopt", "--recipe", "web", "--version", "0.9.0", "--packer-manifest", "manifest.json")
	if want := "adopted eu-west-1 " + eu + ", us-east-1 " + east + " as web@0.9.0 (web), bake key unknown\n"; r.stdout != want {
		t.Errorf("adopt printed %q, want %q", r.stdout, want)
	}
	r = mustRunAt(t, now, env, "adopt", "--recipe", "web", "--version", "0.9.0", "--packer-manifest", manifest)
	if !strings.HasPrefix(r.stdout, "already adopted eu-west-1 "+eu) {
		t.Errorf("adopting again printed %q, want already adopted", r.stdout)
	}
	mustRunAt(t, adoptedAt, env, "-q", "adopt", "--recipe", "web", "--version", "0.8.0", "--packer-manifest", "manifest.json",
		"--run-uuid", "5b2f1c9e-0d4a-4c1e-9f63-2a7d8e4b1c01", "--build", "web")

	// Refusals: one clear message each, nothing changes.
	refused := func(code int, want string, args ...string) {
		t.Helper()
		before := readAMIs(t, moto)
		r := runAt(t, now, env, args...)
		if r.code != code || !strings.Contains(r.stderr, want) {
			t.Errorf("bakery %v: exit %d (want %d), stderr lacks %q:\n%s%s", args, r.code, code, want, r.stdout, r.stderr)
		}
		if after := readAMIs(t, moto); !reflect.DeepEqual(before, after) {
			t.Errorf("bakery %v was refused but changed the AMIs", args)
		}
	}
	refused(exitFailure, "is already web@0.9.0 (web) in bakery's catalog", "adopt", "--recipe", "web", "--version", "0.9.1", "--ami", "us-east-1:"+east)
	refused(exitFailure, "web@0.9.0 (web) exists already (adopted AMI", "adopt", "--recipe", "web", "--version", "0.9.0", "--ami", "us-east-1:"+spare)
	refused(exitUsage, "adopt needs --recipe NAME and --version V", "adopt", "--recipe", "web", "--packer-manifest", "manifest.json")
	refused(exitUsage, "adopt needs the AMIs", "adopt", "--recipe", "web", "--version", "2.0.0")
	refused(exitFailure, `unknown recipe "api"; ./recipes has: web`, "adopt", "--recipe", "api", "--version", "2.0.0", "--ami", "us-east-1:"+east)
	writeFiles(t, project, map[string]string{"broken.json": "{\n  \"builds\": [\n    {,\n"})
	refused(exitFailure, "broken.json:3:6: invalid character ','", "adopt", "--recipe", "web", "--version", "2.0.0", "--packer-manifest", "broken.json")
	refused(exitFailure, `build "api" not found in run c7a4e0f2`, "adopt", "--recipe", "web", "--version", "2.0.0", "--packer-manifest", "manifest.json", "--build", "api")

	// status marks the adopted versions, in text and JSON.
	r = mustRunAt(t, now, env, "-o", "json", "status", "web")
	var st statusDoc
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status JSON %q: %v", r.stdout, err)
	}
	if len(st.Versions) != 2 || st.Versions[0].Version != "0.9.0" || !st.Versions[0].Adopted || st.Versions[0].BakeKey != catalog.BakeKeyUnknown ||
		!st.Versions[0].Created.Equal(time.Unix(1764288000, 0)) || !st.Versions[1].Adopted {
		t.Errorf("status versions = %+v, want 0.9.0 and 0.8.0, adopted, bake key unknown, created at the Packer build", st.Versions)
	}
	r = mustRunAt(t, now, env, "status", "web")
	if !strings.Contains(r.stdout, "ADOPTED: not baked by bakery (bake key unknown)") {
		t.Errorf("status text does not mark the adopted version:\n%s", r.stdout)
	}

	// history: the Packer build and the adoption, by whom and when.
	r = mustRunAt(t, now, env, "-o", "json", "history", "web")
	var h historyDoc
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil {
		t.Fatal(err)
	}
	var adopt *catalog.Event
	for i, ev := range h.Events {
		if ev.Action == catalog.ActionAdopt && ev.Version == "0.9.0" {
			adopt = &h.Events[i]
		}
	}
	if adopt == nil || adopt.Actor != "alice" || !adopt.Time.Equal(adoptedAt) || !strings.Contains(adopt.Reason, "run c7a4e0f2-8b3d-4f6a-a1e9-3d5c7b9f2e14") {
		t.Errorf("history = %+v, want an adopt event of 0.9.0 by alice at %s naming the Packer run", h.Events, adoptedAt)
	}
	r = mustRunAt(t, now, env, "history", "web")
	if !strings.Contains(r.stdout, "adopt") || !strings.Contains(r.stdout, "alice") {
		t.Errorf("history text lacks the adoption:\n%s", r.stdout)
	}

	// bake never takes an adopted version for up to date.
	refused(exitFailure, "version 0.9.0 was adopted", "bake", "-var", "version=0.9.0", "recipes/web.bake.hcl")

	// outdated cannot tell what it was built from: bake a new version.
	if r := runAt(t, now, env, "outdated", "recipes/web.bake.hcl"); r.code != exitOutdated || !strings.Contains(r.stdout, "web: ami web: web@0.9.0 was adopted (bakery adopt): what it was built from is unknown") {
		t.Errorf("outdated: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// promote and launch treat it as any version.
	mustRunAt(t, now, env, "promote", "web@0.9.0", "--to", "dev")
	mustRunAt(t, now, env, "promote", "web@0.9.0", "--to", "prod")
	r = mustRunAt(t, now, env, "launch", "web", "--stage", "prod", "--dry-run")
	if !strings.HasPrefix(r.stdout, "would launch web@0.9.0 ("+east+") to prod as web-prod-v001 in us-east-1") {
		t.Errorf("launch --dry-run printed %q, want the adopted version's AMI", r.stdout)
	}

	// retire: 0.9.0 is kept (newest, in prod); 0.8.0 goes by policy.
	r = mustRunAt(t, now, env, "retire", "web")
	rows := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 3 && (f[0] == "0.9.0" || f[0] == "0.8.0") {
			rows[f[0]] = f[1]
		}
	}
	if rows["0.9.0"] != "keep" || rows["0.8.0"] != "remove" {
		t.Errorf("retire plan rows = %v, want 0.9.0 kept and 0.8.0 removed:\n%s", rows, r.stdout)
	}
	mustRunAt(t, now, env, "retire", "web", "--yes")
	amis, _ := ownImages(t, moto, "us-east-1")
	if slices.Contains(amis, older) || !slices.Contains(amis, east) {
		t.Errorf("after retire --yes us-east-1 has %v: want %s (0.8.0) gone and %s (0.9.0) kept", amis, older, east)
	}
}
