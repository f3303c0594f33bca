package steps

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bakery-sh/bakery/internal/progress"
)

// ErrAbandoned is the cause of a cleanup context's end when the cleanup
// was abandoned (the abandon channel of WithAbandon closed): what was not
// removed yet is left behind, and `bakery sweep` finds it by its tags.
var ErrAbandoned = errors.New("cleanup abandoned; bakery sweep will find what is left")

type abandonKey struct{}

type cleanupProgressKey struct{}

// WithAbandon returns a copy of ctx that carries abandon: closing it ends
// every cleanup context made from the copy (by Run, or CleanupContext) at
// once, with cause ErrAbandoned, even though cancelling ctx itself does
// not end them. The CLI closes it on the third interrupt. Without it a
// cleanup ends only at its timeout.
func WithAbandon(ctx context.Context, abandon <-chan struct{}) context.Context {
	return context.WithValue(ctx, abandonKey{}, abandon)
}

// CleanupContext returns the context cleanups of a run on ctx get: it
// keeps ctx's values but not its cancellation (cleaning up after an
// interrupt is the point), ends after timeout, and ends at once when the
// cleanup is abandoned (see WithAbandon), with cause ErrAbandoned.
func CleanupContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	base, cancelBase := context.WithCancelCause(context.WithoutCancel(ctx))
	cctx, cancelTimeout := context.WithTimeout(base, timeout)
	stop := make(chan struct{})
	if abandon, _ := ctx.Value(abandonKey{}).(<-chan struct{}); abandon != nil {
		go func() {
			select {
			case <-abandon:
				cancelBase(ErrAbandoned)
			case <-stop:
			}
		}()
	}
	var once sync.Once
	return cctx, func() {
		once.Do(func() {
			cancelTimeout()
			close(stop)
			cancelBase(context.Canceled)
		})
	}
}

// abandoned reports whether ctx, a cleanup context, ended because the
// cleanup was abandoned.
func abandoned(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrAbandoned) }

// CleanupProgress returns the reporter for what a Cleanup removes: inside
// the cleanups of a run that failed or was interrupted, the run's
// Progress with every step named "cleaning up: ..." ("cleaning up:
// terminating i-0abc"), so that the user sees what is being removed, and
// how long it takes, as it happens. Anywhere else (a successful run's
// cleanups, a context no Run made) it reports nothing.
func CleanupProgress(ctx context.Context) progress.Reporter {
	if r, ok := ctx.Value(cleanupProgressKey{}).(progress.Reporter); ok {
		return r
	}
	return progress.Discard()
}
