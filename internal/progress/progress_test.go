package progress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeClock advances by one second per reading.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { c.t = c.t.Add(time.Second); return c.t }

func TestLinesAreStructuredWithDurations(t *testing.T) {
	var b strings.Builder
	// The clock's zone is not UTC; the lines are.
	clock := &fakeClock{t: time.Date(2026, 11, 27, 2, 0, 0, 0, time.FixedZone("CET", 3600))}
	r := NewLines(&b, WithClock(clock.now))
	s := r.Step("build layers")
	s.SetTotal(100)
	s.Add(100)
	s.Done(nil)
	r.Step("push").Done(errors.New("denied"))
	r.Step("copy").Done(fmt.Errorf("copying: %w", context.Canceled))
	r.Info("up to date")
	// Each line is dated by the clock; a failed step does not repeat
	// its error, which its caller prints.
	want := `time=2026-11-27T01:00:01Z step="build layers" status=start
time=2026-11-27T01:00:02Z step="build layers" status=done duration=1s bytes=100
time=2026-11-27T01:00:03Z step=push status=start
time=2026-11-27T01:00:04Z step=push status=failed duration=1s
time=2026-11-27T01:00:05Z step=copy status=start
time=2026-11-27T01:00:06Z step=copy status=canceled duration=1s
time=2026-11-27T01:00:07Z msg="up to date"
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTerminalDrawsBarsAndStepLines(t *testing.T) {
	var b strings.Builder
	r := NewTerminal(&b, WithClock((&fakeClock{}).now))
	s := r.Step("layer")
	s.SetTotal(2048)
	s.Add(1024)
	s.Done(nil)
	out := b.String()
	if !strings.Contains(out, "layer [==========          ]  50% 1.0 KiB/2.0 KiB") {
		t.Errorf("no half-way bar in %q", out)
	}
	if !strings.Contains(out, "✓ layer (2.0 KiB) 3s\n") {
		t.Errorf("no step line in %q", out)
	}
	WithPrefix(r, "web: ").Step("x").Done(errors.New("bad"))
	if !strings.Contains(b.String(), "✗ web: x 1s (failed)\n") || strings.Contains(b.String(), "bad") {
		t.Errorf("prefixed failure line missing: %q", b.String())
	}
}

// TestForAddsTheContextPrefix: For adds the prefixes a context carries,
// outermost first, and leaves a Reporter alone for a context without.
func TestForAddsTheContextPrefix(t *testing.T) {
	var buf bytes.Buffer
	r := NewLines(&buf, WithClock(func() time.Time { return time.Unix(0, 0) }))
	ctx := ContextWithPrefix(ContextWithPrefix(context.Background(), "[web] "), "amd64: ")
	For(ctx, r).Info("hello")
	For(context.Background(), r).Info("plain")
	if got := buf.String(); !strings.Contains(got, `"[web] amd64: hello"`) || !strings.Contains(got, "msg=plain") {
		t.Errorf("lines = %q", got)
	}
}

// TestTerminalShowsEveryActiveStepOnItsOwnLine: on a terminal, steps of
// recipes baking at once each have a line in the live view, which is
// erased whole (cursor up over its lines) before the next output.
func TestTerminalShowsEveryActiveStepOnItsOwnLine(t *testing.T) {
	var b strings.Builder
	r := NewTerminal(&b, WithClock((&fakeClock{}).now))
	base := WithPrefix(r, "[os] ").Step("os: build layers")
	app := WithPrefix(r, "[app] ").Step("app: layer 1/1")
	app.SetTotal(100)
	r.Info("note")
	out := b.String()
	if !strings.Contains(out, "… [os] os: build layers 2s\n[app] app: layer 1/1 [                    ]   0% 0 B/100 B") {
		t.Errorf("no two-line live view in %q", out)
	}
	if !strings.Contains(out, "\r\x1b[1A\x1b[Jnote\n") {
		t.Errorf("the two-line view is not erased before a message: %q", out)
	}
	base.Done(nil)
	app.Done(nil)
}
