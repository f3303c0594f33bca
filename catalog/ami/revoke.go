package ami

import (
	"context"
	"fmt"
	"maps"
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
	regions, err := s.lookIn(ctx)
	if err != nil {
		return ev, nil, err
	}
	v, err := s.load(ctx, e.Version, regions)
	if err != nil {
		return ev, nil, err
	}
	if len(v.amis) == 0 {
		return ev, nil, fmt.Errorf("no complete AMI of it in %s: check the version and the recipe's regions", strings.Join(regions, ", "))
	}
	return ev, v, nil
}

// Revoke takes e out of every stage and marks it revoked, on the AMI of
// every region of the store and on its snapshots (on every complete AMI
// of the version there: a killed bake may have left two, and the one not
// marked would stand for the version once the other leaves its stage):
// it writes TagRevoked ("<time> <actor> <reason>" of ev) and, on the AMI,
// TagRevokedAccess (the accounts that may launch it), takes launch
// permission on the AMI and create-volume permission on its snapshots
// away from those accounts (so no stage account can launch a revoked
// image), records ev at the revocation's time, then deletes every stage
// mark. A version revoked already keeps its first revocation (mark and
// reason); Revoke then only finishes what a crash left undone.
func (s *LifecycleStore) Revoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	what := "revoking " + s.ref(e.Version)
	ev, v, err := s.open(ctx, e, ev, catalog.ActionRevoke)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	m, revoked := revokedOf(images(v.every()))
	if !revoked || m.Time.IsZero() {
		m = mark{Time: ev.Time, Actor: ev.Actor, Reason: ev.Reason}
	}
	ev.Time = m.Time
	tag := map[string]string{TagRevoked: m.String()}
	err = s.each(ctx, v.every(), func(ctx context.Context, l *located) error {
		// Record who may launch it before taking that away, so that
		// Unrevoke can give it back and a rerun after a crash still
		// knows.
		accounts, _, err := s.ops.LaunchPermissions(ctx, l.Region, l.ImageID)
		if err != nil {
			return err
		}
		accounts = dedupe(append(revokedAccess(l.Tags), accounts...))
		img := maps.Clone(tag)
		if len(accounts) > 0 {
			v := strings.Join(accounts, " ")
			if len(v) > MaxTagValue {
				return fmt.Errorf("AMI %s in %s is shared with %d accounts, more than the %s tag can record to restore on unrevoke: unshare some by hand first", l.ImageID, l.Region, len(accounts), TagRevokedAccess)
			}
			img[TagRevokedAccess] = v
		}
		if err := s.tag(ctx, l, img, tag); err != nil {
			return err
		}
		return s.ops.Unshare(ctx, l.Image, accounts)
	})
	if err != nil {
		return fmt.Errorf("%s: %w (run the revocation again to finish it)", what, err)
	}
	same := func(o catalog.Event) bool { return o.Action == catalog.ActionRevoke && nearly(o.Time, m.Time) }
	if err := s.ensureEvent(ctx, v.every(), ev, same); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = s.each(ctx, v.every(), func(ctx context.Context, l *located) error {
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
// clock's time when ev has none) on the AMI of every region of the store
// (every complete one, as Revoke marks them),
// gives the accounts of TagRevokedAccess their launch and create-volume
// permissions back, then deletes TagRevoked and TagRevokedAccess from the
// AMIs and their snapshots. The version
// enters no stage. Unrevoking a version that is not revoked changes
// nothing.
func (s *LifecycleStore) Unrevoke(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	what := "lifting the revocation of " + s.ref(e.Version)
	ev, v, err := s.open(ctx, e, ev, catalog.ActionUnrevoke)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	m, revoked := revokedOf(images(v.every()))
	if !revoked {
		return nil
	}
	if !ev.Time.After(m.Time) {
		ev.Time = m.Time.Add(time.Microsecond)
	}
	same := func(o catalog.Event) bool { return o.Action == catalog.ActionUnrevoke && o.Time.After(m.Time) }
	if err := s.ensureEvent(ctx, v.every(), ev, same); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = s.each(ctx, v.every(), func(ctx context.Context, l *located) error {
		if err := s.ops.Share(ctx, l.Image, revokedAccess(l.Tags)); err != nil {
			return err
		}
		return s.untag(ctx, l, map[string]*string{TagRevoked: nil, TagRevokedAccess: nil})
	})
	if err != nil {
		return fmt.Errorf("%s: %w (run it again to finish)", what, err)
	}
	return nil
}

// revokedAccess returns the accounts a revocation recorded in tags.
func revokedAccess(tags map[string]string) []string {
	return strings.Fields(tags[TagRevokedAccess])
}
