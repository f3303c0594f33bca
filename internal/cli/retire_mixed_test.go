package cli

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/internal/mototest"
)

const retireMixedRecipe = `variable "version" {
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

container "app" {
  base = "scratch"
  layer {
    source      = "app/"
    destination = "/app/"
  }
  entrypoint = ["/app/hello"]
}

retain {
  keep_last     = 1
  keep_previous = 0
}
`

// TestRetireAVersionWithAnAMIAndAContainerImage: web bakes an AMI and a
// container image per version. The plan shows each version once, with
// both images' locations; 1.1.0's AMI is in use, which keeps its
// container image too; --yes retires 1.0.0 whole and history keeps its
// container image's retire event.
func TestRetireAVersionWithAnAMIAndAContainerImage(t *testing.T) {
	moto := mototest.Start(t)
	home := t.TempDir()
	env := append(awsEnv(t, moto), "BAKERY_HOME="+home)
	project := t.TempDir()
	writeFiles(t, project, map[string]string{
		"recipes/web.bake.hcl": retireMixedRecipe,
		"recipes/app/hello":    "#!/bin/sh\necho hello\n",
	})
	t.Chdir(project)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	amis := map[string]string{}
	for _, b := range []struct {
		version string
		age     time.Duration
	}{{"1.0.0", 60 * day}, {"1.1.0", 40 * day}, {"1.2.0", day}} {
		r := mustRunAt(t, now.Add(-b.age), env, "-q", "--output", "json", "bake", "-var", "version="+b.version, "recipes/web.bake.hcl")
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			var res struct {
				Artifacts []struct {
					ID   string `json:"id"`
					Kind string `json:"kind"`
				} `json:"artifacts"`
			}
			if json.Unmarshal([]byte(line), &res) != nil {
				continue
			}
			for _, a := range res.Artifacts {
				if strings.HasPrefix(a.ID, "ami-") {
					amis[b.version] = a.ID
				}
			}
		}
		if amis[b.version] == "" {
			t.Fatalf("bake %s printed no AMI:\n%s", b.version, r.stdout)
		}
	}
	c := ec2.NewFromConfig(moto.Config(t, "us-east-1"))
	run, err := c.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String(amis["1.1.0"]), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatal(err)
	}
	inst := aws.ToString(run.Instances[0].InstanceId)

	r := mustRunAt(t, now, env, "--output", "json", "retire", "recipes/web.bake.hcl")
	var doc struct {
		Images []struct {
			Decisions []struct {
				Ref       struct{ Version string } `json:"ref"`
				Keep      bool                     `json:"keep"`
				Reasons   []string                 `json:"reasons"`
				Locations []struct{ Where, ID string }
				Artifacts []struct {
					Artifact, Kind string
				} `json:"artifacts"`
			} `json:"decisions"`
		} `json:"images"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Images) != 1 {
		t.Fatalf("retire --output json: %v\n%s", err, r.stdout)
	}
	want := map[string]string{
		"1.2.0": "keep newest 1",
		"1.1.0": "keep in use by instance " + inst + " in us-east-1",
		"1.0.0": "remove",
	}
	if len(doc.Images[0].Decisions) != 3 {
		t.Fatalf("%d decisions for 3 versions:\n%s", len(doc.Images[0].Decisions), r.stdout)
	}
	for _, d := range doc.Images[0].Decisions {
		got := "remove"
		if d.Keep {
			got = "keep " + strings.Join(d.Reasons, "; ")
		}
		if got != want[d.Ref.Version] {
			t.Errorf("%s: %q, want %q", d.Ref.Version, got, want[d.Ref.Version])
		}
		var where []string
		for _, l := range d.Locations {
			where = append(where, l.Where)
		}
		if !slices.Equal(where, []string{"us-east-1", home}) || len(d.Artifacts) != 2 || d.Artifacts[0].Kind != "ami" || d.Artifacts[1].Kind != "container" {
			t.Errorf("%s: locations %v, artifacts %+v: want its AMI and its container image", d.Ref.Version, d.Locations, d.Artifacts)
		}
	}
	text := mustRunAt(t, now, env, "retire", "recipes/web.bake.hcl")
	rows := 0
	for _, line := range strings.Split(text.stdout, "\n") {
		if strings.HasPrefix(line, "1.0.0 ") {
			rows++
			if !strings.Contains(line, "us-east-1:"+amis["1.0.0"]) || !strings.Contains(line, home+":sha256:") {
				t.Errorf("the row of 1.0.0 does not list both images: %q", line)
			}
		}
	}
	if rows != 1 {
		t.Errorf("1.0.0 has %d rows, want 1:\n%s", rows, text.stdout)
	}

	out := mustRunAt(t, now, env, "retire", "--yes", "recipes/web.bake.hcl")
	if !strings.Contains(out.stdout, "retired 1 of 1 versions: 1 AMIs") || !strings.Contains(out.stdout, "1 container manifests") {
		t.Errorf("retire --yes:\n%s", out.stdout)
	}
	st := mustRunAt(t, now, env, "--output", "json", "status", "web")
	if strings.Contains(st.stdout, `"1.0.0"`) || !strings.Contains(st.stdout, `"1.1.0"`) {
		t.Errorf("status after retire:\n%s", st.stdout)
	}
	h := mustRunAt(t, now, env, "--output", "json", "history", "web")
	var hist struct {
		Events []struct{ Action, Version, Artifact string } `json:"events"`
	}
	if err := json.Unmarshal([]byte(h.stdout), &hist); err != nil {
		t.Fatal(err)
	}
	var retired []string
	for _, ev := range hist.Events {
		if ev.Action == "retire" {
			retired = append(retired, ev.Version+" "+ev.Artifact)
		}
	}
	slices.Sort(retired)
	// Without a ledger the AMI's retire event went with its tags; the
	// container image's tombstone outlives it.
	if !slices.Equal(retired, []string{"1.0.0 app"}) {
		t.Errorf("retire events in history: %v\n%s", retired, h.stdout)
	}
}
