// Package promote moves baked images through a recipe's ordered stages
// without rebuilding them. Check decides, from observed catalog state and
// a clock, whether a promotion is allowed (stage order, gates,
// revocation); Apply carries it out through each artifact's catalog.Store.
// Revoke and Unrevoke take an image out of circulation and back.
package promote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// Gate is what a stage demands of an image entering it.
type Gate struct {
	// MinSoak is the minimum time the image must have spent in the
	// previous stage.
	MinSoak time.Duration
	// RequireApproval demands an approval of the version for the stage
	// (bakery approve) by another principal than the promoter's.
	RequireApproval bool
	// Approvers, when set, are the ARN patterns an approval's identity
	// must match (see MatchApprover).
	Approvers []string
	// ApprovalValidFor is how long an approval counts; 0 means
	// DefaultApprovalValidFor.
	ApprovalValidFor time.Duration
}

// Stage is one stage of a recipe with what it requires.
type Stage struct {
	// Spec is what the image must meet in this stage (accounts, regions,
	// repository).
	Spec catalog.StageSpec
	// Gate is checked before the image enters.
	Gate Gate
}

// Artifact is one artifact of a recipe (a container block or a
// machine_image block) with its catalog.
type Artifact struct {
	// Kind is the kind of image; Name is the block label.
	Kind catalog.Kind
	Name string
	// Store reads and changes the artifact's images.
	Store catalog.Store
	// Entries are the artifact's images as observed; Load fills them.
	Entries []catalog.Entry
}

// Request is a promotion asked for.
type Request struct {
	// Recipe is the recipe name; Version the version to promote.
	Recipe, Version string
	// To is the target stage.
	To string
	// Force overrides stage order and gates (never a revocation); it
	// needs a Reason.
	Force bool
	// Reason is recorded in the history.
	Reason string
	// Actor is who promotes (AWS caller, registry user or $USER), as
	// the promote event records it.
	Actor string
	// Promoter is the promoter's identity, for the four-eyes rule of a
	// stage that requires approval: no approval by the same principal
	// counts. Needed only for such a stage.
	Promoter Identity
}

// Move is what a promotion does to one artifact.
type Move struct {
	// Artifact is the artifact moved.
	Artifact *Artifact
	// Entry is the image (the requested version) as observed.
	Entry catalog.Entry
	// NoOp is true when the image is already in the stage.
	NoOp bool
}

// Plan is a checked promotion: every artifact's move and the event each
// records. Nothing has changed yet.
type Plan struct {
	// Request is what was asked for.
	Request Request
	// Moves are per artifact, in recipe order.
	Moves []Move
	// Event is recorded on each image moved.
	Event catalog.Event
	// Spec is the target stage's requirements.
	Spec catalog.StageSpec
	// Checks explains each rule that was checked and how it was met.
	Checks []string
}

// NoOp reports whether the image is already in the stage everywhere.
func (p *Plan) NoOp() bool {
	return !slices.ContainsFunc(p.Moves, func(m Move) bool { return !m.NoOp })
}

// Load reads every artifact's entries (in parallel per store where the
// store allows; each store reads in one listing).
func Load(ctx context.Context, arts []*Artifact) error {
	errs := make([]error, len(arts))
	done := make(chan int, len(arts))
	for i, a := range arts {
		go func() {
			es, err := a.Store.Entries(ctx)
			if err != nil {
				errs[i] = fmt.Errorf("reading the catalog of %s %s: %w", a.Kind, a.Name, err)
			}
			a.Entries = es
			done <- i
		}()
	}
	for range arts {
		<-done
	}
	return errors.Join(errs...)
}

// find returns the entry of version v.
func find(es []catalog.Entry, v string) (catalog.Entry, bool) {
	for _, e := range es {
		if e.Version == v {
			return e, true
		}
	}
	return catalog.Entry{}, false
}

// Check decides whether req may proceed given the recipe's ordered stages
// and the artifacts' observed entries, at time now. It is a pure function
// of its arguments. Every rule is checked for every artifact before
// anything changes, so a refused promotion changes nothing.
func Check(stages []string, specs map[string]Stage, arts []*Artifact, req Request, now time.Time) (*Plan, error) {
	ref := req.Recipe + "@" + req.Version
	idx := slices.Index(stages, req.To)
	if idx < 0 {
		return nil, fmt.Errorf("promoting %s: unknown stage %q; the recipe's stages are %s", ref, req.To, strings.Join(stages, " → "))
	}
	if req.Force && strings.TrimSpace(req.Reason) == "" {
		return nil, fmt.Errorf("promoting %s: --force needs --reason \"...\" (it is recorded in the history)", ref)
	}
	if len(arts) == 0 {
		return nil, fmt.Errorf("promoting %s: the recipe has no artifacts", ref)
	}
	st := specs[req.To]
	st.Spec.Name = req.To
	p := &Plan{
		Request: req,
		Spec:    st.Spec,
		Event: catalog.Event{
			Time: now.UTC(), Action: catalog.ActionPromote, Recipe: req.Recipe, Version: req.Version,
			Stage: req.To, Actor: req.Actor, Reason: req.Reason, Forced: req.Force,
		},
	}
	var problems []string
	for _, a := range arts {
		e, ok := find(a.Entries, req.Version)
		if !ok {
			return nil, fmt.Errorf("promoting %s: %s %s has no version %s; known versions: %s", ref, a.Kind, a.Name, req.Version, versions(a.Entries))
		}
		if e.Revoked {
			return nil, fmt.Errorf("promoting %s: %s %s is revoked (%s); a revoked image cannot be promoted: bake a new version, or 'bakery unrevoke' it first", ref, a.Kind, a.Name, orNone(e.RevokeReason))
		}
		se, in := e.Stages[req.To]
		p.Moves = append(p.Moves, Move{Artifact: a, Entry: e, NoOp: in && !se.Unfinished && specMet(e, st.Spec) && soleHolder(a.Entries, req.Version, req.To)})
		if in {
			continue
		}
		if idx > 0 {
			prev := stages[idx-1]
			entry, inPrev := e.Stages[prev]
			switch {
			case !inPrev:
				problems = append(problems, fmt.Sprintf("%s %s is not in %s, the stage before %s: promote it to %s first", a.Kind, a.Name, prev, req.To, prev))
			case st.Gate.MinSoak > 0 && now.Sub(entry.Since) < st.Gate.MinSoak:
				problems = append(problems, fmt.Sprintf("%s %s has been in %s for %s; %s needs %s (gate min_soak): wait until %s",
					a.Kind, a.Name, prev, now.Sub(entry.Since).Round(time.Second), req.To, st.Gate.MinSoak, entry.Since.Add(st.Gate.MinSoak).UTC().Format(time.RFC3339)))
			}
		}
	}
	if st.Gate.RequireApproval {
		problems = append(problems, p.approvals(st.Gate, now)...)
	}
	switch {
	case len(problems) > 0 && !req.Force:
		return nil, fmt.Errorf("promoting %s to %s refused:\n  - %s\nfix that, or override with --force --reason \"...\"", ref, req.To, strings.Join(problems, "\n  - "))
	case len(problems) > 0:
		for _, pr := range problems {
			p.Checks = append(p.Checks, "overridden by --force: "+pr)
		}
	}
	return p, nil
}

// approvals checks, for every artifact that moves, that its image has an
// approval letting the promoter into the stage (see approval), and
// records in p's event whose approval it is. It returns what is missing,
// once when every artifact misses the same.
func (p *Plan) approvals(g Gate, now time.Time) []string {
	var msgs, byArt []string
	for _, m := range p.Moves {
		if m.NoOp {
			continue
		}
		ev, why := approval(m.Entry, p.Request, g, now)
		if why != "" {
			msgs = append(msgs, why)
			byArt = append(byArt, fmt.Sprintf("%s %s: %s", m.Artifact.Kind, m.Artifact.Name, why))
			continue
		}
		if p.Event.ApprovedBy == "" {
			p.Event.ApprovedBy = ev.Actor
		}
	}
	if len(msgs) > 0 && p.Event.ApprovedBy == "" && len(slices.Compact(slices.Clone(msgs))) == 1 {
		return msgs[:1] // every artifact misses the same approval
	}
	return byArt
}

// soleHolder reports whether version is the only one of es in stage. A
// stage with two holders is one a promotion stopped in before it took
// the stage from the other: promoting again finishes it.
func soleHolder(es []catalog.Entry, version, stage string) bool {
	return !slices.ContainsFunc(es, func(e catalog.Entry) bool {
		_, in := e.Stages[stage]
		return in && e.Version != version
	})
}

// specMet reports whether e already meets spec where the catalog can
// tell (an AMI in every required region).
func specMet(e catalog.Entry, spec catalog.StageSpec) bool {
	for _, r := range spec.Regions {
		if !slices.ContainsFunc(e.Locations, func(l catalog.Location) bool { return l.Where == r }) {
			return false
		}
	}
	return true
}

// Apply carries out p: each artifact's store promotes its image. A store
// promotion is idempotent and resumable, so after a failure running the
// same promotion again finishes the job.
func Apply(ctx context.Context, p *Plan) error {
	var done []string
	for _, m := range p.Moves {
		if m.NoOp {
			continue
		}
		ev := p.Event
		ev.Artifact, ev.Kind = m.Artifact.Name, m.Artifact.Kind
		if err := m.Artifact.Store.Promote(ctx, m.Entry, p.Spec, ev); err != nil {
			if errors.Is(err, catalog.ErrSuperseded) {
				// Running it again would only take the stage back: say who won.
				return fmt.Errorf("promoting %s@%s to %s: a concurrent promotion won the race: %w; check bakery status before promoting again", p.Request.Recipe, p.Request.Version, p.Request.To, err)
			}
			msg := fmt.Sprintf("promoting %s@%s %s %s to %s: %%w", p.Request.Recipe, p.Request.Version, m.Artifact.Kind, m.Artifact.Name, p.Request.To)
			if len(done) > 0 {
				msg += fmt.Sprintf("; %s already moved: run the same command again to finish", strings.Join(done, ", "))
			} else {
				msg += "; run the same command again to retry"
			}
			return fmt.Errorf(msg, err)
		}
		done = append(done, string(m.Artifact.Kind)+" "+m.Artifact.Name)
	}
	return nil
}

// Revoke takes version out of every stage and marks it revoked, for every
// artifact that has it. A reason is required.
func Revoke(ctx context.Context, arts []*Artifact, recipe, version, reason, actor string, now time.Time) error {
	return setRevoked(ctx, arts, recipe, version, reason, actor, now, true)
}

// Unrevoke lifts version's revocation. The image enters no stage.
func Unrevoke(ctx context.Context, arts []*Artifact, recipe, version, reason, actor string, now time.Time) error {
	return setRevoked(ctx, arts, recipe, version, reason, actor, now, false)
}

func setRevoked(ctx context.Context, arts []*Artifact, recipe, version, reason, actor string, now time.Time, revoke bool) error {
	verb, action := "revoking", catalog.ActionRevoke
	if !revoke {
		verb, action = "unrevoking", catalog.ActionUnrevoke
	}
	ref := recipe + "@" + version
	if revoke && strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%s %s: give a --reason (it is recorded and shown by status)", verb, ref)
	}
	var pending []Move
	for _, a := range arts {
		e, ok := find(a.Entries, version)
		if !ok {
			return fmt.Errorf("%s %s: %s %s has no version %s; known versions: %s", verb, ref, a.Kind, a.Name, version, versions(a.Entries))
		}
		if e.Revoked != revoke || unfinishedRevocation(e, revoke) {
			pending = append(pending, Move{Artifact: a, Entry: e})
		}
	}
	for _, m := range pending {
		ev := catalog.Event{Time: now.UTC(), Action: action, Recipe: recipe, Version: version,
			Artifact: m.Artifact.Name, Kind: m.Artifact.Kind, Actor: actor, Reason: reason}
		var err error
		if revoke {
			err = m.Artifact.Store.Revoke(ctx, m.Entry, ev)
		} else {
			err = m.Artifact.Store.Unrevoke(ctx, m.Entry, ev)
		}
		if err != nil {
			return fmt.Errorf("%s %s %s %s: %w; run the same command again to finish", verb, ref, m.Artifact.Kind, m.Artifact.Name, err)
		}
	}
	return nil
}

// unfinishedRevocation reports whether revoking e still has work to do
// although it is marked revoked: a stage still holds it, or some of its
// images lack the mark (a revocation that stopped half way, say on a
// registry that refused a write, or killed between two AMIs).
func unfinishedRevocation(e catalog.Entry, revoke bool) bool {
	return revoke && e.Revoked && (len(e.Stages) > 0 || e.RevokeUnfinished)
}

// RevocationDone reports whether every artifact has version with its
// revocation already as revoke asks (revoked, and in no stage, for a
// revocation), so that revoke (or unrevoke) has nothing to do. A missing
// version is not done: the revocation reports it.
func RevocationDone(arts []*Artifact, version string, revoke bool) bool {
	for _, a := range arts {
		e, ok := find(a.Entries, version)
		if !ok || e.Revoked != revoke || unfinishedRevocation(e, revoke) {
			return false
		}
	}
	return len(arts) > 0
}

func versions(es []catalog.Entry) string {
	if len(es) == 0 {
		return "none (bake it first)"
	}
	vs := make([]string, len(es))
	for i, e := range es {
		vs[i] = e.Version
	}
	return strings.Join(vs, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}
