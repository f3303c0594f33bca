package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/internal/mototest"
)

const retireSharesRecipe = `variable "version" {
  type    = string
  default = "1.0.0"
}

recipe "web" {
  version = var.version
  stages  = ["prod"]
}

machine_image "web" {
  region         = "us-east-1"
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
  kms_key_id     = "alias/x"
}

stage "prod" {
  accounts = ["` + prodAccount + `"]
}

retain {
  keep_last     = 1
  keep_previous = 0
}
`

// TestRetireKeepsWhatAStageAccountMayLaunch: prod shares its AMIs with
// an account; 1.0.0 was prod's before 1.1.0, and the promotion of 1.1.0
// left it shared. With keep_previous 0 the plan keeps it for the share
// alone, with its own reason.
func TestRetireKeepsWhatAStageAccountMayLaunch(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	project := t.TempDir()
	writeFiles(t, project, map[string]string{"recipes/web.bake.hcl": retireSharesRecipe})
	t.Chdir(project)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for i, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		mustRunAt(t, now.Add(-time.Duration(30-10*i)*day), env, "-q", "bake", "-var", "version="+v, "recipes/web.bake.hcl")
	}
	mustRunAt(t, now.Add(-15*day), env, "promote", "web@1.0.0", "--to", "prod")
	mustRunAt(t, now.Add(-5*day), env, "promote", "web@1.1.0", "--to", "prod")
	r := mustRunAt(t, now, env, "retire", "recipes/web.bake.hcl")
	want := map[string]string{
		"1.2.0": "keep newest 1",
		"1.1.0": "keep in prod; shared with prod account " + prodAccount + " (current)",
		"1.0.0": "keep shared with prod account " + prodAccount + " (previous)",
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || want[f[0]] == "" {
			continue
		}
		if got := f[1] + " " + strings.Join(f[3:], " "); got != want[f[0]] {
			t.Errorf("row of %s: %q, want %q", f[0], got, want[f[0]])
		}
		delete(want, f[0])
	}
	if len(want) != 0 {
		t.Errorf("no rows for %v:\n%s", want, r.stdout)
	}
}
