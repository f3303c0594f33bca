package promote

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

func TestPrincipalAndMatchApprover(t *testing.T) {
	session := Identity{Name: "arn:aws:sts::123456789012:assumed-role/release-managers/ann", Verified: true}
	for _, tc := range []struct {
		pattern string
		id      Identity
		want    bool
	}{
		{"arn:aws:iam::123456789012:role/release-managers", session, true},
		{"arn:aws:iam::123456789012:role/teams/release-managers", session, true}, // a session ARN carries no role path
		{"arn:aws:iam::*:role/release-*", session, true},
		{"arn:aws:sts::*:assumed-role/release-managers/*", session, true},
		{"arn:aws:sts::123456789012:assumed-role/release-managers/bob", session, false},
		{"arn:aws:iam::210987654321:role/release-managers", session, false},
		{"arn:aws:iam::123456789012:role/release", session, false},
		{"arn:aws:iam::123456789012:role/release-managers", Identity{Name: session.Name}, false}, // unverified
		{"arn:aws:iam::123456789012:user/ann", ann, true},
		{"arn:aws:iam::123456789012:user/*", bob, true},
		{"arn:aws:iam::123456789012:user/ann", bob, false},
		{"arn:aws:iam::123456789012:role/ann", ann, false},
		{"*", Identity{Name: "ann"}, false},
	} {
		if got := MatchApprover(tc.pattern, tc.id); got != tc.want {
			t.Errorf("MatchApprover(%q, %v) = %v, want %v", tc.pattern, tc.id, got, tc.want)
		}
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"arn:aws:sts::123456789012:assumed-role/release/ann", "arn:aws:sts::123456789012:assumed-role/release/bob", true},
		{"arn:aws:sts::123456789012:assumed-role/release/ann", "arn:aws:iam::123456789012:role/release", true},
		{"arn:aws:sts::123456789012:assumed-role/release/ann", "arn:aws:sts::123456789012:assumed-role/deploy/ann", false},
		{"arn:aws:iam::123456789012:user/Ann", "arn:aws:iam::123456789012:user/ann", true},
		{"arn:aws:iam::123456789012:user/ann", "arn:aws:iam::123456789012:user/bob", false},
		{"ann", "ann", true},
		{"ann", "bob", false},
	} {
		if got := SamePerson(Identity{Name: tc.a}, Identity{Name: tc.b}); got != tc.want {
			t.Errorf("SamePerson(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestCheckApprovals: a promotion into a stage that requires approval
// needs an approval of that version for that stage, by another principal
// than the promoter, within its validity, matching approvers when set.
func TestCheckApprovals(t *testing.T) {
	rm := Identity{Name: "arn:aws:sts::123456789012:assumed-role/release-managers/carol", Verified: true}
	rmOther := Identity{Name: "arn:aws:sts::123456789012:assumed-role/release-managers/dave", Verified: true}
	gated := map[string]Stage{
		"staging": {Gate: Gate{RequireApproval: true}},
		"prod":    {Gate: Gate{RequireApproval: true, Approvers: []string{"arn:aws:iam::123456789012:role/release-managers"}, ApprovalValidFor: 48 * time.Hour}},
	}
	inStaging := func(v string) catalog.Entry { return entry(v, map[string]time.Time{"staging": t0.Add(-time.Hour)}) }
	revokedThen := approved(inStaging("1.0.0"), "prod", rm, t0)
	revokedThen.Events = append(revokedThen.Events, catalog.Event{Time: t0.Add(time.Minute), Action: catalog.ActionRevoke},
		catalog.Event{Time: t0.Add(2 * time.Minute), Action: catalog.ActionUnrevoke})
	cases := []struct {
		name     string
		specs    map[string]Stage
		arts     []*Artifact
		promoter Identity
		now      time.Time
		wantErr  string
		wantBy   string
	}{
		{name: "approved by another identity", specs: specs, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", ann, t0))}, promoter: bob, now: t0.Add(time.Hour), wantBy: ann.Name},
		{name: "approved by the promoter", specs: specs, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", bob, t0))}, promoter: bob, now: t0,
			wantErr: "no approval of web@1.0.0 for prod counts: the approval by arn:aws:iam::123456789012:user/bob at 2026-11-25T12:00:00Z is by the promoter (four eyes: someone else must approve); run `bakery approve web@1.0.0 --for prod` as someone other than you (arn:aws:iam::123456789012:user/bob)"},
		{name: "approved by another session of the promoter's role", specs: gated, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", rmOther, t0))}, promoter: rm, now: t0,
			wantErr: "is by the promoter (four eyes"},
		{name: "approved by an identity outside approvers", specs: gated, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", ann, t0))}, promoter: bob, now: t0,
			wantErr: "is by an identity that matches none of the stage's approvers; run `bakery approve web@1.0.0 --for prod` as an AWS identity matching the stage's approvers (arn:aws:iam::123456789012:role/release-managers), not yours (arn:aws:iam::123456789012:user/bob)"},
		{name: "approved by a role session matching approvers", specs: gated, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", rm, t0))}, promoter: bob, now: t0, wantBy: rm.Name},
		{name: "an unverified approval never meets approvers", specs: gated, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", Identity{Name: rm.Name}, t0))}, promoter: bob, now: t0,
			wantErr: "(unverified) at 2026-11-25T12:00:00Z is by an unverified name, and approvers accepts verified AWS identities only"},
		{name: "an unverified approval meets a gate without approvers", specs: specs, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", Identity{Name: "ann"}, t0))}, promoter: Identity{Name: "bob"}, now: t0, wantBy: "ann"},
		{name: "an approval expires after the default 7d", specs: specs, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", ann, t0))}, promoter: bob, now: t0.Add(7*24*time.Hour + time.Second),
			wantErr: "expired at 2026-12-02T12:00:00Z (approvals count for 168h0m0s, gate approval_valid_for)"},
		{name: "an approval counts up to the default 7d", specs: specs, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", ann, t0))}, promoter: bob, now: t0.Add(7 * 24 * time.Hour), wantBy: ann.Name},
		{name: "an approval expires after approval_valid_for", specs: gated, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", rm, t0))}, promoter: bob, now: t0.Add(49 * time.Hour),
			wantErr: "expired at 2026-11-27T12:00:00Z (approvals count for 48h0m0s"},
		{name: "the newest approval counts", specs: specs, arts: []*Artifact{art("web", approved(approved(inStaging("1.0.0"), "prod", ann, t0.Add(-30*24*time.Hour)), "prod", ann, t0))}, promoter: bob, now: t0, wantBy: ann.Name},
		{name: "an approval of another version", specs: specs, arts: []*Artifact{art("web", inStaging("1.0.0"), approved(inStaging("1.1.0"), "prod", ann, t0))}, promoter: bob, now: t0,
			wantErr: "web@1.0.0 has no approval for prod: run `bakery approve web@1.0.0 --for prod`"},
		{name: "an approval for another stage", specs: gated, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "staging", rm, t0))}, promoter: bob, now: t0,
			wantErr: "web@1.0.0 has no approval for prod (only for staging): run"},
		{name: "an approval before a revocation", specs: gated, arts: []*Artifact{art("web", revokedThen)}, promoter: bob, now: t0.Add(time.Hour),
			wantErr: "came before the revocation at 2026-11-25T12:01:00Z"},
		{name: "every artifact needs one", specs: specs, arts: []*Artifact{art("web", approved(inStaging("1.0.0"), "prod", ann, t0)), art("worker", inStaging("1.0.0"))}, promoter: bob, now: t0,
			wantErr: "refused:\n  - ami worker: prod requires approval (gate require_approval) and web@1.0.0 has no approval for prod"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, a := range tc.arts {
				for i := range a.Entries {
					a.Entries[i].Locations = append(a.Entries[i].Locations, catalog.Location{Where: "eu-west-1"})
				}
			}
			req := Request{Recipe: "web", Version: "1.0.0", To: "prod", Actor: tc.promoter.Name, Promoter: tc.promoter}
			p, err := Check(stages, tc.specs, tc.arts, req, tc.now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v\nwant it to contain %q", err, tc.wantErr)
				}
				if strings.Count(err.Error(), "\n  - ") != 1 {
					t.Errorf("err = %v, want one problem", err)
				}
				// --force --reason overrides it, recorded as forced.
				req.Force, req.Reason = true, "hotfix"
				p, err := Check(stages, tc.specs, tc.arts, req, tc.now)
				if err != nil || !p.Event.Forced || len(p.Checks) != 1 || !strings.HasPrefix(p.Checks[0], "overridden by --force: ") {
					t.Errorf("forced: plan %+v, err %v; want the refusal overridden", p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Event.ApprovedBy != tc.wantBy || p.Event.Forced {
				t.Errorf("promote event approved by %q (forced %v), want %q", p.Event.ApprovedBy, p.Event.Forced, tc.wantBy)
			}
		})
	}
}

func TestApprove(t *testing.T) {
	gated := map[string]Stage{
		"staging": {},
		"prod":    {Gate: Gate{RequireApproval: true, Approvers: []string{"arn:aws:iam::123456789012:user/ann"}}},
	}
	rev := entry("1.0.0", nil)
	rev.Revoked, rev.RevokeReason = true, "CVE-2026-2"
	for _, tc := range []struct {
		name    string
		specs   map[string]Stage
		stage   string
		who     Identity
		worker  catalog.Entry
		wantErr string
	}{
		{name: "unknown stage", specs: specs, stage: "qa", who: ann, worker: entry("1.0.0", nil), wantErr: `approving web@1.0.0: unknown stage "qa"; the recipe's stages are dev → staging → prod`},
		{name: "a stage without require_approval", specs: specs, stage: "staging", who: ann, worker: entry("1.0.0", nil), wantErr: "stage staging has no require_approval gate, so promoting into it needs no approval"},
		{name: "a revoked version", specs: specs, stage: "prod", who: ann, worker: rev, wantErr: "ami worker is revoked (CVE-2026-2); a revoked image cannot be approved"},
		{name: "a missing version", specs: specs, stage: "prod", who: ann, worker: entry("0.9.0", nil), wantErr: "ami worker has no version 1.0.0; known versions: 0.9.0"},
		{name: "an approver outside approvers", specs: gated, stage: "prod", who: bob, worker: entry("1.0.0", nil), wantErr: "you are arn:aws:iam::123456789012:user/bob, which matches none of stage prod's approvers (arn:aws:iam::123456789012:user/ann)"},
		{name: "an unverified approver and approvers", specs: gated, stage: "prod", who: Identity{Name: ann.Name}, worker: entry("1.0.0", nil), wantErr: "is a name nobody verified"},
		{name: "approved, before the stage before", specs: gated, stage: "prod", who: ann, worker: entry("1.0.0", nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arts := []*Artifact{art("web", entry("1.0.0", nil)), art("worker", tc.worker)}
			err := Approve(context.Background(), stages, tc.specs, arts, Approval{Recipe: "web", Version: "1.0.0", Stage: tc.stage, Reason: "reviewed", Approver: tc.who}, t0)
			var recorded [][]catalog.Event
			for _, a := range arts {
				recorded = append(recorded, a.Store.(*fakeStore).recorded)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if len(recorded[0])+len(recorded[1]) != 0 {
					t.Errorf("a refused approval recorded %v", recorded)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range arts {
				want := catalog.Event{Time: t0, Action: catalog.ActionApprove, Recipe: "web", Version: "1.0.0", Artifact: a.Name, Kind: "ami",
					Stage: "prod", Actor: ann.Name, Reason: "reviewed"}
				if len(recorded[i]) != 1 || recorded[i][0] != want {
					t.Errorf("%s recorded %+v, want %+v", a.Name, recorded[i], want)
				}
			}
		})
	}
	// A store that fails says which artifacts are approved already.
	arts := []*Artifact{art("web", entry("1.0.0", nil)), {Kind: "ami", Name: "worker", Store: &fakeStore{fail: errors.New("throttled")}, Entries: []catalog.Entry{entry("1.0.0", nil)}}}
	err := Approve(context.Background(), stages, specs, arts, Approval{Recipe: "web", Version: "1.0.0", Stage: "prod", Approver: ann}, t0)
	if err == nil || !strings.Contains(err.Error(), "ami worker: throttled; ami web approved already: run the same command again") {
		t.Errorf("err = %v", err)
	}
}
