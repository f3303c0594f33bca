package promote

import (
	"slices"
	"sort"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// ArtifactState is one artifact of a version in a status report.
type ArtifactState struct {
	// Kind is the kind of image; Name is the block label.
	Kind catalog.Kind `json:"kind"`
	Name string       `json:"name"`
	// Reference is the image (registry ref, layout ref or build-region
	// AMI id); "ref" in JSON, as in a bake's result.
	Reference string `json:"ref"`
	// Digest is the container image digest.
	Digest string `json:"digest,omitempty"`
	// Locations are where it is (region → AMI id, repository → digest).
	Locations []catalog.Location `json:"locations"`
	// BaseName and BaseDigest are what it was baked from: the base
	// image's name and digest (container), or the source AMI id
	// (machine image, in BaseName). The dashboard draws lineage from them.
	BaseName   string `json:"base_name,omitempty"`
	BaseDigest string `json:"base_digest,omitempty"`
}

// VersionStatus is one version of a recipe: the row of a status table.
type VersionStatus struct {
	// Version is the recipe version.
	Version string `json:"version"`
	// BakeKey is the bake key (of the first artifact).
	BakeKey string `json:"bake_key"`
	// Adopted is true when the version was adopted (bakery adopt: a
	// Packer AMI) rather than baked by bakery: its bake key is
	// catalog.BakeKeyUnknown.
	Adopted bool `json:"adopted"`
	// Created is when it was baked: the time of its bake event (a
	// container's config holds SOURCE_DATE_EPOCH, for reproducible
	// digests), else the image's creation time.
	Created time.Time `json:"created"`
	// Stages are the stages every artifact of the version is in.
	Stages map[string]catalog.StageEntry `json:"stages"`
	// Revoked and RevokeReason report a revocation.
	Revoked      bool   `json:"revoked"`
	RevokeReason string `json:"revoke_reason,omitempty"`
	// TaintedBy names revoked images this version was baked from
	// ("recipe@version"); a tainted image should be rebaked.
	TaintedBy []string `json:"tainted_by,omitempty"`
	// Forced maps each stage the version is in by a forced promotion
	// (--force: stage order or gates overridden) to that promotion.
	Forced map[string]ForcedPromotion `json:"forced,omitempty"`
	// Artifacts are the version's images.
	Artifacts []ArtifactState `json:"artifacts"`
}

// ForcedPromotion is a promotion that overrode stage order or gates
// (promote --force --reason), as its event records it.
type ForcedPromotion struct {
	// Time is when it happened; By is who forced it.
	Time time.Time `json:"time"`
	By   string    `json:"by"`
	// Reason is the reason given.
	Reason string `json:"reason"`
}

// RecipeStatus is the versions × stages view of one recipe.
type RecipeStatus struct {
	// Recipe is the recipe name; Stages its ordered stages.
	Recipe string   `json:"recipe"`
	Stages []string `json:"stages"`
	// Versions are newest first.
	Versions []VersionStatus `json:"versions"`
}

// Status builds the status of a recipe from its artifacts' entries.
// revoked lists every revoked image known (from all recipes loaded), so
// images baked from one of them are reported as tainted.
func Status(recipe string, stages []string, arts []*Artifact, revoked []RevokedImage) RecipeStatus {
	rs := RecipeStatus{Recipe: recipe, Stages: stages, Versions: []VersionStatus{}}
	type held struct {
		a *Artifact
		e catalog.Entry
	}
	byVersion := map[string][]held{}
	var order []string
	for _, a := range arts {
		for _, e := range a.Entries {
			if _, ok := byVersion[e.Version]; !ok {
				order = append(order, e.Version)
			}
			byVersion[e.Version] = append(byVersion[e.Version], held{a, e})
		}
	}
	for _, ver := range order {
		hs := byVersion[ver]
		es := make([]catalog.Entry, len(hs))
		for i, h := range hs {
			es[i] = h.e
		}
		v := VersionStatus{Version: ver, BakeKey: es[0].BakeKey, Stages: map[string]catalog.StageEntry{}}
		// A version is in a stage when every artifact is; it is entered
		// when the last artifact entered.
		if len(es) == len(arts) {
			for s, se := range es[0].Stages {
				v.Stages[s] = se
			}
			for _, e := range es[1:] {
				for s, se := range v.Stages {
					other, in := e.Stages[s]
					switch {
					case !in:
						delete(v.Stages, s)
					case other.Since.After(se.Since):
						other.Unfinished = other.Unfinished || se.Unfinished
						v.Stages[s] = other
					case other.Unfinished:
						se.Unfinished = true
						v.Stages[s] = se
					}
				}
			}
		}
		for i, e := range es {
			a := hs[i].a
			if t := bakedAt(e); t.After(v.Created) {
				v.Created = t
			}
			if e.Revoked {
				v.Revoked, v.RevokeReason = true, e.RevokeReason
			}
			if catalog.Adopted(e.BakeKey) {
				v.Adopted = true
			}
			for _, r := range revoked {
				if r.baseOf(e) && !slices.Contains(v.TaintedBy, r.Name) {
					v.TaintedBy = append(v.TaintedBy, r.Name)
				}
			}
			v.Artifacts = append(v.Artifacts, ArtifactState{Kind: a.Kind, Name: a.Name, Reference: e.Reference, Digest: e.Digest, Locations: e.Locations,
				BaseName: e.BaseName, BaseDigest: e.BaseDigest})
		}
		v.Forced = forcedInto(v.Stages, es)
		rs.Versions = append(rs.Versions, v)
	}
	sort.SliceStable(rs.Versions, func(i, j int) bool {
		a, b := rs.Versions[i], rs.Versions[j]
		if c := catalog.CompareVersions(a.Version, b.Version); c != 0 {
			return c > 0
		}
		return a.Created.After(b.Created)
	})
	return rs
}

// forcedInto returns, for each of stages, the promotion that put the
// version there when it was forced: of the artifacts' promote events into
// the stage, the newest (the one that holds it) is forced. Nil when none
// is.
func forcedInto(stages map[string]catalog.StageEntry, es []catalog.Entry) map[string]ForcedPromotion {
	var out map[string]ForcedPromotion
	for stage := range stages {
		var newest *catalog.Event
		for _, e := range es {
			for i := range e.Events {
				ev := &e.Events[i]
				if ev.Action == catalog.ActionPromote && ev.Stage == stage && (newest == nil || !ev.Time.Before(newest.Time)) {
					newest = ev
				}
			}
		}
		if newest != nil && newest.Forced {
			if out == nil {
				out = map[string]ForcedPromotion{}
			}
			out[stage] = ForcedPromotion{Time: newest.Time, By: newest.Actor, Reason: newest.Reason}
		}
	}
	return out
}

// bakedAt is when e was baked: its newest bake event, else its creation
// time.
func bakedAt(e catalog.Entry) time.Time {
	var t time.Time
	for _, ev := range e.Events {
		if ev.Action == catalog.ActionBake && ev.Time.After(t) {
			t = ev.Time
		}
	}
	if t.IsZero() {
		return e.Created
	}
	return t
}

// RevokedImage is a revoked image other images may have been baked from.
type RevokedImage struct {
	// Name is "recipe@version".
	Name string
	// IDs are its digests and AMI ids (every location).
	IDs []string
}

// baseOf reports whether e was baked from r.
func (r RevokedImage) baseOf(e catalog.Entry) bool {
	return e.BaseDigest != "" && slices.Contains(r.IDs, e.BaseDigest) ||
		e.BaseName != "" && slices.Contains(r.IDs, e.BaseName)
}

// Revoked lists the revoked images among arts, for Status.
func Revoked(recipe string, arts []*Artifact) []RevokedImage {
	var out []RevokedImage
	for _, a := range arts {
		for _, e := range a.Entries {
			if !e.Revoked {
				continue
			}
			r := RevokedImage{Name: recipe + "@" + e.Version}
			if e.Digest != "" {
				r.IDs = append(r.IDs, e.Digest)
			}
			for _, l := range e.Locations {
				r.IDs = append(r.IDs, l.ID)
			}
			out = append(out, r)
		}
	}
	return out
}

// History merges every artifact's events, newest first.
func History(arts []*Artifact) []catalog.Event {
	var evs []catalog.Event
	for _, a := range arts {
		for _, e := range a.Entries {
			for _, ev := range e.Events {
				if ev.Artifact == "" {
					ev.Artifact = a.Name
				}
				if ev.Kind == "" {
					ev.Kind = a.Kind
				}
				if ev.Version == "" {
					ev.Version = e.Version
				}
				evs = append(evs, ev)
			}
		}
	}
	newestFirst(evs)
	return evs
}

// newestFirst sorts evs newest first.
func newestFirst(evs []catalog.Event) {
	sort.SliceStable(evs, func(i, j int) bool {
		if !evs[i].Time.Equal(evs[j].Time) {
			return evs[i].Time.After(evs[j].Time)
		}
		// Same instant (AMI tags keep whole seconds): newer version first.
		return catalog.CompareVersions(evs[i].Version, evs[j].Version) > 0
	})
}

// SameEventWindow is how far apart in time two records of one event may
// be and still be taken for the same by MergeHistory.
const SameEventWindow = time.Microsecond

// sameEvent reports whether a and b record the same event: the same
// action, stage, version and artifact, at most SameEventWindow apart.
func sameEvent(a, b catalog.Event) bool {
	d := a.Time.Sub(b.Time)
	return a.Action == b.Action && a.Stage == b.Stage && a.Version == b.Version && a.Artifact == b.Artifact &&
		d <= SameEventWindow && d >= -SameEventWindow
}

// MergeHistory merges the history read from the images (History) with
// the ledger's, newest first. An event both hold (see SameEventWindow) is
// listed once, as the ledger has it: whole, where a tag cuts a long
// reason. The ledger's events of images that are gone, and those pruned
// from the images, are listed too.
func MergeHistory(images, ledger []catalog.Event) []catalog.Event {
	type id struct{ action, stage, version, artifact string }
	out := slices.Clone(images)
	at := map[id][]int{}
	for i, ev := range out {
		k := id{ev.Action, ev.Stage, ev.Version, ev.Artifact}
		at[k] = append(at[k], i)
	}
	matched := make([]bool, len(out))
	for _, ev := range ledger {
		k := id{ev.Action, ev.Stage, ev.Version, ev.Artifact}
		dup := false
		for _, i := range at[k] {
			if !matched[i] && sameEvent(out[i], ev) {
				out[i], matched[i], dup = ev, true, true
				break
			}
		}
		if !dup {
			out = append(out, ev)
		}
	}
	newestFirst(out)
	return out
}

// Pruned is how many older events the images of arts no longer hold
// (catalog.Lifecycle.Pruned, summed over every artifact's versions).
func Pruned(arts []*Artifact) int {
	n := 0
	for _, a := range arts {
		for _, e := range a.Entries {
			n += e.Pruned
		}
	}
	return n
}
