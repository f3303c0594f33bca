package oci

import (
	"context"
	"errors"
	"fmt"

	"github.com/bakery-sh/bakery/catalog"
)

// checkRecord validates an event given to Record: one that changes
// nothing on the image (an approval, a launch), with its time set. Its
// stage, when it names one, must be able to be a tag, as a promotion's.
func checkRecord(ev catalog.Event) (event, error) {
	switch ev.Action {
	case "":
		return event{}, errors.New("the event has no action")
	case catalog.ActionBake, catalog.ActionPromote, catalog.ActionDemote, catalog.ActionRevoke, catalog.ActionUnrevoke, catalog.ActionRetire:
		return event{}, fmt.Errorf("a %s event changes the image: use the store's Promote, Revoke, Unrevoke or retire", ev.Action)
	}
	if ev.Time.IsZero() {
		return event{}, errors.New("the event has no time: set Event.Time from the caller's clock")
	}
	if ev.Stage != "" && !stageRE.MatchString(ev.Stage) {
		return event{}, fmt.Errorf("stage name %q cannot be a tag: use letters, digits, '.', '_' and '-'", ev.Stage)
	}
	ev.Time = ev.Time.UTC()
	return event{Event: ev}, nil
}

// Record adds ev, an event that changes nothing on the image (an
// approval: catalog.ActionApprove), to version e's history, in one
// transaction under the layout lock. Recording the same event again (same
// action, stage and time) writes nothing.
func (s *LayoutStore) Record(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	re, err := checkRecord(ev)
	if err == nil {
		err = s.update(ctx, func(tx *Tx, st *layoutState) error {
			v, err := st.find(e, s.l.dir)
			if err != nil || v.has(re.key()) {
				return err
			}
			return s.writeEvent(tx, v, re)
		})
	}
	if err != nil {
		return fmt.Errorf("recording a %s event on %s@%s (%s in layout %s): %w", ev.Action, s.recipe, e.Version, s.name, s.l.dir, err)
	}
	return nil
}

// Record adds ev, an event that changes nothing on the image (an
// approval: catalog.ActionApprove), to version e's history: an event
// artifact whose subject is the image, as every event. Recording the
// same event again (same action, stage and time) writes nothing.
func (s *RegistryStore) Record(ctx context.Context, e catalog.Entry, ev catalog.Event) error {
	fail := func(err error) error {
		return fmt.Errorf("recording a %s event on %s@%s (%s in %s): %w", ev.Action, s.recipe, e.Version, s.artifact, s.repo, err)
	}
	re, err := checkRecord(ev)
	if err != nil {
		return fail(err)
	}
	ss, _, v, err := s.open(ctx, e)
	if err != nil {
		return fail(err)
	}
	if v.has(re.key()) {
		return nil
	}
	if err := ss.writeEvent(v, re); err != nil {
		return fail(err)
	}
	return nil
}
