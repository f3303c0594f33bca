package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/catalog/ledger"
	"github.com/bakery-sh/bakery/promote"
	"github.com/bakery-sh/bakery/recipes"
)

// promotion is the JSON document promote prints.
type promotion struct {
	Recipe  string `json:"recipe"`
	Version string `json:"version"`
	Stage   string `json:"stage"`
	NoOp    bool   `json:"noop"`
	Forced  bool   `json:"forced"`
	Actor   string `json:"actor"`
	// ApprovedBy is whose approval let the promotion into a stage that
	// requires one through.
	ApprovedBy string   `json:"approved_by,omitempty"`
	Checks     []string `json:"checks,omitempty"`
	Moved      []string `json:"moved"`
	// BrokenLock is the lease --break-lock broke, if there was one.
	BrokenLock *ledger.Lease `json:"broken_lock,omitempty"`
}

func promoteCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "promote",
		Usage:     "move a baked image into a stage, without rebuilding it",
		ArgsUsage: "RECIPE@VERSION --to STAGE",
		Description: "Promotes every artifact of RECIPE@VERSION into STAGE: only from the stage\n" +
			"before it (or into the first), after the stage's gates (min_soak;\n" +
			"require_approval: an approval of the version for STAGE by someone else,\n" +
			"see bakery approve). AMIs are tagged, shared with the stage's accounts and\n" +
			"copied to its regions; container images are copied by digest to the\n" +
			"stage's repository (tagged VERSION there too; images baked into the local\n" +
			"layout are pushed from it) and the stage tag is moved. The version that held the\n" +
			"stage leaves it. Promoting what is already there changes nothing; after a\n" +
			"failure, running the same command again finishes the job.\n\n" +
			"With a ledger (a catalog block in the recipe, or BAKERY_LEDGER), the\n" +
			"promotion holds the lock RECIPE/STAGE in it while it reads, checks and\n" +
			"changes the images: another runner promoting into the same stage is\n" +
			"refused until it is done. --break-lock removes a lease whose runner is\n" +
			"gone before it expires.",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "to", Usage: "the target `STAGE` (required)"},
			&ucli.BoolFlag{Name: "force", Usage: "override stage order and gates (needs --reason; never a revocation)"},
			&ucli.StringFlag{Name: "reason", Usage: "why; recorded in the history"},
			// --approved-by NAME once satisfied require_approval with any
			// name; it is refused now, with what to do instead.
			&ucli.StringFlag{Name: "approved-by", Hidden: true},
			&ucli.BoolFlag{Name: "break-lock", Usage: "first break the ledger's lock on the stage, held by a runner that is gone (needs a ledger)"},
		),
		Action: func(c *ucli.Context) error {
			g, name, version, err := oneRef(c, "promote", " --to prod")
			if err != nil {
				return err
			}
			if c.String("to") == "" {
				return usagef("promote needs the target stage: --to STAGE")
			}
			if c.IsSet("approved-by") {
				return usagef("--approved-by is gone (a name on the command line proves nothing): the approver runs `bakery approve %s@%s --for %s` with their own credentials, then you promote without --approved-by", name, version, c.String("to"))
			}
			if c.Bool("force") && strings.TrimSpace(c.String("reason")) == "" {
				return usagef("promote --force needs --reason \"...\": say why the stage order or gates are overridden (it is recorded in the history)")
			}
			r, s, arts, err := e.openRecipe(c, g, name)
			if err != nil {
				return err
			}
			// The lock is taken before the catalog is read, so that the
			// plan is made from what the previous holder left.
			ctx := c.Context
			lk, err := s.lockStage(r, c.String("to"), fmt.Sprintf("promote %s@%s to %s", r.Name, version, c.String("to")), c.Bool("break-lock"))
			if err != nil {
				return err
			}
			if lk != nil {
				var stop func()
				ctx, stop = lk.hold(ctx)
				defer func() {
					stop()
					lk.release()
				}()
			}
			if err := promote.Load(ctx, arts); err != nil {
				return err
			}
			req := promote.Request{Recipe: r.Name, Version: version, To: c.String("to"), Force: c.Bool("force"),
				Reason: c.String("reason"), Actor: s.actor()}
			if st := r.Stage(req.To); st != nil && st.Gate.RequireApproval {
				// Four eyes: the approval must be someone else's.
				if req.Promoter, err = s.identity(r); err != nil {
					return err
				}
			}
			plan, err := promote.Check(r.Stages, stages(r), arts, req, e.now())
			if err != nil {
				return err
			}
			doc := promotion{Recipe: r.Name, Version: version, Stage: req.To, NoOp: plan.NoOp(), Forced: req.Force, Actor: req.Actor, ApprovedBy: plan.Event.ApprovedBy, Checks: plan.Checks, Moved: []string{}}
			if lk != nil {
				doc.BrokenLock = lk.broken
			}
			if !plan.NoOp() {
				if err := promote.Apply(ctx, plan); err != nil {
					if cause := context.Cause(ctx); errors.Is(cause, ledger.ErrLeaseLost) {
						return fmt.Errorf("%w; the promotion stopped: %w", err, cause)
					}
					return err
				}
				for _, m := range plan.Moves {
					if !m.NoOp {
						doc.Moved = append(doc.Moved, string(m.Artifact.Kind)+" "+m.Artifact.Name)
					}
				}
			}
			if g.json {
				return json.NewEncoder(e.stdout).Encode(doc)
			}
			for _, ch := range plan.Checks {
				fmt.Fprintln(e.stderr, "bakery: warning: "+ch)
			}
			if plan.NoOp() {
				fmt.Fprintf(e.stdout, "%s@%s is already in %s: nothing to do\n", r.Name, version, req.To)
				return nil
			}
			approved := ""
			if doc.ApprovedBy != "" {
				approved = ", approved by " + doc.ApprovedBy
			}
			fmt.Fprintf(e.stdout, "promoted %s@%s to %s (%d artifact(s)) as %s%s\n", r.Name, version, req.To, len(doc.Moved), req.Actor, approved)
			return nil
		},
	})
}

// releaseTimeout bounds giving a lock back after the promotion, on a
// context of its own: the promotion's may be cancelled (SIGINT).
const releaseTimeout = 30 * time.Second

// stageLock is a lock on a recipe's stage held in the ledger.
type stageLock struct {
	e      *env
	l      *ledger.Ledger
	broken *ledger.Lease // the lease --break-lock broke, if any

	mu    sync.Mutex
	lease *ledger.Lease
}

// lockStage takes the ledger's lock on r's stage for purpose, breaking
// the lease held first when breakLock is set (and saying whose it was).
// It returns nil when r has no ledger, or when stage is not one of r's
// stages (promote.Check refuses that). A lock another runner holds is an
// error naming it (a *ledger.LockedError).
func (s *session) lockStage(r *recipes.Recipe, stage, purpose string, breakLock bool) (*stageLock, error) {
	l, err := s.ledger(r)
	if err != nil {
		return nil, err
	}
	if l == nil {
		if breakLock {
			return nil, usagef("--break-lock: %s has no ledger, so there is no lock to break (configure one with a catalog block or %s)", r.Name, LedgerEnv)
		}
		return nil, nil
	}
	if r.StageIndex(stage) < 0 {
		return nil, nil
	}
	ctx := s.c.Context
	actor := s.actor()
	lk := &stageLock{e: s.e, l: l}
	if breakLock {
		br, err := l.Break(ctx, r.Name, stage)
		if err != nil {
			return nil, err
		}
		if br != nil {
			lk.broken = br
			fmt.Fprintf(s.e.stderr, "bakery: %s broke the lock on stage %s of %s, held by %s\n", actor, stage, r.Name, br)
		}
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s on %s (pid %d)", actor, host, os.Getpid())
	le, err := l.Acquire(ctx, r.Name, stage, holder, purpose)
	if err != nil {
		return nil, err
	}
	if le.Replaced != nil {
		fmt.Fprintf(s.e.stderr, "bakery: took over the expired lock on stage %s of %s, held by %s\n", stage, r.Name, le.Replaced)
	}
	lk.lease = le
	return lk, nil
}

// hold renews the lease until stop is called, every third of its TTL.
// The returned context is cancelled, with ledger.ErrLeaseLost as its
// cause, when the lease is lost (broken, or taken over after a renewal
// failed for too long): the promotion is no longer alone.
func (lk *stageLock) hold(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(ledger.DefaultLeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			lk.mu.Lock()
			next, err := lk.l.Renew(ctx, lk.lease)
			if err == nil {
				lk.lease = next
			}
			lk.mu.Unlock()
			if errors.Is(err, ledger.ErrLeaseLost) {
				cancel(err)
				return
			}
		}
	}()
	return ctx, func() {
		close(done)
		wg.Wait()
		cancel(nil)
	}
}

// release gives the lock back on a fresh context (the promotion's may
// have been cancelled). A lease lost meanwhile, or an S3 error, is a
// warning: the promotion itself is done or has failed already.
func (lk *stageLock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if err := lk.l.Release(ctx, lk.lease); err != nil {
		fmt.Fprintf(lk.e.stderr, "bakery: warning: %v\n", err)
	}
}

func revokeCommand(e *env, revoke bool) *ucli.Command {
	name, usage, args, reason := "revoke", "take an image out of every stage and forbid promoting it", "RECIPE@VERSION --reason \"...\"", "why (required); recorded in the history and shown by status"
	if !revoke {
		name, usage, args, reason = "unrevoke", "lift a revocation (the image enters no stage)", "RECIPE@VERSION [--reason \"...\"]", "why; recorded in the history"
	}
	return withUsageErrors(&ucli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: args,
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "reason", Usage: reason},
		),
		Action: func(c *ucli.Context) error {
			g, rname, version, err := oneRef(c, name, strings.TrimPrefix(args, "RECIPE@VERSION"))
			if err != nil {
				return err
			}
			if revoke && strings.TrimSpace(c.String("reason")) == "" {
				return usagef("revoke needs a reason: give a --reason \"...\" (it is recorded in the history and shown by status)")
			}
			r, s, arts, err := e.openRecipe(c, g, rname)
			if err != nil {
				return err
			}
			if err := promote.Load(c.Context, arts); err != nil {
				return err
			}
			if noop := promote.RevocationDone(arts, version, revoke); noop {
				state := "not revoked"
				if revoke {
					state = "already revoked"
				}
				if g.json {
					return json.NewEncoder(e.stdout).Encode(map[string]any{"recipe": r.Name, "version": version, "revoked": revoke, "noop": true})
				}
				fmt.Fprintf(e.stdout, "%s@%s is %s: nothing to do\n", r.Name, version, state)
				return nil
			}
			apply := promote.Unrevoke
			if revoke {
				apply = promote.Revoke
			}
			if err := apply(c.Context, arts, r.Name, version, c.String("reason"), s.actor(), e.now()); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(e.stdout).Encode(map[string]any{"recipe": r.Name, "version": version, "revoked": revoke, "noop": false})
			}
			fmt.Fprintf(e.stdout, "%sd %s@%s\n", name, r.Name, version)
			return nil
		},
	})
}
