package ami_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/internal/sshtest"
	"github.com/bakery-sh/bakery/recipes"
)

// provConnect starts an sshd for the test and returns a communicator
// logged in to it.
func provConnect(t *testing.T) packersdk.Communicator {
	t.Helper()
	comm, _ := provConnectLog(t)
	return comm
}

// provConnectLog is provConnect that also returns the communicator's log.
func provConnectLog(t *testing.T) (packersdk.Communicator, *provLines) {
	t.Helper()
	key, err := ami.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	srv := sshtest.Start(t, sshtest.WithAuthorizedKeys(key.Signer.PublicKey()))
	log := newProvLines()
	comm, err := ami.ConnectSSH(context.Background(), ami.SSHTarget{
		Host: srv.Host, Port: srv.Port, User: srv.User, Key: key, Timeout: 10 * time.Second,
	}, log)
	if err != nil {
		t.Fatalf("ConnectSSH: %v\nlog:\n%s\nsshd log:\n%s", err, log.String(), srv.Log())
	}
	t.Cleanup(func() { comm.(io.Closer).Close() })
	return comm, log
}

// provRun is a Provision running in the background.
type provRun struct {
	ended chan struct{} // closed when Provision returned
	err   error         // what it returned, once ended is closed
}

// provStart runs Provision in the background.
func provStart(ctx context.Context, comm packersdk.Communicator, p *recipes.Provisioner, out io.Writer) *provRun {
	r := &provRun{ended: make(chan struct{})}
	go func() {
		defer close(r.ended)
		r.err = ami.Provision(ctx, comm, p, out)
	}()
	return r
}

// wait waits for Provision to return and returns its error.
func (r *provRun) wait() error {
	<-r.ended
	return r.err
}

// provBlock returns a provision block written at web.bake.hcl:10:3, its
// attributes one line each below.
func provBlock(typ string) *recipes.Provisioner {
	at := func(line int) hcl.Range {
		return hcl.Range{Filename: "web.bake.hcl", Start: hcl.Pos{Line: line, Column: 5}}
	}
	return &recipes.Provisioner{
		Type:      typ,
		DeclRange: hcl.Range{Filename: "web.bake.hcl", Start: hcl.Pos{Line: 10, Column: 3}},
		Ranges: map[string]hcl.Range{
			"source": at(11), "destination": at(12), "inline": at(13), "script": at(14),
			"env": at(15), "pause_before": at(16),
		},
	}
}

// provLines is a goroutine-safe io.Writer that remembers what was written
// and can wait for a line to appear.
type provLines struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newProvLines() *provLines { return &provLines{changed: make(chan struct{})} }

func (w *provLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	close(w.changed)
	w.changed = make(chan struct{})
	return len(p), nil
}

func (w *provLines) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// hasLine reports whether line has been written as a whole line.
func (w *provLines) hasLine(line string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Contains("\n"+w.buf.String(), "\n"+line+"\n")
}

// wantLine fails the test unless line has been written as a whole line.
func (w *provLines) wantLine(t *testing.T, line string) {
	t.Helper()
	if !w.hasLine(line) {
		t.Fatalf("line %q not written; got:\n%s", line, w.String())
	}
}

// waitLine waits until line has been written as a whole line while run
// is running; it fails the test if run returns first without writing it.
// It sets no time limit: however slow the machine, the line comes or
// run ends (the test binary's -timeout catches a hang).
func (w *provLines) waitLine(t *testing.T, line string, run *provRun) {
	t.Helper()
	for {
		w.mu.Lock()
		found := strings.Contains("\n"+w.buf.String(), "\n"+line+"\n")
		changed := w.changed
		w.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-run.ended:
			if w.hasLine(line) {
				return
			}
			t.Fatalf("Provision returned (%v) without writing line %q; got:\n%s", run.err, line, w.String())
		}
	}
}

func provWriteFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is subject to the umask.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func provCheckFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("uploaded file: %v", err)
		return
	}
	if string(got) != content {
		t.Errorf("%s = %q, want %q", path, got, content)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s mode = %v, want %v", path, fi.Mode().Perm(), mode)
	}
}

func TestProvisionFileUploadsAFileWithItsMode(t *testing.T) {
	t.Parallel()
	comm := provConnect(t)
	src := filepath.Join(t.TempDir(), "app.conf")
	provWriteFile(t, src, "listen = 8080\n", 0o640)
	dest := t.TempDir()

	p := provBlock("file")
	p.Source, p.SourcePath, p.Destination = "app.conf", src, filepath.Join(dest, "etc.conf")
	out := newProvLines()
	if err := ami.Provision(context.Background(), comm, p, out); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	provCheckFile(t, filepath.Join(dest, "etc.conf"), "listen = 8080\n", 0o640)
	if !strings.Contains(out.String(), "  file: uploading app.conf to "+filepath.Join(dest, "etc.conf")) {
		t.Errorf("output = %q, want the upload named", out.String())
	}

	// A destination ending in "/" is a directory: the file keeps its name.
	// An existing file is replaced, mode included.
	provWriteFile(t, filepath.Join(dest, "app.conf"), "old content that is longer\n", 0o666)
	p.Destination = dest + "/"
	if err := ami.Provision(context.Background(), comm, p, io.Discard); err != nil {
		t.Fatalf("Provision into a directory: %v", err)
	}
	provCheckFile(t, filepath.Join(dest, "app.conf"), "listen = 8080\n", 0o640)

	// A missing parent directory is an error naming the block and what to check.
	p.Destination = filepath.Join(dest, "missing", "app.conf")
	err := ami.Provision(context.Background(), comm, p, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "file provisioner at web.bake.hcl:11:5") ||
		!strings.Contains(err.Error(), "destination's directory exists") {
		t.Errorf("upload to a missing directory: err = %v", err)
	}
}

func TestProvisionFileUploadsADirectorysContents(t *testing.T) {
	t.Parallel()
	comm := provConnect(t)
	src := t.TempDir()
	provWriteFile(t, filepath.Join(src, "bin", "start.sh"), "#!/bin/sh\necho start\n", 0o755)
	provWriteFile(t, filepath.Join(src, "secret.key"), "s3cr3t", 0o600)
	provWriteFile(t, filepath.Join(src, "conf", "deep", "a.txt"), "a", 0o644)
	if err := os.Chmod(filepath.Join(src, "conf"), 0o750); err != nil {
		t.Fatal(err)
	}
	// The destination does not exist yet: Provision creates it.
	dest := filepath.Join(t.TempDir(), "opt", "app")

	p := provBlock("file")
	p.Source, p.SourcePath, p.SourceIsDir, p.Destination = "files/", src, true, dest+"/"
	if err := ami.Provision(context.Background(), comm, p, io.Discard); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	provCheckFile(t, filepath.Join(dest, "bin", "start.sh"), "#!/bin/sh\necho start\n", 0o755)
	provCheckFile(t, filepath.Join(dest, "secret.key"), "s3cr3t", 0o600)
	provCheckFile(t, filepath.Join(dest, "conf", "deep", "a.txt"), "a", 0o644)
	if fi, err := os.Stat(filepath.Join(dest, "conf")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("conf directory: %v, %v; want mode 0750", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dest, filepath.Base(src))); err == nil {
		t.Errorf("the source directory itself was uploaded, want only its contents")
	}

	// Uploading into an existing directory leaves that directory's mode alone.
	if err := os.Chmod(dest, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := ami.Provision(context.Background(), comm, p, io.Discard); err != nil {
		t.Fatalf("Provision again: %v", err)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o711 {
		t.Errorf("destination mode = %v after upload, want it kept (0711)", fi.Mode().Perm())
	}
}

func TestProvisionShellInlineStreamsOutputWithEnv(t *testing.T) {
	t.Parallel()
	comm := provConnect(t)
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	greeting := `it's "quoted" $HOME ` + "`id` \\ ;|&"

	p := provBlock("shell")
	p.Env = map[string]string{
		"GREETING": greeting,
		"B_2":      "two",
	}
	p.Inline = []string{
		`echo "greeting=$GREETING"`,
		`printf %s "$GREETING" > ` + filepath.Join(dir, "greeting"),
		`echo "b=$B_2"`,
		`echo to-stderr >&2`,
		`echo waiting`,
		// Wait for the test to see the lines so far: output must arrive
		// while the command runs, not when it ends. (If the test fails
		// first, cancelling ctx ends the wait.)
		`while [ ! -e ` + gate + ` ]; do sleep 0.05; done`,
		`printf 'no newline at the end'`,
	}
	out := newProvLines()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := provStart(ctx, comm, p, out)

	// The script cannot end before the gate exists: the lines seen here
	// were streamed while it ran.
	out.waitLine(t, "  shell: waiting", run)
	// Env values are masked in the output, and the mask matches only the
	// exact value: the line shows that the value arrived intact. (Values
	// shorter than redact.MinLen, like "two", are not masked.)
	out.wantLine(t, "  shell: greeting=(sensitive value)")
	out.wantLine(t, "  shell: b=two")
	out.wantLine(t, "  shell: to-stderr")
	if got, err := os.ReadFile(filepath.Join(dir, "greeting")); err != nil || string(got) != greeting {
		t.Errorf("GREETING on the builder = %q, %v; want %q", got, err, greeting)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run.wait(); err != nil {
		t.Fatalf("Provision: %v\noutput:\n%s", err, out.String())
	}
	out.wantLine(t, "  shell: no newline at the end")
}

func TestProvisionShellInlineStopsAtTheFirstFailure(t *testing.T) {
	t.Parallel()
	comm := provConnect(t)
	p := provBlock("shell")
	p.Inline = []string{"echo before", "false", "echo not reached"}
	out := newProvLines()
	err := ami.Provision(context.Background(), comm, p, out)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("err = %v, want exit status 1 (inline runs with /bin/sh -e)", err)
	}
	if strings.Contains(out.String(), "not reached") {
		t.Errorf("the command after a failing one ran:\n%s", out.String())
	}
}

func TestProvisionShellScript(t *testing.T) {
	t.Parallel()
	comm := provConnect(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	script := filepath.Join(t.TempDir(), "setup.sh")
	// Mode 0644 locally: the uploaded copy is made executable.
	provWriteFile(t, script, "#!/bin/sh\nset -eu\necho \"path=$0\"\necho \"role=$ROLE\"\ntouch '"+marker+"'\n", 0o644)

	p := provBlock("shell")
	p.Script, p.ScriptPath = "scripts/setup.sh", script
	p.Env = map[string]string{"ROLE": "web"}
	out := newProvLines()
	if err := ami.Provision(context.Background(), comm, p, out); err != nil {
		t.Fatalf("Provision: %v\noutput:\n%s", err, out.String())
	}
	out.wantLine(t, "  shell: role=web")
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the script did not run: %v", err)
	}
	var remote string
	for _, l := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(l, "  shell: path="); ok {
			remote = v
		}
	}
	if !strings.HasPrefix(remote, "/tmp/bakery-script-") || !strings.HasSuffix(remote, ".sh") {
		t.Fatalf("script ran as %q, want /tmp/bakery-script-*.sh", remote)
	}
	if _, err := os.Stat(remote); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the uploaded script %s was not removed: %v", remote, err)
	}
}

func TestProvisionShellFailureQuotesTheLastLines(t *testing.T) {
	t.Parallel()
	comm := provConnect(t)
	p := provBlock("shell")
	p.Inline = []string{`for i in $(seq 1 30); do echo "line $i"; done`, "exit 3"}
	err := ami.Provision(context.Background(), comm, p, io.Discard)
	if err == nil {
		t.Fatal("Provision succeeded, want the exit status")
	}
	msg := err.Error()
	for _, want := range []string{
		"shell provisioner at web.bake.hcl:13:5 failed with exit status 3: last 20 lines of output:\n  line 11\n  line 12\n",
		"  line 30\nfix the script and bake again (--on-error abort keeps the builder to log in to)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "line 10\n") {
		t.Errorf("error quotes more than 20 lines:\n%s", msg)
	}

	// Standard error counts too.
	p.Inline = []string{"echo 'cannot find nginx' >&2", "exit 5"}
	if err := ami.Provision(context.Background(), comm, p, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "exit status 5: last line of output:\n  cannot find nginx\n") {
		t.Errorf("failure on stderr: err = %v", err)
	}

	p.Inline = []string{"exit 4"}
	if err := ami.Provision(context.Background(), comm, p, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "failed with exit status 4 (no output); fix the script") {
		t.Errorf("silent failure: err = %v", err)
	}
}

func TestProvisionShellRejectsABadEnvName(t *testing.T) {
	t.Parallel()
	p := provBlock("shell")
	p.Inline = []string{"true"}
	p.Env = map[string]string{"NOT-A-NAME": "x"}
	err := ami.Provision(context.Background(), nil, p, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `at web.bake.hcl:15:5: env name "NOT-A-NAME"`) {
		t.Errorf("err = %v", err)
	}
}

// provDropConnection returns a script line that kills the sshd process
// serving its session (the first sshd above it), so the connection drops
// as when the builder reboots; then it lingers, as a shutting-down system
// would, until the file gate exists (or a minute has passed), and creates
// the file ended. Provision returning while ended does not exist proves it
// returned on the drop, not when the script ended.
func provDropConnection(gate, ended string) string {
	return `p=$$; while :; do case "$(cat /proc/$p/comm)" in sshd*) break;; esac; ` +
		`p=$(awk '/^PPid:/{print $2}' /proc/$p/status); [ "$p" -gt 1 ] || exit 7; done; ` +
		`echo "dropping sshd $p"; kill -9 "$p"; ` +
		`i=0; while [ ! -e '` + gate + `' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; touch '` + ended + `'`
}

func TestProvisionShellExpectDisconnect(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the test finds the session's sshd in /proc")
	}
	t.Parallel()
	comm := provConnect(t)
	dir := t.TempDir()

	// returnsOnTheDrop runs p, whose script drops the connection, and
	// checks that Provision returned before the script ended.
	returnsOnTheDrop := func(p *recipes.Provisioner, gate, ended string) error {
		t.Helper()
		p.Inline = []string{provDropConnection(gate, ended)}
		err := ami.Provision(context.Background(), comm, p, io.Discard)
		if _, statErr := os.Stat(ended); statErr == nil {
			t.Errorf("Provision returned only when the script ended, want it to return when the connection drops")
		}
		if err := os.WriteFile(gate, nil, 0o644); err != nil { // let the script end
			t.Fatal(err)
		}
		return err
	}

	p := provBlock("shell")
	err := returnsOnTheDrop(p, filepath.Join(dir, "gate1"), filepath.Join(dir, "ended1"))
	if err == nil || !strings.Contains(err.Error(), "lost the SSH connection") || !strings.Contains(err.Error(), "expect_disconnect") {
		t.Fatalf("dropped connection without expect_disconnect: err = %v", err)
	}

	p.ExpectDisconnect = true
	if err := returnsOnTheDrop(p, filepath.Join(dir, "gate2"), filepath.Join(dir, "ended2")); err != nil {
		t.Fatalf("dropped connection with expect_disconnect: %v", err)
	}

	// The next provisioner reconnects.
	next := provBlock("shell")
	next.Inline = []string{"echo back"}
	out := newProvLines()
	if err := ami.Provision(context.Background(), comm, next, out); err != nil {
		t.Fatalf("provisioning after the disconnect: %v", err)
	}
	out.wantLine(t, "  shell: back")
}

func TestProvisionPauseBefore(t *testing.T) {
	t.Parallel()
	comm := provConnect(t)
	marker := filepath.Join(t.TempDir(), "ran")
	p := provBlock("shell")
	p.Inline = []string{"touch " + marker}
	p.PauseBefore = 300 * time.Millisecond
	start := time.Now()
	if err := ami.Provision(context.Background(), comm, p, io.Discard); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < p.PauseBefore {
		t.Errorf("Provision took %s, want at least pause_before (%s)", d, p.PauseBefore)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatalf("the command did not run: %v", err)
	}

	// Cancelling during the pause ends it, running nothing. (With an
	// hour's pause, returning at all means the cancel ended it.)
	p.PauseBefore = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err := ami.Provision(ctx, comm, p, io.Discard)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "web.bake.hcl:16:5") || !strings.Contains(err.Error(), "pausing before it") {
		t.Errorf("cancelled pause: err = %v, want context.Canceled at the pause_before line", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran although the pause was cancelled")
	}
}

func TestProvisionShellCancelStopsTheCommand(t *testing.T) {
	t.Parallel()
	comm, log := provConnectLog(t)
	gate := filepath.Join(t.TempDir(), "gate")
	p := provBlock("shell")
	// The command cannot end before the test creates gate, which it does
	// only after Provision returned.
	p.Inline = []string{"echo started", "while [ ! -e '" + gate + "' ]; do sleep 0.05; done", "echo finished"}
	out := newProvLines()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := provStart(ctx, comm, p, out)
	out.waitLine(t, "  shell: started", run)

	cancel()
	err := run.wait()
	if err := os.WriteFile(gate, nil, 0o644); err != nil { // let the orphaned command end
		t.Fatal(err)
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "shell provisioner at web.bake.hcl:13:5") {
		t.Errorf("err = %v, want context.Canceled from the shell provisioner", err)
	}

	// The cancel closed the connection, so the communicator reconnects
	// for what follows (cleanup, say).
	next := provBlock("shell")
	next.Inline = []string{"echo again"}
	out2 := newProvLines()
	if err := ami.Provision(context.Background(), comm, next, out2); err != nil {
		t.Fatalf("provisioning after a cancel: %v", err)
	}
	out2.wantLine(t, "  shell: again")
	if !strings.Contains(log.String(), "dropped; waiting for SSH to answer again") {
		t.Errorf("the communicator did not reconnect after the cancel, so the cancel left the session open; log:\n%s", log.String())
	}
}

func TestProvisionRejectsAnUnknownType(t *testing.T) {
	t.Parallel()
	err := ami.Provision(context.Background(), nil, provBlock("ansible"), io.Discard)
	if err == nil || !strings.Contains(err.Error(), `provisioner at web.bake.hcl:10:3: unknown type "ansible"`) {
		t.Errorf("err = %v", err)
	}
}

func ExampleProvision() {
	ctx := context.Background()
	key, err := ami.NewSSHKey()
	if err != nil {
		fmt.Println(err)
		return
	}
	// key.PublicAuthorized goes to EC2 ImportKeyPair; the instance boots...
	comm, err := ami.ConnectSSH(ctx, ami.SSHTarget{Host: "203.0.113.10", User: "ec2-user", Key: key}, os.Stderr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer comm.(io.Closer).Close()
	p := &recipes.Provisioner{Type: "shell", Inline: []string{"sudo dnf -y install nginx"}}
	if err := ami.Provision(ctx, comm, p, os.Stdout); err != nil {
		fmt.Println(err)
	}
}
