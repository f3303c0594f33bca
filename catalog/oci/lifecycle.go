package oci

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// How lifecycle events are stored. An event is a tiny OCI 1.1 artifact
// manifest whose subject is the image: artifactType EventArtifactType, the
// empty config, the empty descriptor as its only layer, and the event in
// its annotations (AnnotationEvent*). Registries list an image's events with
// the referrers API (or the referrers fallback tag); a layout lists them in
// its history file (bakery-history.json, an OCI index beside index.json;
// see Layout.History), with AnnotationSubject naming the image.
const (
	// EventArtifactType is the artifactType of an event manifest.
	EventArtifactType = "application/vnd.dev.bakery.event.v1+json"
	// AnnotationSubject is, on an event's descriptor in a layout's
	// history file, the digest of the image the event is about.
	AnnotationSubject = "dev.bakery.subject"
	// AnnotationEventAction is the event's action (catalog.Action*).
	AnnotationEventAction = "dev.bakery.event.action"
	// AnnotationEventStage is the stage entered or left.
	AnnotationEventStage = "dev.bakery.event.stage"
	// AnnotationEventActor is who did it.
	AnnotationEventActor = "dev.bakery.event.actor"
	// AnnotationEventReason is the reason given.
	AnnotationEventReason = "dev.bakery.event.reason"
	// AnnotationEventTime is when it happened (RFC 3339 with nanoseconds, UTC).
	AnnotationEventTime = "dev.bakery.event.time"
	// AnnotationEventForced is "true" when gates were overridden.
	AnnotationEventForced = "dev.bakery.event.forced"
	// AnnotationEventApprovedBy is who approved a gated promotion.
	AnnotationEventApprovedBy = "dev.bakery.event.approved-by"
	// AnnotationEventUnverified is "true" when the actor is a name nobody
	// checked (catalog.Event.Unverified).
	AnnotationEventUnverified = "dev.bakery.event.unverified"
	// AnnotationEventRepository is, on a promote event, the registry
	// repository holding the stage tag when it is not the image's own.
	AnnotationEventRepository = "dev.bakery.event.repository"
)

// emptyJSON is the content of the OCI empty descriptor.
const emptyJSON = "{}"

// ErrSuperseded is returned, wrapped, by Promote when the promotion was
// recorded but another version's newer promotion into the same stage holds
// the stage: the newest promotion wins.
var ErrSuperseded = catalog.ErrSuperseded

// stageRE is what a stage name must look like to be a tag; "sha256-" tags
// are the referrers fallback scheme's.
var stageRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// event is a stored catalog.Event with what only the stores need.
type event struct {
	catalog.Event
	// Repository is, for a promote, the registry repository holding the
	// stage tag; empty means the image's own.
	Repository string
	// Digest is the event manifest's digest; zero for a synthesized event.
	Digest v1.Hash
}

// key identifies an event among one image's events: two writes of the
// same (action, stage, time) are one event.
func (e event) key() string {
	return e.Action + "\x00" + e.Stage + "\x00" + e.Time.UTC().Format(time.RFC3339Nano)
}

// annotations encodes the event; empty fields are left out.
func (e event) annotations() map[string]string {
	a := map[string]string{
		AnnotationEventAction: e.Action,
		AnnotationEventTime:   e.Time.UTC().Format(time.RFC3339Nano),
	}
	set := func(k, v string) {
		if v != "" {
			a[k] = v
		}
	}
	set(AnnotationEventStage, e.Stage)
	set(AnnotationEventActor, e.Actor)
	set(AnnotationEventReason, e.Reason)
	set(AnnotationEventApprovedBy, e.ApprovedBy)
	set(AnnotationEventRepository, e.Repository)
	if e.Forced {
		a[AnnotationEventForced] = "true"
	}
	if e.Unverified {
		a[AnnotationEventUnverified] = "true"
	}
	return a
}

// parseEvent decodes an event from a descriptor's annotations; ok is false
// when they are not a bakery event's.
func parseEvent(d v1.Descriptor) (event, bool) {
	a := d.Annotations
	if a[AnnotationEventAction] == "" {
		return event{}, false
	}
	// Registries report the manifest's artifactType or, like
	// go-containerregistry's own, the config media type.
	switch d.ArtifactType {
	case EventArtifactType, string(types.OCIEmptyJSON), "":
	default:
		return event{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, a[AnnotationEventTime])
	if err != nil {
		return event{}, false
	}
	forced, _ := strconv.ParseBool(a[AnnotationEventForced])
	unverified, _ := strconv.ParseBool(a[AnnotationEventUnverified])
	return event{
		Event: catalog.Event{
			Time:       t.UTC(),
			Action:     a[AnnotationEventAction],
			Stage:      a[AnnotationEventStage],
			Actor:      a[AnnotationEventActor],
			Reason:     a[AnnotationEventReason],
			Forced:     forced,
			ApprovedBy: a[AnnotationEventApprovedBy],
			Unverified: unverified,
		},
		Repository: a[AnnotationEventRepository],
		Digest:     d.Digest,
	}, true
}

// emptyDescriptor is the OCI empty descriptor ({}).
func emptyDescriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: types.OCIEmptyJSON, Digest: hashOfBytes([]byte(emptyJSON)), Size: int64(len(emptyJSON))}
}

func hashOfBytes(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

// eventManifest returns the manifest recording e about subject, and its
// descriptor. The bytes depend on the event only, so two processes
// recording the same event write the same manifest.
func eventManifest(subject v1.Descriptor, e event) ([]byte, v1.Descriptor, error) {
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  EventArtifactType,
		Config:        emptyDescriptor(),
		Layers:        []v1.Descriptor{emptyDescriptor()},
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations:   e.annotations(),
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("encoding %s event: %w", e.Action, err)
	}
	return raw, v1.Descriptor{
		MediaType:    types.OCIManifestSchema1,
		ArtifactType: EventArtifactType,
		Digest:       hashOfBytes(raw),
		Size:         int64(len(raw)),
	}, nil
}

// rawManifest is a manifest to PUT as it is (remote.Taggable).
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// version is one version of the artifact as stored: its manifest and its
// stored events.
type version struct {
	image  catalog.Image
	desc   v1.Descriptor // the manifest's media type, digest and size
	raw    []byte        // the manifest
	events []event       // stored events, oldest first
}

// has reports whether the version has an event with key k.
func (v *version) has(k string) bool {
	return slices.ContainsFunc(v.events, func(e event) bool { return e.key() == k })
}

// add records e in memory, keeping the events in order.
func (v *version) add(e event) {
	v.events = append(v.events, e)
	sortEvents(v.events)
}

// live returns the version's newest promote into stage unless a demote from
// that stage or a revocation happened since (at the same time or later):
// the promotion that still claims the stage. Nil if there is none.
func (v *version) live(stage string) *event {
	p := v.newestPromote(stage)
	if p == nil {
		return nil
	}
	for _, e := range v.events {
		left := e.Action == catalog.ActionRevoke || (e.Action == catalog.ActionDemote && e.Stage == stage)
		if left && !e.Time.Before(p.Time) {
			return nil
		}
	}
	return p
}

// newestPromote returns the version's newest promote into stage, or nil.
func (v *version) newestPromote(stage string) *event {
	var p *event
	for i := range v.events {
		e := &v.events[i]
		if e.Action == catalog.ActionPromote && e.Stage == stage && (p == nil || !e.Time.Before(p.Time)) {
			p = e
		}
	}
	return p
}

// revoked reports whether the latest revoke or unrevoke is a revoke, and
// that revoke's reason.
func (v *version) revoked() (bool, string) {
	var last *event
	for i := range v.events {
		e := &v.events[i]
		if (e.Action == catalog.ActionRevoke || e.Action == catalog.ActionUnrevoke) && (last == nil || !e.Time.Before(last.Time)) {
			last = e
		}
	}
	if last == nil || last.Action != catalog.ActionRevoke {
		return false, ""
	}
	return true, last.Reason
}

// ref names the version for messages: RECIPE@VERSION.
func (v *version) ref() string { return v.image.Ref.String() }

// lifecycle is every version of one artifact with its events.
type lifecycle struct {
	versions []*version // oldest first
}

// find returns the version e names, checking that it is still the image e
// was read as.
func (lc *lifecycle) find(e catalog.Entry, where string) (*version, error) {
	for _, v := range lc.versions {
		if v.image.Version != e.Version {
			continue
		}
		if e.Digest != "" && e.Digest != v.desc.Digest.String() {
			return nil, fmt.Errorf("%s in %s is now %s, not %s as read: re-read the catalog (bakery status) and retry", v.ref(), where, v.desc.Digest, e.Digest)
		}
		return v, nil
	}
	return nil, fmt.Errorf("%s has no version %s: check the version (bakery status lists them)", where, e.Version)
}

// winner returns the version that holds stage, and its promote event: of
// the live promotions into stage (see version.live), the newest; equal
// times go to the greater manifest digest. Nil if no promotion is live.
func (lc *lifecycle) winner(stage string) (*version, *event) {
	var w *version
	var we *event
	for _, v := range lc.versions {
		p := v.live(stage)
		if p == nil {
			continue
		}
		if we == nil || p.Time.After(we.Time) || (p.Time.Equal(we.Time) && v.desc.Digest.String() > w.desc.Digest.String()) {
			w, we = v, p
		}
	}
	return w, we
}

// demotion is a demote event due on a version.
type demotion struct {
	v *version
	e event
}

// demotions returns the demote events owed by the versions other than w
// whose promotion into stage is still live: each lost the stage to w's
// promotion we. The event is a function of we (its time and actor, reason
// "replaced by VERSION"), so processes racing to record it record the
// same event.
func (lc *lifecycle) demotions(stage string, w *version, we *event) []demotion {
	var ds []demotion
	for _, v := range lc.versions {
		if v == w || v.live(stage) == nil {
			continue
		}
		e := event{Event: catalog.Event{
			Time: we.Time, Action: catalog.ActionDemote, Stage: stage,
			Actor: we.Actor, Reason: "replaced by " + w.image.Version,
		}}
		if !v.has(e.key()) {
			ds = append(ds, demotion{v, e})
		}
	}
	return ds
}

// stageRepos returns, for every stage some version was promoted into, the
// repository named by the newest promote into it ("" for the image's own):
// where that stage's tag lives now.
func (lc *lifecycle) stageRepos() map[string]string {
	newest := map[string]*event{}
	for _, v := range lc.versions {
		for i := range v.events {
			e := &v.events[i]
			if e.Action != catalog.ActionPromote {
				continue
			}
			if n := newest[e.Stage]; n == nil || !e.Time.Before(n.Time) {
				newest[e.Stage] = e
			}
		}
	}
	repos := make(map[string]string, len(newest))
	for s, e := range newest {
		repos[s] = e.Repository
	}
	return repos
}

// entry is the catalog entry of v, given which digest holds each stage
// and the places v is.
func (v *version) entry(holders map[string]v1.Hash, locations []catalog.Location) catalog.Entry {
	en := catalog.Entry{Image: v.image, Lifecycle: catalog.Lifecycle{
		Stages:    map[string]catalog.StageEntry{},
		Locations: locations,
	}}
	for stage, h := range holders {
		if h != v.desc.Digest {
			continue
		}
		var se catalog.StageEntry
		if p := v.newestPromote(stage); p != nil {
			se = catalog.StageEntry{Since: p.Time, By: p.Actor}
		}
		en.Stages[stage] = se
	}
	en.Revoked, en.RevokeReason = v.revoked()
	evs := make([]event, 0, len(v.events)+1)
	if !slices.ContainsFunc(v.events, func(e event) bool { return e.Action == catalog.ActionBake }) && !v.image.Created.IsZero() {
		evs = append(evs, event{Event: catalog.Event{Time: v.image.Created.UTC(), Action: catalog.ActionBake}})
	}
	evs = append(evs, v.events...)
	sortEvents(evs)
	en.Events = make([]catalog.Event, len(evs))
	for i, e := range evs {
		ce := e.Event
		ce.Recipe, ce.Version, ce.Artifact, ce.Kind = v.image.Recipe, v.image.Version, v.image.Artifact, v.image.Kind
		en.Events[i] = ce
	}
	return en
}

// sortEvents orders events oldest first; equal times by action and stage,
// so that the order does not depend on how the store listed them.
func sortEvents(evs []event) {
	slices.SortStableFunc(evs, func(a, b event) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.Action, b.Action), strings.Compare(a.Stage, b.Stage))
	})
}

// sortVersions orders versions oldest first: by creation time, then by
// version number.
func sortVersions(vs []*version) {
	slices.SortStableFunc(vs, func(a, b *version) int {
		return cmp.Or(a.image.Created.Compare(b.image.Created), catalog.CompareVersions(a.image.Version, b.image.Version))
	})
}

// checkEvent validates the event a Store method was given for action and
// returns it with the action (and, for promote, the stage) filled in.
func checkEvent(ev catalog.Event, action, stage string) (event, error) {
	switch {
	case ev.Action == "":
		ev.Action = action
	case ev.Action != action:
		return event{}, fmt.Errorf("the event's action is %q, not %q: pass the event of this action", ev.Action, action)
	}
	if ev.Time.IsZero() {
		return event{}, errors.New("the event has no time: set Event.Time from the caller's clock")
	}
	ev.Time = ev.Time.UTC()
	if action == catalog.ActionPromote {
		if !stageRE.MatchString(stage) || strings.HasPrefix(stage, "sha256-") {
			return event{}, fmt.Errorf("stage name %q cannot be a tag: use letters, digits, '.', '_' and '-' (at most 128, not starting with sha256-)", stage)
		}
		switch ev.Stage {
		case "":
			ev.Stage = stage
		case stage:
		default:
			return event{}, fmt.Errorf("the event is for stage %q, not %q: pass the event of this promotion", ev.Stage, stage)
		}
	} else {
		ev.Stage = ""
	}
	return event{Event: ev}, nil
}

// supersededError says that w's newer promotion holds the stage.
func supersededError(v, w *version, we *event) error {
	return fmt.Errorf("%w: %s was promoted to %s after this promotion (at %s by %s), so it holds the stage: promote %s again to take the stage back",
		ErrSuperseded, w.ref(), we.Stage, we.Time.Format(time.RFC3339), cmp.Or(we.Actor, "unknown"), v.image.Version)
}

// isBakeryManifest reports whether raw, a manifest or index, carries the
// annotations of recipe's artifact, and returns them.
func isBakeryManifest(raw []byte, recipe, artifact string) (map[string]string, bool) {
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return nil, false
	}
	a := m.Annotations
	ok := a[catalog.AnnotationRecipe] == recipe && a[catalog.AnnotationArtifact] == artifact && a[catalog.AnnotationVersion] != ""
	return a, ok
}
