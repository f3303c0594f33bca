// Package retire decides which superseded images of a recipe to delete
// and deletes them safely (principles 3 and 5 of DESIGN.md): observe the
// catalog and what uses its images, compute a Plan with a pure function
// of what was observed, the Policy and a clock, print it, and only then
// apply it, checking again right before each delete that the image is
// not in use.
//
// A version is kept or removed as a whole, in every region and
// repository it is in: never half retired. Anything in a stage, in use
// by an instance, launch template, launch configuration or Auto Scaling
// group, a rollback target, the base of a kept image, or inside one of
// the policy's keep_* windows is kept.
package retire

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// Policy is a retention policy: the recipe's retain block. Whatever
// it says, a version in a stage, in use, a rollback target or the base of
// a kept image is kept.
type Policy struct {
	// KeepLast keeps the newest KeepLast versions that are not revoked
	// (by bake time, then version).
	KeepLast int `json:"keep_last"`
	// KeepWithin keeps the versions that are not revoked and were baked
	// within this long of now; 0 keeps none for their age.
	KeepWithin time.Duration `json:"keep_within"`
	// KeepPrevious keeps, per stage, this many of the versions that were
	// in the stage before (rollback targets): the most recently promoted
	// into it that are neither in it now nor revoked.
	KeepPrevious int `json:"keep_previous"`
	// KeepRevoked keeps a revoked version this long after its
	// revocation, for forensics.
	KeepRevoked time.Duration `json:"keep_revoked"`
}

// String describes the policy in one line, as the plan prints it.
func (p Policy) String() string {
	parts := []string{fmt.Sprintf("keep the newest %d", p.KeepLast)}
	if p.KeepWithin > 0 {
		parts = append(parts, "those baked within "+Days(p.KeepWithin))
	}
	parts = append(parts, fmt.Sprintf("%d previous per stage", p.KeepPrevious),
		"revoked ones for "+Days(p.KeepRevoked),
		"and always what is staged, in use, or the base of a kept image")
	return strings.Join(parts, ", ")
}

// MarshalJSON encodes the policy with its durations in days where they
// are whole days ("30d") and its String as "text".
func (p Policy) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KeepLast     int    `json:"keep_last"`
		KeepWithin   string `json:"keep_within"`
		KeepPrevious int    `json:"keep_previous"`
		KeepRevoked  string `json:"keep_revoked"`
		Text         string `json:"text"`
	}{p.KeepLast, Days(p.KeepWithin), p.KeepPrevious, Days(p.KeepRevoked), p.String()})
}

// Days renders d in days when it is a whole number of days ("30d"),
// else as a Go duration ("36h0m0s").
func Days(d time.Duration) string {
	const day = 24 * time.Hour
	if d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

// UseKind is what uses an image.
type UseKind string

// The kinds of things that use an image.
const (
	// UseInstance is an EC2 instance that is not terminated.
	UseInstance UseKind = "instance"
	// UseLaunchTemplate is a version of a launch template.
	UseLaunchTemplate UseKind = "launch template"
	// UseLaunchConfiguration is an Auto Scaling launch configuration.
	UseLaunchConfiguration UseKind = "launch configuration"
	// UseGroup is an Auto Scaling group (through its launch template,
	// launch configuration or mixed instances policy).
	UseGroup UseKind = "auto scaling group"
)

// Use is one thing that uses an image.
type Use struct {
	// Kind is what it is.
	Kind UseKind `json:"kind"`
	// ID is its id or name (i-…, lt-…, the group or configuration name).
	ID string `json:"id"`
	// Version is the launch template version ("" for other kinds).
	Version string `json:"version,omitempty"`
	// Region is where it is.
	Region string `json:"region"`
	// Image is the image it uses (an AMI id).
	Image string `json:"image"`
}

// String says what uses the image: "instance i-0abc in us-east-1".
func (u Use) String() string {
	s := string(u.Kind) + " " + u.ID
	if u.Version != "" {
		s += " version " + u.Version
	}
	if u.Region != "" {
		s += " in " + u.Region
	}
	return s
}

// Dependent is an image outside the plan (another recipe's or
// artifact's) baked from one of the plan's images: the plan keeps its
// base.
type Dependent struct {
	// Ref names it (RECIPE@VERSION).
	Ref catalog.Ref `json:"ref"`
	// BaseName and BaseDigest are what it was baked from (an AMI id, or
	// an image name and digest).
	BaseName   string `json:"base_name,omitempty"`
	BaseDigest string `json:"base_digest,omitempty"`
}

// Observed is what a plan is made from: every version of one artifact
// and what uses its images.
type Observed struct {
	// Recipe and Artifact name the artifact.
	Recipe, Artifact string
	// Entries are its versions, each with every location.
	Entries []catalog.Entry
	// InUse maps an image id (AMI id or digest) to what uses it.
	InUse map[string][]Use
	// Dependents are the images outside the plan baked from its images.
	Dependents []Dependent
	// Orphans are pieces of its versions left without an image: the
	// snapshots of an AMI deregistered by a run stopped before it
	// deleted them.
	Orphans []Orphan
}

// OrphanMinAge is how old an orphan must be before a plan removes it: a
// snapshot appears a moment before the AMI that names it (a bake or a
// copy in progress), so a younger one is left for a later run.
const OrphanMinAge = time.Hour

// Orphan is a piece of a version that no image names any more.
type Orphan struct {
	// Ref is the version its tags name.
	Ref catalog.Ref `json:"ref"`
	// Kind is what it is ("snapshot").
	Kind string `json:"kind"`
	// Where and ID locate it.
	Where string `json:"where"`
	ID    string `json:"id"`
	// Created is when it was made.
	Created time.Time `json:"created"`
	// GiB is its size.
	GiB int64 `json:"gib"`
	// Reason says why it is an orphan.
	Reason string `json:"reason"`
}

// Decision is what the plan does with one version.
type Decision struct {
	// Ref is RECIPE@VERSION.
	Ref catalog.Ref `json:"ref"`
	// Artifact is the artifact block.
	Artifact string `json:"artifact"`
	// Kind is the kind of image.
	Kind catalog.Kind `json:"kind"`
	// Created is the bake time.
	Created time.Time `json:"created"`
	// Keep is true when the version is kept.
	Keep bool `json:"keep"`
	// Reasons are every reason that keeps the version, or, for a version
	// removed, why no rule keeps it.
	Reasons []string `json:"reasons"`
	// Locations are every place the version is: all go, or none.
	Locations []catalog.Location `json:"locations"`
	// Uses are what used the version's images when observed.
	Uses []Use `json:"uses,omitempty"`
	// Entry is the catalog entry the decision is about.
	Entry catalog.Entry `json:"-"`
}

// Plan is the decision on every version of an artifact.
type Plan struct {
	// Recipe and Artifact name the artifact.
	Recipe   string `json:"recipe"`
	Artifact string `json:"artifact"`
	// Policy is the policy applied.
	Policy Policy `json:"policy"`
	// Now is the time the plan was made for.
	Now time.Time `json:"now"`
	// Decisions are one per version, newest first.
	Decisions []Decision `json:"decisions"`
	// Orphans are the orphans at least OrphanMinAge old, removed with the
	// versions.
	Orphans []Orphan `json:"orphans"`
}

// Remove returns the decisions to remove, newest first.
func (p *Plan) Remove() []Decision {
	var out []Decision
	for _, d := range p.Decisions {
		if !d.Keep {
			out = append(out, d)
		}
	}
	return out
}

// MakePlan decides, for every version of o, keep or remove, with every
// reason that applies. It is a pure function of o, p and now: it
// calls nothing and reads no clock.
func MakePlan(o Observed, p Policy, now time.Time) *Plan {
	entries := slices.Clone(o.Entries)
	// Newest first: by bake time, then version.
	slices.SortStableFunc(entries, func(a, b catalog.Entry) int {
		return cmp.Or(b.Created.Compare(a.Created), catalog.CompareVersions(b.Version, a.Version), strings.Compare(b.Version, a.Version))
	})
	reasons := make([][]string, len(entries))
	add := func(i int, r string) {
		if !slices.Contains(reasons[i], r) {
			reasons[i] = append(reasons[i], r)
		}
	}
	uses := make([][]Use, len(entries))
	live := 0
	for i, e := range entries {
		for _, st := range slices.Sorted(maps.Keys(e.Stages)) {
			add(i, "in "+st)
		}
		for _, l := range e.Locations {
			for _, u := range o.InUse[l.ID] {
				uses[i] = append(uses[i], u)
				add(i, "in use by "+u.String())
			}
		}
		if e.Revoked {
			at, ok := revokedAt(e)
			switch {
			case !ok:
				add(i, "revoked at a time the catalog does not hold")
			case now.Sub(at) <= p.KeepRevoked:
				add(i, "revoked within "+Days(p.KeepRevoked))
			}
			continue
		}
		if live < p.KeepLast {
			add(i, fmt.Sprintf("newest %d", p.KeepLast))
		}
		live++
		if p.KeepWithin > 0 && now.Sub(e.Created) <= p.KeepWithin {
			add(i, "baked within "+Days(p.KeepWithin))
		}
	}
	for stage, idx := range rollbackTargets(entries, p.KeepPrevious) {
		for _, i := range idx {
			add(i, "rollback target of "+stage)
		}
	}
	for _, dep := range o.Dependents {
		for i, e := range entries {
			if isBaseOf(e, dep.BaseName, dep.BaseDigest) {
				add(i, "base of "+dep.Ref.String())
			}
		}
	}
	// Lineage: the base of a kept version is kept, and so on down.
	for changed := true; changed; {
		changed = false
		for k, kept := range entries {
			if len(reasons[k]) == 0 {
				continue
			}
			for i, e := range entries {
				if i == k || !isBaseOf(e, kept.BaseName, kept.BaseDigest) {
					continue
				}
				r := "base of kept " + kept.Ref.String()
				if !slices.Contains(reasons[i], r) {
					add(i, r)
					changed = true
				}
			}
		}
	}
	plan := &Plan{Recipe: o.Recipe, Artifact: o.Artifact, Policy: p, Now: now, Decisions: make([]Decision, len(entries)), Orphans: []Orphan{}}
	for _, orphan := range o.Orphans {
		if now.Sub(orphan.Created) >= OrphanMinAge {
			plan.Orphans = append(plan.Orphans, orphan)
		}
	}
	for i, e := range entries {
		d := Decision{Ref: e.Ref, Artifact: e.Artifact, Kind: e.Kind, Created: e.Created, Keep: len(reasons[i]) > 0,
			Reasons: reasons[i], Locations: slices.Clone(e.Locations), Uses: uses[i], Entry: e}
		if !d.Keep {
			d.Reasons = removeReasons(e, p, now)
		}
		if d.Locations == nil {
			d.Locations = []catalog.Location{}
		}
		plan.Decisions[i] = d
	}
	return plan
}

// removeReasons says why no rule keeps e.
func removeReasons(e catalog.Entry, p Policy, now time.Time) []string {
	if e.Revoked {
		at, _ := revokedAt(e)
		return []string{fmt.Sprintf("revoked %s ago (kept %s)", Days(now.Sub(at).Truncate(time.Hour)), Days(p.KeepRevoked))}
	}
	out := []string{fmt.Sprintf("not among the newest %d", p.KeepLast)}
	if p.KeepWithin > 0 {
		out = append(out, fmt.Sprintf("baked %s ago (kept %s)", Days(now.Sub(e.Created).Truncate(time.Hour)), Days(p.KeepWithin)))
	}
	return append(out, "in no stage, unused, no rollback target, the base of no kept image")
}

// revokedAt returns the time of e's newest revocation event.
func revokedAt(e catalog.Entry) (time.Time, bool) {
	var at time.Time
	for _, ev := range e.Events {
		if ev.Action == catalog.ActionRevoke && ev.Time.After(at) {
			at = ev.Time
		}
	}
	return at, !at.IsZero()
}

// rollbackTargets returns, per stage, the indexes of the keep versions
// most recently promoted into it (by their promotion events) that are not
// in it now and not revoked.
func rollbackTargets(entries []catalog.Entry, keep int) map[string][]int {
	type entered struct {
		at time.Time
		i  int
	}
	last := map[string]map[int]time.Time{}
	for i, e := range entries {
		for _, ev := range e.Events {
			if ev.Action != catalog.ActionPromote || ev.Stage == "" {
				continue
			}
			if last[ev.Stage] == nil {
				last[ev.Stage] = map[int]time.Time{}
			}
			if ev.Time.After(last[ev.Stage][i]) {
				last[ev.Stage][i] = ev.Time
			}
		}
	}
	out := map[string][]int{}
	for stage, byIndex := range last {
		var cands []entered
		for i, at := range byIndex {
			if _, in := entries[i].Stages[stage]; in || entries[i].Revoked {
				continue
			}
			cands = append(cands, entered{at, i})
		}
		slices.SortFunc(cands, func(a, b entered) int { return cmp.Or(b.at.Compare(a.at), cmp.Compare(a.i, b.i)) })
		for _, c := range cands[:min(keep, len(cands))] {
			out[stage] = append(out[stage], c.i)
		}
	}
	return out
}

// isBaseOf reports whether e is the image named by baseName (an AMI id
// or a reference ending in @DIGEST) or baseDigest: one of its locations.
func isBaseOf(e catalog.Entry, baseName, baseDigest string) bool {
	if baseName == "" && baseDigest == "" {
		return false
	}
	for _, l := range e.Locations {
		if l.ID == "" {
			continue
		}
		if l.ID == baseName || l.ID == baseDigest || strings.HasSuffix(baseName, "@"+l.ID) {
			return true
		}
	}
	return e.Digest != "" && e.Digest == baseDigest
}
