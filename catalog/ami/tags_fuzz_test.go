package ami

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
)

// fuzzTags reads "key=value" lines into tags (a line without "=" is a
// key with an empty value).
func fuzzTags(s string) map[string]string {
	tags := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		tags[k] = v
	}
	return tags
}

// FuzzAMITags reads whatever tags a human may have left or edited on an
// AMI (and its creation date) the way status, history, promotion and
// retire do: FromEC2, the catalog entry of the version, Preferred, and
// the tag plan that adds more tags. None may panic; the entry lists the
// bake, then every event that decodes (each with an action), in time
// order; the plan only deletes event tags the
// AMI has, oldest first, writes only what was asked (and the pruned
// count), and keeps the events under MaxEvents.
func FuzzAMITags(f *testing.F) {
	good := strings.Join([]string{
		catalog.TagRecipe + "=web", catalog.TagArtifact + "=web", catalog.TagVersion + "=1.4.2",
		catalog.TagBakeKey + "=abc", catalog.TagCreated + "=2026-03-02T10:11:12Z", catalog.TagCreatedBy + "=alice",
		StageTag("prod") + "=2026-03-02T10:11:12.5Z alice",
		StageTag("dev") + "=2026-03-01T10:11:12Z -",
		TagRevoked + "=2026-03-03T00:00:00Z bob CVE-2026-1; rebuild",
		TagRevokedAccess + "=111122223333 444455556666",
		eventTagNanos(1772446272000000000) + "=v1;promote;prod;alice;f;bob;ship it",
		TagPruned + "=3",
	}, "\n")
	f.Add(good, "2026-03-02T10:11:12.000Z", eventTagNanos(1772446273000000000)+"=v1;demote;prod;dave;;;replaced")
	f.Add(strings.Join([]string{
		StageTag("prod") + "=yesterday", StageTag("") + "=", TagRevoked + "=not a time",
		TagPruned + "=-7", catalog.TagCreated + "=2026-13-45T99:99:99Z",
		TagEventPrefix + "x=v1;promote", TagEventPrefix + "-5=v1;;;;;;", TagEventPrefix + "9223372036854775807=v1;a;b;c;d;e;f",
		TagEventPrefix + "1=v2;promote;prod;a;;;", TagEventPrefix + "2=v1;promote;%zz;%4;%;;",
		"aws:cloudformation:stack-name=x", "=empty key",
	}, "\n"), "not a date", TagPruned+"=x")
	f.Add("", "", "")
	var many []string
	for i := range 60 {
		many = append(many, eventTagNanos(int64(i))+"=v1;promote;s;a;;;")
	}
	f.Add(strings.Join(many, "\n"), "", eventTagNanos(1000)+"=v1;revoke;;a;;;why")

	f.Fuzz(func(t *testing.T, tagText, created, addText string) {
		var tags []ec2types.Tag
		for k, v := range fuzzTags(tagText) {
			tags = append(tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		raw := ec2types.Image{
			ImageId: aws.String("ami-0123456789abcdef0"), CreationDate: aws.String(created), Tags: tags,
			BlockDeviceMappings: []ec2types.BlockDeviceMapping{{Ebs: &ec2types.EbsBlockDevice{SnapshotId: aws.String("snap-1")}}, {}},
		}
		img := FromEC2("us-east-1", raw)
		if len(img.Tags) != len(tags) {
			t.Fatalf("FromEC2 read %d tags of %d", len(img.Tags), len(tags))
		}
		copied := img
		copied.Region, copied.SourceImageRegion = "eu-west-1", "us-east-1"
		e := (&LifecycleStore{}).entry([]Image{copied, img})
		if e.Reference != img.ImageID || len(e.Locations) != 2 {
			t.Errorf("entry: reference %q, locations %v", e.Reference, e.Locations)
		}
		if len(e.Events) == 0 || e.Events[0].Action != catalog.ActionBake {
			t.Fatalf("entry events %+v do not start with the bake", e.Events)
		}
		if n := len(historyOf([]Image{img})); len(e.Events) != n+1 {
			t.Errorf("entry has %d events, the tags hold %d", len(e.Events)-1, n)
		}
		// After the bake, time order (an event stamped before the bake
		// still follows it).
		if !slices.IsSortedFunc(e.Events[1:], func(a, b catalog.Event) int { return a.Time.Compare(b.Time) }) {
			t.Errorf("entry events out of order: %+v", e.Events)
		}
		for i, ev := range e.Events {
			if ev.Recipe != img.Recipe || ev.Version != img.Version || ev.Kind != Kind {
				t.Errorf("event %+v is not of %s@%s", ev, img.Recipe, img.Version)
			}
			if !isAction(ev.Action) {
				t.Errorf("event %d has the action %q, not a word", i, ev.Action)
			}
		}
		if e.Pruned < 0 {
			t.Errorf("pruned %d", e.Pruned)
		}
		_ = Preferred(img, copied)
		_ = revokedAccess(img.Tags)

		have, add := img.Tags, fuzzTags(addText)
		p := planTags(have, add)
		for k, v := range p.Create {
			if want, ok := add[k]; (!ok || want != v) && k != TagPruned {
				t.Errorf("plan writes %s=%q, not asked for", k, v)
			}
		}
		kept := map[string]string{}
		for k, v := range have {
			kept[k] = v
		}
		for _, k := range p.Delete {
			if _, ok := have[k]; !ok || !isEventTag(k) {
				t.Errorf("plan deletes %q, not an event tag of the AMI", k)
			}
			delete(kept, k)
		}
		for k, v := range p.Create {
			kept[k] = v
		}
		events := 0
		for k := range kept {
			if isEventTag(k) {
				events++
				n, _ := eventNanos(k)
				for _, d := range p.Delete {
					if dn, _ := eventNanos(d); dn > n {
						t.Errorf("plan deletes %s but keeps the older %s", d, k)
					}
				}
			}
		}
		if len(p.Create) > 0 && events > MaxEvents {
			t.Errorf("after the plan the AMI has %d events, more than %d", events, MaxEvents)
		}
	})
}

// FuzzEventTag: an event bakery writes reads back as it was, its reason
// (and, for very long fields, its actor and approver) cut with "…" to fit
// MaxTagValue; and any value under an event tag key decodes or errs
// without panicking.
func FuzzEventTag(f *testing.F) {
	f.Add(int64(1772446272123456789), uint8(1), "prod", "arn:aws:iam::123456789012:user/alice", true, false, "bob", "ship it; now")
	f.Add(int64(0), uint8(3), "", "a;b%c d", false, false, "x;y", "ünïcödé; 100% ;;")
	f.Add(int64(-1), uint8(4), strings.Repeat("s", 115), strings.Repeat("a;", 150), false, true, strings.Repeat("b", 300), "why")
	f.Add(int64(42), uint8(3), "", "alice", false, false, "", strings.Repeat("é", 400))
	f.Add(int64(7), uint8(8), "prod", "ann;u", true, true, "", "looks good")
	actions := []string{catalog.ActionBake, catalog.ActionPromote, catalog.ActionDemote, catalog.ActionRevoke,
		catalog.ActionUnrevoke, catalog.ActionLaunch, catalog.ActionRollback, catalog.ActionRetire, catalog.ActionApprove}

	f.Fuzz(func(t *testing.T, nanos int64, action uint8, stage, actor string, forced, unverified bool, approver, reason string) {
		key := eventTagNanos(nanos)
		// Any value a human may have put there.
		for _, v := range []string{reason, stage + ";" + actor, "v1;" + reason} {
			_, _ = decodeEvent(key, v)
		}
		if !utf8.ValidString(stage) || !utf8.ValidString(actor) || !utf8.ValidString(approver) || !utf8.ValidString(reason) { // each on its own: invalid halves can join into valid UTF-8
			return // EC2 tags are UTF-8
		}
		ev := catalog.Event{Time: time.Unix(0, nanos).UTC(), Action: actions[int(action)%len(actions)],
			Stage: stage, Actor: actor, Forced: forced, Unverified: unverified, ApprovedBy: approver, Reason: reason}
		v := encodeEvent(ev)
		if n := utf8.RuneCountInString(v); n > MaxTagValue {
			t.Fatalf("%q has %d characters, more than %d", v, n, MaxTagValue)
		}
		got, err := decodeEvent(eventTag(ev.Time), v)
		if err != nil {
			t.Fatalf("decoding %q: %v", v, err)
		}
		if cut(got.Reason, ev.Reason) && cut(got.Actor, ev.Actor) && cut(got.Stage, ev.Stage) && cut(got.ApprovedBy, ev.ApprovedBy) {
			got.Reason, got.Actor, got.Stage, got.ApprovedBy = ev.Reason, ev.Actor, ev.Stage, ev.ApprovedBy
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("%+v was written %q and read back as %+v", ev, v, got)
		}
	})
}

// FuzzMarkTag: a stage mark or revocation bakery writes reads back as it
// was (reason cut with "…" to fit); any value parses or errs.
func FuzzMarkTag(f *testing.F) {
	f.Add(int64(1772446272123456789), "alice", "")
	f.Add(int64(5), "a b%c", "CVE-2026-1: rebuild")
	f.Add(int64(0), "", "reason with  spaces ")
	f.Add(int64(1), "-", "")
	f.Add(int64(-62135596800000000), strings.Repeat("x y", 100), strings.Repeat("é", 300))

	f.Fuzz(func(t *testing.T, nanos int64, actor, reason string) {
		_, _ = parseMark(actor + " " + reason)
		// EC2 tags are UTF-8. Each field on its own: two invalid halves
		// can join into a valid string (" \xdf" + "\x84").
		if !utf8.ValidString(actor) || !utf8.ValidString(reason) {
			return
		}
		m := mark{Time: time.Unix(0, nanos).UTC(), Actor: actor, Reason: reason}
		v := m.String()
		if n := utf8.RuneCountInString(v); n > MaxTagValue {
			t.Fatalf("%q has %d characters, more than %d", v, n, MaxTagValue)
		}
		got, err := parseMark(v)
		if err != nil {
			t.Fatalf("parsing %q: %v", v, err)
		}
		if cut(got.Reason, m.Reason) && cut(got.Actor, m.Actor) {
			got.Reason, got.Actor = m.Reason, m.Actor
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("mark of %v by %q (%q) was written %q and read back as of %v by %q (%q)", m.Time, m.Actor, m.Reason, v, got.Time, got.Actor, got.Reason)
		}
	})
}

// cut reports whether got is want, or want cut with "…".
func cut(got, want string) bool {
	if got == want {
		return true
	}
	head, ok := strings.CutSuffix(got, "…")
	return ok && strings.HasPrefix(want, head)
}
