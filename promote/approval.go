package promote

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// DefaultApprovalValidFor is how long an approval counts when the gate
// does not say (Gate.ApprovalValidFor is 0): seven days.
const DefaultApprovalValidFor = 7 * 24 * time.Hour

// Identity is who approves or promotes.
type Identity struct {
	// Name is the AWS caller ARN when Verified; otherwise the name the
	// user gave ($BAKERY_ACTOR), the registry user or $USER.
	Name string
	// Verified is true when Name is the caller identity AWS answered
	// (sts GetCallerIdentity): nobody can claim it without the
	// credentials.
	Verified bool
}

// String returns the name, marked "(unverified)" when it is one.
func (id Identity) String() string {
	if id.Verified {
		return id.Name
	}
	return id.Name + " (unverified)"
}

// assumedRoleRE matches an assumed-role session ARN: the role's session
// as sts GetCallerIdentity reports it.
var assumedRoleRE = regexp.MustCompile(`^arn:([^:]+):sts::([^:]+):assumed-role/([^/]+)/.+$`)

// Principal returns the IAM principal behind an identity ARN: for an
// assumed-role session arn:P:sts::ACCOUNT:assumed-role/ROLE/SESSION, the
// role arn:P:iam::ACCOUNT:role/ROLE (without its path, which the session
// ARN does not carry); any other name as it is. Two sessions of one role
// are one principal, whatever their session names: anyone who may assume
// the role may choose the session name.
func Principal(arn string) string {
	if m := assumedRoleRE.FindStringSubmatch(arn); m != nil {
		return "arn:" + m[1] + ":iam::" + m[2] + ":role/" + m[3]
	}
	return arn
}

// SamePerson reports whether a and b are the same principal (see
// Principal; IAM names are case-insensitive): four eyes refuses an
// approval by the promoter, by the same IAM user, or by another session
// of the same role.
func SamePerson(a, b Identity) bool {
	return strings.EqualFold(Principal(a.Name), Principal(b.Name))
}

// MatchApprover reports whether id may approve under the approver
// pattern: a verified identity whose ARN matches the pattern ("*" matches
// any run of characters), or whose role (an assumed-role session's, see
// Principal) does, the pattern's role path left out. An unverified
// identity matches no pattern.
func MatchApprover(pattern string, id Identity) bool {
	if !id.Verified {
		return false
	}
	if glob(pattern, id.Name) {
		return true
	}
	role := Principal(id.Name)
	if role == id.Name {
		return false
	}
	// arn:aws:iam::1:role/team/release names the role "release" that an
	// assumed-role session names without its path.
	if head, res, ok := strings.Cut(pattern, ":role/"); ok {
		pattern = head + ":role/" + res[strings.LastIndexByte(res, '/')+1:]
	}
	return glob(pattern, role)
}

// glob matches s against pattern, in which "*" matches any run of
// characters (":" and "/" too) and every other character itself.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// ValidFor is how long an approval under g counts.
func (g Gate) ValidFor() time.Duration {
	if g.ApprovalValidFor > 0 {
		return g.ApprovalValidFor
	}
	return DefaultApprovalValidFor
}

// whom says who may approve under g, for messages.
func (g Gate) whom(promoter Identity) string {
	you := promoter.Name
	if !promoter.Verified {
		you += ", unverified"
	}
	if len(g.Approvers) > 0 {
		return fmt.Sprintf("as an AWS identity matching the stage's approvers (%s), not yours (%s)", strings.Join(g.Approvers, ", "), you)
	}
	return fmt.Sprintf("as someone other than you (%s)", you)
}

// approval finds the approval of e (version req.Version) for req.To that
// lets promoter through g at now: the newest approve event for that
// stage, by another principal than the promoter, recorded no longer than
// the gate's validity ago and not before a revocation, by an identity
// matching the gate's approvers when it has some. Without one it returns
// why, saying what to do.
func approval(e catalog.Entry, req Request, g Gate, now time.Time) (catalog.Event, string) {
	ref := req.Recipe + "@" + req.Version
	var revoked time.Time
	for _, ev := range e.Events {
		if ev.Action == catalog.ActionRevoke && ev.Time.After(revoked) {
			revoked = ev.Time
		}
	}
	var refused, otherStages []string
	evs := slices.Clone(e.Events)
	slices.SortStableFunc(evs, func(a, b catalog.Event) int { return b.Time.Compare(a.Time) }) // newest first
	for _, ev := range evs {
		if ev.Action != catalog.ActionApprove || (ev.Version != "" && ev.Version != req.Version) {
			continue
		}
		if ev.Stage != req.To {
			if !slices.Contains(otherStages, ev.Stage) {
				otherStages = append(otherStages, ev.Stage)
			}
			continue
		}
		by := Identity{Name: ev.Actor, Verified: !ev.Unverified}
		what := fmt.Sprintf("the approval by %s at %s", by, ev.Time.UTC().Format(time.RFC3339))
		var why string
		switch {
		case !revoked.IsZero() && !ev.Time.After(revoked):
			why = fmt.Sprintf("%s came before the revocation at %s", what, revoked.UTC().Format(time.RFC3339))
		case SamePerson(by, req.Promoter):
			why = fmt.Sprintf("%s is by the promoter (four eyes: someone else must approve)", what)
		case ev.Time.After(now):
			why = fmt.Sprintf("%s is in the future (check the clocks)", what)
		case now.Sub(ev.Time) > g.ValidFor():
			why = fmt.Sprintf("%s expired at %s (approvals count for %s, gate approval_valid_for)", what, ev.Time.Add(g.ValidFor()).UTC().Format(time.RFC3339), g.ValidFor())
		case len(g.Approvers) > 0 && !by.Verified:
			why = fmt.Sprintf("%s is by an unverified name, and approvers accepts verified AWS identities only", what)
		case len(g.Approvers) > 0 && !slices.ContainsFunc(g.Approvers, func(p string) bool { return MatchApprover(p, by) }):
			why = fmt.Sprintf("%s is by an identity that matches none of the stage's approvers", what)
		default:
			return ev, ""
		}
		if len(refused) < 3 {
			refused = append(refused, why)
		}
	}
	remedy := fmt.Sprintf("run `bakery approve %s --for %s` %s", ref, req.To, g.whom(req.Promoter))
	if len(refused) == 0 {
		msg := fmt.Sprintf("%s requires approval (gate require_approval) and %s has no approval for %s", req.To, ref, req.To)
		if len(otherStages) > 0 {
			msg += fmt.Sprintf(" (only for %s)", strings.Join(otherStages, ", "))
		}
		return catalog.Event{}, msg + ": " + remedy
	}
	return catalog.Event{}, fmt.Sprintf("%s requires approval (gate require_approval) and no approval of %s for %s counts: %s; %s",
		req.To, ref, req.To, strings.Join(refused, "; "), remedy)
}

// Approval is an approval asked for: bakery approve.
type Approval struct {
	// Recipe and Version name the image; Stage is the stage it is
	// approved for.
	Recipe, Version, Stage string
	// Reason is recorded in the history.
	Reason string
	// Approver is who approves.
	Approver Identity
}

// Approve records a's approve event on every artifact of the version,
// after checking, before anything is written, that the stage exists and
// requires approval, that every artifact has the version and none is
// revoked, and that the approver matches the stage's approvers when it
// has some. The version need not be in the stage before yet: approving
// ahead of the soak is how a release is prepared. Recording is per
// artifact; after a failure, running it again approves them all.
func Approve(ctx context.Context, stages []string, specs map[string]Stage, arts []*Artifact, a Approval, now time.Time) error {
	ref := a.Recipe + "@" + a.Version
	if !slices.Contains(stages, a.Stage) {
		return fmt.Errorf("approving %s: unknown stage %q; the recipe's stages are %s", ref, a.Stage, strings.Join(stages, " → "))
	}
	g := specs[a.Stage].Gate
	if !g.RequireApproval {
		return fmt.Errorf("approving %s for %s: stage %s has no require_approval gate, so promoting into it needs no approval: there is nothing to approve (add require_approval = true to its gate block to require one)", ref, a.Stage, a.Stage)
	}
	if strings.TrimSpace(a.Approver.Name) == "" {
		return fmt.Errorf("approving %s for %s: nobody is named as the approver: use AWS credentials, or set $BAKERY_ACTOR", ref, a.Stage)
	}
	if len(g.Approvers) > 0 {
		switch {
		case !a.Approver.Verified:
			return fmt.Errorf("approving %s for %s: stage %s accepts approvals by verified AWS identities matching its approvers (%s) only, and %s is a name nobody verified: approve with AWS credentials of one of them", ref, a.Stage, a.Stage, strings.Join(g.Approvers, ", "), a.Approver)
		case !slices.ContainsFunc(g.Approvers, func(p string) bool { return MatchApprover(p, a.Approver) }):
			return fmt.Errorf("approving %s for %s: you are %s, which matches none of stage %s's approvers (%s): ask one of them to approve", ref, a.Stage, a.Approver, a.Stage, strings.Join(g.Approvers, ", "))
		}
	}
	if len(arts) == 0 {
		return fmt.Errorf("approving %s: the recipe has no artifacts", ref)
	}
	var moves []Move
	for _, art := range arts {
		e, ok := find(art.Entries, a.Version)
		if !ok {
			return fmt.Errorf("approving %s: %s %s has no version %s; known versions: %s", ref, art.Kind, art.Name, a.Version, versions(art.Entries))
		}
		if e.Revoked {
			return fmt.Errorf("approving %s: %s %s is revoked (%s); a revoked image cannot be approved: bake a new version, or 'bakery unrevoke' it first", ref, art.Kind, art.Name, orNone(e.RevokeReason))
		}
		moves = append(moves, Move{Artifact: art, Entry: e})
	}
	var done []string
	for _, m := range moves {
		ev := catalog.Event{Time: now.UTC(), Action: catalog.ActionApprove, Recipe: a.Recipe, Version: a.Version,
			Artifact: m.Artifact.Name, Kind: m.Artifact.Kind, Stage: a.Stage, Actor: a.Approver.Name,
			Unverified: !a.Approver.Verified, Reason: a.Reason}
		if err := m.Artifact.Store.Record(ctx, m.Entry, ev); err != nil {
			msg := fmt.Sprintf("approving %s for %s: %s %s: %%w; ", ref, a.Stage, m.Artifact.Kind, m.Artifact.Name)
			if len(done) > 0 {
				msg += strings.Join(done, ", ") + " approved already: "
			}
			return fmt.Errorf(msg+"run the same command again to approve them all", err)
		}
		done = append(done, string(m.Artifact.Kind)+" "+m.Artifact.Name)
	}
	return nil
}
