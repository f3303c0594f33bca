package steps

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/internal/progress"
)

// funcStep is a step whose Run and Cleanup are functions.
type funcStep struct {
	name    string
	run     func(ctx context.Context) error
	cleanup func(ctx context.Context) error
}

func (f funcStep) Name() string { return f.name }
func (f funcStep) Run(ctx context.Context, _ *state, _ progress.Step) error {
	if f.run == nil {
		return nil
	}
	return f.run(ctx)
}
func (f funcStep) Cleanup(ctx context.Context, _ *state, _ bool) error {
	if f.cleanup == nil {
		return nil
	}
	return f.cleanup(ctx)
}

// TestAbandonEndsTheCleanupsAtOnce interrupts a run whose cleanup waits
// for its context (as a slow TerminateInstances does) with an hour to go,
// then closes the abandon channel: the cleanup's context ends at once with
// cause ErrAbandoned, and Run returns an error that says the cleanup was
// abandoned and failed.
func TestAbandonEndsTheCleanupsAtOnce(t *testing.T) {
	abandon := make(chan struct{})
	ctx, cancel := context.WithCancel(WithAbandon(context.Background(), abandon))
	defer cancel()
	started := make(chan struct{})
	var cause error
	slow := funcStep{
		name: "launch builder",
		run:  func(context.Context) error { cancel(); return nil },
		cleanup: func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			cause = context.Cause(ctx)
			return ctx.Err()
		},
	}
	go func() {
		<-started
		close(abandon)
	}()
	err := Run(ctx, Runner{CleanupTimeout: time.Hour}, &state{}, slow, funcStep{name: "provision"})
	if !errors.Is(cause, ErrAbandoned) {
		t.Errorf("the cleanup's context ended with cause %v, want ErrAbandoned", cause)
	}
	if !errors.Is(err, ErrAbandoned) || !errors.Is(err, context.Canceled) || !CleanupFailed(err) {
		t.Fatalf("Run = %v, want an interruption whose cleanup was abandoned", err)
	}
	for _, want := range []string{"interrupted before provision", "cleaning up after launch builder: cleanup abandoned; bakery sweep will find what is left"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Run = %v, want it to say %q", err, want)
		}
	}
}

// TestCleanupContextWithoutAbandonOutlivesItsParent checks that a cleanup
// context survives the cancellation of the run's context and keeps its
// values, and that the abandon channel of another context does not reach
// it.
func TestCleanupContextWithoutAbandonOutlivesItsParent(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	cctx, done := CleanupContext(parent, time.Hour)
	defer done()
	cancel()
	if cctx.Err() != nil || cctx.Value(key{}) != "v" {
		t.Fatalf("cleanup context: err %v, value %v; want alive with the parent's values", cctx.Err(), cctx.Value(key{}))
	}
	done()
	if !errors.Is(cctx.Err(), context.Canceled) || errors.Is(context.Cause(cctx), ErrAbandoned) {
		t.Fatalf("after its cancel func: %v (cause %v), want canceled, not abandoned", cctx.Err(), context.Cause(cctx))
	}
}

// TestCleanupProgressReportsWhatIsRemovedAfterAFailure checks that the
// cleanups of a failed run report step lines ("cleaning up: ...", with a
// duration) through the run's Progress, and those of a successful run
// report nothing.
func TestCleanupProgressReportsWhatIsRemovedAfterAFailure(t *testing.T) {
	terminate := funcStep{name: "launch builder", cleanup: func(ctx context.Context) error {
		CleanupProgress(ctx).Step("terminating i-0abc").Done(nil)
		return nil
	}}
	var buf bytes.Buffer
	boom := errors.New("boom")
	fail := funcStep{name: "provision", run: func(context.Context) error { return boom }}
	if err := Run(context.Background(), Runner{Progress: progress.NewLines(&buf)}, &state{}, terminate, fail); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	for _, want := range []string{
		"step=\"cleaning up: terminating i-0abc\" status=start",
		"step=\"cleaning up: terminating i-0abc\" status=done duration=",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, buf.String())
		}
	}
	if i, j := strings.Index(buf.String(), `step=provision status=failed`), strings.Index(buf.String(), "cleaning up"); i < 0 || j < i {
		t.Errorf("the cleanup lines do not follow the failed step:\n%s", buf.String())
	}

	buf.Reset()
	if err := Run(context.Background(), Runner{Progress: progress.NewLines(&buf)}, &state{}, terminate); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "cleaning up") {
		t.Errorf("a successful run reported cleanup steps:\n%s", buf.String())
	}
	if CleanupProgress(context.Background()) != progress.Discard() {
		t.Error("CleanupProgress outside a cleanup reports somewhere")
	}
}
