package cli

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// terminateHolder is a proxy in front of moto that holds every
// TerminateInstances call until the caller gives up (or the test ends),
// as a slow cleanup on real AWS: everything else goes through. held is
// closed when the first such call arrives.
type terminateHolder struct {
	*httptest.Server
	held chan struct{}
	once sync.Once
}

func newTerminateHolder(t *testing.T, target string) *terminateHolder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	h := &terminateHolder{held: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(u)
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") == "TerminateInstances" {
			h.once.Do(func() { close(h.held) })
			select {
			case <-r.Context().Done():
				return
			case <-release:
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(release)
		h.Close()
	})
	return h
}

// stderrLines reads a process's stderr line by line, keeping all of it.
type stderrLines struct {
	ch  chan string
	mu  sync.Mutex
	all []string
}

func newStderrLines(r io.Reader) *stderrLines {
	s := &stderrLines{ch: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			s.mu.Lock()
			s.all = append(s.all, sc.Text())
			s.mu.Unlock()
			s.ch <- sc.Text()
		}
		close(s.ch)
	}()
	return s
}

func (s *stderrLines) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.all, "\n")
}

// waitFor reads lines until one contains sub; it fails the test if the
// process closes its stderr (exits) first. It sets no time limit.
func (s *stderrLines) waitFor(t *testing.T, sub string) {
	t.Helper()
	for line := range s.ch {
		if strings.Contains(line, sub) {
			return
		}
	}
	t.Fatalf("bakery exited without printing %q:\n%s", sub, s.String())
}

// TestThreeInterruptsDuringASlowCleanup interrupts an AMI bake while its
// shell provisioner runs, with a TerminateInstances that never answers:
// the first SIGINT starts the cleanup, which reports the builder's
// termination as a step line; the second prints that the cleanup is in
// progress and how to abandon it, and bakery keeps running; the third
// abandons the cleanup and bakery exits 1 at once, without waiting for
// TerminateInstances, saying what it left. Nothing reports the SSH
// connection the interrupt closed ("use of closed network connection").
func TestThreeInterruptsDuringASlowCleanup(t *testing.T) {
	bin := bakeryBinary(t)
	moto := mototest.Start(t)
	sshd := sshtest.Start(t)
	env := awsEnv(t, moto)
	proxy := newTerminateHolder(t, moto.URL)
	recipe, _ := amiProject(t, sshd, "echo started; sleep 60")

	cmd := exec.Command(bin, "bake", recipe)
	cmd.Env = append(append(os.Environ(), env...), "BAKERY_AWS_ENDPOINT="+proxy.URL)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // only if the test fails half way
	lines := newStderrLines(stderr)
	interrupt := func(n int) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatalf("SIGINT %d: %v (bakery exited already?)\n%s", n, err, lines.String())
		}
	}

	lines.waitFor(t, "shell: started")
	interrupt(1)
	lines.waitFor(t, `step="web: cleaning up: terminating i-`)
	<-proxy.held
	interrupt(2)
	lines.waitFor(t, "bakery: "+cleanupNotice)
	interrupt(3)
	for range lines.ch { // to the end of stderr
	}
	err = cmd.Wait()
	out := lines.String()
	t.Logf("stderr:\n%s", out)
	if code := cmd.ProcessState.ExitCode(); code != exitFailure {
		t.Fatalf("exit %d (%v), want 1:\n%s", code, err, out)
	}
	for _, want := range []string{
		"bakery: abandoning the cleanup; bakery sweep will find what is left",
		"bakery: interrupted: ",
		"cleaning up after launch builder: cleanup abandoned; bakery sweep will find what is left: terminating i-",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "use of closed network connection") {
		t.Errorf("the interrupt reports the SSH connection it closed itself:\n%s", out)
	}
	if i, j := strings.Index(out, cleanupNotice), strings.Index(out, "abandoning the cleanup"); i < 0 || j < i {
		t.Errorf("the notice of the second interrupt does not come before the third's:\n%s", out)
	}
}
