// Package mototest runs moto_server, the moto project's AWS emulator, for
// tests of bakery's AWS code paths (EC2, Auto Scaling, SSM, STS). It is a
// test helper: import it from _test.go files only.
//
// A test gets a server and a config pointing at it:
//
//	srv := mototest.Shared(t)
//	cfg := srv.Config(t, "us-east-1")
//	out, err := ec2.NewFromConfig(cfg).DescribeImages(ctx, ...)
//
// moto_server is found as $MOTO_SERVER, else <repo>/.venv/bin/moto_server
// (installed by scripts/moto-venv.sh), else on PATH. When it is missing a test
// fails if CI is set and skips with a one-line reason otherwise.
//
// # Accounts
//
// moto 5 keeps separate state per account and per region. Every request goes
// to DefaultAccountID unless it says otherwise: moto ignores access keys it
// did not issue itself, so the access key id does not choose the account.
// A request picks another account with the x-moto-account-id header, which
// ConfigForAccount adds to every call; credentials that moto's sts:AssumeRole
// returned for a role ARN in another account (the role need not exist) act in
// that account too. The MOTO_ACCOUNT_ID environment variable would override
// both for the whole server, so Start and Shared remove it (and every AWS_*
// variable) from moto_server's environment. NewAccount hands out a fresh account id, which gives a test
// state of its own on a shared server.
//
// # Regions
//
// moto takes the region from the request's SigV4 credential scope, keeps
// separate state per region, and answers for every region EC2 knows. Default
// public AMIs (owner alias "amazon") exist in every account and region.
package mototest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/bakery-sh/bakery/internal/tail"
)

// DefaultAccountID is the account moto answers for when a request names no
// other (moto's own default).
const DefaultAccountID = "123456789012"

// AccountHeader is the request header that makes moto_server act in another
// account.
const AccountHeader = "x-moto-account-id"

// AccessKeyID and SecretAccessKey are the fake static credentials Config
// signs requests with. moto does not check signatures, and since it did not
// issue this key it acts in DefaultAccountID (or the account of
// AccountHeader).
const (
	AccessKeyID     = "AKIAMOTOTESTEXAMPLE1"
	SecretAccessKey = "mototest-fake-secret-access-key"
)

// StartTimeout bounds how long Start waits for moto_server to answer.
const StartTimeout = 60 * time.Second

// Server is a running moto_server on a loopback port.
type Server struct {
	// URL is the server's base URL, such as http://127.0.0.1:40123; use it as
	// aws.Config.BaseEndpoint.
	URL string

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	log      *tail.Buffer
	stopOnce sync.Once
	accounts atomic.Uint64
	startup  time.Duration
}

// Start starts a moto_server for this test alone and stops it (its whole
// process group) when the test and its subtests end. A server costs about a
// second to start; prefer Shared unless the test needs a server to itself.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := findServer()
	if err != nil {
		unavailable(t, err)
	}
	s, err := start(bin)
	if err != nil {
		t.Fatalf("starting moto_server: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

// shared is the test binary's one moto_server, started by the first Shared
// call and stopped by Run. Tests never write to it.
var shared struct {
	once sync.Once
	srv  *Server
	err  error
	bin  error // moto_server not found
}

// Shared returns the test binary's moto_server, starting it on first use, so
// a package pays moto's start-up once. Tests that share it must keep out of
// each other's way: use NewAccount (with ConfigForAccount) or unique names
// and tags, and do not call Reset from parallel tests.
//
// The server is stopped when TestMain returns through Run:
//
//	func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }
//
// Without Run, on Linux the kernel kills the server when the test binary
// exits (parent-death signal); elsewhere it may outlive the binary.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() {
		bin, err := findServer()
		if err != nil {
			shared.bin = err
			return
		}
		shared.srv, shared.err = start(bin)
	})
	if shared.bin != nil {
		unavailable(t, shared.bin)
	}
	if shared.err != nil {
		t.Fatalf("starting the shared moto_server: %v", shared.err)
	}
	return shared.srv
}

// Run runs the tests of m and then stops the moto_server Shared started, if
// any. It returns m.Run's exit code, for TestMain to pass to os.Exit.
func Run(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.stop()
	}
	return code
}

// Log returns the end of the server's output (its last 16 KiB): what to
// read when it answers a call with an internal error.
func (s *Server) Log() string { return s.log.String() }

// StartupTime is how long the server took from exec to its first answer.
func (s *Server) StartupTime() time.Duration { return s.startup }

// Config returns an AWS config for region that sends every call to s, signs
// with the fake static credentials AccessKeyID and SecretAccessKey, and so
// acts in DefaultAccountID. It does not read the environment or
// ~/.aws files.
func (s *Server) Config(t testing.TB, region string) aws.Config {
	t.Helper()
	if region == "" {
		t.Fatalf("mototest: Config needs a region")
	}
	return aws.Config{
		Region:       region,
		Credentials:  aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, "")),
		BaseEndpoint: aws.String(s.URL),
	}
}

// ConfigForAccount is Config acting in accountID (12 digits): every call
// carries AccountHeader, so moto keeps its resources apart from other
// accounts', and sts:GetCallerIdentity reports accountID.
func (s *Server) ConfigForAccount(t testing.TB, region, accountID string) aws.Config {
	t.Helper()
	if len(accountID) != 12 || strings.Trim(accountID, "0123456789") != "" {
		t.Fatalf("mototest: account id %q is not 12 digits", accountID)
	}
	cfg := s.Config(t, region)
	cfg.APIOptions = append(cfg.APIOptions, smithyhttp.SetHeaderValue(AccountHeader, accountID))
	return cfg
}

// NewAccount returns an account id no earlier NewAccount call on s returned
// (900000000001, 900000000002, ...): with ConfigForAccount it gives a test
// fresh state on a shared server.
func (s *Server) NewAccount() string {
	return strconv.FormatUint(900_000_000_000+s.accounts.Add(1), 10)
}

// Reset empties the server: every account's and region's resources go (the
// default AMIs come back). It affects every test using s.
func (s *Server) Reset(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/moto-api/reset", nil)
	if err != nil {
		t.Fatalf("resetting moto_server: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("resetting moto_server at %s: %v", s.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("resetting moto_server at %s: %s", s.URL, resp.Status)
	}
}

// unavailable fails the test when CI is set and skips it otherwise.
func unavailable(t testing.TB, reason error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%v (CI is set, so this fails instead of skipping)", reason)
	}
	t.Skipf("%v", reason)
}

// findServer returns the moto_server to run: $MOTO_SERVER, else
// <repo>/.venv/bin/moto_server, else moto_server on PATH.
func findServer() (string, error) {
	if bin := os.Getenv("MOTO_SERVER"); bin != "" {
		if err := checkExecutable(bin); err != nil {
			return "", fmt.Errorf("moto_server not found: MOTO_SERVER=%s: %v", bin, err)
		}
		return bin, nil
	}
	if root, err := repoRoot(); err == nil {
		bin := filepath.Join(root, ".venv", "bin", "moto_server")
		if checkExecutable(bin) == nil {
			return bin, nil
		}
	}
	if bin, err := exec.LookPath("moto_server"); err == nil {
		return bin, nil
	}
	return "", errors.New("moto_server not found: run make test or scripts/moto-venv.sh")
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// repoRoot walks up from the working directory (the package directory under
// go test) to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// start runs bin on a free loopback port and waits until it answers. A port
// taken between choosing it and moto binding it makes moto exit at once; start
// then tries another port.
func start(bin string) (*Server, error) {
	var err error
	for range 3 {
		var s *Server
		s, err = startOnce(bin)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errExited) {
			return nil, err
		}
	}
	return nil, err
}

var errExited = errors.New("moto_server exited")

func startOnce(bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("finding a free port: %w", err)
	}
	began := time.Now()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Env = serverEnv(os.Environ())
	log := &tail.Buffer{Max: 16 << 10}
	cmd.Stdout, cmd.Stderr = log, log
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", bin, err)
	}
	s := &Server{
		URL:    "http://127.0.0.1:" + strconv.Itoa(port),
		cmd:    cmd,
		exited: make(chan struct{}),
		log:    log,
	}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()

	if err := s.waitReady(StartTimeout); err != nil {
		s.stop()
		return nil, fmt.Errorf("%s on port %d: %w\n%s", bin, port, err, log.String())
	}
	s.startup = time.Since(began)
	return s, nil
}

// waitReady polls moto's state endpoint until it answers with JSON.
func (s *Server) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.exited:
			return errExited
		default:
		}
		resp, err := client.Get(s.URL + "/moto-api/data.json")
		if err == nil {
			var v map[string]any
			derr := json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && derr == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after %s", timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stop ends the server's process group: SIGTERM, then SIGKILL after 5 s.
func (s *Server) stop() {
	s.stopOnce.Do(func() {
		terminate(s.cmd)
		select {
		case <-s.exited:
			return
		case <-time.After(5 * time.Second):
		}
		kill(s.cmd)
		<-s.exited
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverEnv is env without MOTO_ACCOUNT_ID, which would pin the server to one
// account and defeat AccountHeader, and without AWS_* variables: the server
// needs none, and a test's t.Setenv (AWS_DEFAULT_REGION="", say) must not
// reach the shared server that test happened to start.
func serverEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MOTO_ACCOUNT_ID=") && !strings.HasPrefix(kv, "AWS_") {
			out = append(out, kv)
		}
	}
	return out
}
