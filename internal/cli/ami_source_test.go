package cli

import (
	"encoding/json"
	"maps"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/bake"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// TestBakePrintsTheSourceAMI: the source AMI a filter resolved to is
// printed (a dated progress line) and given in the JSON of every AMI
// artifact, baked or up to date: id, name, owner, creation date.
func TestBakePrintsTheSourceAMI(t *testing.T) {
	moto := mototest.Start(t)
	env := append(awsEnv(t, moto), "BAKERY_POLL_INTERVAL=20ms")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"web.bake.hcl": `recipe "web" {
  version = "1.0.0"
  stages  = ["dev"]
}

machine_image "web" {
  region = "us-east-1"
  source_ami_filter {
    name        = "al2023-ami-2023.*-kernel-6.1-x86_64"
    owners      = ["amazon"]
    most_recent = true
  }
  encrypted = false
}
`})
	recipe := filepath.Join(dir, "web.bake.hcl")
	var first map[string]string
	for _, pass := range []string{"baked", "up to date"} {
		r := mustRun(t, env, "--output", "json", "bake", recipe)
		var res bake.Result
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("%s: decoding %q: %v", pass, r.stdout, err)
		}
		if len(res.Artifacts) != 1 || res.Artifacts[0].Cached != (pass == "up to date") {
			t.Fatalf("%s: artifacts %+v", pass, res.Artifacts)
		}
		var doc struct {
			Artifacts []struct {
				Source map[string]string `json:"source"`
			} `json:"artifacts"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatal(err)
		}
		// Which AL2023 release moto calls the newest varies (it dates its
		// images when it loads them); the source is the same on both passes.
		src := doc.Artifacts[0].Source
		if first == nil {
			first = src
		}
		if !maps.Equal(src, first) || !strings.HasPrefix(src["id"], "ami-") || !strings.HasPrefix(src["name"], "al2023-ami-2023.") || !strings.HasSuffix(src["name"], "-kernel-6.1-x86_64") ||
			src["owner"] != "137112412989" || src["created"] == "" || len(src) != 4 {
			t.Errorf("%s: source = %v, want id, name, owner and created of moto's plain AL2023", pass, src)
		}
		line := regexp.MustCompile(`(?m)^time=\S+ msg="web: source AMI ` + regexp.QuoteMeta(src["id"]+" "+src["name"]+", owner 137112412989, created "+src["created"]) + `"$`)
		if !line.MatchString(r.stderr) {
			t.Errorf("%s: no source AMI line in:\n%s", pass, r.stderr)
		}
	}
}
