package ami

import (
	"context"
	"fmt"

	"github.com/bakery-sh/bakery/catalog"
)

// Record adds ev, an event that changes nothing on the image itself (a
// launch: catalog.ActionLaunch), to the history of e: on the AMI of
// every region of the store where the version is, and first in the
// journal when one is configured (WithJournal). The event's time is the
// clock's when it has none. Recording the same event again (same action
// and stage, same time) changes nothing, so a retry is safe. Events that
// change the image (promote, demote, revoke, unrevoke, bake) are refused:
// Promote, Revoke and Unrevoke record those.
func (s *LifecycleStore) Record(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	what := fmt.Sprintf("recording a %s event on %s", ev.Action, s.ref(e.Version))
	switch ev.Action {
	case "":
		return fmt.Errorf("recording an event on %s: the event has no action", s.ref(e.Version))
	case catalog.ActionBake, catalog.ActionPromote, catalog.ActionDemote, catalog.ActionRevoke, catalog.ActionUnrevoke:
		return fmt.Errorf("%s: that action changes the image: use the store's Promote, Revoke or Unrevoke", what)
	}
	if ev.Stage != "" {
		if err := checkStage(ev.Stage); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	ev, v, err := s.open(ctx, e, ev, ev.Action)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	same := func(o catalog.Event) bool {
		return o.Action == ev.Action && o.Stage == ev.Stage && nearly(o.Time, ev.Time)
	}
	if err := s.ensureEvent(ctx, v.list(), ev, same); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
