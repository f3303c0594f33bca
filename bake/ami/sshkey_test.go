package ami_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/bakery-sh/bakery/bake/ami"
)

func TestNewSSHKey(t *testing.T) {
	k, err := ami.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Signer.PublicKey().Type(); got != ssh.KeyAlgoED25519 {
		t.Errorf("key type = %s, want ed25519", got)
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey(k.PublicAuthorized)
	if err != nil || len(rest) != 0 {
		t.Fatalf("PublicAuthorized %q is not one authorized_keys line: %v", k.PublicAuthorized, err)
	}
	if !bytes.Equal(pub.Marshal(), k.Signer.PublicKey().Marshal()) {
		t.Error("PublicAuthorized is not the signer's public key")
	}
	if bytes.HasSuffix(k.PublicAuthorized, []byte("\n")) {
		t.Error("PublicAuthorized ends in a newline")
	}
	k2, _ := ami.NewSSHKey()
	if bytes.Equal(k.PublicAuthorized, k2.PublicAuthorized) {
		t.Error("two NewSSHKey calls returned the same key")
	}
}

// sshKeyFile writes a private key file and returns its path.
func sshKeyFile(t *testing.T, block *pem.Block) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "id_test")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func sshCheckLoaded(t *testing.T, path string, want ssh.PublicKey) {
	t.Helper()
	k, err := ami.LoadSSHKey(path)
	if err != nil {
		t.Fatalf("LoadSSHKey: %v", err)
	}
	if !bytes.Equal(k.Signer.PublicKey().Marshal(), want.Marshal()) {
		t.Errorf("loaded %s, want %s", ssh.FingerprintSHA256(k.Signer.PublicKey()), ssh.FingerprintSHA256(want))
	}
	if !bytes.HasPrefix(k.PublicAuthorized, []byte(want.Type()+" ")) {
		t.Errorf("PublicAuthorized = %q", k.PublicAuthorized)
	}
	sig, err := k.Signer.Sign(rand.Reader, []byte("data"))
	if err != nil || want.Verify([]byte("data"), sig) != nil {
		t.Errorf("the loaded key does not sign for its public key: %v", err)
	}
}

func TestLoadSSHKeyFormats(t *testing.T) {
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edSSHPub, _ := ssh.NewPublicKey(edPub)

	t.Run("openssh ed25519", func(t *testing.T) {
		block, err := ssh.MarshalPrivateKey(edPriv, "test")
		if err != nil {
			t.Fatal(err)
		}
		sshCheckLoaded(t, sshKeyFile(t, block), edSSHPub)
	})
	t.Run("pkcs8 ed25519", func(t *testing.T) {
		der, err := x509.MarshalPKCS8PrivateKey(edPriv)
		if err != nil {
			t.Fatal(err)
		}
		sshCheckLoaded(t, sshKeyFile(t, &pem.Block{Type: "PRIVATE KEY", Bytes: der}), edSSHPub)
	})
	t.Run("pkcs1 rsa", func(t *testing.T) {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := ssh.NewPublicKey(&priv.PublicKey)
		sshCheckLoaded(t, sshKeyFile(t, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)}), pub)
	})
	t.Run("ssh-keygen ed25519", func(t *testing.T) {
		keygen, err := exec.LookPath("ssh-keygen")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("ssh-keygen not found: make deps installs openssh-server (CI is set, so this fails instead of skipping)")
			}
			t.Skip("ssh-keygen not found: make deps installs openssh-server")
		}
		path := filepath.Join(t.TempDir(), "id_ed25519")
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bakery test", "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
		pubLine, err := os.ReadFile(path + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(pubLine)
		if err != nil {
			t.Fatal(err)
		}
		sshCheckLoaded(t, path, pub)
	})
}

func TestLoadSSHKeyErrors(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)

	enc, err := ssh.MarshalPrivateKeyWithPassphrase(edPriv, "test", []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	path := sshKeyFile(t, enc)
	_, err = ami.LoadSSHKey(path)
	if err == nil {
		t.Fatal("LoadSSHKey of an encrypted key succeeded")
	}
	for _, w := range []string{path, "encrypted", "use an unencrypted key", "ssh-agent", "ssh-add " + path} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}

	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(ecPriv)
	if _, err := ami.LoadSSHKey(sshKeyFile(t, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err == nil ||
		!strings.Contains(err.Error(), "use an ed25519 or RSA key") {
		t.Errorf("ecdsa key: err = %v, want it refused (EC2 does not import ECDSA)", err)
	}

	if _, err := ami.LoadSSHKey(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "check ssh_private_key_file") {
		t.Errorf("missing file: err = %v", err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	if _, err := ami.LoadSSHKey(garbage); err == nil || !strings.Contains(err.Error(), "OpenSSH or PEM private key") {
		t.Errorf("not a key: err = %v", err)
	}
}

func TestLoadSSHKeyEncryptedFromTheAgent(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	enc, err := ssh.MarshalPrivateKeyWithPassphrase(edPriv, "test", []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	path := sshKeyFile(t, enc)

	// An in-process ssh-agent holding the key, as after ssh-add.
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: edPriv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)

	pub, _ := ssh.NewPublicKey(edPriv.Public())
	sshCheckLoaded(t, path, pub)

	// A different encrypted key is not in the agent.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	enc2, _ := ssh.MarshalPrivateKeyWithPassphrase(other, "other", []byte("x"))
	if _, err := ami.LoadSSHKey(sshKeyFile(t, enc2)); err == nil || !strings.Contains(err.Error(), "ssh-agent does not hold it") {
		t.Errorf("encrypted key missing from the agent: err = %v", err)
	}
}
