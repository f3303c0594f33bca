package retire

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

const day = 24 * time.Hour

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// version is an entry of web/web baked age ago, in us-east-1 as
// ami-VERSION, changed by opts.
func version(v string, age time.Duration, opts ...func(*catalog.Entry)) catalog.Entry {
	e := catalog.Entry{
		Image: catalog.Image{Ref: catalog.Ref{Recipe: "web", Version: v}, Artifact: "web", Kind: catalog.KindAMI,
			Reference: "ami-" + v, Created: now.Add(-age)},
		Lifecycle: catalog.Lifecycle{Stages: map[string]catalog.StageEntry{},
			Locations: []catalog.Location{{Where: "us-east-1", ID: "ami-" + v}}},
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func inStage(stage string, ago time.Duration) func(*catalog.Entry) {
	return func(e *catalog.Entry) {
		e.Stages[stage] = catalog.StageEntry{Since: now.Add(-ago)}
		promoted(stage, ago)(e)
	}
}

func promoted(stage string, ago time.Duration) func(*catalog.Entry) {
	return func(e *catalog.Entry) {
		e.Events = append(e.Events, catalog.Event{Time: now.Add(-ago), Action: catalog.ActionPromote, Stage: stage})
	}
}

func revoked(ago time.Duration) func(*catalog.Entry) {
	return func(e *catalog.Entry) {
		e.Revoked = true
		e.Events = append(e.Events, catalog.Event{Time: now.Add(-ago), Action: catalog.ActionRevoke})
	}
}

func baseOf(id string) func(*catalog.Entry) { return func(e *catalog.Entry) { e.BaseName = id } }

func copiedTo(region, id string) func(*catalog.Entry) {
	return func(e *catalog.Entry) { e.Locations = append(e.Locations, catalog.Location{Where: region, ID: id}) }
}

// decisions renders a plan as VERSION: keep|remove: reason; reason.
func decisions(p *Plan) []string {
	var out []string
	for _, d := range p.Decisions {
		verb := "remove"
		if d.Keep {
			verb = "keep"
		}
		out = append(out, d.Ref.Version+": "+verb+": "+strings.Join(d.Reasons, "; "))
	}
	return out
}

func TestPlan(t *testing.T) {
	policy := Policy{KeepLast: 2, KeepPrevious: 1, KeepRevoked: 7 * day}
	removed := "not among the newest 2; in no stage, unused, no rollback target, the base of no kept image"
	for name, tc := range map[string]struct {
		policy  Policy
		entries []catalog.Entry
		inUse   map[string][]Use
		deps    []Dependent
		want    []string
	}{
		"newest by count": {
			policy:  policy,
			entries: []catalog.Entry{version("1", 40*day), version("2", 30*day), version("3", 20*day), version("4", 10*day)},
			want:    []string{"4: keep: newest 2", "3: keep: newest 2", "2: remove: " + removed, "1: remove: " + removed},
		},
		"baked within": {
			policy:  Policy{KeepLast: 1, KeepWithin: 30 * day},
			entries: []catalog.Entry{version("1", 31*day), version("2", 30*day), version("3", day)},
			want: []string{"3: keep: newest 1; baked within 30d", "2: keep: baked within 30d",
				"1: remove: not among the newest 1; baked 31d ago (kept 30d); in no stage, unused, no rollback target, the base of no kept image"},
		},
		"staged and rollback targets": {
			policy: policy,
			entries: []catalog.Entry{
				version("1", 50*day, promoted("prod", 40*day)),
				version("2", 40*day, promoted("prod", 30*day)),
				version("3", 30*day, promoted("prod", 20*day), inStage("dev", 25*day)),
				version("4", 20*day, inStage("prod", 10*day)),
				version("5", 10*day), version("6", 5*day),
			},
			want: []string{"6: keep: newest 2", "5: keep: newest 2", "4: keep: in prod", "3: keep: in dev; rollback target of prod",
				"2: remove: " + removed, "1: remove: " + removed},
		},
		"a revoked version is no rollback target": {
			entries: []catalog.Entry{
				version("1", 50*day, promoted("prod", 40*day)),
				version("2", 40*day, promoted("prod", 30*day), revoked(20*day)),
				version("3", 20*day, inStage("prod", 10*day)),
			},
			policy: Policy{KeepPrevious: 1, KeepRevoked: 7 * day},
			want:   []string{"3: keep: in prod", "2: remove: revoked 20d ago (kept 7d)", "1: keep: rollback target of prod"},
		},
		"revoked: kept for a while, never counted among the newest": {
			policy:  policy,
			entries: []catalog.Entry{version("1", 30*day), version("2", 20*day), version("3", 10*day, revoked(8*day)), version("4", 5*day, revoked(6*day))},
			want:    []string{"4: keep: revoked within 7d", "3: remove: revoked 8d ago (kept 7d)", "2: keep: newest 2", "1: keep: newest 2"},
		},
		"in use anywhere keeps every copy": {
			policy:  Policy{},
			entries: []catalog.Entry{version("1", 30*day, copiedTo("eu-west-1", "ami-1eu")), version("2", 20*day)},
			inUse: map[string][]Use{
				"ami-1eu": {{Kind: UseInstance, ID: "i-0abc", Region: "eu-west-1", Image: "ami-1eu"},
					{Kind: UseLaunchTemplate, ID: "lt-0abc", Version: "3", Region: "eu-west-1", Image: "ami-1eu"}},
			},
			want: []string{"2: remove: not among the newest 0; in no stage, unused, no rollback target, the base of no kept image",
				"1: keep: in use by instance i-0abc in eu-west-1; in use by launch template lt-0abc version 3 in eu-west-1"},
		},
		"lineage down to the root": {
			policy:  Policy{KeepLast: 1},
			entries: []catalog.Entry{version("1", 30*day), version("2", 20*day, baseOf("ami-1")), version("3", 10*day, baseOf("ami-2")), version("4", 5*day)},
			inUse:   map[string][]Use{"ami-3": {{Kind: UseGroup, ID: "web-prod-v001", Region: "us-east-1"}}},
			want: []string{"4: keep: newest 1", "3: keep: in use by auto scaling group web-prod-v001 in us-east-1",
				"2: keep: base of kept web@3", "1: keep: base of kept web@2"},
		},
		"the base of another recipe's image": {
			policy:  Policy{},
			entries: []catalog.Entry{version("1", 30*day, copiedTo("eu-west-1", "ami-1eu"))},
			deps:    []Dependent{{Ref: catalog.Ref{Recipe: "app", Version: "2.1.0"}, BaseName: "ami-1eu"}},
			want:    []string{"1: keep: base of app@2.1.0"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			plan := MakePlan(Observed{Recipe: "web", Artifact: "web", Entries: tc.entries, InUse: tc.inUse, Dependents: tc.deps}, tc.policy, now)
			if got := decisions(plan); !slices.Equal(got, tc.want) {
				t.Errorf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			for _, d := range plan.Decisions {
				if len(d.Locations) != len(d.Entry.Locations) {
					t.Errorf("%s: the decision has %d locations, the version %d", d.Ref, len(d.Locations), len(d.Entry.Locations))
				}
			}
		})
	}
}

func TestPlanRevokedWithoutATimeIsKept(t *testing.T) {
	e := version("1", 30*day)
	e.Revoked = true // the revoke event was pruned
	plan := MakePlan(Observed{Entries: []catalog.Entry{e}}, Policy{}, now)
	if d := plan.Decisions[0]; !d.Keep {
		t.Fatalf("a revoked version whose revocation time is unknown was removed: %v", d.Reasons)
	}
}

func TestPolicyString(t *testing.T) {
	p := Policy{KeepLast: 5, KeepWithin: 30 * day, KeepPrevious: 1, KeepRevoked: 36 * time.Hour}
	want := "keep the newest 5, those baked within 30d, 1 previous per stage, revoked ones for 36h0m0s, and always what is staged, in use, or the base of a kept image"
	if got := p.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	if got := fmt.Sprint(Policy{KeepLast: 0, KeepRevoked: 7 * day}); strings.Contains(got, "baked within") {
		t.Errorf("a policy without keep_within says %q", got)
	}
}

// container is the container image of web/app of version v baked age
// ago, in repository reg.example/web as sha256:v, changed by opts.
func container(v string, age time.Duration, opts ...func(*catalog.Entry)) catalog.Entry {
	e := version(v, age, opts...)
	e.Artifact, e.Kind, e.Reference = "app", catalog.KindContainer, "reg.example/web:"+v
	e.Digest = "sha256:" + v
	e.Locations = []catalog.Location{{Where: "reg.example/web", ID: "sha256:" + v}}
	return e
}

func TestPlanDecidesAVersionWithAnAMIAndAContainerImageOnce(t *testing.T) {
	entries := []catalog.Entry{
		// 1: only the container image is in prod: the AMI stays with it.
		version("1", 50*day), container("1", 50*day, inStage("prod", 40*day)),
		// 2: only the AMI is in use: the container image stays with it.
		version("2", 40*day), container("2", 40*day),
		// 3: its AMI is revoked, its container image is not: not revoked,
		// and the newest by its container image's bake.
		version("3", 30*day, revoked(20*day)), container("3", 5*day),
		// 4: its container image is the base of kept 5's container image.
		version("4", 20*day), container("4", 20*day),
		version("5", 10*day), container("5", 10*day, func(e *catalog.Entry) { e.BaseDigest = "sha256:4" }),
		// 6: nothing keeps either.
		version("6", 45*day), container("6", 45*day),
	}
	inUse := map[string][]Use{"ami-2": {{Kind: UseInstance, ID: "i-0abc", Region: "us-east-1", Image: "ami-2"}}}
	deps := []Dependent{{Ref: catalog.Ref{Recipe: "api", Version: "9"}, BaseDigest: "sha256:5"}}
	plan := MakePlan(Observed{Recipe: "web", Entries: entries, InUse: inUse, Dependents: deps}, Policy{KeepLast: 1, KeepRevoked: 7 * day}, now)
	want := []string{
		"3: keep: newest 1",
		"5: keep: base of api@9",
		"4: keep: base of kept web@5",
		"2: keep: in use by instance i-0abc in us-east-1",
		"6: remove: not among the newest 1; in no stage, unused, no rollback target, the base of no kept image",
		"1: keep: in prod",
	}
	if got := decisions(plan); !slices.Equal(got, want) {
		t.Fatalf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, d := range plan.Decisions {
		wantLocs := []catalog.Location{{Where: "us-east-1", ID: "ami-" + d.Ref.Version}, {Where: "reg.example/web", ID: "sha256:" + d.Ref.Version}}
		if !slices.Equal(d.Locations, wantLocs) || len(d.Artifacts) != 2 || len(d.Entries) != 2 {
			t.Errorf("%s: locations %v, artifacts %+v: want both images' locations", d.Ref, d.Locations, d.Artifacts)
		}
		if _, ok := d.EntryOf(catalog.KindContainer, "app"); !ok {
			t.Errorf("%s: no container entry", d.Ref)
		}
		if e, ok := d.EntryOf(catalog.KindAMI, "web"); !ok || e.Locations[0].ID != "ami-"+d.Ref.Version {
			t.Errorf("%s: AMI entry %+v", d.Ref, e)
		}
	}
}

func TestPlanSharedWithAStageAccount(t *testing.T) {
	entries := []catalog.Entry{
		version("1", 50*day, promoted("prod", 40*day)),
		version("2", 40*day, promoted("prod", 30*day)),
		version("3", 30*day, inStage("prod", 20*day)),
		version("4", 10*day),
	}
	shares := map[string][]string{"ami-1": {"111122223333"}, "ami-2": {"111122223333", "999988887777"}, "ami-3": {"111122223333"}}
	stageAccounts := map[string][]string{"prod": {"111122223333"}}
	// keep_previous 0: no rollback target is kept for the policy, but the
	// previous version is still shared with prod's account.
	plan := MakePlan(Observed{Entries: entries, Shares: shares, StageAccounts: stageAccounts}, Policy{KeepLast: 1}, now)
	want := []string{
		"4: keep: newest 1",
		"3: keep: in prod; shared with prod account 111122223333 (current)",
		"2: keep: shared with prod account 111122223333 (previous)",
		"1: remove: not among the newest 1; in no stage, unused, no rollback target, the base of no kept image",
	}
	if got := decisions(plan); !slices.Equal(got, want) {
		t.Fatalf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	// Not shared with the stage's account: the rule does not apply.
	plan = MakePlan(Observed{Entries: entries, Shares: map[string][]string{"ami-2": {"999988887777"}}, StageAccounts: stageAccounts}, Policy{KeepLast: 1}, now)
	if d := plan.Decisions[2]; d.Ref.Version != "2" || d.Keep {
		t.Errorf("2, shared with another account only, is kept: %v", d.Reasons)
	}
}

// TestPlanOrphanedCopyAges: an unfinished copy that failed or is
// available is removed an hour after it started; one still pending only
// after PendingCopyMaxAge (the promotion that waits for it gave up long
// before).
func TestPlanOrphanedCopyAges(t *testing.T) {
	orphan := func(state string, age time.Duration) Orphan {
		return Orphan{Kind: OrphanAMI, State: state, ID: state + "-" + age.String(), Created: now.Add(-age)}
	}
	o := Observed{Orphans: []Orphan{
		orphan("failed", 2*time.Hour), orphan("available", 2*time.Hour), orphan("pending", 2*time.Hour),
		orphan("available", 30*time.Minute), orphan("pending", PendingCopyMaxAge+time.Hour),
	}}
	var got []string
	for _, x := range MakePlan(o, Policy{}, now).Orphans {
		got = append(got, x.ID)
	}
	if want := []string{"failed-2h0m0s", "available-2h0m0s", "pending-25h0m0s"}; !slices.Equal(got, want) {
		t.Errorf("orphans %v, want %v", got, want)
	}
}
