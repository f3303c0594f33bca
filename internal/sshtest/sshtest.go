// Package sshtest runs a real OpenSSH sshd on 127.0.0.1 for tests of
// bakery's SSH provisioning. It is a test helper: import it from _test.go
// files only.
//
// A test starts a server, authorizes a key and connects as Server.User:
//
//	srv := sshtest.Start(t)
//	srv.AuthorizeKey(signer.PublicKey())
//	// connect to srv.Addr() as srv.User with signer
//
// The server accepts public-key logins for one user: the OS user running
// the tests (root in CI). Commands run for real, in that user's login shell,
// on this machine, so a test should write only below its own t.TempDir().
//
// sshd is /usr/sbin/sshd, else sshd on PATH. When it is missing a test
// fails if CI is set and skips with a one-line reason otherwise.
package sshtest

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bakery-sh/bakery/internal/tail"
)

// StartTimeout bounds how long Start waits for sshd to answer with its
// SSH banner.
const StartTimeout = 10 * time.Second

// SessionEnv is the environment variable sshd sets (to a value unique to
// the server) in every session it starts. Stopping the server kills every
// process that carries it, so commands a test left running (a sleep after a
// dropped connection, say) do not outlive the test.
const SessionEnv = "BAKERY_SSHTEST"

// Server is a running sshd listening on 127.0.0.1.
type Server struct {
	// Host is the address sshd listens on: "127.0.0.1".
	Host string
	// Port is sshd's TCP port.
	Port int
	// User is the only user sshd lets in: the OS user running the tests.
	User string

	t              testing.TB
	dir            string
	authorizedKeys string
	token          string
	cmd            *exec.Cmd
	exited         chan struct{}
	log            *tail.Buffer
	mu             sync.Mutex // serializes writes to authorizedKeys
	stopOnce       sync.Once
}

// Option configures Start.
type Option func(*options)

type options struct {
	keys     []ssh.PublicKey
	logLevel string
}

// WithAuthorizedKeys authorizes keys from the start, as AuthorizeKey does
// later. The default is no key: nobody can log in until a key is
// authorized.
func WithAuthorizedKeys(keys ...ssh.PublicKey) Option {
	return func(o *options) { o.keys = append(o.keys, keys...) }
}

// WithLogLevel sets sshd's LogLevel (QUIET, FATAL, ERROR, INFO, VERBOSE,
// DEBUG1, ...). The default is VERBOSE, which logs each connection and
// each accepted or refused key. The log is printed when the test fails.
func WithLogLevel(level string) Option {
	return func(o *options) { o.logLevel = level }
}

// Start starts an sshd for this test alone and stops it, with every
// process its sessions started, when the test and its subtests end.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{logLevel: "VERBOSE"}
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := findSSHD()
	if err != nil {
		unavailable(t, err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: looking up the user running the tests (sshd lets only that user in): %v", err)
	}
	if os.Geteuid() == 0 {
		// As root sshd chroots its pre-authentication child into the
		// privilege separation directory and refuses to start without it.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshtest: creating sshd's privilege separation directory /run/sshd: %v", err)
		}
	}

	dir := t.TempDir()
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := writeHostKey(hostKey); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	s := &Server{
		Host:           "127.0.0.1",
		User:           u.Username,
		t:              t,
		dir:            dir,
		authorizedKeys: filepath.Join(dir, "authorized_keys"),
		token:          randomHex(12),
	}
	if err := os.WriteFile(s.authorizedKeys, nil, 0o600); err != nil {
		t.Fatalf("sshtest: creating authorized_keys: %v", err)
	}
	for _, k := range o.keys {
		s.AuthorizeKey(k)
	}

	penalties := supportsPerSourcePenalties(bin)
	// A port taken between choosing it and sshd binding it makes sshd exit
	// at once; try another port then.
	for attempt := 1; ; attempt++ {
		err = s.startOnce(bin, hostKey, o.logLevel, penalties)
		if err == nil {
			break
		}
		if !errors.Is(err, errAddrInUse) || attempt == 3 {
			t.Fatalf("sshtest: starting %s: %v", bin, err)
		}
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("sshtest: sshd log (127.0.0.1:%d):\n%s", s.Port, s.log.String())
		}
	})
	return s
}

// Addr returns "127.0.0.1:PORT", the address to dial.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// AuthorizeKey lets pub log in as User. sshd reads authorized_keys at each
// login, so it takes effect at once.
func (s *Server) AuthorizeKey(pub ssh.PublicKey) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.authorizedKeys, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		s.t.Fatalf("sshtest: authorizing a key: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		s.t.Fatalf("sshtest: authorizing a key: %v", err)
	}
}

// NewAuthorizedKey makes a new ed25519 key, lets it log in as User, and
// returns its private key in OpenSSH PEM form (what a recipe's
// ssh_private_key_file holds).
func (s *Server) NewAuthorizedKey() string {
	s.t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		s.t.Fatalf("sshtest: making a key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		s.t.Fatalf("sshtest: making a key: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		s.t.Fatalf("sshtest: making a key: %v", err)
	}
	s.AuthorizeKey(sshPub)
	return string(pem.EncodeToMemory(block))
}

// Log returns what sshd has logged so far (the last 64 KiB).
func (s *Server) Log() string { return s.log.String() }

var errAddrInUse = errors.New("port already in use")

func (s *Server) startOnce(bin, hostKey, logLevel string, penalties bool) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("finding a free port: %w", err)
	}
	if err := os.MkdirAll(s.home(), 0o700); err != nil {
		return fmt.Errorf("making the sessions' home: %w", err)
	}
	config := filepath.Join(s.dir, "sshd_config")
	if err := os.WriteFile(config, []byte(s.config(port, hostKey, logLevel, penalties)), 0o600); err != nil {
		return fmt.Errorf("writing sshd_config: %w", err)
	}
	log := &tail.Buffer{Max: 64 << 10}
	// -D: stay in the foreground; -e: log to stderr.
	cmd := exec.Command(bin, "-D", "-e", "-f", config)
	cmd.Stdout, cmd.Stderr = log, log
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running sshd: %w", err)
	}
	s.Port, s.cmd, s.log, s.exited = port, cmd, log, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.exited)

	if err := s.waitBanner(StartTimeout); err != nil {
		s.kill()
		if strings.Contains(log.String(), "Address already in use") {
			return errAddrInUse
		}
		return fmt.Errorf("port %d: %w\nsshd log:\n%s", port, err, log.String())
	}
	return nil
}

// home is the HOME of the server's sessions: an empty folder.
func (s *Server) home() string { return filepath.Join(s.dir, "home") }

// config returns the sshd_config: public-key logins for s.User only,
// everything in s.dir.
func (s *Server) config(port int, hostKey, logLevel string, penalties bool) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("ListenAddress 127.0.0.1")
	line("Port %d", port)
	line("HostKey %s", quoteConfig(hostKey))
	// AuthorizedKeysFile expands %-tokens: escape a literal %.
	line("AuthorizedKeysFile %s", quoteConfig(strings.ReplaceAll(s.authorizedKeys, "%", "%%")))
	line("PidFile %s", quoteConfig(filepath.Join(s.dir, "sshd.pid")))
	line("PubkeyAuthentication yes")
	line("PasswordAuthentication no")
	line("KbdInteractiveAuthentication no")
	line("PermitRootLogin prohibit-password")
	line("UsePAM no")
	line("StrictModes no")
	line("AllowUsers %s", s.User)
	line("Subsystem sftp internal-sftp")
	// A home of its own: the shell of a session reads no dotfiles of the
	// machine's (a ~/.bashrc that prints, say pyenv's rehash warnings when
	// two sessions start at once, would mix into a provisioner's output).
	// sshd reads only the first SetEnv line, so both go on it.
	line("SetEnv %s=%s HOME=%s", SessionEnv, s.token, quoteConfig(s.home()))
	line("LogLevel %s", logLevel)
	if penalties {
		// OpenSSH 9.8+ refuses a source address for a while after failed
		// logins or connections that never authenticate; tests do both on
		// purpose from 127.0.0.1.
		line("PerSourcePenalties no")
	}
	return b.String()
}

// waitBanner dials the port until sshd answers with an SSH banner.
func (s *Server) waitBanner(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		select {
		case <-s.exited:
			return errors.New("sshd exited")
		default:
		}
		if last = readBanner(s.Addr()); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SSH banner after %s: %w", timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readBanner(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-") {
		return fmt.Errorf("unexpected banner %q", line)
	}
	return nil
}

// stop kills sshd and every process its sessions started, once.
func (s *Server) stop() { s.stopOnce.Do(s.kill) }

// kill kills sshd and every process its sessions started, and waits for
// sshd to be gone.
func (s *Server) kill() {
	killTree(s.cmd.Process, SessionEnv+"="+s.token)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("sshtest: sshd (pid %d) did not exit after SIGKILL", s.cmd.Process.Pid)
	}
}

// findSSHD returns /usr/sbin/sshd, else sshd on PATH, as an absolute path
// (sshd re-executes itself and insists on one).
func findSSHD() (string, error) {
	const std = "/usr/sbin/sshd"
	if fi, err := os.Stat(std); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return std, nil
	}
	bin, err := exec.LookPath("sshd")
	if err != nil {
		return "", errors.New("sshd not found: make deps installs openssh-server")
	}
	return filepath.Abs(bin)
}

// unavailable fails the test when CI is set and skips it otherwise.
func unavailable(t testing.TB, reason error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%v (CI is set, so this fails instead of skipping)", reason)
	}
	t.Skipf("%v", reason)
}

var opensshVersion = regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`)

// supportsPerSourcePenalties reports whether sshd is OpenSSH 9.8 or later,
// which knows (and enables by default) PerSourcePenalties.
func supportsPerSourcePenalties(bin string) bool {
	// sshd -V prints the version (older sshd print it in the usage message
	// for the unknown flag); either way it exits without starting.
	out, _ := exec.Command(bin, "-V").CombinedOutput()
	m := opensshVersion.FindSubmatch(out)
	if m == nil {
		return false
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return major > 9 || major == 9 && minor >= 8
}

func writeHostKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshtest host key")
	if err != nil {
		return fmt.Errorf("encoding the host key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("writing the host key: %w", err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// quoteConfig double-quotes a path for sshd_config.
func quoteConfig(s string) string { return `"` + s + `"` }
