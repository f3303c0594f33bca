package ami_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/crypto/ssh"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// authorizeImportedKey lets the key a bake imports as its EC2 key pair log
// in to srv, as cloud-init installs it on a real builder: the bake's own
// key exists in memory only, so the test learns it from ImportKeyPair.
func authorizeImportedKey(srv *sshtest.Server) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("bakery-test-authorize-key",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if kp, ok := in.Parameters.(*ec2.ImportKeyPairInput); ok {
					pub, _, _, _, err := ssh.ParseAuthorizedKey(kp.PublicKeyMaterial)
					if err != nil {
						return middleware.InitializeOutput{}, middleware.Metadata{}, err
					}
					srv.AuthorizeKey(pub)
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	}
}

// TestAbortSavesTheInMemoryKeyToLogInToTheKeptBuilder fails a provisioned
// bake that uses its own in-memory SSH key under OnErrorAbort: the key is
// written to $BAKERY_HOME/keys/bakery-BAKEID with mode 0600, the error
// prints the ssh command that names it, the error does not claim the
// builder is cleaned up, and the key really logs in to the builder (sshd).
func TestAbortSavesTheInMemoryKeyToLogInToTheKeptBuilder(t *testing.T) {
	e := newBakeEnv(t)
	srv := sshtest.Start(t)
	e.cfg.APIOptions = append(e.cfg.APIOptions, authorizeImportedKey(srv))
	home := t.TempDir()
	r, m := bakeRecipe(t, `
  region       = "us-east-1"
  source_ami   = "`+bakeAL2023+`"
  ssh_host     = "`+srv.Host+`"
  ssh_port     = `+strconv.Itoa(srv.Port)+`
  ssh_username = "`+srv.User+`"
  ssh_timeout  = "20s"
  provision "shell" {
    inline = ["echo about to fail", "exit 7"]
  }`)
	b := e.baker(ami.WithOnError(ami.OnErrorAbort), fixedID("bk-login"), ami.WithGetenv(func(k string) string {
		if k == "BAKERY_HOME" {
			return home
		}
		return ""
	}))
	ctx := context.Background()
	p, err := b.Prepare(ctx, r, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ctx, p)
	var aborted *ami.AbortedError
	if !errors.As(err, &aborted) {
		t.Fatalf("Build = %v, want an *ami.AbortedError", err)
	}
	wantFile := filepath.Join(home, "keys", "bakery-bk-login")
	if aborted.KeyFile != wantFile {
		t.Fatalf("KeyFile = %q, want %q; err: %v", aborted.KeyFile, wantFile, err)
	}
	fi, serr := os.Stat(wantFile)
	if serr != nil {
		t.Fatalf("the key file: %v", serr)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	login := "ssh -i " + wantFile + " -p " + strconv.Itoa(srv.Port) + " " + srv.User + "@" + srv.Host
	if aborted.Login != login {
		t.Errorf("Login = %q, want %q", aborted.Login, login)
	}
	t.Logf("aborted: %v", err)
	wantErrContains(t, err, "exit status 7", "on_error=abort kept 3 resources", "log in to the builder with: "+login,
		"and delete the key file "+wantFile)
	if strings.Contains(err.Error(), "cleaned up") {
		t.Errorf("the error of a bake that kept its builder says it was cleaned up: %v", err)
	}

	// The saved key logs in.
	pem, rerr := os.ReadFile(wantFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	signer, perr := ssh.ParsePrivateKey(pem)
	if perr != nil {
		t.Fatalf("parsing the saved key: %v", perr)
	}
	client, derr := ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{
		User:            srv.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if derr != nil {
		t.Fatalf("logging in with the saved key: %v", derr)
	}
	defer client.Close()
	sess, serr2 := client.NewSession()
	if serr2 != nil {
		t.Fatal(serr2)
	}
	defer sess.Close()
	out, oerr := sess.Output("echo logged in")
	if oerr != nil || string(out) != "logged in\n" {
		t.Errorf("running a command with the saved key: %q, %v", out, oerr)
	}
}
