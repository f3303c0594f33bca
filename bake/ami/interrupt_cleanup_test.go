package ami_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

// cancelOnLine is an io.Writer that remembers what is written and calls
// cancel once line has been written as a whole line.
type cancelOnLine struct {
	line   string
	cancel context.CancelFunc

	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *cancelOnLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains("\n"+w.buf.String(), "\n"+w.line+"\n") {
		w.cancel()
	}
	return len(p), nil
}

func (w *cancelOnLine) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestInterruptedProvisioningReportsEachRemovalAndNoClosedConnection
// interrupts a bake while its shell provisioner runs, as SIGINT does:
// the cleanups report what they remove as step lines with durations
// (builder, then security group, then key pair), and nothing reports the
// "use of closed network connection" of the SSH connection the interrupt
// itself closed.
func TestInterruptedProvisioningReportsEachRemovalAndNoClosedConnection(t *testing.T) {
	e := newBakeEnv(t)
	srv := sshtest.Start(t)
	keyFile, pub := bakeKeyFile(t)
	srv.AuthorizeKey(pub)
	r, m := bakeRecipe(t, `
  region               = "us-east-1"
  source_ami           = "`+bakeAL2023+`"
  ssh_host             = "`+srv.Host+`"
  ssh_port             = `+strconv.Itoa(srv.Port)+`
  ssh_username         = "`+srv.User+`"
  ssh_private_key_file = "`+keyFile+`"
  ssh_timeout          = "20s"
  provision "shell" {
    inline = ["echo started", "sleep 60"]
  }`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelOnLine{line: "  shell: started", cancel: cancel}
	lines := &syncBuffer{}
	b := e.baker(fixedID("bk-intr"), ami.WithOutput(out), ami.WithProgress(progress.NewLines(lines)))
	p, err := b.Prepare(context.Background(), r, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ctx, p)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build = %v, want an interruption\noutput:\n%s", err, out.String())
	}
	t.Logf("interrupted: %v\nprogress:\n%s", err, lines.String())
	for _, text := range []string{err.Error(), out.String(), lines.String()} {
		if strings.Contains(text, "use of closed network connection") {
			t.Errorf("the interrupt reports the SSH connection it closed itself:\n%s", text)
		}
	}
	progressText := lines.String()
	var at []int
	for _, what := range []string{"terminating i-", "deleting security group sg-", "deleting key pair bakery-bk-intr"} {
		start := strings.Index(progressText, `step="server: cleaning up: `+what)
		if start < 0 {
			t.Errorf("no step line for %q:\n%s", what, progressText)
			continue
		}
		rest := progressText[start:]
		name := rest[:strings.Index(rest, `" status=`)+1]
		if !strings.Contains(rest, name+" status=done duration=") {
			t.Errorf("step %s does not end with a duration:\n%s", name, progressText)
		}
		at = append(at, start)
	}
	if len(at) == 3 && !(at[0] < at[1] && at[1] < at[2]) {
		t.Errorf("the removals are not reported in the order they happen (builder, group, key pair):\n%s", progressText)
	}
	e.assertNoLeftovers("us-east-1")
}
