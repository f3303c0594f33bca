package promote

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// fakeStore records what Apply asks of it; the real stores are tested
// against moto and real registries in catalog/ami and catalog/oci.
type fakeStore struct {
	promoted []string
	revoked  []string
	recorded []catalog.Event
	fail     error
}

func (f *fakeStore) Entries(context.Context) ([]catalog.Entry, error) { return nil, nil }
func (f *fakeStore) Promote(_ context.Context, e catalog.Entry, spec catalog.StageSpec, ev catalog.Event) error {
	if f.fail != nil {
		return f.fail
	}
	f.promoted = append(f.promoted, e.Version+"→"+spec.Name+" by "+ev.Actor)
	return nil
}
func (f *fakeStore) Revoke(_ context.Context, e catalog.Entry, _ catalog.Event) error {
	f.revoked = append(f.revoked, e.Version)
	return nil
}
func (f *fakeStore) Unrevoke(context.Context, catalog.Entry, catalog.Event) error { return nil }
func (f *fakeStore) Record(_ context.Context, _ catalog.Entry, ev catalog.Event) error {
	if f.fail != nil {
		return f.fail
	}
	f.recorded = append(f.recorded, ev)
	return nil
}

var (
	t0     = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	stages = []string{"dev", "staging", "prod"}
	specs  = map[string]Stage{
		"staging": {Gate: Gate{MinSoak: 24 * time.Hour}},
		"prod":    {Gate: Gate{RequireApproval: true}, Spec: catalog.StageSpec{Regions: []string{"eu-west-1"}}},
	}
)

func entry(version string, in map[string]time.Time) catalog.Entry {
	e := catalog.Entry{}
	e.Version = version
	e.Stages = map[string]catalog.StageEntry{}
	for s, since := range in {
		e.Stages[s] = catalog.StageEntry{Since: since, By: "ci"}
	}
	e.Locations = []catalog.Location{{Where: "us-east-1", ID: "ami-1"}}
	return e
}

// ann and bob are two IAM users.
var (
	ann = Identity{Name: "arn:aws:iam::123456789012:user/ann", Verified: true}
	bob = Identity{Name: "arn:aws:iam::123456789012:user/bob", Verified: true}
)

// approved returns e with an approve event for stage by who at at.
func approved(e catalog.Entry, stage string, who Identity, at time.Time) catalog.Entry {
	e.Events = append(slices.Clone(e.Events), catalog.Event{Time: at, Action: catalog.ActionApprove, Recipe: "web", Version: e.Version,
		Stage: stage, Actor: who.Name, Unverified: !who.Verified})
	return e
}

func art(name string, es ...catalog.Entry) *Artifact {
	return &Artifact{Kind: "ami", Name: name, Store: &fakeStore{}, Entries: es}
}

func TestCheck(t *testing.T) {
	revoked := entry("1.0.0", nil)
	revoked.Revoked, revoked.RevokeReason = true, "CVE-2026-1"
	inProd := entry("2.0.0", map[string]time.Time{"dev": t0, "staging": t0, "prod": t0})
	inProd.Locations = append(inProd.Locations, catalog.Location{Where: "eu-west-1", ID: "ami-2"})
	unfinished := entry("2.0.0", map[string]time.Time{"dev": t0})
	unfinished.Stages["dev"] = catalog.StageEntry{Since: t0, By: "ci", Unfinished: true}
	cases := []struct {
		name    string
		arts    []*Artifact
		req     Request
		now     time.Time
		wantErr string
		noop    bool
		forced  bool
	}{
		{name: "into the first stage", arts: []*Artifact{art("web", entry("1.0.0", nil))}, req: Request{Version: "1.0.0", To: "dev"}, now: t0},
		{name: "unknown stage", arts: []*Artifact{art("web", entry("1.0.0", nil))}, req: Request{Version: "1.0.0", To: "qa"}, wantErr: `unknown stage "qa"; the recipe's stages are dev → staging → prod`},
		{name: "unknown version", arts: []*Artifact{art("web", entry("1.0.0", nil))}, req: Request{Version: "9.9.9", To: "dev"}, wantErr: "has no version 9.9.9; known versions: 1.0.0"},
		{name: "revoked, even forced", arts: []*Artifact{art("web", revoked)}, req: Request{Version: "1.0.0", To: "dev", Force: true, Reason: "x"}, wantErr: "is revoked (CVE-2026-1)"},
		{name: "skipping a stage", arts: []*Artifact{art("web", entry("1.0.0", map[string]time.Time{"dev": t0}))}, req: Request{Version: "1.0.0", To: "prod"}, now: t0, wantErr: "is not in staging, the stage before prod"},
		{name: "soak not met", arts: []*Artifact{art("web", entry("1.0.0", map[string]time.Time{"dev": t0}))}, req: Request{Version: "1.0.0", To: "staging"}, now: t0.Add(2 * time.Hour), wantErr: "has been in dev for 2h0m0s; staging needs 24h0m0s (gate min_soak): wait until 2026-11-26T12:00:00Z"},
		{name: "soak met", arts: []*Artifact{art("web", entry("1.0.0", map[string]time.Time{"dev": t0}))}, req: Request{Version: "1.0.0", To: "staging"}, now: t0.Add(25 * time.Hour)},
		{name: "approval missing", arts: []*Artifact{art("web", entry("1.0.0", map[string]time.Time{"staging": t0}))}, req: Request{Version: "1.0.0", To: "prod", Promoter: bob}, now: t0, wantErr: "prod requires approval (gate require_approval) and web@1.0.0 has no approval for prod: run `bakery approve web@1.0.0 --for prod` as someone other than you (arn:aws:iam::123456789012:user/bob)"},
		{name: "approval given", arts: []*Artifact{art("web", approved(entry("1.0.0", map[string]time.Time{"staging": t0}), "prod", ann, t0))}, req: Request{Version: "1.0.0", To: "prod", Promoter: bob}, now: t0},
		{name: "force needs a reason", arts: []*Artifact{art("web", entry("1.0.0", nil))}, req: Request{Version: "1.0.0", To: "prod", Force: true}, wantErr: "--force needs --reason"},
		{name: "force overrides order and gates", arts: []*Artifact{art("web", entry("1.0.0", nil))}, req: Request{Version: "1.0.0", To: "prod", Force: true, Reason: "hotfix"}, now: t0, forced: true},
		{name: "already there is a no-op", arts: []*Artifact{art("web", inProd)}, req: Request{Version: "2.0.0", To: "prod"}, now: t0, noop: true},
		{name: "in the stage with another holder is not a no-op (a killed promotion left it)", arts: []*Artifact{art("web", entry("1.0.0", map[string]time.Time{"dev": t0}), entry("2.0.0", map[string]time.Time{"dev": t0.Add(time.Hour)}))}, req: Request{Version: "2.0.0", To: "dev"}, now: t0},
		{name: "in the stage, unfinished, is not a no-op", arts: []*Artifact{art("web", unfinished)}, req: Request{Version: "2.0.0", To: "dev"}, now: t0},
		{name: "in the stage but missing a stage region is not a no-op", arts: []*Artifact{art("web", approved(entry("3.0.0", map[string]time.Time{"prod": t0}), "prod", ann, t0))}, req: Request{Version: "3.0.0", To: "prod", Promoter: bob}, now: t0},
		{name: "every artifact is checked", arts: []*Artifact{art("web", entry("1.0.0", map[string]time.Time{"dev": t0})), art("worker", entry("1.0.0", nil))}, req: Request{Version: "1.0.0", To: "staging"}, now: t0.Add(48 * time.Hour), wantErr: "ami worker is not in dev"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Recipe = "web"
			p, err := Check(stages, specs, tc.arts, tc.req, tc.now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.NoOp() != tc.noop {
				t.Errorf("NoOp = %v, want %v", p.NoOp(), tc.noop)
			}
			if p.Event.Forced != tc.forced || (tc.forced && len(p.Checks) == 0) {
				t.Errorf("forced = %v, checks %v", p.Event.Forced, p.Checks)
			}
			if p.Event.Stage != tc.req.To || p.Event.Action != catalog.ActionPromote || !p.Event.Time.Equal(tc.now) {
				t.Errorf("event = %+v", p.Event)
			}
		})
	}
}

func TestApplyMovesEveryArtifactAndSaysHowToResume(t *testing.T) {
	web, worker := art("web", entry("1.0.0", nil)), art("worker", entry("1.0.0", nil))
	p, err := Check(stages, specs, []*Artifact{web, worker}, Request{Recipe: "web", Version: "1.0.0", To: "dev", Actor: "ann"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	worker.Store.(*fakeStore).fail = errors.New("throttled")
	err = Apply(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "ami web already moved: run the same command again to finish") {
		t.Fatalf("err = %v", err)
	}
	worker.Store.(*fakeStore).fail = nil
	if err := Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if got := worker.Store.(*fakeStore).promoted; len(got) != 1 || got[0] != "1.0.0→dev by ann" {
		t.Errorf("worker promoted %v", got)
	}
}

func TestStatusIntersectsArtifactsAndReportsTaint(t *testing.T) {
	v1 := entry("1.9.0", map[string]time.Time{"dev": t0, "staging": t0})
	v1w := entry("1.9.0", map[string]time.Time{"dev": t0.Add(time.Hour)})
	v2 := entry("1.10.0", nil)
	v2.BaseName = "ami-bad"
	arts := []*Artifact{art("web", v1, v2), art("worker", v1w)}
	rs := Status("web", stages, arts, []RevokedImage{{Name: "base@1.0.0", IDs: []string{"ami-bad"}}})
	if len(rs.Versions) != 2 || rs.Versions[0].Version != "1.10.0" {
		t.Fatalf("versions = %+v, want 1.10.0 first", rs.Versions)
	}
	if got := rs.Versions[0]; len(got.Stages) != 0 || len(got.TaintedBy) != 1 || got.TaintedBy[0] != "base@1.0.0" {
		t.Errorf("1.10.0 = %+v: in no stage (worker lacks it), tainted by base@1.0.0", got)
	}
	got := rs.Versions[1]
	if _, ok := got.Stages["staging"]; ok {
		t.Errorf("1.9.0 in staging though worker is not: %+v", got.Stages)
	}
	if se := got.Stages["dev"]; !se.Since.Equal(t0.Add(time.Hour)) {
		t.Errorf("dev since %v, want when the last artifact entered", se.Since)
	}
}

// TestStatusSaysWhatEachArtifactWasBakedFrom: the dashboard draws
// lineage from the base of every artifact in a status document.
func TestStatusSaysWhatEachArtifactWasBakedFrom(t *testing.T) {
	web := entry("1.0.0", nil)
	web.BaseName = "ami-src"
	worker := entry("1.0.0", nil)
	worker.BaseName, worker.BaseDigest = "alpine:3", "sha256:0a"
	rs := Status("web", stages, []*Artifact{art("web", web), art("worker", worker)}, nil)
	arts := rs.Versions[0].Artifacts
	if len(arts) != 2 || arts[0].BaseName != "ami-src" || arts[0].BaseDigest != "" || arts[1].BaseName != "alpine:3" || arts[1].BaseDigest != "sha256:0a" {
		t.Errorf("artifacts = %+v, want each with its base", arts)
	}
}

func TestStatusMarksAdoptedVersions(t *testing.T) {
	adopted := entry("0.9.0", nil)
	adopted.BakeKey = catalog.BakeKeyUnknown
	baked := entry("1.0.0", nil)
	baked.BakeKey = "sha256:abc"
	rs := Status("web", stages, []*Artifact{art("web", adopted, baked)}, nil)
	got := map[string]bool{}
	for _, v := range rs.Versions {
		got[v.Version] = v.Adopted
	}
	if !got["0.9.0"] || got["1.0.0"] || len(got) != 2 {
		t.Errorf("adopted by version = %v, want 0.9.0 only", got)
	}
}

func TestHistoryNewestFirst(t *testing.T) {
	e := entry("1.0.0", nil)
	e.Events = []catalog.Event{{Time: t0, Action: "bake"}, {Time: t0.Add(time.Hour), Action: "promote", Stage: "dev"}}
	w := entry("1.0.0", nil)
	w.Events = []catalog.Event{{Time: t0.Add(30 * time.Minute), Action: "bake"}}
	h := History([]*Artifact{art("web", e), art("worker", w)})
	if len(h) != 3 || h[0].Action != "promote" || h[1].Artifact != "worker" || h[2].Time != t0 || h[0].Version != "1.0.0" {
		t.Fatalf("history = %+v", h)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"1.10.0", "1.9.2", 1}, {"1.0.0", "1.0.0", 0}, {"1.0", "1.0.1", -1}, {"2.0.0-rc1", "2.0.0-rc2", -1}} {
		if got := catalog.CompareVersions(c.a, c.b); (got > 0) != (c.want > 0) || (got < 0) != (c.want < 0) {
			t.Errorf("compare(%s, %s) = %d, want sign of %d", c.a, c.b, got, c.want)
		}
	}
}

func TestHistoryBreaksTiesByVersion(t *testing.T) {
	a, b := entry("1.0.0", nil), entry("1.1.0", nil)
	a.Events = []catalog.Event{{Time: t0, Action: "bake"}}
	b.Events = []catalog.Event{{Time: t0, Action: "bake"}}
	h := History([]*Artifact{art("web", a, b)})
	if h[0].Version != "1.1.0" {
		t.Fatalf("history = %+v: the newer version's bake at the same second comes first", h)
	}
}

// TestRevokeFinishesAnUnfinishedRevocation: an image marked revoked that a
// stage still holds (the revocation stopped half way) is not "already
// revoked": running revoke again asks the store to finish.
func TestRevokeFinishesAnUnfinishedRevocation(t *testing.T) {
	half := entry("1.0.0", map[string]time.Time{"dev": t0})
	half.Revoked = true
	done := entry("1.0.0", nil)
	done.Revoked = true
	halfArt, doneArt := art("web", half), art("worker", done)
	arts := []*Artifact{halfArt, doneArt}
	if RevocationDone(arts, "1.0.0", true) {
		t.Errorf("RevocationDone = true with web still in dev")
	}
	if !RevocationDone([]*Artifact{doneArt}, "1.0.0", true) {
		t.Errorf("RevocationDone = false for a revoked image in no stage")
	}
	partly := entry("1.0.0", nil)
	partly.Revoked, partly.RevokeUnfinished = true, true
	if RevocationDone([]*Artifact{art("web", partly)}, "1.0.0", true) {
		t.Errorf("RevocationDone = true with an AMI of web not marked revoked")
	}
	if err := Revoke(context.Background(), arts, "r", "1.0.0", "CVE", "ann", t0); err != nil {
		t.Fatal(err)
	}
	if got := halfArt.Store.(*fakeStore).revoked; len(got) != 1 || got[0] != "1.0.0" {
		t.Errorf("revoked on the half-done artifact: %v, want 1.0.0", got)
	}
	if got := doneArt.Store.(*fakeStore).revoked; len(got) != 0 {
		t.Errorf("revoked on the done artifact: %v, want nothing", got)
	}
}
