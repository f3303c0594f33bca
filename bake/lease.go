package bake

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/bakery-sh/bakery/catalog/ledger"
	"github.com/bakery-sh/bakery/recipes"
)

// Leases is the part of the ledger (*ledger.Ledger) that lets runners
// share the work of a bake: a lease on a bake key, or on a version an
// auto-versioned recipe is about to be assigned.
type Leases interface {
	// Acquire takes the lease named stage of recipe, or returns a
	// *ledger.LockedError naming who holds it; an expired lease is taken
	// over.
	Acquire(ctx context.Context, recipe, stage, holder, purpose string) (*ledger.Lease, error)
	// Renew extends a lease that is still held.
	Renew(ctx context.Context, le *ledger.Lease) (*ledger.Lease, error)
	// Release gives it up.
	Release(ctx context.Context, le *ledger.Lease) error
}

// LeasesFunc returns the leases of a recipe's ledger, or nil when the
// recipe has no ledger.
type LeasesFunc func(*recipes.Recipe) (Leases, error)

// DefaultLeasePoll is how often a runner waiting for another runner's
// lease on a bake key looks again, unless WithLeasePoll says otherwise.
const DefaultLeasePoll = 15 * time.Second

// releaseTimeout bounds giving a lease back, on a context of its own
// (the bake's may be cancelled).
const releaseTimeout = 30 * time.Second

// WithLeases makes runners that share a ledger bake each bake key once:
// before the expensive part of a bake, the engine takes a lease named
// after the bake key in the recipe's ledger (leases returns it; nil for
// a recipe without one), as holder, and renews it while it bakes; a
// runner that finds the lease held waits for it, then finds the image
// up to date, or takes the lease over once it expired (its holder died).
// An auto-versioned recipe also leases the version it assigns. Default:
// no leases (concurrent runners may bake the same key twice; they never
// give one version to two images of a registry without noticing).
func WithLeases(leases LeasesFunc, holder string) Option {
	return func(e *Engine) { e.leases, e.holder = leases, holder }
}

// WithClock sets the clock that dates auto versions and the outcomes'
// start and end times, and how a runner
// sleeps while it waits for a lease or between renewals. Default (and
// for a nil argument): time.Now, and sleeping on a timer.
func WithClock(now func() time.Time, sleep func(context.Context, time.Duration) error) Option {
	return func(e *Engine) {
		if now != nil {
			e.now = now
		}
		if sleep != nil {
			e.sleep = sleep
		}
	}
}

// WithLeasePoll sets how often a runner waiting for a lease looks again.
// Default: DefaultLeasePoll.
func WithLeasePoll(d time.Duration) Option { return func(e *Engine) { e.poll = d } }

// sleepTimer waits d or until ctx is done.
func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// heldLease is a lease the engine holds and renews.
type heldLease struct {
	e    *Engine
	l    Leases
	mu   sync.Mutex
	le   *ledger.Lease
	stop chan struct{}
	wg   sync.WaitGroup
}

// keyLeaseName is the name of the lease on bake key key.
func keyLeaseName(key string) string {
	return "bake-" + strings.TrimPrefix(key, "sha256:")
}

// versionLeaseName is the name of the lease on an auto version.
func versionLeaseName(v string) string { return "version-" + v }

// leasesFor returns r's leases, nil without a ledger.
func (e *Engine) leasesFor(r *recipes.Recipe) (Leases, error) {
	if e.leases == nil {
		return nil, nil
	}
	l, err := e.leases(r)
	if err != nil {
		return nil, fmt.Errorf("baking %s: opening its ledger for the bake lease: %w", r.Name, err)
	}
	return l, nil
}

// holdKey takes the lease on bake key of r's block name, waiting while
// another runner holds it. Every poll, and once before waiting, done
// says whether the image now exists; if it does holdKey returns (nil,
// true, nil) and takes nothing. The returned context is the bake's, which
// is cancelled with ledger.ErrLeaseLost as its cause when the lease is
// lost. Without a ledger it returns ctx and a nil lease.
func (e *Engine) holdKey(ctx context.Context, r *recipes.Recipe, name, key string, done func(context.Context) (bool, error)) (context.Context, *heldLease, bool, error) {
	l, err := e.leasesFor(r)
	if err != nil || l == nil {
		return ctx, nil, false, err
	}
	stage := keyLeaseName(key)
	purpose := fmt.Sprintf("bake %s %s, key %s", r.Name, name, shortKey(key))
	var waitingFor string
	for {
		le, err := l.Acquire(ctx, r.Name, stage, e.holder, purpose)
		var locked *ledger.LockedError
		switch {
		case err == nil:
			if le.Replaced != nil {
				e.progress.Info(fmt.Sprintf("%s: took over the expired lease of %s on key %s", name, le.Replaced, shortKey(key)))
			}
			h := &heldLease{e: e, l: l, le: le, stop: make(chan struct{})}
			bctx := h.renew(ctx)
			return bctx, h, false, nil
		case !errors.As(err, &locked):
			return ctx, nil, false, fmt.Errorf("%s: taking the bake lease in the ledger: %w", name, err)
		}
		if w := locked.Lease.Holder + locked.Lease.Acquired.String(); w != waitingFor {
			waitingFor = w
			e.progress.Info(fmt.Sprintf("%s: waiting for %s baking %s since %s", name, locked.Lease.Holder, shortKey(key), locked.Lease.Acquired.UTC().Format(time.RFC3339)))
		}
		if err := e.sleep(ctx, e.poll); err != nil {
			return ctx, nil, false, fmt.Errorf("%s: waiting for %s baking %s: %w", name, locked.Lease.Holder, shortKey(key), err)
		}
		ok, err := done(ctx)
		if err != nil || ok {
			return ctx, nil, ok, err
		}
	}
}

// leaseKey takes, with a ledger, the lease on the bake key key returns
// (computing it if need be) for r's block name, waiting while another
// runner holds it, and then checks once more whether the image exists
// (another runner may have baked it since the caller looked). exists
// true means the image exists and no lease is held. Otherwise the bake
// goes on with the returned context and lease (nil without a ledger),
// which the caller releases.
func (e *Engine) leaseKey(ctx context.Context, r *recipes.Recipe, name string, key func(context.Context) (string, error), exists func(context.Context) (bool, error)) (context.Context, *heldLease, bool, error) {
	l, err := e.leasesFor(r)
	if err != nil || l == nil {
		return ctx, nil, false, err
	}
	k, err := key(ctx)
	if err != nil {
		return ctx, nil, false, err
	}
	bctx, h, done, err := e.holdKey(ctx, r, name, k, exists)
	if err != nil || done {
		return ctx, nil, done, err
	}
	ok, err := exists(bctx)
	if err != nil || ok {
		h.release()
		return ctx, nil, ok, err
	}
	return bctx, h, false, nil
}

// claimVersion takes the lease on version v of r, for an auto version:
// ok is false when another runner holds it (it is assigning v to another
// bake key). Without a ledger ok is true and the lease nil.
func (e *Engine) claimVersion(ctx context.Context, r *recipes.Recipe, v, key string) (*heldLease, bool, error) {
	l, err := e.leasesFor(r)
	if err != nil || l == nil {
		return nil, err == nil, err
	}
	le, err := l.Acquire(ctx, r.Name, versionLeaseName(v), e.holder, fmt.Sprintf("assign version %s of %s to key %s", v, r.Name, shortKey(key)))
	var locked *ledger.LockedError
	switch {
	case errors.As(err, &locked):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("claiming version %s of %s in the ledger: %w", v, r.Name, err)
	}
	h := &heldLease{e: e, l: l, le: le, stop: make(chan struct{})}
	_ = h.renew(ctx) // a lost version lease shows after the push (see bakeContainerAuto)
	return h, true, nil
}

// renew renews h every third of its lease's length until release, and
// returns ctx cancelled with ledger.ErrLeaseLost as its cause once the
// lease is lost.
func (h *heldLease) renew(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	every := h.le.Expires.Sub(h.le.Acquired) / 3
	if every <= 0 {
		every = time.Second
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer cancel(nil)
		for {
			sctx, stop := context.WithCancel(ctx)
			go func() {
				select {
				case <-h.stop:
				case <-sctx.Done():
				}
				stop()
			}()
			err := h.e.sleep(sctx, every)
			stop()
			if err != nil {
				return
			}
			h.mu.Lock()
			next, err := h.l.Renew(ctx, h.le)
			if err == nil {
				h.le = next
			}
			h.mu.Unlock()
			if errors.Is(err, ledger.ErrLeaseLost) {
				cancel(err)
				return
			}
		}
	}()
	return ctx
}

// release stops renewing h and gives the lease back, on a context of its
// own. A failure is reported, not returned: the bake is over.
func (h *heldLease) release() {
	if h == nil {
		return
	}
	close(h.stop)
	h.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.l.Release(ctx, h.le); err != nil {
		h.e.progress.Info(fmt.Sprintf("warning: %v", err))
	}
}
