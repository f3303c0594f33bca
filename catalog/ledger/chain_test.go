package ledger_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/ledger"
	"github.com/bakery-sh/bakery/internal/faultproxy"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// get reads an object's bytes straight from the bucket.
func (b *bucket) get(t *testing.T, key string) []byte {
	t.Helper()
	out, err := b.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(b.name), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// put overwrites an object, unconditionally, as someone with
// s3:PutObject on the bucket can.
func (b *bucket) put(t *testing.T, key string, body []byte) {
	t.Helper()
	if _, err := b.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(b.name), Key: aws.String(key), Body: strings.NewReader(string(body))}); err != nil {
		t.Fatalf("writing %s: %v", key, err)
	}
}

// remove deletes an object.
func (b *bucket) remove(t *testing.T, key string) {
	t.Helper()
	if _, err := b.s3.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(b.name), Key: aws.String(key)}); err != nil {
		t.Fatalf("deleting %s: %v", key, err)
	}
}

func linkKey(seq int) string { return fmt.Sprintf("bakery/web/events/%011d.json", seq) }

func sha(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// appendN appends n events of web, version 1.0.I at t0+I minutes.
func appendN(t *testing.T, l *ledger.Ledger, n int) []catalog.Event {
	t.Helper()
	var evs []catalog.Event
	for i := range n {
		ev := event(t0.Add(time.Duration(i)*time.Minute), catalog.ActionPromote, fmt.Sprintf("1.0.%d", i))
		if err := l.Append(context.Background(), ev); err != nil {
			t.Fatalf("Append #%d: %v", i+1, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func verify(t *testing.T, l *ledger.Ledger) *ledger.Verdict {
	t.Helper()
	v, err := l.Verify(context.Background(), "web")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return v
}

// TestChainLinksEveryEvent appends events whose times are not in append
// order: they are links 1 to 4 in the order appended, each recording the
// sha256 of the bytes of the one before; Verify finds the chain intact
// and names the newest link's digest; Events returns them oldest first.
func TestChainLinksEveryEvent(t *testing.T) {
	b := newBucket(t)
	l := b.ledger(t)
	ctx := context.Background()
	offsets := []time.Duration{3 * time.Hour, time.Hour, 4 * time.Hour, 2 * time.Hour}
	for i, d := range offsets {
		if err := l.Append(ctx, event(t0.Add(d), catalog.ActionPromote, fmt.Sprintf("1.0.%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if keys := b.keys(t, "bakery/web/events/"); !reflect.DeepEqual(keys, []string{linkKey(1), linkKey(2), linkKey(3), linkKey(4)}) {
		t.Fatalf("event objects %v, want links 1 to 4", keys)
	}
	var prevBody []byte
	for seq := 1; seq <= 4; seq++ {
		body := b.get(t, linkKey(seq))
		var lk struct {
			Seq     int64  `json:"seq"`
			Prev    string `json:"prev"`
			Version string `json:"version"`
		}
		if err := json.Unmarshal(body, &lk); err != nil {
			t.Fatal(err)
		}
		want := ""
		if prevBody != nil {
			want = sha(prevBody)
		}
		if lk.Seq != int64(seq) || lk.Prev != want || lk.Version != fmt.Sprintf("1.0.%d", seq-1) {
			t.Errorf("link %d = seq %d, prev %q, version %s; want seq %d, prev %q, version 1.0.%d", seq, lk.Seq, lk.Prev, lk.Version, seq, want, seq-1)
		}
		prevBody = body
	}
	v := verify(t, l)
	if !v.OK() || v.Chained != 4 || v.Head != sha(prevBody) || len(v.Unverifiable) != 0 {
		t.Errorf("Verify = %+v; want intact, 4 chained, head %s, nothing unverifiable", v, sha(prevBody))
	}
	evs, err := l.Events(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"1.0.1", "1.0.3", "1.0.0", "1.0.2"} {
		if i >= len(evs) || evs[i].Version != want {
			t.Fatalf("Events = %+v, want versions 1.0.1, 1.0.3, 1.0.0, 1.0.2 (oldest first)", evs)
		}
	}
}

// editVersion returns body with its version changed, the rest as it was.
func editVersion(t *testing.T, body []byte, version string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m["version"] = version
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// oneProblem checks that v has exactly one problem, of kind on key with
// seq, whose detail says want, and returns it.
func oneProblem(t *testing.T, v *ledger.Verdict, kind, key string, seq int64, want string) ledger.Problem {
	t.Helper()
	if len(v.Problems) != 1 {
		t.Fatalf("Verify found %d problems, want 1: %+v", len(v.Problems), v.Problems)
	}
	p := v.Problems[0]
	if p.Kind != kind || !strings.HasSuffix(p.Key, "/"+key) || !strings.HasPrefix(p.Key, "s3://") || p.Seq != seq || !strings.Contains(p.Detail, want) {
		t.Errorf("problem %+v; want %s on s3://…/%s (#%d) saying %q", p, kind, key, seq, want)
	}
	if v.OK() {
		t.Errorf("Verify with a problem says OK")
	}
	return p
}

// TestVerifyFindsEditedEvents rewrites event objects directly, as anyone
// with s3:PutObject on the bucket can: a changed event in the middle of
// the chain and at its head (which no later link records: its index
// entry tells), and a link whose event is unchanged but whose bytes are
// (the next link's digest tells).
func TestVerifyFindsEditedEvents(t *testing.T) {
	t.Run("middle", func(t *testing.T) {
		b := newBucket(t)
		l := b.ledger(t)
		appendN(t, l, 4)
		b.put(t, linkKey(2), editVersion(t, b.get(t, linkKey(2)), "6.6.6"))
		p := oneProblem(t, verify(t, l), ledger.ProblemEdited, linkKey(2), 2, "changed after it was written")
		if p.Event == nil || p.Event.Version != "6.6.6" || p.Event.Action != catalog.ActionPromote || !p.Event.Time.Equal(t0.Add(time.Minute)) {
			t.Errorf("the problem names event %+v, want the edited promotion of 6.6.6 at %s", p.Event, t0.Add(time.Minute))
		}
	})
	t.Run("head", func(t *testing.T) {
		b := newBucket(t)
		l := b.ledger(t)
		appendN(t, l, 4)
		b.put(t, linkKey(4), editVersion(t, b.get(t, linkKey(4)), "6.6.6"))
		oneProblem(t, verify(t, l), ledger.ProblemEdited, linkKey(4), 4, "changed after it was written")
	})
	t.Run("bytes", func(t *testing.T) {
		b := newBucket(t)
		l := b.ledger(t)
		appendN(t, l, 4)
		var m map[string]any
		if err := json.Unmarshal(b.get(t, linkKey(2)), &m); err != nil {
			t.Fatal(err)
		}
		indented, _ := json.MarshalIndent(m, "", "  ")
		b.put(t, linkKey(2), indented)
		oneProblem(t, verify(t, l), ledger.ProblemEdited, linkKey(3), 3, "digest of event #2")
	})
	t.Run("garbage", func(t *testing.T) {
		b := newBucket(t)
		l := b.ledger(t)
		appendN(t, l, 3)
		b.put(t, linkKey(2), []byte("not json"))
		oneProblem(t, verify(t, l), ledger.ProblemUnreadable, linkKey(2), 2, "not an event")
	})
}

// TestVerifyFindsDeletedEvents deletes a link in the middle of the chain
// (a gap) and the newest link (its index entry shows it was written).
func TestVerifyFindsDeletedEvents(t *testing.T) {
	t.Run("middle", func(t *testing.T) {
		b := newBucket(t)
		l := b.ledger(t)
		appendN(t, l, 4)
		b.remove(t, linkKey(2))
		p := oneProblem(t, verify(t, l), ledger.ProblemMissing, linkKey(2), 2, "deleted")
		if p.Event != nil {
			t.Errorf("a deleted event names %+v", p.Event)
		}
	})
	t.Run("newest", func(t *testing.T) {
		b := newBucket(t)
		l := b.ledger(t)
		appendN(t, l, 4)
		b.remove(t, linkKey(4))
		oneProblem(t, verify(t, l), ledger.ProblemMissing, linkKey(4), 4, "newest events were deleted")
	})
	t.Run("foreign", func(t *testing.T) {
		b := newBucket(t)
		l := b.ledger(t)
		appendN(t, l, 2)
		b.put(t, "bakery/web/events/planted.json", b.get(t, linkKey(1)))
		oneProblem(t, verify(t, l), ledger.ProblemForeign, "bakery/web/events/planted.json", 0, "by hand")
	})
}

// TestConcurrentAppendersMakeOneChain: runners with S3 clients of their
// own append at once, each its own events and one event all of them
// append (a promotion retried by two runners): one chain comes out, with
// every event once. moto checks If-None-Match (TestAcquireRace).
func TestConcurrentAppendersMakeOneChain(t *testing.T) {
	b := newBucket(t)
	const runners, each = 6, 4
	shared := event(t0.Add(time.Hour), catalog.ActionPromote, "9.9.9")
	start := make(chan struct{})
	errs := make(chan error, runners*(each+1))
	var wg sync.WaitGroup
	for r := range runners {
		l := b.ledgerWith(t, b.cfg.Copy())
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				errs <- l.Append(context.Background(), event(t0.Add(time.Duration(r*each+i)*time.Second), catalog.ActionPromote, fmt.Sprintf("1.%d.%d", r, i)))
				if i == 1 {
					errs <- l.Append(context.Background(), shared)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Append: %v", err)
		}
	}
	const want = runners*each + 1
	if keys := b.keys(t, "bakery/web/events/"); len(keys) != want || keys[want-1] != linkKey(want) {
		t.Fatalf("%d event objects (last %v), want links 1 to %d", len(keys), keys[len(keys)-1:], want)
	}
	v := verify(t, b.ledger(t))
	if !v.OK() || v.Chained != want {
		t.Errorf("Verify = chained %d, problems %+v; want %d intact", v.Chained, v.Problems, want)
	}
	seen := map[string]int{}
	for _, ev := range v.Events {
		seen[ev.Version]++
	}
	if len(seen) != want || seen["9.9.9"] != 1 {
		t.Errorf("the chain holds versions %v, want %d distinct, 9.9.9 once", seen, want)
	}
}

// TestLostAnswerLeavesNoDuplicate loses the answers of puts that took
// effect (internal/faultproxy): the SDK's retry of the link is refused
// with 412 and Append finds its own event there; a retry of the index
// entry likewise. With no retry at all, Append fails, and the next
// Append of the same event (a rerun) finds the link without its index
// entry and completes it.
func TestLostAnswerLeavesNoDuplicate(t *testing.T) {
	srv := mototest.Shared(t)
	for _, tc := range []struct {
		name     string
		lose     int
		attempts int
	}{
		{"retried link and index", 2, 0},
		{"rerun after a failed append", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBucket(t)
			p := faultproxy.Start(t, srv.URL, faultproxy.LoseAnswer("PutObject", tc.lose))
			cfg := p.Config(b.cfg)
			if tc.attempts > 0 {
				cfg.RetryMaxAttempts = tc.attempts
			}
			l := b.ledgerWith(t, cfg)
			appendN(t, b.ledger(t), 2)
			ev := event(t0.Add(time.Hour), catalog.ActionRevoke, "1.0.1")
			err := l.Append(context.Background(), ev)
			if tc.attempts == 1 {
				if err == nil {
					t.Fatal("Append whose answer was lost, with no retry, succeeded")
				}
				err = b.ledger(t).Append(context.Background(), ev)
			}
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if n := p.Faults("PutObject", faultproxy.FaultLost); n != tc.lose {
				t.Errorf("%d PutObject answers lost, want %d:\n%s", n, tc.lose, p.Summary())
			}
			if keys := b.keys(t, "bakery/web/events/"); len(keys) != 3 {
				t.Errorf("event objects %v, want 3 links", keys)
			}
			if idx := b.keys(t, "bakery/web/index/"); len(idx) != 3 {
				t.Errorf("index entries %v, want 3", idx)
			}
			if v := verify(t, b.ledger(t)); !v.OK() || v.Chained != 3 {
				t.Errorf("Verify = chained %d, problems %+v; want 3 intact", v.Chained, v.Problems)
			}
		})
	}
}

// oldObject writes ev as bakery wrote events before the chain: its JSON
// at <unix-nanos>-<first 16 hex of its sha256>.json.
func oldObject(t *testing.T, b *bucket, ev catalog.Event) string {
	t.Helper()
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	key := fmt.Sprintf("bakery/web/events/%019d-%s.json", ev.Time.UnixNano(), hex.EncodeToString(sum[:8]))
	b.put(t, key, body)
	return key
}

// TestOldFormatIsUnverifiable: events written before the chain are read
// and reported as unverifiable, not as broken; appending one of them
// again adds nothing; the first link seals them, so that a change to
// them after the chain started is found; an old event whose content
// does not match the hash in its name is reported as edited.
func TestOldFormatIsUnverifiable(t *testing.T) {
	b := newBucket(t)
	l := b.ledger(t)
	ctx := context.Background()
	var old []string
	var oldEvs []catalog.Event
	for i := range 3 {
		ev := event(t0.Add(time.Duration(i)*time.Minute), catalog.ActionBake, fmt.Sprintf("0.9.%d", i))
		oldEvs = append(oldEvs, ev)
		old = append(old, oldObject(t, b, ev))
	}
	v := verify(t, l)
	if !v.OK() || v.Chained != 0 || len(v.Unverifiable) != 3 {
		t.Fatalf("Verify of a ledger written before the chain = %+v; want intact, 3 unverifiable", v)
	}
	for i, u := range v.Unverifiable {
		if u.Key != "s3://"+b.name+"/"+old[i] || u.Event.Version != oldEvs[i].Version || !strings.Contains(u.Reason, "before the chain") {
			t.Errorf("unverifiable %d = %+v, want %s (0.9.%d) written before the chain", i, u, old[i], i)
		}
	}
	if err := l.Append(ctx, oldEvs[1]); err != nil {
		t.Fatal(err)
	}
	if keys := b.keys(t, "bakery/web/events/"); len(keys) != 3 {
		t.Fatalf("appending an event written before the chain again added an object: %v", keys)
	}
	appendN(t, l, 2)
	v = verify(t, l)
	if !v.OK() || v.Chained != 2 || len(v.Unverifiable) != 3 || len(v.Events) != 5 {
		t.Fatalf("Verify = %+v; want intact, 2 chained, 3 unverifiable, 5 events", v)
	}
	evs, err := l.Events(ctx, "web")
	if err != nil || len(evs) != 5 {
		t.Fatalf("Events = %+v, %v; want the 3 old and 2 chained", evs, err)
	}

	// Deleting an old event after the chain started breaks the seal.
	b.remove(t, old[0])
	oneProblem(t, verify(t, l), ledger.ProblemEdited, linkKey(1), 1, "written before the chain are not those it sealed")
	b.put(t, old[0], b.get(t, old[1])) // not its content
	v = verify(t, l)
	if len(v.Problems) != 2 || v.Problems[0].Kind != ledger.ProblemEdited || !strings.HasSuffix(v.Problems[0].Key, old[0]) ||
		!strings.Contains(v.Problems[0].Detail, "hash in its name") {
		t.Errorf("an old event whose content is not its name's: problems %+v; want it edited (and the seal broken)", v.Problems)
	}
}

// TestAppendAndVerifyCost: appending to a long chain reads one link (the
// newest) and lists twice, whatever the chain's length; Verify reads
// each event once, with one listing per page of events and of index
// entries.
func TestAppendAndVerifyCost(t *testing.T) {
	b := newBucket(t)
	appendN(t, b.ledger(t), 25)
	var rec calls
	l := b.ledgerWith(t, rec.record(b.cfg), ledger.WithPageSize(10))
	if err := l.Append(context.Background(), event(t0.Add(time.Hour), catalog.ActionRevoke, "1.0.3")); err != nil {
		t.Fatal(err)
	}
	for op, want := range map[string]int{"GetObject": 1, "PutObject": 2, "ListObjectsV2": 6} {
		if n := rec.count(op); n != want {
			t.Errorf("Append to a chain of 25 made %d %s calls, want %d", n, op, want)
		}
	}
	var vrec calls
	v, err := b.ledgerWith(t, vrec.record(b.cfg), ledger.WithPageSize(10)).Verify(context.Background(), "web")
	if err != nil || !v.OK() || v.Chained != 26 {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	// 26 events and 26 index entries in pages of 10: 3 pages each.
	for op, want := range map[string]int{"GetObject": 26, "ListObjectsV2": 6, "PutObject": 0} {
		if n := vrec.count(op); n != want {
			t.Errorf("Verify of 26 events made %d %s calls, want %d", n, op, want)
		}
	}
}

// TestUnrecorded finds the events the images hold that the ledger lacks:
// another stage, version or artifact, or another instant, is another
// event.
func TestUnrecorded(t *testing.T) {
	rec := event(t0, catalog.ActionPromote, "1.0.0")
	same := rec
	same.Actor, same.Reason = "someone", "a tag cuts reasons" // not part of the match
	otherStage := rec
	otherStage.Stage = "dev"
	later := rec
	later.Time = rec.Time.Add(time.Millisecond)
	otherArtifact := rec
	otherArtifact.Artifact = "worker"
	got := ledger.Unrecorded([]catalog.Event{same, otherStage, later, otherArtifact}, []catalog.Event{rec})
	if want := []catalog.Event{otherStage, later, otherArtifact}; !reflect.DeepEqual(got, want) {
		t.Errorf("Unrecorded = %+v, want %+v", got, want)
	}
}

// TestAppendSendsWhatALockedBucketNeeds captures the HTTP requests of
// Append, PutDocument and the locks: a bucket whose policy denies puts of
// events, index entries and documents without If-None-Match, and whose
// Object Lock needs a checksum on every put (README: History that cannot
// be quietly rewritten), accepts each of them. moto enforces neither
// rule.
func TestAppendSendsWhatALockedBucketNeeds(t *testing.T) {
	b := newBucket(t)
	var mu sync.Mutex
	var puts []http.Header
	cfg := b.cfg.Copy()
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(st *middleware.Stack) error {
		return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("capture",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if req, ok := in.Request.(*smithyhttp.Request); ok && req.Method == http.MethodPut {
					mu.Lock()
					puts = append(puts, req.Header.Clone())
					mu.Unlock()
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	})
	l := b.ledgerWith(t, cfg)
	appendN(t, l, 2)
	if _, err := l.PutDocument(context.Background(), "web", []byte(`{"spdxVersion":"SPDX-2.3"}`)); err != nil {
		t.Fatal(err)
	}
	if len(puts) != 5 {
		t.Fatalf("%d PUT requests for 2 events and a document, want 5 (2 links, 2 index entries, the document)", len(puts))
	}
	// A lock is written with If-None-Match, renewed with If-Match.
	le, err := l.Acquire(context.Background(), "web", "prod", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Renew(context.Background(), le); err != nil {
		t.Fatal(err)
	}
	if len(puts) != 7 {
		t.Fatalf("%d PUT requests after a lock and its renewal, want 7", len(puts))
	}
	for i, h := range puts {
		checksum := h.Get("Content-MD5") != ""
		for k := range h {
			checksum = checksum || strings.HasPrefix(strings.ToLower(k), "x-amz-checksum-")
		}
		if !checksum {
			t.Errorf("PUT %d headers %v: want a checksum (Content-MD5 or x-amz-checksum-*)", i, h)
		}
		if h.Get("If-None-Match") != "*" && i < 6 {
			t.Errorf("PUT %d headers %v: want If-None-Match: *", i, h)
		}
	}
}
