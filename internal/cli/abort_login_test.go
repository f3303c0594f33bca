package cli

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// keyInstaller is a proxy in front of moto that authorizes on sshd every
// public key imported as an EC2 key pair, as cloud-init installs it on a
// real builder.
func keyInstaller(t *testing.T, target string, sshd *sshtest.Server) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") == "ImportKeyPair" {
			material, err := base64.StdEncoding.DecodeString(form.Get("PublicKeyMaterial"))
			if err == nil {
				if pub, _, _, _, err := ssh.ParseAuthorizedKey(material); err == nil {
					sshd.AuthorizeKey(pub)
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestOnErrorAbortPrintsTheSSHCommandWithTheSavedKey bakes a recipe
// without ssh_private_key_file (bakery's own in-memory key) whose shell
// provisioner fails, with --on-error abort: bakery saves the key as
// $BAKERY_HOME/keys/bakery-BAKEID (mode 0600) and prints the ssh command
// that names it, and that key logs in to the kept builder (sshd).
func TestOnErrorAbortPrintsTheSSHCommandWithTheSavedKey(t *testing.T) {
	moto := mototest.Start(t)
	sshd := sshtest.Start(t)
	env := awsEnv(t, moto)
	home := t.TempDir()
	proxy := keyInstaller(t, moto.URL, sshd)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"web.bake.hcl": fmt.Sprintf(`recipe "web" {
  version = "1.0.0"
  stages  = ["dev"]
}
machine_image "web" {
  region       = "us-east-1"
  source_ami   = "ami-03c3da4cfa8e8943a"
  ssh_host     = %q
  ssh_port     = %d
  ssh_username = %q
  ssh_timeout  = "20s"
  provision "shell" {
    inline = ["echo failing", "exit 7"]
  }
}
`, sshd.Host, sshd.Port, sshd.User)})

	r := run(t, append(env, "BAKERY_AWS_ENDPOINT="+proxy.URL, "BAKERY_HOME="+home), "bake", "--on-error", "abort", filepath.Join(dir, "web.bake.hcl"))
	if r.code != exitFailure || !strings.Contains(r.stderr, "exit status 7") {
		t.Fatalf("exit %d, want 1 with exit status 7:\n%s", r.code, r.stderr)
	}
	m := regexp.MustCompile(`log in to the builder with: ssh -i (\S+) -p (\d+) (\S+)@(\S+?);`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no ssh command printed:\n%s", r.stderr)
	}
	keyFile := m[1]
	if dir, base := filepath.Split(keyFile); dir != filepath.Join(home, "keys")+"/" || !strings.HasPrefix(base, "bakery-bk-") {
		t.Errorf("key file %s, want $BAKERY_HOME/keys/bakery-BAKEID", keyFile)
	}
	if m[2] != fmt.Sprint(sshd.Port) || m[3] != sshd.User || m[4] != sshd.Host {
		t.Errorf("ssh command %q, want port %d, user %s, host %s", m[0], sshd.Port, sshd.User, sshd.Host)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("the printed key file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatalf("parsing the saved key: %v", err)
	}
	client, err := ssh.Dial("tcp", sshd.Addr(), &ssh.ClientConfig{
		User: sshd.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatalf("logging in with the saved key: %v", err)
	}
	client.Close()
}
