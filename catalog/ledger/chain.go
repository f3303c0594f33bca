package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// The chain. Each recipe's events form one linear chain of objects,
//
//	PREFIX/RECIPE/events/<sequence number, 11 digits>.json
//
// numbered from 1 without gaps. A link is the event's JSON with two more
// fields: "seq", its number, and "prev", the digest ("sha256:HEX") of the
// bytes of link seq-1 (of link 1: the seal of the events written before
// the chain, empty when there were none). Each link is written once
// (If-None-Match: *): of two runners appending at once, one gets the
// number and the other reads its link and takes the next. After its
// link, an event gets an index entry, an empty object
//
//	PREFIX/RECIPE/index/<sequence number>-<sha256 of the event's JSON>
//
// by which a retry of the same event finds it (one listing, no reads),
// and by which Verify finds an edit to the newest link, which no later
// link records.
//
// Events written by bakery before the chain existed keep their old names
// (<unix-nanos>-<16 hex>.json). They are read as before and are the
// chain's unverifiable prefix: the first link seals them (its "prev" is
// the digest of their names and digests), so that a change to them after
// the chain started is found, but not one made before.

// link is the body of a chain object.
type link struct {
	catalog.Event
	// Seq is the link's place in the chain, from 1; 0 in an event
	// written before the chain.
	Seq int64 `json:"seq,omitempty"`
	// Prev is the digest of the link before, or the seal of the events
	// before the chain for link 1.
	Prev string `json:"prev,omitempty"`
}

// decoded is a link read back, with the identity of its event.
type decoded struct {
	link
	id string // eventID of the event
}

// eventID is the hex sha256 of ev's JSON (with its time in UTC): the
// identity by which a retry of the same event is found, and the hash the
// names of the events written before the chain start with.
func eventID(ev catalog.Event) (string, error) {
	ev.Time = ev.Time.UTC()
	body, err := json.Marshal(ev)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:]), nil
}

// encodeLink returns the body of ev's link at seq after prev.
func encodeLink(ev catalog.Event, seq int64, prev string) ([]byte, error) {
	ev.Time = ev.Time.UTC()
	return json.Marshal(link{Event: ev, Seq: seq, Prev: prev})
}

// decodeLink reads a link, or an event written before the chain.
func decodeLink(body []byte) (decoded, error) {
	var d decoded
	if err := json.Unmarshal(body, &d.link); err != nil {
		return d, err
	}
	d.Time = d.Time.UTC()
	id, err := eventID(d.Event)
	d.id = id
	return d, err
}

// digestOf is the digest of an object's bytes, "sha256:HEX".
func digestOf(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// seqDigits is how many digits a link's name has: keys sort by number.
const seqDigits = 11

func (l *Ledger) linkKey(recipe string, seq int64) string {
	return l.eventsPrefix(recipe) + fmt.Sprintf("%0*d.json", seqDigits, seq)
}

func (l *Ledger) indexPrefix(recipe string) string { return l.key(recipe, "index") + "/" }

func (l *Ledger) indexKey(recipe string, seq int64, id string) string {
	return l.indexPrefix(recipe) + fmt.Sprintf("%0*d-%s", seqDigits, seq, id)
}

var (
	linkNameRE  = regexp.MustCompile(`^([0-9]{11})\.json$`)
	oldNameRE   = regexp.MustCompile(`^[0-9]{19}-([0-9a-f]{16})\.json$`)
	indexNameRE = regexp.MustCompile(`^([0-9]{11})-([0-9a-f]{64})$`)
)

// chainState is what the listings of a recipe's events and index say.
type chainState struct {
	links  map[int64]string // link key by number
	maxSeq int64
	old    []string // events written before the chain, sorted
	other  []string // .json objects named neither way
	index  map[int64][]string
	byID   map[string][]int64
	oldSet map[string]bool // base names of old
}

// recorded reports whether the event with id at time t is in the ledger
// already: indexed, or written before the chain.
func (st *chainState) recorded(id string, t time.Time) bool {
	if len(st.byID[id]) > 0 {
		return true
	}
	return st.oldSet[fmt.Sprintf("%019d-%s.json", max(0, t.UnixNano()), id[:16])]
}

// unindexed returns the numbers of the links without an index entry,
// lowest first.
func (st *chainState) unindexed() []int64 {
	var out []int64
	for seq := range st.links {
		if len(st.index[seq]) == 0 {
			out = append(out, seq)
		}
	}
	slices.Sort(out)
	return out
}

// list returns every key under prefix, in pages of the ledger's size.
func (l *Ledger) list(ctx context.Context, prefix string) ([]string, error) {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(l.bucket), Prefix: aws.String(prefix)}
	if l.o.pageSize > 0 {
		in.MaxKeys = aws.Int32(l.o.pageSize)
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(l.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, awsx.ExplainError(err)
		}
		for _, obj := range page.Contents {
			keys = append(keys, aws.ToString(obj.Key))
		}
	}
	return keys, nil
}

// scan lists recipe's index, then its events. The index is listed first:
// an entry is written after its link, so every entry listed has its link
// in the second listing (Verify takes a missing one for a deletion).
func (l *Ledger) scan(ctx context.Context, recipe string) (*chainState, error) {
	st := &chainState{links: map[int64]string{}, index: map[int64][]string{}, byID: map[string][]int64{}, oldSet: map[string]bool{}}
	ikeys, err := l.list(ctx, l.indexPrefix(recipe))
	if err != nil {
		return nil, fmt.Errorf("listing the index of %s in %s: %w", recipe, l, err)
	}
	for _, k := range ikeys {
		m := indexNameRE.FindStringSubmatch(strings.TrimPrefix(k, l.indexPrefix(recipe)))
		if m == nil {
			continue
		}
		seq, _ := strconv.ParseInt(m[1], 10, 64)
		st.index[seq] = append(st.index[seq], m[2])
		st.byID[m[2]] = append(st.byID[m[2]], seq)
	}
	keys, err := l.list(ctx, l.eventsPrefix(recipe))
	if err != nil {
		return nil, fmt.Errorf("listing the history of %s in %s: %w", recipe, l, err)
	}
	for _, k := range keys {
		name := strings.TrimPrefix(k, l.eventsPrefix(recipe))
		switch m := linkNameRE.FindStringSubmatch(name); {
		case m != nil:
			seq, _ := strconv.ParseInt(m[1], 10, 64)
			if seq > 0 {
				st.links[seq] = k
				st.maxSeq = max(st.maxSeq, seq)
				continue
			}
			st.other = append(st.other, k)
		case oldNameRE.MatchString(name):
			st.old = append(st.old, k)
			st.oldSet[name] = true
		case strings.HasSuffix(name, ".json"):
			st.other = append(st.other, k)
		}
	}
	slices.Sort(st.old)
	return st, nil
}

// readAll reads the objects of keys, up to the ledger's concurrency at
// once, and returns their bodies in the order of keys.
func (l *Ledger) readAll(ctx context.Context, keys []string) ([][]byte, error) {
	bodies := make([][]byte, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.o.concurrency)
	for i, k := range keys {
		g.Go(func() error {
			body, _, err := l.get(gctx, k)
			if err != nil {
				return fmt.Errorf("reading event s3://%s/%s: %w", l.bucket, k, err)
			}
			bodies[i] = body
			return nil
		})
	}
	return bodies, g.Wait()
}

// sealOf is the seal of the events written before the chain: the digest
// of one line "KEY DIGEST" per object, in key order.
func sealOf(keys []string, bodies [][]byte) string {
	var b bytes.Buffer
	for i, k := range keys {
		fmt.Fprintf(&b, "%s %s\n", k, digestOf(bodies[i]))
	}
	return digestOf(b.Bytes())
}

// seal reads the events written before the chain and returns their seal.
func (l *Ledger) seal(ctx context.Context, recipe string, old []string) (string, error) {
	bodies, err := l.readAll(ctx, old)
	if err != nil {
		return "", fmt.Errorf("sealing the %d events of %s written before the chain: %w", len(old), recipe, err)
	}
	return sealOf(old, bodies), nil
}

// Problem is something Verify found wrong with a recipe's chain.
type Problem struct {
	// Key is the object (s3://BUCKET/KEY) the problem is about.
	Key string `json:"key"`
	// Seq is the link's number in the chain, 0 for an object outside it.
	Seq int64 `json:"seq,omitempty"`
	// Event is the event the object holds now; nil when the object is
	// gone or is not an event.
	Event *catalog.Event `json:"event,omitempty"`
	// Kind is "edited", "missing", "unreadable" or "foreign".
	Kind string `json:"kind"`
	// Detail says what was found.
	Detail string `json:"detail"`
}

// Problem kinds.
const (
	// ProblemEdited: the object's content is not what was written.
	ProblemEdited = "edited"
	// ProblemMissing: an object of the chain was deleted.
	ProblemMissing = "missing"
	// ProblemUnreadable: the object is not an event.
	ProblemUnreadable = "unreadable"
	// ProblemForeign: an object bakery did not write is among the events.
	ProblemForeign = "foreign"
)

// Unverifiable is an event of the ledger that Verify cannot vouch for.
type Unverifiable struct {
	// Key is the object (s3://BUCKET/KEY).
	Key string `json:"key"`
	// Event is the event it holds.
	Event catalog.Event `json:"event"`
	// Reason says why it cannot be verified.
	Reason string `json:"reason"`
}

// Verdict is what Verify found in the ledger of one recipe.
type Verdict struct {
	// Recipe is the recipe verified; Ledger is s3://BUCKET/PREFIX.
	Recipe string `json:"recipe"`
	Ledger string `json:"ledger"`
	// Chained is how many links the chain has (its highest number).
	Chained int64 `json:"chained"`
	// Head is the digest of the newest link, empty without a chain. A
	// copy of it kept elsewhere (a CI log) lets a later Verify tell
	// that the chain up to it is unchanged, newest link included.
	Head string `json:"head,omitempty"`
	// Problems are the edits, gaps and deletions found, in chain order.
	Problems []Problem `json:"problems"`
	// Unverifiable are the events written before the chain.
	Unverifiable []Unverifiable `json:"unverifiable"`
	// Events are every event read, oldest first, for comparing with
	// the events the images hold (Unrecorded).
	Events []catalog.Event `json:"-"`
}

// OK reports whether the chain is intact.
func (v *Verdict) OK() bool { return len(v.Problems) == 0 }

// Verify reads recipe's events and checks its chain: the links are
// numbered from 1 without a gap, each records the digest of the one
// before, each matches its index entry (which finds an edit to the
// newest link, and index entries name links deleted from the end), the
// first seals the events written before the chain, and no object under
// the events is foreign. It costs what Events does (one listing per page
// of events, one read per event, up to the ledger's concurrency at
// once), plus the listing of the index.
func (l *Ledger) Verify(ctx context.Context, recipe string) (*Verdict, error) {
	if err := checkRecipe(recipe); err != nil {
		return nil, fmt.Errorf("verifying the history of %s in %s: %w", recipe, l, err)
	}
	st, err := l.scan(ctx, recipe)
	if err != nil {
		return nil, fmt.Errorf("verifying the history of %s: %w", recipe, err)
	}
	seqs := make([]int64, 0, len(st.links))
	for seq := range st.links {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	keys := slices.Clone(st.old)
	for _, seq := range seqs {
		keys = append(keys, st.links[seq])
	}
	keys = append(keys, st.other...)
	bodies, err := l.readAll(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("verifying the history of %s in %s: %w", recipe, l, err)
	}
	v := &Verdict{Recipe: recipe, Ledger: l.String(), Problems: []Problem{}, Unverifiable: []Unverifiable{}}
	url := func(k string) string { return "s3://" + l.bucket + "/" + k }
	body := map[string][]byte{}
	for i, k := range keys {
		body[k] = bodies[i]
	}

	for _, k := range st.old {
		d, err := decodeLink(body[k])
		if err != nil {
			v.Problems = append(v.Problems, Problem{Key: url(k), Kind: ProblemUnreadable, Detail: fmt.Sprintf("it is not an event (%v)", err)})
			continue
		}
		v.Events = append(v.Events, d.Event)
		// The name of an event written before the chain holds the hash
		// of its body: a careless edit shows.
		if m := oldNameRE.FindStringSubmatch(strings.TrimPrefix(k, l.eventsPrefix(recipe))); m[1] != strings.TrimPrefix(digestOf(body[k]), "sha256:")[:16] {
			ev := d.Event
			v.Problems = append(v.Problems, Problem{Key: url(k), Event: &ev, Kind: ProblemEdited,
				Detail: "its content does not match the hash in its name: it was changed after it was written"})
			continue
		}
		v.Unverifiable = append(v.Unverifiable, Unverifiable{Key: url(k), Event: d.Event,
			Reason: "written before the chain: a change made to it before the chain started cannot be found"})
	}
	for _, k := range st.other {
		v.Problems = append(v.Problems, Problem{Key: url(k), Kind: ProblemForeign,
			Detail: "bakery does not name events so: an object was put among the events by hand"})
	}

	edited := map[int64]bool{}
	links := map[int64]decoded{}
	for _, seq := range seqs {
		k := st.links[seq]
		d, err := decodeLink(body[k])
		if err != nil {
			v.Problems = append(v.Problems, Problem{Key: url(k), Seq: seq, Kind: ProblemUnreadable, Detail: fmt.Sprintf("it is not an event (%v): it was overwritten", err)})
			edited[seq] = true
			continue
		}
		links[seq] = d
		v.Events = append(v.Events, d.Event)
		ev := d.Event
		switch ids := st.index[seq]; {
		case d.Seq != seq:
			v.Problems = append(v.Problems, Problem{Key: url(k), Seq: seq, Event: &ev, Kind: ProblemEdited,
				Detail: fmt.Sprintf("it says it is event #%d of the chain, not #%d: it was copied or moved here", d.Seq, seq)})
			edited[seq] = true
		case len(ids) > 0 && !slices.Contains(ids, d.id):
			v.Problems = append(v.Problems, Problem{Key: url(k), Seq: seq, Event: &ev, Kind: ProblemEdited,
				Detail: fmt.Sprintf("its event does not match the one indexed when it was written (%s): it was changed after it was written", url(l.indexKey(recipe, seq, ids[0])))})
			edited[seq] = true
		}
	}

	var seal string
	if len(st.old) > 0 {
		seal = sealOf(st.old, bodies[:len(st.old)])
	}
	last := max(st.maxSeq, 0)
	for seq := range st.index {
		last = max(last, seq)
	}
	for seq := int64(1); seq <= last; seq++ {
		k := l.linkKey(recipe, seq)
		d, ok := links[seq]
		if _, there := st.links[seq]; !there {
			detail := fmt.Sprintf("event #%d of the chain is gone: it was deleted", seq)
			if seq > st.maxSeq {
				detail = fmt.Sprintf("event #%d of the chain is gone (its index entry shows it was written): the newest events were deleted", seq)
			}
			v.Problems = append(v.Problems, Problem{Key: url(k), Seq: seq, Kind: ProblemMissing, Detail: detail})
			continue
		}
		if !ok || edited[seq-1] {
			continue // reported already
		}
		ev := d.Event
		switch {
		case seq == 1 && d.Prev != seal && len(st.old) > 0:
			v.Problems = append(v.Problems, Problem{Key: url(k), Seq: seq, Event: &ev, Kind: ProblemEdited,
				Detail: fmt.Sprintf("the %d events written before the chain are not those it sealed: one of them was changed, added or deleted since", len(st.old))})
		case seq == 1 && d.Prev != seal:
			v.Problems = append(v.Problems, Problem{Key: url(k), Seq: seq, Event: &ev, Kind: ProblemEdited,
				Detail: "it seals events written before the chain, and there are none now: they were deleted"})
		case seq > 1:
			prevKey, there := st.links[seq-1]
			if !there {
				continue // the gap is reported
			}
			if want := digestOf(body[prevKey]); d.Prev != want {
				v.Problems = append(v.Problems, Problem{Key: url(k), Seq: seq, Event: &ev, Kind: ProblemEdited,
					Detail: fmt.Sprintf("it records %s as the digest of event #%d, which is %s now: one of the two was changed after it was written", orNone(d.Prev), seq-1, want)})
			}
		}
	}
	slices.SortStableFunc(v.Problems, func(a, b Problem) int { return cmpProblem(a, b) })
	if st.maxSeq > 0 {
		v.Chained, v.Head = st.maxSeq, digestOf(body[st.links[st.maxSeq]])
	}
	slices.SortStableFunc(v.Events, func(a, b catalog.Event) int { return a.Time.Compare(b.Time) })
	return v, nil
}

// cmpProblem orders problems by chain number, objects outside the chain
// first, then by key.
func cmpProblem(a, b Problem) int {
	if a.Seq != b.Seq {
		return int(max(-1, min(1, a.Seq-b.Seq)))
	}
	return strings.Compare(a.Key, b.Key)
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// sameEventWindow is how far apart in time two records of one event may
// be (promote.SameEventWindow: the one on the image and the one in the
// ledger carry the same instant).
const sameEventWindow = time.Microsecond

// Unrecorded returns the events of evs (read from the images: AMI tags,
// OCI history) that recorded (the ledger's) lacks: the same action,
// stage, version and artifact at the same instant. Those are on the
// images alone, where anyone allowed to tag an image can change them.
func Unrecorded(evs, recorded []catalog.Event) []catalog.Event {
	type id struct{ action, stage, version, artifact string }
	at := map[id][]catalog.Event{}
	for _, ev := range recorded {
		k := id{ev.Action, ev.Stage, ev.Version, ev.Artifact}
		at[k] = append(at[k], ev)
	}
	var out []catalog.Event
	for _, ev := range evs {
		found := slices.ContainsFunc(at[id{ev.Action, ev.Stage, ev.Version, ev.Artifact}], func(r catalog.Event) bool {
			d := ev.Time.Sub(r.Time)
			return d <= sameEventWindow && d >= -sameEventWindow
		})
		if !found {
			out = append(out, ev)
		}
	}
	return out
}
