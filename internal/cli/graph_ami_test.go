package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// amiRecipe is a machine image recipe NAME from source (a source_ami
// line) that provisions over SSH into the test's sshd.
func amiRecipe(sshd *sshtest.Server, name, source string) string {
	return fmt.Sprintf(`recipe %q {
  version = "1.0.0"
  stages  = ["dev"]
}
machine_image %q {
  region               = "us-east-1"
  %s
  ssh_host             = %q
  ssh_port             = %d
  ssh_username         = %q
  ssh_private_key_file = "id_ed25519"
  ssh_timeout          = "10s"
  provision "shell" {
    inline = ["echo provisioned %s"]
  }
}
`, name, name, source, sshd.Host, sshd.Port, sshd.User, name)
}

// TestBakeFolderAMIOnLinkedAMI: source_ami = "recipe:hardened" bakes web
// from the AMI hardened baked in the same run, in web's build region; the
// second run finds both up to date.
func TestBakeFolderAMIOnLinkedAMI(t *testing.T) {
	moto := mototest.Start(t)
	sshd := sshtest.Start(t)
	env := awsEnv(t, moto)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"id_ed25519":          sshd.NewAuthorizedKey(),
		"a-web.bake.hcl":      amiRecipe(sshd, "web", `source_ami = "recipe:hardened"`),
		"b-hardened.bake.hcl": amiRecipe(sshd, "hardened", `source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"`),
	})
	if err := os.Chmod(filepath.Join(dir, "id_ed25519"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, env, "-q", "--output", "json", "bake", dir)
	docs := bakeDocs(t, r.stdout)
	if got := outcomes(docs); got != "hardened@1.0.0:baked web@1.0.0:baked" {
		t.Fatalf("first bake: %s", got)
	}
	hardened, web := docs[0].Artifacts[0], docs[1].Artifacts[0]
	if web.Source == nil || web.Source.ID != hardened.ID || hardened.Region != "us-east-1" {
		t.Errorf("web was baked from %+v, want hardened's AMI %s", web.Source, hardened.ID)
	}
	r = mustRun(t, env, "-q", "--output", "json", "bake", dir)
	if got := outcomes(bakeDocs(t, r.stdout)); got != "hardened@1.0.0:up-to-date web@1.0.0:up-to-date" {
		t.Errorf("second bake: %s", got)
	}
}
