// Package steps runs a bake or launch as a readable list of steps, each
// with Run and Cleanup, over typed state. It is the pattern of Packer's
// multistep with one error path: when a step fails or the context is
// cancelled, the Cleanup of every step that started runs in reverse order
// on a fresh context with its own timeout, so nothing is leaked.
package steps

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bakery-sh/bakery/internal/progress"
)

// Step is one step of a run over state S.
type Step[S any] interface {
	// Name is shown in progress output ("build layers").
	Name() string
	// Run does the step's work. It records every resource it creates in
	// state the moment the resource exists, so Cleanup can remove it.
	Run(ctx context.Context, state *S, step progress.Step) error
	// Cleanup removes what Run created if the run did not succeed
	// (failed is true) or releases temporary resources in any case. It
	// gets a fresh context, not the run's (possibly cancelled) one.
	Cleanup(ctx context.Context, state *S, failed bool) error
}

// Runner runs steps. The zero value is usable: it reports nothing and
// gives cleanups five minutes.
type Runner struct {
	// Progress receives a step line per step. Default: progress.Discard().
	Progress progress.Reporter
	// CleanupTimeout bounds all cleanups together. Default: 5 minutes.
	CleanupTimeout time.Duration
}

// Run runs steps in order until one fails or ctx is done, then runs the
// Cleanup of every started step in reverse order. It returns the first
// step error (wrapped with the step name) joined with any cleanup errors.
func Run[S any](ctx context.Context, r Runner, state *S, list ...Step[S]) (err error) {
	rep := r.Progress
	if rep == nil {
		rep = progress.Discard()
	}
	timeout := r.CleanupTimeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	started := make([]Step[S], 0, len(list))
	defer func() {
		failed := err != nil
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		var cerrs []error
		for i := len(started) - 1; i >= 0; i-- {
			if cerr := started[i].Cleanup(cctx, state, failed); cerr != nil {
				cerrs = append(cerrs, fmt.Errorf("cleaning up after %s: %w", started[i].Name(), cerr))
			}
		}
		if len(cerrs) > 0 {
			err = errors.Join(append([]error{err}, cerrs...)...)
		}
	}()
	for _, s := range list {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("interrupted before %s: %w", s.Name(), context.Cause(ctx))
		}
		started = append(started, s)
		ps := rep.Step(s.Name())
		rerr := s.Run(ctx, state, ps)
		ps.Done(rerr)
		if rerr != nil {
			return rerr
		}
	}
	return nil
}
