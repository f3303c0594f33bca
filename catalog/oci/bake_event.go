package oci

import (
	"context"
	"fmt"
	"slices"

	"github.com/bakery-sh/bakery/catalog"
)

// bakeEvent validates a bake event: it needs a time.
func bakeEvent(ev catalog.Event) (event, error) {
	ev.Action = catalog.ActionBake
	if ev.Time.IsZero() {
		return event{}, fmt.Errorf("the bake event has no time: set Event.Time from the caller's clock")
	}
	ev.Time = ev.Time.UTC()
	return event{Event: ev}, nil
}

func hasBake(v *version) bool {
	return slices.ContainsFunc(v.events, func(e event) bool { return e.Action == catalog.ActionBake })
}

// RecordBake records when and by whom version was baked. The image's own
// created annotation is SOURCE_DATE_EPOCH (for reproducible digests), so
// the real bake time lives in this event. A version that already has a
// bake event is left alone: the first bake is the one that counts.
func (s *LayoutStore) RecordBake(ctx context.Context, version string, ev catalog.Event) error {
	be, err := bakeEvent(ev)
	if err != nil {
		return err
	}
	err = s.update(ctx, func(tx *Tx, st *layoutState) error {
		v, err := st.find(catalog.Entry{Image: catalog.Image{Ref: catalog.Ref{Version: version}}}, s.l.dir)
		if err != nil || hasBake(v) {
			return err
		}
		return s.writeEvent(tx, v, be)
	})
	if err != nil {
		return fmt.Errorf("recording the bake of %s@%s in layout %s: %w", s.recipe, version, s.l.dir, err)
	}
	return nil
}

// RecordBake records when and by whom version was baked, as a referrer of
// the image (see LayoutStore.RecordBake).
func (s *RegistryStore) RecordBake(ctx context.Context, version string, ev catalog.Event) error {
	fail := func(err error) error {
		return fmt.Errorf("recording the bake of %s@%s in %s: %w", s.recipe, version, s.repo, err)
	}
	be, err := bakeEvent(ev)
	if err != nil {
		return fail(err)
	}
	ss, err := s.session(ctx)
	if err != nil {
		return fail(err)
	}
	v, _, err := ss.readTag(ctx, version)
	if err != nil {
		return fail(err)
	}
	if v == nil {
		return fail(fmt.Errorf("%s:%s is not a bake of this recipe", s.repo, version))
	}
	if v.events, err = ss.events(ctx, v); err != nil {
		return fail(err)
	}
	if hasBake(v) {
		return nil
	}
	if err := ss.writeEvent(v, be); err != nil {
		return fail(err)
	}
	return nil
}
