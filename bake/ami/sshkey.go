package ami

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// SSHKey is the key bakery logs in to the builder instance with. Its public
// half becomes the temporary EC2 key pair.
type SSHKey struct {
	// Signer signs the SSH login.
	Signer ssh.Signer
	// PublicAuthorized is the public key as an authorized_keys line
	// ("ssh-ed25519 AAAA...", no trailing newline): the public key
	// material for EC2 ImportKeyPair.
	PublicAuthorized []byte

	// private is the private key of a key NewSSHKey made, which exists
	// nowhere else; nil for a key LoadSSHKey read from a file.
	private ed25519.PrivateKey
}

// NewSSHKey returns a fresh ed25519 key. It lives in memory only: nothing is
// written to disk, except when a bake that uses it fails under
// OnErrorAbort and keeps its builder (see WithKeyDir).
func NewSSHKey() (*SSHKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating an ed25519 SSH key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("generating an ed25519 SSH key: %w", err)
	}
	k := sshKeyFromSigner(signer)
	k.private = priv
	return k, nil
}

// writePrivateKey writes the private half of a key NewSSHKey made to a
// new file at path, readable by its owner only (mode 0600, as ssh
// requires), in OpenSSH format, creating path's folder (mode 0700) when
// missing. It refuses to overwrite a file.
func (k *SSHKey) writePrivateKey(path, comment string) error {
	if k.private == nil {
		return fmt.Errorf("writing SSH private key %s: the key was read from a file, use that file", path)
	}
	block, err := ssh.MarshalPrivateKey(k.private, comment)
	if err != nil {
		return fmt.Errorf("writing SSH private key %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing SSH private key %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing SSH private key %s: %w", path, err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing SSH private key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing SSH private key %s: %w", path, err)
	}
	return nil
}

// LoadSSHKey reads a private key file (OpenSSH format, or PEM: PKCS#1,
// PKCS#8, SEC 1). The key must be ed25519 or RSA, the types EC2 imports.
//
// An encrypted key cannot be used directly, since bakery does not prompt
// for passphrases: LoadSSHKey then looks for the same key in the SSH agent
// at $SSH_AUTH_SOCK (ssh-add adds it) and signs with the agent, keeping the
// agent connection open for the life of the process. Without the key in an
// agent it returns an error saying to use an unencrypted key or ssh-agent.
func LoadSSHKey(path string) (*SSHKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading SSH private key: %w; check ssh_private_key_file", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	var encrypted *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &encrypted):
		signer, err = sshAgentSigner(path, encrypted.PublicKey)
		if err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("reading SSH private key %s: %w; ssh_private_key_file must be an OpenSSH or PEM private key", path, err)
	}
	switch t := signer.PublicKey().Type(); t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoRSA:
	default:
		return nil, fmt.Errorf("loading SSH private key %s: EC2 key pairs cannot hold %s keys; use an ed25519 or RSA key (ssh-keygen -t ed25519)", path, t)
	}
	return sshKeyFromSigner(signer), nil
}

func sshKeyFromSigner(signer ssh.Signer) *SSHKey {
	return &SSHKey{
		Signer:           signer,
		PublicAuthorized: bytes.TrimSuffix(ssh.MarshalAuthorizedKey(signer.PublicKey()), []byte("\n")),
	}
}

// sshAgentSigner returns the agent's signer for the encrypted key at path,
// whose public half is pub (nil when the file does not say: then path+".pub"
// is read).
func sshAgentSigner(path string, pub ssh.PublicKey) (ssh.Signer, error) {
	encrypted := func(reason string) error {
		return fmt.Errorf("loading SSH private key %s: the key is encrypted and bakery cannot ask for its passphrase (%s); "+
			"use an unencrypted key, or add this one to ssh-agent (ssh-add %s) and run bakery with SSH_AUTH_SOCK set", path, reason, path)
	}
	if pub == nil {
		data, err := os.ReadFile(path + ".pub")
		if err != nil {
			return nil, encrypted("no " + path + ".pub to find it in ssh-agent by")
		}
		if pub, _, _, _, err = ssh.ParseAuthorizedKey(data); err != nil {
			return nil, encrypted(path + ".pub is not a public key")
		}
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, encrypted("SSH_AUTH_SOCK is not set")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, encrypted(fmt.Sprintf("ssh-agent at %s: %v", sock, err))
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		conn.Close()
		return nil, encrypted(fmt.Sprintf("listing ssh-agent keys: %v", err))
	}
	want := pub.Marshal()
	for _, s := range signers {
		if bytes.Equal(s.PublicKey().Marshal(), want) {
			return s, nil // conn stays open: s signs through it
		}
	}
	conn.Close()
	return nil, encrypted("ssh-agent does not hold it")
}
