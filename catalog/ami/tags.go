package ami

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bakery-sh/bakery/catalog"
)

// Lifecycle tag keys a LifecycleStore writes next to the bake's own
// catalog.Tag* keys.
//
// Stage marks and revocations are written on the AMI of every region the
// version is in and on those AMIs' snapshots, so that whatever looks at a
// single region, or at a snapshot alone (retire), sees them. Events are
// written on the AMIs only, of every region, so that any region tells the
// whole story; readers merge them by key.
const (
	// TagStagePrefix starts a stage mark: the tag StageTag(stage) says
	// the image is in stage. Its value is "<time> <actor>": the RFC 3339
	// UTC time (with nanoseconds) the image entered the stage and who
	// promoted it (spaces and % in the actor percent-escaped, "-" when
	// unknown, and an actor named just "-" written "%2D").
	TagStagePrefix = "bakery:stage:"
	// TagRevoked marks a revoked image. Its value is
	// "<time> <actor> <reason>", the reason unescaped to the end of the
	// value and cut with "…" to fit MaxTagValue.
	TagRevoked = "bakery:revoked"
	// TagRevokedAccess is, on a revoked AMI, the accounts (space
	// separated) whose launch permission the revocation took away, so
	// that lifting it gives them back.
	TagRevokedAccess = "bakery:revoked-access"
	// TagEventPrefix starts an event of the image's history: the tag
	// key is TagEventPrefix followed by the event's time in Unix
	// nanoseconds; the value is
	//
	//	v1;ACTION;STAGE;ACTOR;FLAGS;APPROVED-BY;REASON
	//
	// where FLAGS holds "f" for a forced event and "u" for an unverified
	// actor (catalog.Event.Unverified), empty otherwise, % and ;
	// in STAGE, ACTOR and APPROVED-BY are percent-escaped, and REASON
	// runs unescaped to the end of the value. A value longer than
	// MaxTagValue characters loses the end of its reason, replaced by
	// "…" (and, should the other fields alone not fit, the ends of the
	// actor and approver too). Recipe, version, artifact and kind are
	// those of the AMI the tag is on. The bake event is not stored: it is
	// made from catalog.TagCreated.
	TagEventPrefix = "bakery:event:"
	// TagAdopted marks an AMI bakery did not bake but adopted (bakery
	// adopt): its value is "<time> <actor> <reason>", as TagRevoked's,
	// the reason saying where the AMI came from (the Packer build and
	// run). It is written on the AMI and its snapshots with the bake
	// key catalog.BakeKeyUnknown; Entries turns it into the version's
	// adopt event, which is never pruned.
	TagAdopted = "bakery:adopted"
	// TagPruned counts the events pruned from the AMI to stay under
	// MaxTags (a decimal number); catalog.Lifecycle.Pruned reports it, so
	// history says that older events exist (in the ledger, when one is
	// configured).
	TagPruned = "bakery:pruned"
)

// EC2 tag limits a LifecycleStore keeps to.
const (
	// MaxTags is how many tags EC2 allows on one resource.
	MaxTags = catalog.MaxAMITags
	// MaxTagValue is the longest tag value EC2 allows, in characters.
	MaxTagValue = 256
	// MaxEvents is how many events a LifecycleStore keeps on one AMI: when
	// a new one comes, the oldest beyond MaxEvents are deleted. Fewer are
	// kept when the AMI's other tags (bakery's own, the recipe's, stage
	// marks) leave less room under MaxTags: those are never deleted to make
	// room for events, and tagReserve tags stay free.
	MaxEvents = 30
	// tagReserve is how many tags a LifecycleStore leaves free when it
	// prunes events, for writers working on the same AMI at the same time
	// (one more stage mark, one more event).
	tagReserve = catalog.AMIReservedTags
)

// maxKeyLen is the longest tag key EC2 allows, in characters.
const maxKeyLen = 128

// StageTag is the tag key that marks an image as in stage.
func StageTag(stage string) string { return TagStagePrefix + stage }

// checkStage reports whether stage can be part of a tag key.
func checkStage(stage string) error {
	switch {
	case stage == "":
		return errors.New("the stage name is empty: name a stage of the recipe")
	case utf8.RuneCountInString(StageTag(stage)) > maxKeyLen:
		return fmt.Errorf("the stage name %q is too long for an EC2 tag key: use at most %d characters", stage, maxKeyLen-len(TagStagePrefix))
	case strings.ContainsAny(stage, " \t\r\n"):
		return fmt.Errorf("the stage name %q contains white space: rename the stage", stage)
	case strings.HasPrefix(strings.ToLower(stage), "aws:"):
		return fmt.Errorf("the stage name %q starts with aws:, which EC2 reserves: rename the stage", stage)
	}
	return nil
}

// eventTag is the tag key of an event at t.
func eventTag(t time.Time) string { return eventTagNanos(t.UnixNano()) }

func eventTagNanos(n int64) string { return TagEventPrefix + strconv.FormatInt(n, 10) }

// eventNanos returns the time of event tag key, in Unix nanoseconds.
func eventNanos(key string) (int64, bool) {
	rest, ok := strings.CutPrefix(key, TagEventPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil
}

// isEventTag reports whether key is an event tag.
func isEventTag(key string) bool { _, ok := eventNanos(key); return ok }

// eventFormat starts every event value this version of bakery writes.
const eventFormat = "v1"

// Caps applied to the fields before the reason only when an event would not
// fit MaxTagValue even with an empty reason.
const (
	maxActorField = 100
	maxOtherField = 60
)

// encodeEvent returns the tag value of ev (see TagEventPrefix). Time,
// Recipe, Version, Artifact and Kind are not part of it.
func encodeEvent(ev catalog.Event) string {
	flags := ""
	if ev.Forced {
		flags += "f"
	}
	if ev.Unverified {
		flags += "u"
	}
	head := func(stage, actor, approver string) string {
		return strings.Join([]string{eventFormat, ev.Action, stage, actor, flags, approver, ""}, ";")
	}
	h := head(escapeField(ev.Stage, ";"), escapeField(ev.Actor, ";"), escapeField(ev.ApprovedBy, ";"))
	if n := utf8.RuneCountInString(h); n+utf8.RuneCountInString(ev.Reason) <= MaxTagValue {
		return h + ev.Reason
	} else if n < MaxTagValue {
		return h + truncate(ev.Reason, MaxTagValue-n)
	}
	h = head(fitEscaped(ev.Stage, ";", maxOtherField), fitEscaped(ev.Actor, ";", maxActorField), fitEscaped(ev.ApprovedBy, ";", maxOtherField))
	return h + truncate(ev.Reason, MaxTagValue-utf8.RuneCountInString(h))
}

// decodeEvent reads the event stored under tag key with value.
func decodeEvent(key, value string) (catalog.Event, error) {
	n, ok := eventNanos(key)
	if !ok {
		return catalog.Event{}, fmt.Errorf("tag %q is not an event tag", key)
	}
	parts := strings.SplitN(value, ";", 7)
	if len(parts) != 7 || parts[0] != eventFormat {
		return catalog.Event{}, fmt.Errorf("tag %s: %q is not a %s event", key, value, eventFormat)
	}
	if !isAction(parts[1]) {
		// A hand-edited tag: history would show an event that says nothing.
		return catalog.Event{}, fmt.Errorf("tag %s: %q has no action (a lowercase word such as %s)", key, value, catalog.ActionPromote)
	}
	return catalog.Event{
		Time:       time.Unix(0, n).UTC(),
		Action:     parts[1],
		Stage:      unescapeField(parts[2]),
		Actor:      unescapeField(parts[3]),
		Forced:     strings.Contains(parts[4], "f"),
		Unverified: strings.Contains(parts[4], "u"),
		ApprovedBy: unescapeField(parts[5]),
		Reason:     parts[6],
	}, nil
}

// isAction reports whether s can be an event's action: a lowercase word
// (with "-"), one bakery knows or one a newer bakery may write.
func isAction(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '-' {
			return false
		}
	}
	return true
}

// mark is the value of a stage mark or of TagRevoked: when, who and
// (revocations only) why.
type mark struct {
	Time   time.Time
	Actor  string
	Reason string
}

// String encodes m as a tag value: "<time> <actor>[ <reason>]".
func (m mark) String() string {
	ts := m.Time.UTC().Format(time.RFC3339Nano)
	actor := escapeField(m.Actor, " ")
	switch m.Actor {
	case "":
		actor = "-"
	case "-":
		actor = "%2D" // a bare "-" means no actor
	}
	room := MaxTagValue - len(ts) - 1
	if m.Reason != "" {
		if utf8.RuneCountInString(actor) > maxActorField {
			actor = fitEscaped(m.Actor, " ", maxActorField)
		}
		return ts + " " + actor + " " + truncate(m.Reason, room-utf8.RuneCountInString(actor)-1)
	}
	if utf8.RuneCountInString(actor) > room {
		actor = fitEscaped(m.Actor, " ", room)
	}
	return ts + " " + actor
}

// parseMark reads a mark written by mark.String.
func parseMark(v string) (mark, error) {
	parts := strings.SplitN(v, " ", 3)
	t, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return mark{}, fmt.Errorf("%q does not start with an RFC 3339 time", v)
	}
	m := mark{Time: t.UTC()}
	if len(parts) > 1 && parts[1] != "-" {
		m.Actor = unescapeField(parts[1])
	}
	if len(parts) > 2 {
		m.Reason = parts[2]
	}
	return m, nil
}

// newer reports whether m is newer than o (the zero mark is the oldest).
func (m mark) newer(o mark) bool { return m.Time.After(o.Time) }

// escapeField percent-escapes % and each character of special in s.
func escapeField(s, special string) string {
	if !strings.ContainsAny(s, "%"+special) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == '%' || strings.ContainsRune(special, r) {
			fmt.Fprintf(&b, "%%%02X", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// unescapeField undoes escapeField; a malformed escape stays as it is.
func unescapeField(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// truncate returns s if it has at most n characters, else its first n-1
// characters and "…". n below 1 gives "".
func truncate(s string, n int) string {
	if n < 1 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// fitEscaped returns escapeField(s, special), cut with "…" so that it has
// at most n characters.
func fitEscaped(s, special string, n int) string {
	e := escapeField(s, special)
	if utf8.RuneCountInString(e) <= n {
		return e
	}
	r := []rune(s)
	for k := min(len(r), n) - 1; k >= 0; k-- {
		if e := escapeField(string(r[:k]), special) + "…"; utf8.RuneCountInString(e) <= n {
			return e
		}
	}
	return ""
}

// tagPlan is what to change on an AMI to add tags under MaxTags.
type tagPlan struct {
	// Delete are the event tags to delete first, oldest first.
	Delete []string
	// Create are the tags to write.
	Create map[string]string
}

// planTags returns the changes that give an AMI tagged have the tags of
// add. Event tags beyond what fits (MaxEvents, and MaxTags less the other
// tags and tagReserve) go, oldest first; an added event that would be
// among them is not written. Tags of add that are there already are not
// written again.
func planTags(have, add map[string]string) tagPlan {
	p := tagPlan{Create: map[string]string{}}
	for k, v := range add {
		if cur, ok := have[k]; !ok || cur != v {
			p.Create[k] = v
		}
	}
	if len(p.Create) == 0 {
		return p
	}
	others := 0
	var events []string
	for k := range have {
		if isEventTag(k) {
			events = append(events, k)
		} else if !strings.HasPrefix(k, "aws:") {
			others++
		}
	}
	for k := range p.Create {
		if _, ok := have[k]; ok {
			continue
		}
		if isEventTag(k) {
			events = append(events, k)
		} else {
			others++
		}
	}
	keep := max(0, min(MaxEvents, MaxTags-tagReserve-others))
	if len(events) <= keep {
		return p
	}
	if _, counted := have[TagPruned]; !counted {
		// Pruning adds the counter, which takes one more tag.
		keep = max(0, keep-1)
	}
	// Newest first; the tie-break on the key keeps the order total.
	slices.SortFunc(events, func(a, b string) int {
		na, _ := eventNanos(a)
		nb, _ := eventNanos(b)
		return cmp.Or(cmp.Compare(nb, na), strings.Compare(a, b))
	})
	for _, k := range slices.Backward(events[keep:]) {
		if _, ok := have[k]; ok {
			p.Delete = append(p.Delete, k)
		}
		delete(p.Create, k)
	}
	if len(p.Delete) > 0 {
		p.Create[TagPruned] = strconv.Itoa(prunedOf(have) + len(p.Delete))
	}
	return p
}

// prunedOf returns the count of pruned events tags hold.
func prunedOf(tags map[string]string) int {
	n, err := strconv.Atoi(tags[TagPruned])
	if err != nil || n < 0 {
		return 0
	}
	return n
}
