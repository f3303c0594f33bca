package ami_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestPrepareResolvesTheSourceAMI(t *testing.T) {
	e := newBakeEnv(t)
	b := e.baker()
	ctx := context.Background()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"by id", `  source_ami = "` + bakeAL2023 + `"`, bakeAL2023},
		{"by SSM parameter", `  source_ami_ssm = "` + bakeAL2023SSM + `"`, bakeAL2023},
		{"by filter", `
  source_ami_filter {
    name   = "al2023-ami-2023.*-kernel-6.1-x86_64"
    owners = ["amazon"]
  }`, bakeAL2023},
		{"by filter with architecture and filters", `
  source_ami_filter {
    name         = "al2023-ami-2023.*-kernel-6.1-*"
    owners       = ["amazon"]
    architecture = "x86_64"
    filters      = { "virtualization-type" = "hvm" }
  }`, bakeAL2023},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, m := bakeRecipe(t, `  region = "us-east-1"`+"\n"+tc.body)
			p, err := b.Prepare(ctx, r, m)
			if err != nil {
				t.Fatal(err)
			}
			if p.SourceAMI != tc.want || p.BuildRegion != "us-east-1" || p.Recipe != "web" || p.Artifact != "server" || p.Version != "1.0.0" {
				t.Errorf("plan = %+v, want source %s in us-east-1", p, tc.want)
			}
			if !strings.HasPrefix(p.Key, "sha256:") {
				t.Errorf("key = %q", p.Key)
			}
		})
	}
}

func TestPrepareFilterMostRecentPicksTheNewest(t *testing.T) {
	e := newBakeEnv(t)
	ctx := context.Background()
	c := e.ec2("us-east-1")
	// moto dates its default AMIs all alike, so register our own, a
	// second apart (CreationDate has one-second resolution).
	var ids []string
	for i, name := range []string{"golden-base-1", "golden-base-2"} {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond)
		}
		out, err := c.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, aws.ToString(out.ImageId))
	}
	r, m := bakeRecipe(t, `
  region = "us-east-1"
  source_ami_filter {
    name        = "golden-base-*"
    owners      = ["self"]
    most_recent = true
  }`)
	p, err := e.baker().Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	if p.SourceAMI != ids[1] || p.SourceAMIName != "golden-base-2" {
		t.Errorf("source = %s (%s), want the newest %s", p.SourceAMI, p.SourceAMIName, ids[1])
	}

	// Without most_recent two matches are an error that lists them.
	r, m = bakeRecipe(t, `
  region = "us-east-1"
  source_ami_filter {
    name   = "golden-base-*"
    owners = ["self"]
  }`)
	_, err = e.baker().Prepare(ctx, r, m)
	wantErrContains(t, err, "web.bake.hcl:9:3", "matched 2 AMIs in us-east-1", ids[0], ids[1], "golden-base-1", "most_recent = true")
}

func TestPrepareSourceErrorsNameTheRecipeLine(t *testing.T) {
	e := newBakeEnv(t)
	b := e.baker()
	ctx := context.Background()
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"filter matching nothing", `
  source_ami_filter {
    name   = "no-such-image-*"
    owners = ["amazon"]
  }`, []string{"web.bake.hcl:9:3", "matched no available AMI in us-east-1", `name "no-such-image-*"`, "owners amazon"}},
		{"filter matching several", `
  source_ami_filter {
    name   = "al2023-ami-2023.*-x86_64"
    owners = ["amazon"]
  }`, []string{"web.bake.hcl:9:3", "matched 3 AMIs", "kernel-6.1-x86_64", "kernel-6.12-x86_64", "most_recent"}},
		{"missing SSM parameter", `  source_ami_ssm = "/aws/service/no/such/parameter"`,
			[]string{"web.bake.hcl:8:20", "SSM parameter /aws/service/no/such/parameter does not exist in us-east-1"}},
		{"unknown AMI id", `  source_ami = "ami-0123456789abcdef0"`,
			[]string{"web.bake.hcl:8:16", "source AMI ami-0123456789abcdef0 not found in us-east-1"}},
		{"instance type of another architecture", `  source_ami = "` + bakeAL2023 + `"
  instance_type = "t4g.micro"`,
			[]string{"web.bake.hcl:9:19", `instance type "t4g.micro" runs arm64`, "is x86_64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, m := bakeRecipe(t, `  region = "us-east-1"`+"\n"+tc.body)
			_, err := b.Prepare(ctx, r, m)
			wantErrContains(t, err, tc.want...)
		})
	}
}

func TestPrepareRejectsUnknownRegionsAndInstanceTypes(t *testing.T) {
	e := newBakeEnv(t)
	b := e.baker()
	ctx := context.Background()
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"copy region", `  region = "us-east-1"
  source_ami = "` + bakeAL2023 + `"
  regions = ["eu-west-1", "zz-north-1"]`,
			[]string{"web.bake.hcl:9:13", `region "zz-north-1" does not exist; known regions:`, "eu-west-1, eu-west-2"}},
		{"build region", `  region = "zz-north-1"
  source_ami = "` + bakeAL2023 + `"`,
			[]string{"web.bake.hcl:7:12", `region "zz-north-1" does not exist`}},
		{"instance type", `  region = "us-east-1"
  source_ami = "` + bakeAL2023 + `"
  instance_type = "t9.huge"`,
			[]string{"web.bake.hcl:9:19", `instance type "t9.huge" does not exist in us-east-1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, m := bakeRecipe(t, tc.body)
			_, err := b.Prepare(ctx, r, m)
			wantErrContains(t, err, tc.want...)
		})
	}
	e.assertNoLeftovers("us-east-1", "eu-west-1")
}

func TestPrepareKeyFollowsTheInputs(t *testing.T) {
	e := newBakeEnv(t)
	b := e.baker()
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("site/index.html", "hello", 0o644)
	write("site/css/a.css", "body{}", 0o644)
	write("setup.sh", "echo setup", 0o755)
	body := `  region = "us-east-1"
  source_ami = "` + bakeAL2023 + `"
  provision "file" {
    source      = "` + dir + `/site/"
    destination = "/var/www/"
  }
  provision "shell" {
    script = "` + dir + `/setup.sh"
  }`
	key := func() string {
		t.Helper()
		r, m := bakeRecipe(t, body)
		p, err := b.Prepare(ctx, r, m)
		if err != nil {
			t.Fatal(err)
		}
		return p.Key
	}
	k0 := key()
	if k := key(); k != k0 {
		t.Fatalf("the same inputs gave two keys: %s and %s", k0, k)
	}
	// File times do not count.
	if err := os.Chtimes(filepath.Join(dir, "site/index.html"), time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if k := key(); k != k0 {
		t.Errorf("touching a file changed the key")
	}
	seen := map[string]string{k0: "original"}
	for _, change := range []struct {
		name string
		do   func()
	}{
		{"file content in the folder", func() { write("site/css/a.css", "body{color:red}", 0o644) }},
		{"new file in the folder", func() { write("site/robots.txt", "", 0o644) }},
		{"execute bit", func() { write("site/robots.txt", "", 0o755) }},
		{"script content", func() { write("setup.sh", "echo setup2", 0o755) }},
	} {
		change.do()
		k := key()
		if prev, ok := seen[k]; ok {
			t.Errorf("changing the %s kept the key of %s", change.name, prev)
		}
		seen[k] = change.name
	}
}

var _ = ec2types.InstanceTypeT3Micro
