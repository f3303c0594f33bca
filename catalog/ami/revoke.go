package ami

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// open checks e and ev (filling in ev's action) and loads e's complete
// AMIs in every region of the store; it fails when there are none.
func (s *LifecycleStore) open(ctx context.Context, e catalog.Entry, ev catalog.Event, action string) (catalog.Event, *version, error) {
	if err := s.checkEntry(e); err != nil {
		return ev, nil, err
	}
	ev, err := s.fill(ev, e.Version, action, "")
	if err != nil {
		return ev, nil, err
	}
	v, err := s.load(ctx, e.Version, s.regions)
	if err != nil {
		return ev, nil, err
	}
	if len(v.amis) == 0 {
		return ev, nil, fmt.Errorf("no complete AMI of it in %s: check the version and the recipe's regions", strings.Join(s.regions, ", "))
	}
	return ev, v, nil
}

// Revoke takes e out of every stage and marks it revoked, on the AMI of
// every region of the store and on its snapshots: it writes TagRevoked
// ("<time> <actor> <reason>" of ev), records ev at that time, then deletes
// every stage mark. A version revoked already keeps its first revocation
// (mark and reason); Revoke then only finishes what a crash left undone.
func (s *LifecycleStore) Revoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	what := "revoking " + s.ref(e.Version)
	ev, v, err := s.open(ctx, e, ev, catalog.ActionRevoke)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	m, revoked := revokedOf(v.images())
	if !revoked || m.Time.IsZero() {
		m = mark{Time: ev.Time, Actor: ev.Actor, Reason: ev.Reason}
	}
	ev.Time = m.Time
	tag := map[string]string{TagRevoked: m.String()}
	if err := s.each(ctx, v.list(), func(ctx context.Context, l *located) error { return s.tag(ctx, l, tag, tag) }); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	same := func(o catalog.Event) bool { return o.Action == catalog.ActionRevoke && nearly(o.Time, m.Time) }
	if err := s.ensureEvent(ctx, v.list(), ev, same); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = s.each(ctx, v.list(), func(ctx context.Context, l *located) error {
		keys := map[string]*string{}
		for k := range l.Tags {
			if strings.HasPrefix(k, TagStagePrefix) {
				keys[k] = nil
			}
		}
		for _, tags := range l.snaps {
			for k := range tags {
				if strings.HasPrefix(k, TagStagePrefix) {
					keys[k] = nil
				}
			}
		}
		return s.untag(ctx, l, keys)
	})
	if err != nil {
		return fmt.Errorf("%s: taking it out of its stages: %w (run the revocation again to finish it)", what, err)
	}
	return nil
}

// Unrevoke lifts e's revocation: it records ev (after the revocation; the
// clock's time when ev has none) on the AMI of every region of the store,
// then deletes TagRevoked from the AMIs and their snapshots. The version
// enters no stage. Unrevoking a version that is not revoked changes
// nothing.
func (s *LifecycleStore) Unrevoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	what := "lifting the revocation of " + s.ref(e.Version)
	ev, v, err := s.open(ctx, e, ev, catalog.ActionUnrevoke)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	m, revoked := revokedOf(v.images())
	if !revoked {
		return nil
	}
	if !ev.Time.After(m.Time) {
		ev.Time = m.Time.Add(time.Microsecond)
	}
	same := func(o catalog.Event) bool { return o.Action == catalog.ActionUnrevoke && o.Time.After(m.Time) }
	if err := s.ensureEvent(ctx, v.list(), ev, same); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = s.each(ctx, v.list(), func(ctx context.Context, l *located) error {
		return s.untag(ctx, l, map[string]*string{TagRevoked: nil})
	})
	if err != nil {
		return fmt.Errorf("%s: %w (run it again to finish)", what, err)
	}
	return nil
}
