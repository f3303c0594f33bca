package steps

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/internal/progress"
)

type state struct{ log []string }

type fakeStep struct {
	name    string
	fail    error
	cancel  context.CancelFunc
	sawDone bool
}

func (f *fakeStep) Name() string { return f.name }

func (f *fakeStep) Run(ctx context.Context, s *state, _ progress.Step) error {
	s.log = append(s.log, "run "+f.name)
	if f.cancel != nil {
		f.cancel()
	}
	return f.fail
}

func (f *fakeStep) Cleanup(ctx context.Context, s *state, failed bool) error {
	f.sawDone = ctx.Err() != nil
	s.log = append(s.log, "cleanup "+f.name+map[bool]string{true: " failed", false: ""}[failed])
	return nil
}

func TestCleanupRunsInReverseOnFailure(t *testing.T) {
	s := &state{}
	boom := errors.New("boom")
	err := Run(context.Background(), Runner{}, s, &fakeStep{name: "a"}, &fakeStep{name: "b", fail: boom}, &fakeStep{name: "c"})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	want := "run a,run b,cleanup b failed,cleanup a failed"
	if got := strings.Join(s.log, ","); got != want {
		t.Fatalf("log = %s, want %s", got, want)
	}
}

func TestCleanupAfterSuccessAndOnFreshContext(t *testing.T) {
	s := &state{}
	if err := Run(context.Background(), Runner{}, s, &fakeStep{name: "a"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.log, ","); got != "run a,cleanup a" {
		t.Fatalf("log = %s", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s = &state{}
	a, b := &fakeStep{name: "a", cancel: cancel}, &fakeStep{name: "b"}
	err := Run(ctx, Runner{}, s, a, b)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted before b") {
		t.Fatalf("err = %v, want interrupted before b", err)
	}
	if a.sawDone {
		t.Error("cleanup got the cancelled context")
	}
	if got := strings.Join(s.log, ","); got != "run a,cleanup a failed" {
		t.Fatalf("log = %s: b must not run", got)
	}
}
