package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/bakery-sh/bakery/bake"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// pairRecipe is a recipe "pair" whose machine_image blocks are named
// names, in order, each baked without provisioners (no SSH); a block
// named "bad" asks for a subnet that does not exist.
func pairRecipe(t *testing.T, names ...string) string {
	t.Helper()
	src := "recipe \"pair\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\"]\n}\n"
	for _, n := range names {
		src += "machine_image \"" + n + "\" {\n" +
			"  region         = \"us-east-1\"\n" +
			"  source_ami_ssm = \"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64\"\n"
		if n == "bad" {
			src += "  subnet_id      = \"subnet-0123456789abcdef0\"\n"
		}
		src += "}\n"
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pair.bake.hcl": src})
	return filepath.Join(dir, "pair.bake.hcl")
}

// bakedAMIs returns the account's AMIs in us-east-1 by their
// bakery:artifact tag (only AMIs carrying a bake key: finished bakes).
func bakedAMIs(t *testing.T, moto *mototest.Server) map[string]string {
	t.Helper()
	out, err := ec2.NewFromConfig(moto.Config(t, "us-east-1")).DescribeImages(context.Background(), &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, img := range out.Images {
		tags := map[string]string{}
		for _, tg := range img.Tags {
			tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		if tags[catalog.TagBakeKey] != "" {
			m[tags[catalog.TagArtifact]] = aws.ToString(img.ImageId)
		}
	}
	return m
}

// artifactNames returns the names of res's artifacts, in order.
func artifactNames(res bake.Result) []string {
	var out []string
	for _, a := range res.Artifacts {
		out = append(out, a.Name)
	}
	return out
}

func TestBakeMachineImageFailureDoesNotStopTheOthers(t *testing.T) {
	moto := mototest.Start(t)
	env := append(awsEnv(t, moto), "BAKERY_POLL_INTERVAL=20ms")
	recipe := pairRecipe(t, "bad", "good")
	before := baseline(t, moto, "us-east-1")
	manifest := filepath.Join(t.TempDir(), "manifest.json")

	r := run(t, env, "-q", "--output", "json", "bake", "--manifest", manifest, recipe)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"1 of 2 blocks failed (bad)", `machine_image "bad"`, "subnet-0123456789abcdef0"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not name the failed block (%q):\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, `"good"`) {
		t.Errorf("stderr names the block that baked:\n%s", r.stderr)
	}
	// The result lists the AMI that was baked and the block that failed
	// (the error document follows it).
	var res bake.Result
	if err := json.Unmarshal([]byte(strings.SplitN(r.stdout, "\n", 2)[0]), &res); err != nil {
		t.Fatalf("decoding %q: %v", r.stdout, err)
	}
	if len(res.Artifacts) != 1 || res.Artifacts[0].Name != "good" || res.Artifacts[0].Kind != catalog.KindAMI || res.Artifacts[0].Cached {
		t.Fatalf("artifacts = %+v, want the fresh AMI of good", res.Artifacts)
	}
	if len(res.Failed) != 1 || res.Failed[0].Name != "bad" || !strings.Contains(res.Failed[0].Error, "subnet-0123456789abcdef0") {
		t.Errorf("failed = %+v, want bad with its error", res.Failed)
	}
	if res.Cached || res.BakeKey != "" {
		t.Errorf("result cached %v, bake key %q: a partly failed recipe is neither", res.Cached, res.BakeKey)
	}
	if m, err := os.ReadFile(manifest); err != nil || strings.TrimSpace(string(m)) != strings.SplitN(r.stdout, "\n", 2)[0] {
		t.Errorf("manifest = %q (%v), want the result", m, err)
	}
	// The good AMI stays in moto, finished; the bad block left nothing.
	amis := bakedAMIs(t, moto)
	if len(amis) != 1 || amis["good"] != res.Artifacts[0].ID {
		t.Errorf("AMIs in moto = %v, want only good's %s", amis, res.Artifacts[0].ID)
	}
	for _, l := range leftovers(t, moto, "us-east-1", before) {
		if !strings.HasPrefix(l, "AMI ") && !strings.HasPrefix(l, "snapshot ") {
			t.Errorf("left behind: %s", l)
		}
	}

	// The AMI that was baked counts as baked: the next run skips it.
	again := run(t, env, "-q", "--output", "json", "bake", recipe)
	if again.code != 1 || !strings.Contains(again.stdout, `"cached":true`) {
		t.Errorf("second run: exit %d, stdout %s", again.code, again.stdout)
	}
}

func TestBakeOnlyAndExceptSelectMachineImages(t *testing.T) {
	moto := mototest.Start(t)
	env := append(awsEnv(t, moto), "BAKERY_POLL_INTERVAL=20ms")
	recipe := pairRecipe(t, "alpha", "beta")

	res := bakeJSON(t, env, "--only", "beta", recipe)
	if got := artifactNames(res); !slices.Equal(got, []string{"beta"}) || res.Artifacts[0].Cached {
		t.Fatalf("--only beta baked %v (%+v), want beta alone", got, res.Artifacts)
	}
	if amis := bakedAMIs(t, moto); len(amis) != 1 || amis["beta"] == "" {
		t.Fatalf("after --only beta moto has %v, want beta's AMI alone", amis)
	}

	res = bakeJSON(t, env, "--parallel", "1", "--except", "beta", recipe)
	if got := artifactNames(res); !slices.Equal(got, []string{"alpha"}) || res.Artifacts[0].Cached {
		t.Fatalf("--except beta baked %v (%+v), want alpha alone", got, res.Artifacts)
	}
	amis := bakedAMIs(t, moto)
	names := make([]string, 0, len(amis))
	for n := range amis {
		names = append(names, n)
	}
	sort.Strings(names)
	if !slices.Equal(names, []string{"alpha", "beta"}) {
		t.Fatalf("after --except beta moto has %v, want alpha and beta", amis)
	}

	// Comma-separated and repeated names select the same blocks.
	for _, args := range [][]string{{"--only", "alpha,beta"}, {"--only", "beta", "--only", "alpha"}} {
		res = bakeJSON(t, env, append(args, recipe)...)
		if got := artifactNames(res); !slices.Equal(got, []string{"alpha", "beta"}) || !res.Cached {
			t.Errorf("%v: %v cached %v, want alpha and beta up to date, in recipe order", args, got, res.Cached)
		}
	}
}

// containerAndAMIRecipe is the hello recipe with a machine_image block
// "server" added; nothing in the test's environment reaches AWS.
func containerAndAMIRecipe(t *testing.T) (recipe string, env []string) {
	t.Helper()
	recipe = helloProject(t, "")
	src, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	src = append(src, `machine_image "server" {
  region     = "us-east-1"
  source_ami = "ami-0123456789abcdef0"
}
`...)
	if err := os.WriteFile(recipe, src, 0o644); err != nil {
		t.Fatal(err)
	}
	// Any AWS call would fail: no credentials, and a closed endpoint.
	return recipe, []string{
		"BAKERY_HOME=" + t.TempDir(),
		"BAKERY_AWS_ENDPOINT=http://127.0.0.1:1",
		"AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none"),
	}
}

func TestBakeOnlyAndExceptSelectContainers(t *testing.T) {
	recipe, env := containerAndAMIRecipe(t)
	for _, args := range [][]string{{"--only", "hello"}, {"--except", "server"}} {
		res := bakeJSON(t, env, append(args, recipe)...)
		if len(res.Artifacts) != 1 || res.Artifacts[0].Name != "hello" || res.Artifacts[0].Kind != catalog.KindContainer {
			t.Errorf("%v baked %+v, want the hello container alone (and no AWS call)", args, res.Artifacts)
		}
	}
}

func TestBakeSelectionUsageErrors(t *testing.T) {
	recipe, env := containerAndAMIRecipe(t)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--only", "nope"}, []string{`named "nope"`, "hello, server"}},
		{[]string{"--only", "hello,nope"}, []string{`named "nope"`, "hello, server"}},
		{[]string{"--except", "nope"}, []string{`named "nope"`, "hello, server"}},
		{[]string{"--only", "hello", "--except", "server"}, []string{"--only and --except"}},
		{[]string{"--except", "hello,server"}, []string{"leaves nothing to bake"}},
		{[]string{"--parallel", "0"}, []string{"--parallel must be 1 or more"}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			home := t.TempDir()
			r := run(t, append(env, "BAKERY_HOME="+home), append(append([]string{"bake"}, c.args...), recipe)...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2 (usage)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, r.stderr)
				}
			}
			if files := snapshot(t, home); len(files) > 1 {
				t.Errorf("a usage error baked something: %v", files)
			}
		})
	}
}
