package ami_test

import (
	"bytes"
	"context"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/redact"
	"github.com/bakery-sh/bakery/internal/sshtest"
	"github.com/bakery-sh/bakery/recipes"
)

// The secrets of secretRecipe: an env value and a sensitive variable.
const (
	secretToken    = "s3cr3t-value"
	secretPassword = "pa55-w0rd-xyz"
)

// secretRecipe writes a recipe into a new folder whose shell provisioner
// gets secretToken through env and secretPassword through the sensitive
// variable db_password (whose default is not the secret: the caller sets
// it), and prints both. It returns the recipe's path.
func secretRecipe(t *testing.T, srv *sshtest.Server, keyFile string) string {
	t.Helper()
	src := `variable "db_password" {
  type      = string
  sensitive = true
  default   = "not-the-password"
}

recipe "web" {
  version = "1.0.0"
  stages  = ["dev", "prod"]
}

machine_image "server" {
  region               = "us-east-1"
  source_ami           = "` + bakeAL2023 + `"
  ssh_host             = "` + srv.Host + `"
  ssh_port             = ` + strconv.Itoa(srv.Port) + `
  ssh_username         = "` + srv.User + `"
  ssh_private_key_file = "` + keyFile + `"
  ssh_timeout          = "20s"
  provision "shell" {
    inline = ["echo token=$TOKEN", "echo password=${var.db_password}"]
    env    = { TOKEN = "` + secretToken + `", DEBIAN_FRONTEND = "noninteractive" }
  }
}
`
	path := filepath.Join(t.TempDir(), "web.bake.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// captureLog sends the standard logger to w until the test ends. The
// logger is process-wide: tests that call it must not run in parallel.
func captureLog(t *testing.T, w *redact.Writer) {
	t.Helper()
	prev, flags := log.Writer(), log.Flags()
	log.SetOutput(w)
	t.Cleanup(func() {
		log.SetOutput(prev)
		log.SetFlags(flags)
	})
}

// wantMasked fails unless text shows Placeholder and neither secret.
func wantMasked(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range []string{secretToken, secretPassword} {
		if strings.Contains(text, s) {
			t.Errorf("%s leaks %q:\n%s", what, s, text)
		}
	}
	if !strings.Contains(text, redact.Placeholder) {
		t.Errorf("%s shows no %s:\n%s", what, redact.Placeholder, text)
	}
}

func TestSecretsListsSensitiveValuesEnvValuesAndTheExportStatement(t *testing.T) {
	dir := t.TempDir()
	src := `variable "db" {
  type      = object({ user = string, password = string, port = number, tls = bool })
  sensitive = true
}
variable "region" { default = "eu-west-1" }

recipe "web" {
  version = "1.0.0"
  stages  = ["dev"]
}

machine_image "server" {
  region     = var.region
  source_ami = "ami-12345678"
  provision "shell" {
    inline = ["true"]
    env    = { B = "it's", A = "1" }
  }
}
`
	path := filepath.Join(dir, "web.bake.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, diags := recipes.NewLoader().Load(path, recipes.Options{Vars: map[string]string{
		"db": `{ user = "admin", password = "hunter22", port = 5432, tls = true }`,
	}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got := r.SensitiveValues()
	slices.Sort(got)
	if want := []string{"5432", "admin", "hunter22"}; !slices.Equal(got, want) {
		t.Errorf("SensitiveValues() = %q, want %q (no bool, no value of a variable that is not sensitive)", got, want)
	}
	secrets := ami.Secrets(r)
	for _, want := range []string{"hunter22", "it's", "1", `export A='1' B='it'"'"'s'`} {
		if !slices.Contains(secrets, want) {
			t.Errorf("Secrets() = %q, missing %q", secrets, want)
		}
	}
	// The export statement hides even a value too short to mask on its own.
	cmd := "[DEBUG] starting remote command: export A='1' B='it'\"'\"'s'; chmod +x '/tmp/x.sh'"
	if got := redact.Mask(cmd, secrets); got != "[DEBUG] starting remote command: (sensitive value); chmod +x '/tmp/x.sh'" {
		t.Errorf("masked command = %q", got)
	}
}

// A bake with BAKERY_DEBUG-style logging: neither the SSH communicator's
// log of the remote command nor the provisioner's output shows the env
// value or the sensitive variable.
func TestBakeMasksSecretsInTheDebugLogAndTheOutput(t *testing.T) {
	e := newBakeEnv(t)
	srv := sshtest.Start(t)
	keyFile, pub := bakeKeyFile(t)
	srv.AuthorizeKey(pub)
	r, diags := recipes.NewLoader().Load(secretRecipe(t, srv, keyFile), recipes.Options{Vars: map[string]string{"db_password": secretPassword}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var logged bytes.Buffer
	logMask := redact.NewWriter(&logged, ami.Secrets(r)...)
	captureLog(t, logMask)
	var out strings.Builder
	b := e.baker(ami.WithOutput(&out), ami.WithSecrets(ami.Secrets(r)))
	ctx := context.Background()
	p, err := b.Prepare(ctx, r, r.MachineImages[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(ctx, p); err != nil {
		t.Fatalf("Build: %v\noutput:\n%s", err, out.String())
	}
	if err := logMask.Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged.String(), "starting remote command: (sensitive value); chmod +x") {
		t.Errorf("the log does not show the remote command with its exports masked:\n%s", logged.String())
	}
	wantMasked(t, "the debug log", logged.String())
	wantMasked(t, "the output", out.String())
	for _, want := range []string{"shell: token=(sensitive value)\n", "shell: password=(sensitive value)\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "noninteractive") {
		t.Errorf("output shows an env value:\n%s", out.String())
	}
}

// A failing script's error quotes its last lines of output: masked too.
func TestProvisionMasksSecretsInTheErrorOfAFailedScript(t *testing.T) {
	comm := provConnect(t)
	p := provBlock("shell")
	p.Inline = []string{"echo token=$TOKEN", "echo password=" + secretPassword, "exit 3"}
	p.Env = map[string]string{"TOKEN": secretToken}
	var out strings.Builder
	err := ami.Provision(context.Background(), comm, p, redact.NewWriter(&out, secretPassword))
	if err == nil {
		t.Fatalf("a script that exits 3 succeeded; output:\n%s", out.String())
	}
	wantMasked(t, "the error", err.Error())
	wantMasked(t, "the output", out.String())
	if !strings.Contains(err.Error(), "token=(sensitive value)") || !strings.Contains(err.Error(), "password=(sensitive value)") {
		t.Errorf("error = %v, want it to quote the masked output", err)
	}

	// Without a redact.Writer, env values are still masked.
	out.Reset()
	err = ami.Provision(context.Background(), comm, p, &out)
	if err == nil || strings.Contains(err.Error(), secretToken) || strings.Contains(out.String(), secretToken) {
		t.Errorf("without a redact.Writer: error %v, output:\n%s\nwant the env value masked in both", err, out.String())
	}
}

// bakery bake with BAKERY_DEBUG=1, run as its own process: the [DEBUG]
// lines it prints on stderr hide the secrets, and so does the
// provisioner output. (It lives here, beside the moto and sshd fixtures
// of AMI bakes; running the binary keeps the process-wide logger of this
// test process out of it.)
func TestCLIBakeWithBakeryDebugMasksSecrets(t *testing.T) {
	moto := mototest.Shared(t)
	srv := sshtest.Start(t)
	keyFile, pub := bakeKeyFile(t)
	srv.AuthorizeKey(pub)
	path := secretRecipe(t, srv, keyFile)

	bin := filepath.Join(t.TempDir(), "bakery")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/bakery-sh/bakery/cmd/bakery").CombinedOutput(); err != nil {
		t.Fatalf("building bakery: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "bake", path)
	cmd.Env = append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+mototest.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+mototest.SecretAccessKey,
		"AWS_REGION=us-east-1",
		"AWS_PROFILE=",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+filepath.Join(t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(t.TempDir(), "none"),
		"BAKERY_DEBUG=1",
		"BAKERY_AWS_ENDPOINT="+moto.URL,
		"BAKERY_HOME="+t.TempDir(),
		"BAKERY_VAR_db_password="+secretPassword,
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bakery bake: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "[DEBUG] starting remote command: (sensitive value); chmod +x") {
		t.Errorf("stderr shows no masked [DEBUG] line of the remote command:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "shell: password=(sensitive value)") {
		t.Errorf("stderr shows no masked provisioner output:\n%s", stderr.String())
	}
	wantMasked(t, "stderr", stderr.String())
	if strings.Contains(stdout.String(), secretToken) || strings.Contains(stdout.String(), secretPassword) {
		t.Errorf("stdout leaks a secret:\n%s", stdout.String())
	}
}
