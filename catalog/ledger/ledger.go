// Package ledger keeps the full history of a recipe's images, and the
// locks its runners share, in an S3 bucket: the ledger of principle 1,
// for what the images themselves cannot hold (an AMI has at most 50
// tags, so older events are pruned from it). There is still no bakery
// server: S3 is the engine many runners share.
//
// The ledger is append-only. Each event is one object,
//
//	PREFIX/RECIPE/events/<unix-nanos>-<sha256 of the event, 16 hex>.json
//
// written with a conditional put (If-None-Match: *), so that a retry of
// the same event never records it twice, and nothing is ever
// overwritten. A lock is a lease object,
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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// encodeEvent returns the object body of ev (its JSON) and its key name
// within the events folder: the time in Unix nanoseconds, zero-padded so
// that keys sort by time, and a short hash of the body, so that two
// events at the same instant are two objects and the same event is one.
func encodeEvent(ev catalog.Event) (name string, body []byte, err error) {
	ev.Time = ev.Time.UTC()
	body, err = json.Marshal(ev)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(body)
	return fmt.Sprintf("%019d-%s.json", max(0, ev.Time.UnixNano()), hex.EncodeToString(sum[:8])), body, nil
}

// maxConflictRetries is how many times a conditional write is sent again
// after S3 answers 409 ConditionalRequestConflict (another conditional
// write to the same key was in flight).
const maxConflictRetries = 3

// Append records ev under its recipe: one object, written only if it is
// not there yet, so that appending the same event again (a retry after a
// lost answer) changes nothing. ev needs a recipe and a time.
func (l *Ledger) Append(ctx context.Context, ev catalog.Event) error {
	if err := checkRecipe(ev.Recipe); err != nil {
		return fmt.Errorf("appending a %s event to %s: %w", ev.Action, l, err)
	}
	if ev.Time.IsZero() {
		return fmt.Errorf("appending a %s event of %s@%s to %s: the event has no time", ev.Action, ev.Recipe, ev.Version, l)
	}
	name, body, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("appending a %s event of %s@%s to %s: encoding it: %w", ev.Action, ev.Recipe, ev.Version, l, err)
	}
	key := l.eventsPrefix(ev.Recipe) + name
	for try := 0; ; try++ {
		_, err = l.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:      aws.String(l.bucket),
			Key:         aws.String(key),
			Body:        bytes.NewReader(body),
			ContentType: aws.String("application/json"),
			IfNoneMatch: aws.String("*"),
		})
		switch {
		case err == nil, isPreconditionFailed(err):
			// 412: the object is there. Its name holds the hash of
			// this very content: it is this event, appended before.
			return nil
		case isConflict(err) && try < maxConflictRetries:
			continue
		}
		return fmt.Errorf("appending a %s event of %s@%s to %s (s3://%s/%s): %w", ev.Action, ev.Recipe, ev.Version, l, l.bucket, key, awsx.ExplainError(err))
	}
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
	in := &s3.ListObjectsV2Input{Bucket: aws.String(l.bucket), Prefix: aws.String(prefix)}
	if l.o.pageSize > 0 {
		in.MaxKeys = aws.Int32(l.o.pageSize)
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(l.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the history of %s in %s: %w", recipe, l, awsx.ExplainError(err))
		}
		for _, obj := range page.Contents {
			if k := aws.ToString(obj.Key); strings.HasSuffix(k, ".json") {
				keys = append(keys, k)
			}
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
			if err := json.Unmarshal(body, &evs[i]); err != nil {
				return fmt.Errorf("reading event s3://%s/%s of %s: it is not an event (%v): the ledger is append-only and written by bakery alone; move the object out of %s", l.bucket, k, recipe, err, prefix)
			}
			evs[i].Time = evs[i].Time.UTC()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// The keys start with the time, zero-padded: sorted by key is sorted
	// by time. Sort again anyway, should an object be named otherwise.
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
