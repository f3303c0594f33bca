// Package steps runs a bake or launch as a readable list of steps, each
// with Run and Cleanup, over typed state. It drives packer-plugin-sdk's
// multistep.BasicRunner, so the ordering and halting rules are Packer's,
// with two improvements: steps see a typed *S instead of pulling values out
// of a state bag, and there is one error path: when a step fails or the
// context is cancelled, the Cleanup of every step that started runs in
// reverse order on a fresh context with its own timeout (CleanupContext),
// so nothing leaks, and report what they remove (CleanupProgress).
package steps

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/packer-plugin-sdk/multistep"

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
// gives cleanups five minutes. Cleanups are abandoned early when the
// run's context carries an abandon channel that closes (WithAbandon).
type Runner struct {
	// Progress receives a step line per step. Default: progress.Discard().
	Progress progress.Reporter
	// CleanupTimeout bounds all cleanups together. Default: 5 minutes.
	CleanupTimeout time.Duration
}

// run is one execution: what the adapters share.
type run[S any] struct {
	state   *S
	rep     progress.Reporter
	timeout time.Duration
	parent  context.Context

	mu        sync.Mutex
	started   int
	err       error   // the first step error
	cleanErrs []error // cleanup errors
	cctx      context.Context
	cancel    context.CancelFunc
}

// cleanupContext is created at the first cleanup, so the timeout covers
// the cleanups only. When the run failed or was interrupted it carries
// the reporter CleanupProgress returns.
func (r *run[S]) cleanupContext(failed bool) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cctx == nil {
		r.cctx, r.cancel = CleanupContext(r.parent, r.timeout)
		if failed {
			r.cctx = context.WithValue(r.cctx, cleanupProgressKey{}, progress.WithPrefix(r.rep, "cleaning up: "))
		}
	}
	return r.cctx
}

// adapter makes a typed Step a multistep.Step.
type adapter[S any] struct {
	step Step[S]
	run  *run[S]
}

func (a *adapter[S]) Run(ctx context.Context, bag multistep.StateBag) multistep.StepAction {
	a.run.mu.Lock()
	a.run.started++
	a.run.mu.Unlock()
	ps := a.run.rep.Step(a.step.Name())
	err := a.step.Run(ctx, a.run.state, ps)
	ps.Done(err)
	if err != nil {
		a.run.mu.Lock()
		if a.run.err == nil {
			a.run.err = err
		}
		a.run.mu.Unlock()
		bag.Put("error", err)
		return multistep.ActionHalt
	}
	return multistep.ActionContinue
}

func (a *adapter[S]) Cleanup(bag multistep.StateBag) {
	_, halted := bag.GetOk(multistep.StateHalted)
	_, cancelled := bag.GetOk(multistep.StateCancelled)
	failed := halted || cancelled
	cctx := a.run.cleanupContext(failed)
	if err := a.step.Cleanup(cctx, a.run.state, failed); err != nil {
		if abandoned(cctx) && !errors.Is(err, ErrAbandoned) {
			err = fmt.Errorf("%w: %w", ErrAbandoned, err)
		}
		a.run.mu.Lock()
		a.run.cleanErrs = append(a.run.cleanErrs, &cleanupError{fmt.Errorf("cleaning up after %s: %w", a.step.Name(), err)})
		a.run.mu.Unlock()
	}
}

// Run runs steps in order until one fails or ctx is done, then runs the
// Cleanup of every started step in reverse order. It returns the first
// step error joined with any cleanup errors; an interrupted run returns an
// error wrapping the context's error.
func Run[S any](ctx context.Context, r Runner, state *S, list ...Step[S]) error {
	rn := &run[S]{state: state, rep: r.Progress, timeout: r.CleanupTimeout, parent: ctx}
	if rn.rep == nil {
		rn.rep = progress.Discard()
	}
	if rn.timeout == 0 {
		rn.timeout = 5 * time.Minute
	}
	ms := make([]multistep.Step, len(list))
	for i, s := range list {
		ms[i] = &adapter[S]{step: s, run: rn}
	}
	(&multistep.BasicRunner{Steps: ms}).Run(ctx, new(multistep.BasicStateBag))
	if rn.cancel != nil {
		rn.cancel()
	}
	err := rn.err
	if err == nil && ctx.Err() != nil {
		if rn.started < len(list) {
			err = fmt.Errorf("interrupted before %s: %w", list[rn.started].Name(), context.Cause(ctx))
		} else {
			err = fmt.Errorf("interrupted during %s: %w", list[len(list)-1].Name(), context.Cause(ctx))
		}
	}
	if len(rn.cleanErrs) > 0 {
		return errors.Join(append([]error{err}, rn.cleanErrs...)...)
	}
	return err
}

// cleanupError is a Cleanup's failure in the error Run returns.
type cleanupError struct{ err error }

func (e *cleanupError) Error() string { return e.err.Error() }
func (e *cleanupError) Unwrap() error { return e.err }

// CleanupFailed reports whether err, as Run returned it, includes the
// failure of a step's Cleanup: then something the run created may be
// left behind. When it is false, every Cleanup that ran succeeded.
func CleanupFailed(err error) bool {
	var ce *cleanupError
	return errors.As(err, &ce)
}
