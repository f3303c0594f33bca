package progress

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeClock advances by one second per reading.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { c.t = c.t.Add(time.Second); return c.t }

func TestLinesAreStructuredWithDurations(t *testing.T) {
	var b strings.Builder
	r := NewLines(&b, WithClock((&fakeClock{}).now))
	s := r.Step("build layers")
	s.SetTotal(100)
	s.Add(100)
	s.Done(nil)
	r.Step("push").Done(errors.New("denied"))
	r.Info("up to date")
	want := `step="build layers" status=start
step="build layers" status=done duration=1s bytes=100
step=push status=start
step=push status=failed duration=1s error=denied
msg="up to date"
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
	if !strings.Contains(b.String(), "✗ web: x 1s: bad") {
		t.Errorf("prefixed failure line missing: %q", b.String())
	}
}
