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
	// deleted them, the AMIs of a promotion's copy that never finished,
	// layout blobs no manifest references.
	Orphans []Orphan
	// Shares maps an AMI id to the accounts, other than its owner, that
	// may launch it (its launch permissions). AMIs.Observe fills in the
	// stage accounts only, the ones MakePlan asks about.
	Shares map[string][]string
	// StageAccounts maps a stage to the accounts its images are shared
	// with (the stage's accounts). An AMI shared with one of them is in
	// use there while it is the stage's current or previous version.
	StageAccounts map[string][]string
}

// OrphanMinAge is how old an orphan must be before a plan removes it: a
// snapshot appears a moment before the AMI that names it (a bake or a
// copy in progress), so a younger one is left for a later run.
const OrphanMinAge = time.Hour

// The kinds of orphans.
const (
	// OrphanSnapshot is a bakery snapshot no AMI names.
	OrphanSnapshot = "snapshot"
	// OrphanAMI is the AMI of a promotion's copy that never finished.
	OrphanAMI = "ami"
	// OrphanBlob is a blob of the local layout no manifest references.
	OrphanBlob = "blob"
)

// OrphanBlobMinAge is how old an unreferenced blob of a layout must be
// before a plan removes it: a bake writes its blobs before it commits
// index.json, and a long bake's may wait that long; a younger one is
// left for a later run.
const OrphanBlobMinAge = 24 * time.Hour

// Orphan is a piece of a version that no image names any more.
type Orphan struct {
	// Ref is the version its tags name.
	Ref catalog.Ref `json:"ref"`
	// Artifact is the artifact block it belongs to.
	Artifact string `json:"artifact,omitempty"`
	// Kind is what it is (OrphanSnapshot, OrphanAMI, OrphanBlob).
	Kind string `json:"kind"`
	// Where and ID locate it.
	Where string `json:"where"`
	ID    string `json:"id"`
	// Created is when it was made.
	Created time.Time `json:"created"`
	// GiB is its size (of a snapshot).
	GiB int64 `json:"gib"`
	// Bytes is its size (of a blob).
	Bytes int64 `json:"bytes,omitempty"`
	// State is an AMI's state ("pending", "available", "failed").
	State string `json:"state,omitempty"`
	// Snapshots are an AMI's snapshots, deleted with it.
	Snapshots []string `json:"snapshots,omitempty"`
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
	// Artifacts are the version's images, one per artifact (a recipe
	// with a machine_image and a container block has two), with the
	// locations of each: the decision is theirs together.
	Artifacts []Part `json:"artifacts"`
	// Entry is the first of Entries.
	Entry catalog.Entry `json:"-"`
	// Entries are the catalog entries of the version, one per artifact.
	Entries []catalog.Entry `json:"-"`
}

// Part is one artifact's image of a version.
type Part struct {
	// Artifact is the artifact block.
	Artifact string `json:"artifact"`
	// Kind is the kind of image.
	Kind catalog.Kind `json:"kind"`
	// Locations are where this image is.
	Locations []catalog.Location `json:"locations"`
}

// EntryOf returns the entry of artifact's image of the version.
func (d Decision) EntryOf(kind catalog.Kind, artifact string) (catalog.Entry, bool) {
	for _, e := range d.Entries {
		if e.Kind == kind && e.Artifact == artifact {
			return e, true
		}
	}
	if len(d.Entries) == 0 && d.Entry.Kind == kind && d.Entry.Artifact == artifact {
		return d.Entry, true
	}
	return catalog.Entry{}, false
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
//
// The entries of one version (a recipe version with a machine image and
// a container image: an entry per artifact) are one unit, decided once:
// a reason of any of them keeps them all, and the decision lists the
// locations of every one. The unit's bake time, for keep_last and
// keep_within, is its newest entry's; it counts as revoked only when
// every entry is.
func MakePlan(o Observed, p Policy, now time.Time) *Plan {
	units := unitsOf(o.Entries)
	reasons := make([][]string, len(units))
	add := func(i int, r string) {
		if !slices.Contains(reasons[i], r) {
			reasons[i] = append(reasons[i], r)
		}
	}
	uses := make([][]Use, len(units))
	live := 0
	for i, u := range units {
		for _, st := range slices.Sorted(maps.Keys(u.Stages)) {
			add(i, "in "+st)
		}
		for _, l := range u.Locations {
			for _, us := range o.InUse[l.ID] {
				uses[i] = append(uses[i], us)
				add(i, "in use by "+us.String())
			}
		}
		if u.Revoked {
			at, ok := revokedAt(u.Entry)
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
		if p.KeepWithin > 0 && now.Sub(u.Created) <= p.KeepWithin {
			add(i, "baked within "+Days(p.KeepWithin))
		}
	}
	merged := make([]catalog.Entry, len(units))
	for i, u := range units {
		merged[i] = u.Entry
	}
	for stage, idx := range rollbackTargets(merged, p.KeepPrevious) {
		for _, i := range idx {
			add(i, "rollback target of "+stage)
		}
	}
	for _, sh := range sharedInUse(merged, o.Shares, o.StageAccounts) {
		add(sh.i, sh.reason)
	}
	for _, dep := range o.Dependents {
		for i, u := range units {
			if u.isBaseOf(dep.BaseName, dep.BaseDigest) {
				add(i, "base of "+dep.Ref.String())
			}
		}
	}
	// Lineage: the base of a kept version is kept, and so on down.
	for changed := true; changed; {
		changed = false
		for k, kept := range units {
			if len(reasons[k]) == 0 {
				continue
			}
			for _, b := range kept.bases {
				for i, u := range units {
					if i == k || !u.isBaseOf(b.name, b.digest) {
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
	}
	plan := &Plan{Recipe: o.Recipe, Artifact: o.Artifact, Policy: p, Now: now, Decisions: make([]Decision, len(units)), Orphans: []Orphan{}}
	for _, orphan := range o.Orphans {
		minAge := OrphanMinAge
		switch {
		case orphan.Kind == OrphanAMI && orphan.State == "pending":
			minAge = PendingCopyMaxAge
		case orphan.Kind == OrphanBlob:
			minAge = OrphanBlobMinAge
		}
		if now.Sub(orphan.Created) >= minAge {
			plan.Orphans = append(plan.Orphans, orphan)
		}
	}
	for i, u := range units {
		d := Decision{Ref: u.Ref, Artifact: u.Artifact, Kind: u.Kind, Created: u.Created, Keep: len(reasons[i]) > 0,
			Reasons: reasons[i], Locations: slices.Clone(u.Locations), Uses: uses[i], Entry: u.parts[0], Entries: u.parts}
		for _, e := range u.parts {
			d.Artifacts = append(d.Artifacts, Part{Artifact: e.Artifact, Kind: e.Kind, Locations: slices.Clone(e.Locations)})
		}
		if !d.Keep {
			d.Reasons = removeReasons(u.Entry, p, now)
		}
		if d.Locations == nil {
			d.Locations = []catalog.Location{}
		}
		plan.Decisions[i] = d
	}
	return plan
}

// base is an image a version was baked from.
type base struct{ name, digest string }

// unit is one version: the entries of its artifacts, and Entry, their
// merge (stages, locations and events of all, the newest bake time,
// revoked when all are).
type unit struct {
	catalog.Entry
	parts []catalog.Entry
	bases []base
}

// isBaseOf reports whether one of u's entries is the image named by
// baseName or baseDigest.
func (u unit) isBaseOf(baseName, baseDigest string) bool {
	for _, e := range u.parts {
		if isBaseOf(e, baseName, baseDigest) {
			return true
		}
	}
	return false
}

// unitsOf groups entries by version, newest first (by bake time, then
// version), the entries of a version by artifact.
func unitsOf(entries []catalog.Entry) []unit {
	byVersion := map[string]*unit{}
	var order []string
	for _, e := range entries {
		u := byVersion[e.Version]
		if u == nil {
			u = &unit{}
			byVersion[e.Version] = u
			order = append(order, e.Version)
		}
		u.parts = append(u.parts, e)
	}
	out := make([]unit, 0, len(order))
	for _, v := range order {
		u := byVersion[v]
		slices.SortStableFunc(u.parts, func(a, b catalog.Entry) int {
			return cmp.Or(strings.Compare(string(a.Kind), string(b.Kind)), strings.Compare(a.Artifact, b.Artifact))
		})
		m := u.parts[0]
		m.Stages = map[string]catalog.StageEntry{}
		m.Locations, m.Events = nil, nil
		m.Revoked = true
		var artifacts []string
		for _, e := range u.parts {
			artifacts = append(artifacts, e.Artifact)
			if e.Created.After(m.Created) {
				m.Created = e.Created
			}
			maps.Copy(m.Stages, e.Stages)
			m.Locations = append(m.Locations, e.Locations...)
			m.Events = append(m.Events, e.Events...)
			m.Revoked = m.Revoked && e.Revoked
			if e.BaseName != "" || e.BaseDigest != "" {
				u.bases = append(u.bases, base{e.BaseName, e.BaseDigest})
			}
		}
		m.Artifact = strings.Join(dedupe(artifacts), ",")
		if !m.Revoked {
			// A version some of whose images are not revoked is not: only
			// the revocations of the revoked ones would date it.
			m.Events = slices.DeleteFunc(m.Events, func(ev catalog.Event) bool { return ev.Action == catalog.ActionRevoke })
		}
		slices.SortStableFunc(m.Events, func(a, b catalog.Event) int { return a.Time.Compare(b.Time) })
		u.Entry = m
		out = append(out, *u)
	}
	slices.SortStableFunc(out, func(a, b unit) int {
		return cmp.Or(b.Created.Compare(a.Created), catalog.CompareVersions(b.Version, a.Version), strings.Compare(b.Version, a.Version))
	})
	return out
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

// shared is a version kept because a stage account may launch it.
type shared struct {
	i      int
	reason string
}

// sharedInUse returns the versions of entries (newest first) an account
// of a stage may launch (shares) while they are the stage's current
// version or its previous one: the version most recently promoted into
// the stage that is not in it now, revoked or not (a revoked AMI still
// shared can still be launched there).
func sharedInUse(entries []catalog.Entry, shares, stageAccounts map[string][]string) []shared {
	var out []shared
	for _, stage := range slices.Sorted(maps.Keys(stageAccounts)) {
		accounts := stageAccounts[stage]
		if len(accounts) == 0 {
			continue
		}
		prev, prevAt := -1, time.Time{}
		for i, e := range entries {
			if _, in := e.Stages[stage]; in {
				continue
			}
			for _, ev := range e.Events {
				if ev.Action == catalog.ActionPromote && ev.Stage == stage && ev.Time.After(prevAt) {
					prev, prevAt = i, ev.Time
				}
			}
		}
		for i, e := range entries {
			role := ""
			if _, in := e.Stages[stage]; in {
				role = "current"
			} else if i == prev {
				role = "previous"
			} else {
				continue
			}
			var with []string
			for _, l := range e.Locations {
				for _, a := range shares[l.ID] {
					if slices.Contains(accounts, a) {
						with = append(with, a)
					}
				}
			}
			for _, a := range dedupe(slices.Sorted(slices.Values(with))) {
				out = append(out, shared{i, fmt.Sprintf("shared with %s account %s (%s)", stage, a, role)})
			}
		}
	}
	return out
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
