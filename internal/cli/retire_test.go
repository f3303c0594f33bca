package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// runAt runs bakery in-process as run does, with the env's clock stopped
// at now.
func runAt(t *testing.T, now time.Time, extra []string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, environ: append([]string{"PATH=" + os.Getenv("PATH")}, extra...),
		now: func() time.Time { return now }}
	code := e.run(context.Background(), append([]string{"bakery"}, args...))
	return result{code, out.String(), errb.String()}
}

func mustRunAt(t *testing.T, now time.Time, extra []string, args ...string) result {
	t.Helper()
	r := runAt(t, now, extra, args...)
	if r.code != 0 {
		t.Fatalf("bakery %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

const retireRecipe = `variable "version" {
  type    = string
  default = "1.0.0"
}

recipe "web" {
  version = var.version
  stages  = ["dev", "prod"]
}

machine_image "web" {
  region         = "us-east-1"
  regions        = ["eu-west-1"]
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

retain {
  keep_last     = 1
  keep_within   = "30d"
  keep_previous = 0
}

fleet "prod" {}
`

// ownImages returns the account's AMIs in region and their snapshots.
func ownImages(t *testing.T, moto *mototest.Server, region string) (amis, snaps []string) {
	t.Helper()
	c := ec2.NewFromConfig(moto.Config(t, region))
	out, err := c.DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range out.Images {
		amis = append(amis, aws.ToString(img.ImageId))
	}
	sn, err := c.DescribeSnapshots(context.Background(), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sn.Snapshots {
		snaps = append(snaps, aws.ToString(s.SnapshotId))
	}
	slices.Sort(amis)
	slices.Sort(snaps)
	return amis, snaps
}

func TestRetireCommand(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	project := t.TempDir()
	writeFiles(t, project, map[string]string{
		"recipes/web.bake.hcl": retireRecipe,
		"bad.bake.hcl":         strings.Replace(retireRecipe, `"30d"`, `"30 days"`, 1),
	})
	t.Chdir(project)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	baked := map[string]map[string]string{} // version → region → AMI
	for _, b := range []struct {
		version string
		age     time.Duration
	}{{"1.0.0", 60 * day}, {"1.1.0", 40 * day}, {"1.2.0", 20 * day}, {"1.3.0", day}} {
		r := mustRunAt(t, now.Add(-b.age), env, "-q", "--output", "json", "bake", "-var", "version="+b.version, "recipes/web.bake.hcl")
		var res struct {
			Artifacts []struct {
				ID     string `json:"id"`
				Region string `json:"region"`
			} `json:"artifacts"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Artifacts) != 2 {
			t.Fatalf("bake output %q: %v", r.stdout, err)
		}
		baked[b.version] = map[string]string{}
		for _, a := range res.Artifacts {
			baked[b.version][a.Region] = a.ID
		}
	}
	mustRunAt(t, now.Add(-59*day), env, "promote", "web@1.0.0", "--to", "dev")
	// Three groups of prod (of an AMI not the recipe's): two disabled,
	// one serving; keep_disabled is 1 by default.
	cfg := moto.Config(t, "us-east-1")
	inv := fleet.NewFromConfig(cfg, fleet.WithPollInterval(time.Millisecond))
	ctx := context.Background()
	amazon, err := ec2.NewFromConfig(cfg).DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(amazon.Images) == 0 {
		t.Fatalf("moto has no AMI: %v", err)
	}
	subnets, err := inv.DefaultSubnets(ctx, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 3; n++ {
		name := fleet.Name("web", "prod", n)
		tpl, err := inv.CreateTemplate(ctx, "us-east-1", name, &ec2types.RequestLaunchTemplateData{ImageId: amazon.Images[0].ImageId, InstanceType: ec2types.InstanceTypeT3Micro}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := inv.CreateGroup(ctx, "us-east-1", fleet.GroupSpec{Name: name, Template: tpl, Max: 1, Subnets: subnets, HealthCheckType: "EC2",
			Tags: map[string]string{catalog.TagRecipe: "web", fleet.TagStage: "prod", catalog.TagVersion: "0.9.0"}}); err != nil {
			t.Fatal(err)
		}
		if n < 3 {
			g, _, err := inv.Get(ctx, "us-east-1", name)
			if err != nil {
				t.Fatal(err)
			}
			if err := inv.Disable(ctx, g, now.Add(-time.Duration(5-n)*day)); err != nil {
				t.Fatal(err)
			}
		}
	}
	eastBefore, eastSnaps := ownImages(t, moto, "us-east-1")
	westBefore, westSnaps := ownImages(t, moto, "eu-west-1")
	if len(eastBefore) != 4 || len(westBefore) != 4 {
		t.Fatalf("baked %d AMIs in us-east-1 and %d in eu-west-1, want 4 each (bake output regions: %v)", len(eastBefore), len(westBefore), baked)
	}

	// The plan: a table, and nothing changes.
	r := mustRunAt(t, now, env, "retire", "web")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) < 7 || !strings.HasPrefix(lines[0], "web/web: keep the newest 1, those baked within 30d, 0 previous per stage, revoked ones for 7d") ||
		strings.Join(strings.Fields(lines[1]), " ") != "VERSION DECISION LOCATIONS REASONS" {
		t.Fatalf("retire printed:\n%s", r.stdout)
	}
	rows := map[string]string{}
	for _, l := range lines[2:6] {
		f := strings.Fields(l)
		rows[f[0]] = f[1] + " " + strings.Join(f[3:], " ")
	}
	want := map[string]string{
		"1.3.0": "keep newest 1; baked within 30d",
		"1.2.0": "keep baked within 30d",
		"1.1.0": "remove not among the newest 1; baked 40d ago (kept 30d); in no stage, unused, no rollback target, the base of no kept image",
		"1.0.0": "keep in dev",
	}
	for v, w := range want {
		if rows[v] != w {
			t.Errorf("row of %s: %q, want %q", v, rows[v], w)
		}
	}
	if !strings.Contains(r.stdout, "us-east-1:"+baked["1.1.0"]["us-east-1"]+",eu-west-1:"+baked["1.1.0"]["eu-west-1"]) &&
		!strings.Contains(r.stdout, "eu-west-1:"+baked["1.1.0"]["eu-west-1"]+",us-east-1:"+baked["1.1.0"]["us-east-1"]) {
		t.Errorf("the plan does not list both locations of 1.1.0 (%v):\n%s", baked["1.1.0"], r.stdout)
	}
	if !strings.Contains(r.stdout, "would remove 1 versions (2 AMIs and their snapshots) and 0 orphans; nothing removed: run again with --yes") {
		t.Errorf("the plan does not say that nothing was removed:\n%s", r.stdout)
	}
	if a, _ := ownImages(t, moto, "us-east-1"); !slices.Equal(a, eastBefore) {
		t.Fatalf("a plan without --yes changed the AMIs: %v, was %v", a, eastBefore)
	}
	groupRows := map[string]string{}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 5 && strings.HasPrefix(f[0], "web-prod-v") {
			groupRows[f[0]] = strings.Join(f[3:], " ")
		}
	}
	wantGroups := map[string]string{
		"web-prod-v001": "disabled remove disabled, beyond keep_disabled 1",
		"web-prod-v002": "disabled keep rollback target of prod; one of the newest 1 disabled",
		"web-prod-v003": "serving keep serving",
	}
	for g, w := range wantGroups {
		if groupRows[g] != w {
			t.Errorf("row of group %s: %q, want %q", g, groupRows[g], w)
		}
	}
	if !strings.Contains(r.stdout, "would delete 1 groups; nothing deleted: run again with --yes") {
		t.Errorf("the plan does not say that no group was deleted:\n%s", r.stdout)
	}
	groupsLeft := func() []string {
		t.Helper()
		gs, err := inv.List(ctx, "us-east-1", fleet.Selector{Recipe: "web"})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, g := range gs {
			names = append(names, g.Name)
		}
		return names
	}
	if got := groupsLeft(); len(got) != 3 {
		t.Fatalf("a plan without --yes deleted groups: %v left", got)
	}

	// JSON says the same.
	r = mustRunAt(t, now, env, "retire", "--output", "json", "recipes/web.bake.hcl")
	var recipeDoc struct {
		Recipe string            `json:"recipe"`
		Images []json.RawMessage `json:"images"`
		Groups []json.RawMessage `json:"groups"`
		Apply  bool              `json:"applied"`
	}
	var doc struct {
		Recipe   string `json:"recipe"`
		Artifact string `json:"artifact"`
		Policy   struct {
			KeepLast   int    `json:"keep_last"`
			KeepWithin string `json:"keep_within"`
		} `json:"policy"`
		Decisions []struct {
			Ref       struct{ Version string } `json:"ref"`
			Keep      bool                     `json:"keep"`
			Reasons   []string                 `json:"reasons"`
			Locations []struct{ Where, ID string }
		} `json:"decisions"`
		Orphans []json.RawMessage `json:"orphans"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &recipeDoc); err != nil || len(recipeDoc.Images) != 1 {
		t.Fatalf("decoding %q: %v", r.stdout, err)
	}
	if err := json.Unmarshal(recipeDoc.Images[0], &doc); err != nil {
		t.Fatalf("decoding %s: %v", recipeDoc.Images[0], err)
	}
	if recipeDoc.Recipe != "web" || recipeDoc.Apply || len(recipeDoc.Groups) != 3 || doc.Recipe != "web" || doc.Artifact != "web" ||
		doc.Policy.KeepLast != 1 || doc.Policy.KeepWithin != "30d" || len(doc.Decisions) != 4 || doc.Orphans == nil {
		t.Fatalf("JSON plan: %s", r.stdout)
	}
	for _, d := range doc.Decisions {
		verb := "keep"
		if !d.Keep {
			verb = "remove"
		}
		if got := verb + " " + strings.Join(d.Reasons, "; "); got != want[d.Ref.Version] || len(d.Locations) != 2 {
			t.Errorf("JSON decision of %s: %q in %d locations, want %q in 2", d.Ref.Version, got, len(d.Locations), want[d.Ref.Version])
		}
	}

	// --yes removes 1.1.0 in both regions with its snapshots.
	r = mustRunAt(t, now, env, "retire", "--yes")
	if !strings.Contains(r.stdout, "retired 1 of 1 versions: 2 AMIs, 2 snapshots,") || !strings.Contains(r.stdout, "deleted 1 of 1 groups with their launch templates") {
		t.Errorf("retire --yes printed:\n%s", r.stdout)
	}
	if got := fmt.Sprint(groupsLeft()); got != "[web-prod-v002 web-prod-v003]" {
		t.Errorf("groups left: %s, want the rollback target and the serving group", got)
	}
	for region, before := range map[string][]string{"us-east-1": eastBefore, "eu-west-1": westBefore} {
		amis, _ := ownImages(t, moto, region)
		wantAMIs := slices.DeleteFunc(slices.Clone(before), func(id string) bool { return id == baked["1.1.0"][region] })
		if !slices.Equal(amis, wantAMIs) || len(amis) != 3 {
			t.Errorf("AMIs in %s after retire: %v, want %v", region, amis, wantAMIs)
		}
	}
	_, eastAfter := ownImages(t, moto, "us-east-1")
	_, westAfter := ownImages(t, moto, "eu-west-1")
	if len(eastAfter) != len(eastSnaps)-1 || len(westAfter) != len(westSnaps)-1 {
		t.Errorf("snapshots: us-east-1 %d → %d, eu-west-1 %d → %d; want one fewer in each", len(eastSnaps), len(eastAfter), len(westSnaps), len(westAfter))
	}
	if r := mustRunAt(t, now, env, "retire", "--yes"); !strings.Contains(r.stdout, "nothing to remove") {
		t.Errorf("a second retire --yes printed:\n%s", r.stdout)
	}

	// Bad input changes nothing and says what to do.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"retire", "nosuch"}, 1, `unknown recipe "nosuch"; ./recipes has: web`},
		{[]string{"retire", "bad.bake.hcl"}, 1, `bad.bake.hcl:19:19: Error: invalid duration "30 days"`},
		{[]string{"retire", "--yes", "--dry-run"}, 2, "--yes and --dry-run contradict each other"},
	} {
		r := runAt(t, now, env, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bakery %v: exit %d (want %d), stderr lacks %q:\n%s", tc.args, r.code, tc.code, tc.want, r.stderr)
		}
	}
	if a, _ := ownImages(t, moto, "us-east-1"); len(a) != 3 {
		t.Errorf("bad input changed the AMIs: %v", a)
	}
}
