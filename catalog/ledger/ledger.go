// Package ledger keeps the full history of a recipe's images, and the
// locks its runners share, in an S3 bucket: the ledger of principle 1,
// for what the images themselves cannot hold (an AMI has at most 50
// tags, so older events are pruned from it). There is still no bakery
// server: S3 is the engine many runners share.
//
// The ledger is append-only. Each event is one object, a link of its
// recipe's chain,
//
//	PREFIX/RECIPE/events/<sequence number, 11 digits>.json
//
// written with a conditional put (If-None-Match: *), so that nothing is
// ever overwritten and two runners appending at once end with one chain;
// it records the digest of the link before it, so that Verify finds any
// event edited or deleted since. An index entry per event,
// PREFIX/RECIPE/index/<number>-<sha256 of the event>, lets a retry of the
// same event find it and never record it twice. Events written before
// the chain existed (PREFIX/RECIPE/events/<unix-nanos>-<16 hex>.json) are
// still read, as the chain's unverifiable prefix. A lock is a lease object,
//
//	PREFIX/RECIPE/locks/STAGE.json  {holder, acquired, expires, purpose}
//
// created with If-None-Match: *, taken over once expired with If-Match:
// ETAG, renewed with If-Match and deleted with If-Match, so that of two
// runners racing for it exactly one wins.
//
// The identity needs s3:PutObject, s3:GetObject, s3:ListBucket and
// s3:DeleteObject on the bucket (and its PREFIX/*).
package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// DefaultPrefix is the key prefix of a ledger location (ParseURL) that
// names none.
const DefaultPrefix = "bakery"

// DefaultConcurrency is how many event objects Events reads at once
// unless WithConcurrency says otherwise.
const DefaultConcurrency = 8

// DefaultLeaseTTL is how long a lock's lease lasts unless WithLeaseTTL
// says otherwise: long enough for a promotion that copies AMIs between
// regions when the holder renews it, short enough that a runner that
// died does not block the stage for long.
const DefaultLeaseTTL = 10 * time.Minute

// S3 is the part of the S3 API a Ledger calls. *s3.Client implements it.
type S3 interface {
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// Ledger is the S3 ledger of one bucket and prefix: a catalog.Journal and
// the locks of every recipe's stages. It is safe for concurrent use.
type Ledger struct {
	client         S3
	bucket, prefix string
	o              options
}

var _ catalog.Journal = (*Ledger)(nil)

type options struct {
	now         func() time.Time
	pageSize    int32
	concurrency int
	ttl         time.Duration
}

// Option configures a Ledger.
type Option func(*options)

// WithClock sets the clock leases are dated and checked for expiry by.
// Default: time.Now. A nil clock keeps the default.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithPageSize sets how many keys Events asks for per ListObjectsV2 page.
// Default: S3's own page size, 1000. Values below 1 keep the default;
// values above 1000 mean 1000 (S3 returns no more).
func WithPageSize(n int) Option {
	return func(o *options) { o.pageSize = int32(max(0, min(n, 1000))) }
}

// WithConcurrency bounds how many event objects Events reads at once.
// Default: DefaultConcurrency. Values below 1 mean 1.
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = max(1, n) } }

// WithLeaseTTL sets how long a lease lasts from its acquisition or its
// last renewal. Default: DefaultLeaseTTL. Values of zero or less keep the
// default.
func WithLeaseTTL(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.ttl = d
		}
	}
}

// bucketRE is an S3 bucket name.
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// New returns the ledger kept in bucket under prefix (leading and
// trailing "/" dropped; empty keeps objects at the bucket's root), read
// and written through client.
func New(client S3, bucket, prefix string, opts ...Option) (*Ledger, error) {
	if !bucketRE.MatchString(bucket) {
		return nil, fmt.Errorf("opening the ledger: %q is not an S3 bucket name: name the bucket alone, such as acme-bakery-ledger", bucket)
	}
	o := options{now: time.Now, concurrency: DefaultConcurrency, ttl: DefaultLeaseTTL}
	for _, opt := range opts {
		opt(&o)
	}
	return &Ledger{client: client, bucket: bucket, prefix: strings.Trim(prefix, "/"), o: o}, nil
}

// NewFromConfig is New with an S3 client for region (empty: cfg's) made
// from cfg by awsx.NewS3.
func NewFromConfig(cfg aws.Config, bucket, prefix, region string, opts ...Option) (*Ledger, error) {
	return New(awsx.NewS3(cfg, region), bucket, prefix, opts...)
}

// String names the ledger as s3://BUCKET/PREFIX.
func (l *Ledger) String() string { return "s3://" + path.Join(l.bucket, l.prefix) }

// ParseURL reads a ledger location written s3://BUCKET[/PREFIX][?region=REGION]
// (the form of BAKERY_LEDGER). A URL without a prefix gets DefaultPrefix;
// a region left out is empty (the AWS config's).
func ParseURL(s string) (bucket, prefix, region string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return "", "", "", fmt.Errorf("reading ledger location %q: write it as s3://BUCKET/PREFIX, such as s3://acme-bakery-ledger/bakery", s)
	}
	q := u.Query()
	for k := range q {
		if k != "region" {
			return "", "", "", fmt.Errorf("reading ledger location %q: unknown parameter %q: the only one is region=REGION", s, k)
		}
	}
	if !bucketRE.MatchString(u.Host) {
		return "", "", "", fmt.Errorf("reading ledger location %q: %q is not an S3 bucket name (3 to 63 lowercase letters, digits, '.' and '-')", s, u.Host)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return u.Host, prefix, q.Get("region"), nil
}

// recipeRE is a recipe name as recipes accepts it; it never holds "/".
var recipeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

func checkRecipe(recipe string) error {
	if !recipeRE.MatchString(recipe) {
		return fmt.Errorf("%q is not a recipe name (lowercase letters, digits, '.', '_' and '-')", recipe)
	}
	return nil
}

// key joins the ledger's prefix and parts into an object key.
func (l *Ledger) key(parts ...string) string {
	if l.prefix == "" {
		return path.Join(parts...)
	}
	return path.Join(append([]string{l.prefix}, parts...)...)
}

// eventsPrefix is where recipe's events are, with a trailing "/".
func (l *Ledger) eventsPrefix(recipe string) string { return l.key(recipe, "events") + "/" }

// maxConflictRetries is how many times a conditional write is sent again
// after S3 answers 409 ConditionalRequestConflict (another conditional
// write to the same key was in flight).
const maxConflictRetries = 3

// Append records ev under its recipe as the next link of the recipe's
// chain (see the package documentation): an object written only if it
// is not there yet, holding the digest of the link before it. Appending
// the same event again (a retry after a lost answer, or a rerun of a
// promotion) changes nothing: the event is found by its index entry, or,
// when a crash came between the link and its index entry, among the
// links that have none. When another runner took the sequence number
// first, Append reads its link and takes the next number. ev needs a
// recipe and a time.
func (l *Ledger) Append(ctx context.Context, ev catalog.Event) error {
	if err := checkRecipe(ev.Recipe); err != nil {
		return fmt.Errorf("appending a %s event to %s: %w", ev.Action, l, err)
	}
	if ev.Time.IsZero() {
		return fmt.Errorf("appending a %s event of %s@%s to %s: the event has no time", ev.Action, ev.Recipe, ev.Version, l)
	}
	what := fmt.Sprintf("appending a %s event of %s@%s to %s", ev.Action, ev.Recipe, ev.Version, l)
	ev.Time = ev.Time.UTC()
	id, err := eventID(ev)
	if err != nil {
		return fmt.Errorf("%s: encoding it: %w", what, err)
	}
	st, err := l.scan(ctx, ev.Recipe)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if st.recorded(id, ev.Time) {
		return nil
	}
	// Links without an index entry: a crash between a link and its
	// entry (or an append in flight). One of them may be this event.
	var head []byte
	for _, seq := range st.unindexed() {
		body, err := l.readLink(ctx, ev.Recipe, seq)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if lk, err := decodeLink(body); err == nil && lk.id == id {
			return l.putIndex(ctx, ev.Recipe, seq, id, what)
		}
		if seq == st.maxSeq {
			head = body
		}
	}
	seq, prev := st.maxSeq+1, ""
	switch {
	case st.maxSeq > 0 && head == nil:
		if head, err = l.readLink(ctx, ev.Recipe, st.maxSeq); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		prev = digestOf(head)
	case st.maxSeq > 0:
		prev = digestOf(head)
	case len(st.old) > 0:
		// The first link seals the events written before the chain.
		if prev, err = l.seal(ctx, ev.Recipe, st.old); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	for race := 0; ; race++ {
		body, err := encodeLink(ev, seq, prev)
		if err != nil {
			return fmt.Errorf("%s: encoding it: %w", what, err)
		}
		key := l.linkKey(ev.Recipe, seq)
		err = l.putOnce(ctx, key, body)
		switch {
		case err == nil:
			return l.putIndex(ctx, ev.Recipe, seq, id, what)
		case !isPreconditionFailed(err):
			return fmt.Errorf("%s (s3://%s/%s): %w", what, l.bucket, key, awsx.ExplainError(err))
		case race >= maxAppendRaces:
			return fmt.Errorf("%s: %d other events took the next place in the chain first; try again", what, race+1)
		}
		// 412: the place is taken, by this very event (the answer of
		// an earlier try was lost) or by another runner's.
		other, err := l.readLink(ctx, ev.Recipe, seq)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if lk, err := decodeLink(other); err == nil && lk.id == id {
			return l.putIndex(ctx, ev.Recipe, seq, id, what)
		}
		seq, prev = seq+1, digestOf(other)
	}
}

// maxAppendRaces is how many times Append takes the next sequence number
// because another runner's event took the one it tried.
const maxAppendRaces = 64

// putOnce writes body at key only if no object is there (If-None-Match:
// *), sending it again after a 409 conflict. A 412 (the object is
// there) is returned as is. The put carries a SHA-256 checksum, which a
// bucket with Object Lock requires (the SDK sends none by itself on some
// transports).
func (l *Ledger) putOnce(ctx context.Context, key string, body []byte) error {
	for try := 0; ; try++ {
		_, err := l.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:            aws.String(l.bucket),
			Key:               aws.String(key),
			Body:              bytes.NewReader(body),
			ContentType:       aws.String("application/json"),
			IfNoneMatch:       aws.String("*"),
			ChecksumAlgorithm: s3types.ChecksumAlgorithmSha256,
		})
		if isConflict(err) && try < maxConflictRetries {
			continue
		}
		return err
	}
}

// putIndex writes the index entry of the event id at seq: an empty
// object, written once.
func (l *Ledger) putIndex(ctx context.Context, recipe string, seq int64, id, what string) error {
	key := l.indexKey(recipe, seq, id)
	if err := l.putOnce(ctx, key, nil); err != nil && !isPreconditionFailed(err) {
		return fmt.Errorf("%s: indexing it (s3://%s/%s): %w", what, l.bucket, key, awsx.ExplainError(err))
	}
	return nil
}

// readLink reads the link at seq of recipe's chain.
func (l *Ledger) readLink(ctx context.Context, recipe string, seq int64) ([]byte, error) {
	key := l.linkKey(recipe, seq)
	body, _, err := l.get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("reading event s3://%s/%s: %w", l.bucket, key, err)
	}
	return body, nil
}

// Events returns every event of recipe's images in the ledger, oldest
// first (events at the same instant in key order). It lists the events
// with one ListObjectsV2 call per page and reads the objects, up to the
// ledger's concurrency at once.
func (l *Ledger) Events(ctx context.Context, recipe string) ([]catalog.Event, error) {
	if err := checkRecipe(recipe); err != nil {
		return nil, fmt.Errorf("reading the history of %s from %s: %w", recipe, l, err)
	}
	prefix := l.eventsPrefix(recipe)
	all, err := l.list(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("listing the history of %s in %s: %w", recipe, l, err)
	}
	var keys []string
	for _, k := range all {
		if strings.HasSuffix(k, ".json") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	evs := make([]catalog.Event, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.o.concurrency)
	for i, k := range keys {
		g.Go(func() error {
			body, _, err := l.get(gctx, k)
			if err != nil {
				return fmt.Errorf("reading event s3://%s/%s of %s: %w", l.bucket, k, recipe, err)
			}
			lk, err := decodeLink(body)
			if err != nil {
				return fmt.Errorf("reading event s3://%s/%s of %s: it is not an event (%v): the ledger is append-only and written by bakery alone; move the object out of %s", l.bucket, k, recipe, err, prefix)
			}
			evs[i] = lk.Event
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// Links are in the order they were appended, which two runners'
	// clocks need not agree with: sort by time.
	slices.SortStableFunc(evs, func(a, b catalog.Event) int { return a.Time.Compare(b.Time) })
	return evs, nil
}

// get reads object key: its body and ETag. A missing object is an error
// for which awsx.IsNotFound is true.
func (l *Ledger) get(ctx context.Context, key string) ([]byte, string, error) {
	out, err := l.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.bucket), Key: aws.String(key)})
	if err != nil {
		if awsx.IsNotFound(err) {
			return nil, "", err
		}
		return nil, "", awsx.ExplainError(err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, "", err
	}
	return body, aws.ToString(out.ETag), nil
}

// isPreconditionFailed reports whether err is S3's 412 answer to a
// conditional request whose condition does not hold.
func isPreconditionFailed(err error) bool {
	return awsx.ErrorCode(err) == "PreconditionFailed" || httpStatus(err) == 412
}

// isConflict reports whether err is S3's 409 answer to a conditional
// write that raced another one to the same key.
func isConflict(err error) bool {
	return awsx.ErrorCode(err) == "ConditionalRequestConflict"
}

// httpStatus returns the HTTP status code of err's response, or 0.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// formatTime renders t for messages.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
