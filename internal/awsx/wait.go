package awsx

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Clock is the time source of waits and retries: real time in bakery,
// a fake one in tests that drive timing without sleeping.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock returns the real clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ErrTimeout is wrapped by the error of a Wait that ran out of time.
var ErrTimeout = errors.New("timed out")

// Defaults of a Wait whose fields are zero.
const (
	DefaultWaitTimeout  = 10 * time.Minute
	DefaultWaitInterval = 15 * time.Second
)

// Wait is a bounded wait: it polls every Interval and gives up after
// Timeout. The zero value waits DefaultWaitTimeout, polling every
// DefaultWaitInterval, on the system clock.
type Wait struct {
	// What is waited for, as the end of "waiting for ...": "AMI ami-1 in
	// us-east-1 to be available".
	What string
	// Timeout is the upper bound of the wait. Default DefaultWaitTimeout.
	Timeout time.Duration
	// Interval is the time between two polls. Default DefaultWaitInterval.
	Interval time.Duration
	// Clock is the time source. Default SystemClock().
	Clock Clock
}

func (w Wait) norm() Wait {
	if w.Timeout <= 0 {
		w.Timeout = DefaultWaitTimeout
	}
	if w.Interval <= 0 {
		w.Interval = DefaultWaitInterval
	}
	if w.Clock == nil {
		w.Clock = SystemClock()
	}
	return w
}

// Until calls check at once and then every Interval until it reports done,
// returns an error, Timeout passes or ctx ends. The error of a timeout
// names what was waited for and for how long, and wraps ErrTimeout (and
// the last error check reported, if any); the error of a cancelled ctx
// wraps the context's cause.
func (w Wait) Until(ctx context.Context, check func(context.Context) (bool, error)) error {
	w = w.norm()
	deadline := w.Clock.Now().Add(w.Timeout)
	for {
		done, err := check(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", w.What, err)
		}
		if done {
			return nil
		}
		if !w.Clock.Now().Before(deadline) {
			return fmt.Errorf("waiting for %s: gave up after %s: %w", w.What, w.Timeout, ErrTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", w.What, context.Cause(ctx))
		case <-w.Clock.After(min(w.Interval, max(deadline.Sub(w.Clock.Now()), 0))):
		}
	}
}

// Retry calls fn until it succeeds, fails with an error retryable does not
// accept, Timeout passes or ctx ends; it waits Interval between tries.
// After a timeout it returns fn's last error, wrapped with ErrTimeout and
// what was tried.
func (w Wait) Retry(ctx context.Context, retryable func(error) bool, fn func(context.Context) error) error {
	var last error
	err := w.Until(ctx, func(ctx context.Context) (bool, error) {
		last = fn(ctx)
		switch {
		case last == nil:
			return true, nil
		case retryable(last):
			return false, nil
		}
		return false, last
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTimeout) && last != nil:
		return fmt.Errorf("%w: %w", err, last)
	case last != nil && !retryable(last):
		return last
	}
	return err
}

// FreshTimeout bounds how long a call on a resource created a moment ago
// is retried while EC2 still answers *.NotFound for it (EC2 is eventually
// consistent: a new instance, group or AMI can be unknown to other calls
// for a few seconds).
const FreshTimeout = 2 * time.Minute

// Fresh returns a Wait for calls on a resource created a moment ago:
// FreshTimeout, polling every 2 s (or interval, when it is shorter), on
// clock (nil: the system clock).
func Fresh(what string, interval time.Duration, clock Clock) Wait {
	i := 2 * time.Second
	if interval > 0 && interval < i {
		i = interval
	}
	return Wait{What: what, Timeout: FreshTimeout, Interval: i, Clock: clock}
}
