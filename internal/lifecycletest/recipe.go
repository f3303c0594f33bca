// Package lifecycletest holds the AMI recipe the whole-lifecycle tests
// (internal/chaos, internal/iamproof) drive: an SSH-provisioned bake over
// the test sshd, an encrypted copy to a second region, a share, three
// stages and a prod fleet behind a target group.
package lifecycletest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bakery-sh/bakery/internal/sshtest"
)

// WriteProject writes the lifecycle project into dir: a fresh SSH key
// (as id_ed25519, authorized on sshd) and recipes/web.bake.hcl (see
// Recipe).
func WriteProject(t testing.TB, dir string, sshd *sshtest.Server, target, targetGroup, account string) {
	t.Helper()
	files := map[string]string{
		"id_ed25519":           sshd.NewAuthorizedKey(),
		"recipes/web.bake.hcl": Recipe(sshd, target, targetGroup, account),
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Recipe returns recipes/web.bake.hcl for a project whose folder holds the
// private key sshd accepts as id_ed25519: the provisioner writes
// web-VERSION into target, the fleet serves behind targetGroup, and the
// KMS keys are account's.
func Recipe(sshd *sshtest.Server, target, targetGroup, account string) string {
	return fmt.Sprintf(recipe, sshd.Host, sshd.Port, sshd.User, target, targetGroup, account)
}

const recipe = `variable "version" {
  type    = string
  default = "1.0.0"
}

recipe "web" {
  version = var.version
  stages  = ["dev", "staging", "prod"]
}

machine_image "web" {
  region               = "us-east-1"
  regions              = ["eu-west-1"]
  share_with           = ["111122223333"]
  kms_key_id           = "arn:aws:kms:us-east-1:%[6]s:key/11111111-2222-3333-4444-555555555555"
  region_kms_key_ids   = { "eu-west-1" = "arn:aws:kms:eu-west-1:%[6]s:key/66666666-7777-8888-9999-000000000000" }
  source_ami_ssm       = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
  ssh_host             = %[1]q
  ssh_port             = %[2]d
  ssh_username         = %[3]q
  ssh_private_key_file = "../id_ed25519"
  ssh_timeout          = "20s"
  provision "shell" {
    inline = ["echo baked > %[4]s/web-$VERSION"]
    env    = { VERSION = var.version }
  }
}

fleet "prod" {
  instance_type    = "t3.small"
  min_size         = 1
  max_size         = 2
  desired_capacity = 1
  target_groups    = [%[5]q]
  healthy_timeout  = "2m"
}

retain {
  keep_last     = 1
  keep_previous = 1
}
`
