// Package progress reports the steps of long operations: a line per step
// with its duration, a progress bar on a terminal, and quiet structured
// lines (key=value) when the output is not a terminal.
//
// A failed step is marked failed (✗, status=failed) without its error:
// the step returns the error to its caller, which prints it once, with
// what to do next.
package progress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Reporter receives the steps of a long operation. Implementations are
// safe for concurrent use: steps may run in parallel.
type Reporter interface {
	// Step starts a named step and returns its handle.
	Step(name string) Step
	// Info prints a one-line message that is not a step (for example
	// "hello:1.0.0 up to date").
	Info(msg string)
}

// Step is one running step. Call Done exactly once.
type Step interface {
	// SetTotal sets the amount of work in bytes, enabling a progress bar.
	SetTotal(n int64)
	// Add records n more bytes of work done.
	Add(n int64)
	// Done ends the step; err is nil on success. The error is not
	// printed: the caller that receives it does.
	Done(err error)
}

// Discard returns a Reporter that prints nothing.
func Discard() Reporter { return discard{} }

type discard struct{}

func (discard) Step(string) Step { return discardStep{} }
func (discard) Info(string)      {}

type discardStep struct{}

func (discardStep) SetTotal(int64) {}
func (discardStep) Add(int64)      {}
func (discardStep) Done(error)     {}

// Option configures a Reporter.
type Option func(*writer)

// WithClock sets the clock used to time and date steps. The default is
// time.Now.
func WithClock(now func() time.Time) Option { return func(w *writer) { w.now = now } }

// NewLines returns a Reporter that writes structured key=value lines, one
// when a step starts and one when it ends, for logs and CI output. Each
// line starts with its time, RFC 3339 in UTC:
//
//	time=2026-11-27T01:02:03Z step="web: build layers" status=done duration=1.2s
//
// A step ends with status done, failed or canceled (its context was).
func NewLines(out io.Writer, opts ...Option) Reporter {
	return newWriter(out, false, opts)
}

// NewTerminal returns a Reporter for an interactive terminal: a line per
// finished step with its duration and live progress bars for the steps
// that report a total.
func NewTerminal(out io.Writer, opts ...Option) Reporter {
	return newWriter(out, true, opts)
}

type writer struct {
	mu      sync.Mutex
	out     io.Writer
	tty     bool
	now     func() time.Time
	active  map[*step]struct{}
	drawn   int // lines of the live view on screen
	lastBar time.Time
}

func newWriter(out io.Writer, tty bool, opts []Option) *writer {
	w := &writer{out: out, tty: tty, now: time.Now, active: map[*step]struct{}{}}
	for _, o := range opts {
		o(w)
	}
	return w
}

type step struct {
	w           *writer
	name        string
	start       time.Time
	total, done int64
	finished    bool
}

func (w *writer) Step(name string) Step {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &step{w: w, name: name, start: w.now()}
	w.active[s] = struct{}{}
	if !w.tty {
		fmt.Fprintf(w.out, "time=%s step=%s status=start\n", stamp(s.start), quote(name))
	} else {
		w.drawAt(s.start, false)
	}
	return s
}

func (w *writer) Info(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tty {
		w.clearBar()
		fmt.Fprintln(w.out, msg)
		w.drawBar(true)
		return
	}
	fmt.Fprintf(w.out, "time=%s msg=%s\n", stamp(w.now()), quote(msg))
}

// stamp formats t for a line: RFC 3339, UTC, whole seconds.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (s *step) SetTotal(n int64) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.total = n
	s.w.drawBar(false)
}

func (s *step) Add(n int64) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.done += n
	s.w.drawBar(false)
}

func (s *step) Done(err error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.finished {
		return
	}
	s.finished = true
	delete(w.active, s)
	end := w.now()
	d := end.Sub(s.start)
	status := "done"
	switch {
	case errors.Is(err, context.Canceled):
		status = "canceled"
	case err != nil:
		status = "failed"
	}
	if w.tty {
		w.clearBar()
		mark, extra := "✓", ""
		if err != nil {
			mark, extra = "✗", " ("+status+")"
		}
		size := ""
		if s.total > 0 {
			size = " (" + humanBytes(s.total) + ")"
		}
		fmt.Fprintf(w.out, "%s %s%s %s%s\n", mark, s.name, size, roundDuration(d), extra)
		w.drawBar(true)
		return
	}
	line := fmt.Sprintf("time=%s step=%s status=%s duration=%s", stamp(end), quote(s.name), status, roundDuration(d))
	if s.total > 0 {
		line += fmt.Sprintf(" bytes=%d", s.total)
	}
	fmt.Fprintln(w.out, line)
}

// drawBar redraws the live view: one line per active step, in start
// order, with a bar for a step that reports a total and its time so far
// otherwise (recipes baking at once each show what they are doing). It
// is throttled to ten redraws a second unless force is set.
func (w *writer) drawBar(force bool) {
	if w.tty {
		w.drawAt(w.now(), force)
	}
}

// drawAt is drawBar at time now.
func (w *writer) drawAt(now time.Time, force bool) {
	if !force && now.Sub(w.lastBar) < 100*time.Millisecond {
		return
	}
	w.lastBar = now
	steps := make([]*step, 0, len(w.active))
	for s := range w.active {
		steps = append(steps, s)
	}
	sort.Slice(steps, func(i, j int) bool {
		if !steps[i].start.Equal(steps[j].start) {
			return steps[i].start.Before(steps[j].start)
		}
		return steps[i].name < steps[j].name
	})
	lines := make([]string, 0, len(steps))
	for _, s := range steps {
		l := "… " + s.name + " " + roundDuration(now.Sub(s.start)).String()
		if s.total > 0 {
			l = bar(s.name, s.done, s.total)
		}
		if r := []rune(l); len(r) > liveWidth { // a wrapped line would break the redraw
			l = string(r[:liveWidth-1]) + "…"
		}
		lines = append(lines, l)
	}
	w.clearBar()
	if len(lines) > 0 {
		fmt.Fprint(w.out, strings.Join(lines, "\n"))
		w.drawn = len(lines)
	}
}

// liveWidth is the longest line of the live view, in runes.
const liveWidth = 100

// clearBar erases the live view, leaving the cursor where it began.
func (w *writer) clearBar() {
	switch {
	case w.drawn == 1:
		fmt.Fprint(w.out, "\r\x1b[K")
	case w.drawn > 1:
		fmt.Fprintf(w.out, "\r\x1b[%dA\x1b[J", w.drawn-1)
	}
	w.drawn = 0
}

func bar(name string, done, total int64) string {
	const width = 20
	if done > total {
		done = total
	}
	filled := int(done * width / total)
	return fmt.Sprintf("%s [%s%s] %3d%% %s/%s", name, strings.Repeat("=", filled),
		strings.Repeat(" ", width-filled), done*100/total, humanBytes(done), humanBytes(total))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond)
	default:
		return d.Round(time.Microsecond)
	}
}

func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"=\n") {
		return s
	}
	return fmt.Sprintf("%q", s)
}

// WithPrefix returns a Reporter that puts prefix before every step name
// and message of r, e.g. the artifact name.
func WithPrefix(r Reporter, prefix string) Reporter { return prefixed{r, prefix} }

type prefixed struct {
	r      Reporter
	prefix string
}

func (p prefixed) Step(name string) Step { return p.r.Step(p.prefix + name) }
func (p prefixed) Info(msg string)       { p.r.Info(p.prefix + msg) }

type prefixKey struct{}

// ContextWithPrefix returns ctx carrying prefix, added after any prefix
// ctx carries already, for the Reporters For returns: a run of several
// recipes names the recipe on each line of its bake.
func ContextWithPrefix(ctx context.Context, prefix string) context.Context {
	old, _ := ctx.Value(prefixKey{}).(string)
	return context.WithValue(ctx, prefixKey{}, old+prefix)
}

// For returns r with the prefix ctx carries (see ContextWithPrefix), or
// r itself when it carries none.
func For(ctx context.Context, r Reporter) Reporter {
	if p, _ := ctx.Value(prefixKey{}).(string); p != "" {
		return WithPrefix(r, p)
	}
	return r
}
