package ami_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/catalog"
)

func TestRecordAddsALaunchToTheHistoryOfEveryRegionOnce(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	ids := a.bake(t, "1.0.0", east, west)
	s := newStore(a.config(t), []string{east, west})
	ctx := context.Background()
	e := entry(t, s, "1.0.0")
	ev := catalog.Event{Time: at(7), Action: catalog.ActionLaunch, Stage: "prod", Actor: actor, Reason: "group web-prod-v002 in us-east-1"}
	for range 2 { // the second is a retry: it changes nothing
		if err := s.Record(ctx, e, ev); err != nil {
			t.Fatal(err)
		}
	}
	got := entry(t, newStore(a.config(t), []string{east, west}), "1.0.0")
	if want := []string{"bake", "launch:prod"}; !reflect.DeepEqual(actions(got.Events), want) {
		t.Errorf("history = %v, want %v", actions(got.Events), want)
	}
	last := got.Events[len(got.Events)-1]
	if !last.Time.Equal(at(7)) || last.Actor != actor || last.Reason != ev.Reason || last.Version != "1.0.0" {
		t.Errorf("launch event read back: %+v", last)
	}
	for region, id := range ids {
		n := 0
		for k := range a.imageTags(t, region, id) {
			if strings.HasPrefix(k, "bakery:event:") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("AMI %s in %s has %d event tags, want 1", id, region, n)
		}
	}
	if len(got.Stages) != 0 || got.Revoked {
		t.Errorf("recording a launch changed the lifecycle: %+v", got.Lifecycle)
	}
}

func TestRecordRefusesEventsThatChangeTheImage(t *testing.T) {
	t.Parallel()
	a := newAccount(t)
	a.bake(t, "1.0.0", east)
	s := newStore(a.config(t), []string{east})
	e := entry(t, s, "1.0.0")
	for _, action := range []string{"", catalog.ActionPromote, catalog.ActionRevoke} {
		if err := s.Record(context.Background(), e, catalog.Event{Action: action, Stage: "prod"}); err == nil {
			t.Errorf("Record accepted a %q event", action)
		}
	}
	if got := entry(t, s, "1.0.0"); len(got.Events) != 1 {
		t.Errorf("refused events were recorded: %v", actions(got.Events))
	}
}
