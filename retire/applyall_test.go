package retire

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/bakery-sh/bakery/catalog"
)

// fakeRetirer retires the versions of its artifact the plan removes,
// except those in fail (an error) or skip (reported), and records what it
// was asked to retire.
type fakeRetirer struct {
	kind       catalog.Kind
	artifact   string
	fail, skip map[string]bool
	asked      []string
}

func (f *fakeRetirer) Artifact() (catalog.Kind, string) { return f.kind, f.artifact }

func (f *fakeRetirer) Observe(context.Context) (Observed, error) { return Observed{}, nil }

func (f *fakeRetirer) Apply(_ context.Context, p *Plan) (*Report, error) {
	rep := &Report{Retired: []catalog.Ref{}, Skipped: []Skipped{}}
	var errs []error
	for _, d := range p.Remove() {
		if _, ok := d.EntryOf(f.kind, f.artifact); !ok {
			continue
		}
		f.asked = append(f.asked, d.Ref.Version)
		switch {
		case f.fail[d.Ref.Version]:
			errs = append(errs, errors.New("lost connection"))
		case f.skip[d.Ref.Version]:
			rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Reason: "in use since the plan"})
		default:
			rep.Retired = append(rep.Retired, d.Ref)
			rep.AMIs++ // one "deletion" per version, to check the sums
		}
	}
	return rep, errors.Join(errs...)
}

// TestApplyAllNeverHalfRetires: versions 1 to 4 have an AMI and a
// container image, 5 a container image only. The AMIs of 1 fail and of 2
// are skipped: their container images stay; 3 and 4 go whole, 5 too.
func TestApplyAllNeverHalfRetires(t *testing.T) {
	var entries []catalog.Entry
	for _, v := range []string{"1", "2", "3", "4"} {
		entries = append(entries, version(v, 100*day), container(v, 100*day))
	}
	entries = append(entries, container("5", 100*day))
	plan := MakePlan(Observed{Recipe: "web", Entries: entries}, Policy{}, now)
	amis := &fakeRetirer{kind: catalog.KindAMI, artifact: "web", fail: map[string]bool{"1": true}, skip: map[string]bool{"2": true}}
	cts := &fakeRetirer{kind: catalog.KindContainer, artifact: "app"}
	rep, err := ApplyAll(context.Background(), plan, amis, cts)
	if err == nil {
		t.Error("the AMIs' error was lost")
	}
	slices.Sort(amis.asked)
	slices.Sort(cts.asked)
	if !slices.Equal(amis.asked, []string{"1", "2", "3", "4"}) || !slices.Equal(cts.asked, []string{"3", "4", "5"}) {
		t.Errorf("AMIs asked for %v, containers for %v: want the containers of 1 and 2 left alone", amis.asked, cts.asked)
	}
	var retired []string
	for _, r := range rep.Retired {
		retired = append(retired, r.Version)
	}
	slices.Sort(retired)
	if !slices.Equal(retired, []string{"3", "4", "5"}) || rep.AMIs != 5 || len(rep.Skipped) != 1 {
		t.Errorf("report %+v: want 3, 4 and 5 retired, the counts added up and 2's skip reported", rep)
	}
	if len(plan.Remove()) != 5 {
		t.Errorf("ApplyAll changed the plan it was given: %d to remove", len(plan.Remove()))
	}
}
