package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/ledger"
)

// fakeS3 is an in-memory bucket for what moto cannot show: S3's 409
// ConditionalRequestConflict (moto never answers it) and how many reads
// are in flight at once. It checks If-None-Match and If-Match like S3.
type fakeS3 struct {
	mu        sync.Mutex
	objects   map[string][]byte
	etags     map[string]string
	conflicts int // PutObject answers 409 this many times first
	puts      int
	inFlight  int
	maxFlight int
	getDelay  time.Duration
	n         int
}

func newFakeS3() *fakeS3 { return &fakeS3{objects: map[string][]byte{}, etags: map[string]string{}} }

func apiError(code string) error { return &smithy.GenericAPIError{Code: code, Message: code} }

func (f *fakeS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts++
	if f.conflicts > 0 {
		f.conflicts--
		return nil, apiError("ConditionalRequestConflict")
	}
	k := aws.ToString(in.Key)
	_, exists := f.objects[k]
	if aws.ToString(in.IfNoneMatch) == "*" && exists {
		return nil, apiError("PreconditionFailed")
	}
	if in.IfMatch != nil && (!exists || f.etags[k] != aws.ToString(in.IfMatch)) {
		return nil, apiError("PreconditionFailed")
	}
	body, _ := io.ReadAll(in.Body)
	f.n++
	f.objects[k], f.etags[k] = body, fmt.Sprintf(`"etag-%d"`, f.n)
	return &s3.PutObjectOutput{ETag: aws.String(f.etags[k])}, nil
}

func (f *fakeS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f.mu.Lock()
	f.inFlight++
	f.maxFlight = max(f.maxFlight, f.inFlight)
	f.mu.Unlock()
	time.Sleep(f.getDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight--
	k := aws.ToString(in.Key)
	body, ok := f.objects[k]
	if !ok {
		return nil, &s3types.NoSuchKey{}
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(body)), ETag: aws.String(f.etags[k])}, nil
}

func (f *fakeS3) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.objects {
		if len(k) >= len(aws.ToString(in.Prefix)) && k[:len(aws.ToString(in.Prefix))] == aws.ToString(in.Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := &s3.ListObjectsV2Output{}
	for _, k := range keys {
		out.Contents = append(out.Contents, s3types.Object{Key: aws.String(k)})
	}
	return out, nil
}

func (f *fakeS3) DeleteObject(_ context.Context, in *s3.DeleteObjectInput, _ ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := aws.ToString(in.Key)
	if in.IfMatch != nil {
		if _, ok := f.objects[k]; !ok {
			return nil, apiError("NoSuchKey")
		}
		if f.etags[k] != aws.ToString(in.IfMatch) {
			return nil, apiError("PreconditionFailed")
		}
	}
	delete(f.objects, k)
	delete(f.etags, k)
	return &s3.DeleteObjectOutput{}, nil
}

// TestAppendRetriesAConditionalConflict: S3 answers 409 when another
// conditional write to the key is in flight; Append sends the same put
// again.
func TestAppendRetriesAConditionalConflict(t *testing.T) {
	f := newFakeS3()
	l, err := ledger.New(f, "acme-ledger", "bakery")
	if err != nil {
		t.Fatal(err)
	}
	f.conflicts = 2
	if err := l.Append(context.Background(), event(t0, catalog.ActionPromote, "1.0.0")); err != nil {
		t.Fatalf("Append after two 409s: %v", err)
	}
	if f.puts != 4 || len(f.objects) != 2 {
		t.Errorf("%d puts and %d objects, want 4 puts (two refused, the link, its index entry) and 2 objects", f.puts, len(f.objects))
	}
	f.conflicts = 10
	if err := l.Append(context.Background(), event(t0.Add(time.Hour), catalog.ActionPromote, "1.0.1")); err == nil {
		t.Errorf("Append succeeded though every put conflicted")
	}
}

// TestAcquireAfterAConflictReadsTheLease: a 409 on creating the lease
// means another runner was writing it; Acquire reads it and reports it
// held.
func TestAcquireAfterAConflictReadsTheLease(t *testing.T) {
	f := newFakeS3()
	clk := &clock{t: t0}
	l, _ := ledger.New(f, "acme-ledger", "bakery", ledger.WithClock(clk.now))
	body, _ := json.Marshal(map[string]any{"holder": "bob", "acquired": t0, "expires": t0.Add(time.Minute)})
	f.objects["bakery/web/locks/prod.json"], f.etags["bakery/web/locks/prod.json"] = body, `"bob"`
	f.conflicts = 1
	_, err := l.Acquire(context.Background(), "web", "prod", "alice", "")
	var locked *ledger.LockedError
	if !errors.As(err, &locked) || locked.Lease.Holder != "bob" {
		t.Fatalf("Acquire after a 409 = %v, want a *LockedError naming bob", err)
	}
}

// TestEventsBoundsItsReads reads 12 events with a concurrency of 3: never
// more than 3 GetObject calls are in flight.
func TestEventsBoundsItsReads(t *testing.T) {
	f := newFakeS3()
	l, _ := ledger.New(f, "acme-ledger", "bakery", ledger.WithConcurrency(3))
	for i := range 12 {
		if err := l.Append(context.Background(), event(t0.Add(time.Duration(i)*time.Second), catalog.ActionPromote, "1.0.0")); err != nil {
			t.Fatal(err)
		}
	}
	f.getDelay = 10 * time.Millisecond
	evs, err := l.Events(context.Background(), "web")
	if err != nil || len(evs) != 12 {
		t.Fatalf("Events = %d events, %v; want 12", len(evs), err)
	}
	if f.maxFlight > 3 {
		t.Errorf("%d reads were in flight at once, want at most 3", f.maxFlight)
	}
}

// racingS3 is a fakeS3 where another runner's event takes each link's
// place just before a put of this runner reaches it, races times.
type racingS3 struct {
	*fakeS3
	races  int
	bodies [][]byte // what the other runner wrote
}

func (r *racingS3) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if k := aws.ToString(in.Key); r.races > 0 && strings.Contains(k, "/events/") {
		r.races--
		body, _ := json.Marshal(map[string]any{"time": t0.Add(time.Duration(r.races) * time.Second), "action": "promote", "recipe": "web",
			"version": fmt.Sprintf("2.0.%d", r.races), "seq": len(r.bodies) + 1})
		r.mu.Lock()
		r.objects[k], r.etags[k] = body, fmt.Sprintf(`"other-%d"`, r.races)
		r.mu.Unlock()
		r.bodies = append(r.bodies, body)
	}
	return r.fakeS3.PutObject(ctx, in, opts...)
}

// TestAppendTakesTheNextNumberAfterARace: each time another runner's
// event takes the number Append tries (412), Append links its event
// after that one, at the next number; after too many lost races it
// gives up saying to try again, having overwritten nothing.
func TestAppendTakesTheNextNumberAfterARace(t *testing.T) {
	f := &racingS3{fakeS3: newFakeS3(), races: 3}
	l, _ := ledger.New(f, "acme-ledger", "bakery")
	if err := l.Append(context.Background(), event(t0, catalog.ActionPromote, "1.0.0")); err != nil {
		t.Fatal(err)
	}
	var lk struct {
		Seq     int64  `json:"seq"`
		Prev    string `json:"prev"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(f.objects["bakery/web/events/00000000004.json"], &lk); err != nil {
		t.Fatalf("link 4: %v", err)
	}
	if sum := sha256.Sum256(f.bodies[2]); lk.Seq != 4 || lk.Version != "1.0.0" || lk.Prev != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("after 3 lost races the event is %+v; want link 4 of 1.0.0 after the third winner's", lk)
	}
	for i, body := range f.bodies {
		if k := fmt.Sprintf("bakery/web/events/%011d.json", i+1); !bytes.Equal(f.objects[k], body) {
			t.Errorf("%s was overwritten", k)
		}
	}

	f = &racingS3{fakeS3: newFakeS3(), races: 1000}
	l, _ = ledger.New(f, "acme-ledger", "bakery")
	err := l.Append(context.Background(), event(t0, catalog.ActionPromote, "1.0.0"))
	if err == nil || !strings.Contains(err.Error(), "try again") {
		t.Errorf("Append losing every race: %v, want an error saying to try again", err)
	}
}
