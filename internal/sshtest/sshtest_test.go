package sshtest_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/internal/sshtest"
	"golang.org/x/crypto/ssh"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dial(srv *sshtest.Server, signer ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{
		User:            srv.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
}

func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

func TestSSHServerRunsCommandsAsTheTestUser(t *testing.T) {
	early, late, stranger := newSigner(t), newSigner(t), newSigner(t)
	srv := sshtest.Start(t, sshtest.WithAuthorizedKeys(early.PublicKey()))
	if srv.Host != "127.0.0.1" || srv.Port == 0 || srv.User == "" {
		t.Fatalf("server = %+v", srv)
	}

	c, err := dial(srv, early)
	if err != nil {
		t.Fatalf("logging in with a key given to Start: %v\n%s", err, srv.Log())
	}
	defer c.Close()
	if got := strings.TrimSpace(run(t, c, "id -u")); got != strconv.Itoa(os.Getuid()) {
		t.Errorf("id -u = %q, want %d (the user running the tests)", got, os.Getuid())
	}
	// The session's home is the server's own, empty: the machine's
	// dotfiles (which may print) stay out of what commands write.
	if home, _ := os.UserHomeDir(); home != "" {
		if got := strings.TrimSpace(run(t, c, `echo "$HOME"; ls -A "$HOME"`)); got == home || strings.Contains(got, "\n") || !strings.HasSuffix(got, "/home") {
			t.Errorf("a session's HOME and its files: %q, want an empty folder of the server's, not %s", got, home)
		}
	}

	if _, err := dial(srv, late); err == nil {
		t.Fatal("logged in with a key that is not authorized yet")
	}
	srv.AuthorizeKey(late.PublicKey())
	c2, err := dial(srv, late)
	if err != nil {
		t.Fatalf("logging in with a key given to AuthorizeKey: %v\n%s", err, srv.Log())
	}
	c2.Close()

	// A key made by NewAuthorizedKey logs in from its PEM, as a recipe's
	// ssh_private_key_file does.
	made, err := ssh.ParsePrivateKey([]byte(srv.NewAuthorizedKey()))
	if err != nil {
		t.Fatalf("NewAuthorizedKey's PEM: %v", err)
	}
	c3, err := dial(srv, made)
	if err != nil {
		t.Fatalf("logging in with a key from NewAuthorizedKey: %v\n%s", err, srv.Log())
	}
	c3.Close()

	if _, err := dial(srv, stranger); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("logging in with an unknown key: err = %v, want an authentication failure", err)
	}
}

func TestSSHServerStopKillsSessionProcesses(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("finding the processes of a stopped sshd needs /proc")
	}
	signer := newSigner(t)
	var pid int
	t.Run("server", func(t *testing.T) {
		srv := sshtest.Start(t, sshtest.WithAuthorizedKeys(signer.PublicKey()))
		c, err := dial(srv, signer)
		if err != nil {
			t.Fatal(err)
		}
		// A command left running in the background, detached from the
		// session, as a test that drops a connection leaves behind.
		out := run(t, c, "sleep 300 </dev/null >/dev/null 2>&1 & echo $!")
		c.Close()
		pid, err = strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("pid %q: %v", out, err)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("background sleep (pid %d) not running: %v", pid, err)
		}
	})
	// The subtest's cleanup stopped the server.
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && !zombie(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("sleep (pid %d) started over SSH outlived the server", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// zombie reports whether pid has exited but not been reaped (its parent,
// init in a container, may be slow to reap).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] == 'Z'
}
