// Package ami reads machine images from the catalog that lives on the
// AMIs themselves (principle 1): every AMI bakery bakes carries its
// recipe, artifact, version, bake key, source AMI and creation time as EC2
// tags (see the catalog.Tag* keys), and so do its snapshots. A Store finds
// those AMIs in any number of regions with one paginated DescribeImages
// per region, the regions queried in parallel.
//
// A LifecycleStore is the catalog.Store of one machine_image artifact:
// it lists its versions and promotes, demotes, revokes and unrevokes
// them by tagging, sharing and copying the AMIs, never rebuilding them
// (principle 2). Stage marks, revocations and the history live in tags on
// the AMIs and snapshots too (TagStagePrefix, TagRevoked,
// TagEventPrefix), so a second machine with the same credentials sees
// the same state.
package ami

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unique"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// Kind is the catalog.Image Kind of an AMI.
const Kind = catalog.KindAMI

// DefaultConcurrency is how many regions a Store queries at once unless
// WithConcurrency says otherwise.
const DefaultConcurrency = 8

// EC2 is the part of the EC2 API a Store calls (IAM: ec2:DescribeImages).
// *ec2.Client implements it.
type EC2 interface {
	DescribeImages(ctx context.Context, in *ec2.DescribeImagesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error)
}

// Image is one AMI in one region, as the catalog sees it.
type Image struct {
	// Image holds the catalog fields read from the bakery:* tags: Recipe,
	// Version, Artifact, BakeKey (empty for an unfinished bake) and
	// Created (the bakery:created tag, else the AMI's creation date).
	// Kind is "ami", Reference is the AMI id and BaseName is the source
	// AMI id (bakery:source-ami).
	catalog.Image
	// Region is the AWS region the AMI lives in.
	Region string
	// ImageID is the AMI id.
	ImageID string
	// Name is the AMI name.
	Name string
	// Description is the AMI description.
	Description string
	// SourceInstanceID is the instance an AMI made by CreateImage was
	// made from (empty for a copy).
	SourceInstanceID string
	// SourceImageID and SourceImageRegion name the AMI this one was
	// copied from, as EC2 reports it for a copy (empty for an original,
	// and under moto, which does not report them).
	SourceImageID, SourceImageRegion string
	// State is the AMI state: "available", "pending", "failed", ...
	State string
	// StateReason is why the AMI is in its state (set for failed AMIs).
	StateReason string
	// Snapshots are the EBS snapshot ids of the AMI's block devices, in
	// device order.
	Snapshots []string
	// BakeID is the bake run that created the AMI (bakery:bake-id).
	BakeID string
	// CreationDate is when EC2 registered the AMI.
	CreationDate time.Time
	// Tags are all the AMI's tags.
	Tags map[string]string
}

// stateReason returns ": REASON" when the AMI has a state reason.
func (i Image) stateReason() string {
	if i.StateReason == "" {
		return ""
	}
	return ": " + i.StateReason
}

func stateMessage(r *ec2types.StateReason) *string {
	if r == nil {
		return nil
	}
	return r.Message
}

// Complete reports whether the bake that made the AMI finished: only
// then does it carry a bake key.
func (i Image) Complete() bool { return i.BakeKey != "" }

// Query selects AMIs by their bakery tags. Empty fields match anything;
// at least one of Recipe, BakeKey and BakeID must be set.
type Query struct {
	// Recipe, Artifact and Version match bakery:recipe,
	// bakery:artifact and bakery:version.
	Recipe, Artifact, Version string
	// BakeKey matches bakery:bake-key.
	BakeKey string
	// BakeID matches bakery:bake-id.
	BakeID string
	// Unfinished includes AMIs without a bake key (bakes that did not
	// complete). Default false: only complete AMIs.
	Unfinished bool
	// Tagged keeps only AMIs that carry every one of these tag keys, with
	// any value (such as StageTag("prod")).
	Tagged []string
}

// String describes q for error messages.
func (q Query) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("recipe", q.Recipe)
	add("artifact", q.Artifact)
	add("version", q.Version)
	add("bake-key", q.BakeKey)
	add("bake-id", q.BakeID)
	for _, k := range q.Tagged {
		add("tagged", k)
	}
	return strings.Join(parts, " ")
}

// filters returns the DescribeImages filters for q.
func (q Query) filters() []ec2types.Filter {
	var fs []ec2types.Filter
	add := func(key, value string) {
		if value != "" {
			fs = append(fs, ec2types.Filter{Name: aws.String("tag:" + key), Values: []string{value}})
		}
	}
	add(catalog.TagRecipe, q.Recipe)
	add(catalog.TagArtifact, q.Artifact)
	add(catalog.TagVersion, q.Version)
	add(catalog.TagBakeKey, q.BakeKey)
	add(catalog.TagBakeID, q.BakeID)
	for _, k := range q.Tagged {
		// tag:KEY=* rather than tag-key=KEY: a second tag-key filter
		// would have to be ORed into the one below.
		add(k, "*")
	}
	if q.BakeKey == "" && !q.Unfinished {
		fs = append(fs, ec2types.Filter{Name: aws.String("tag-key"), Values: []string{catalog.TagBakeKey}})
	}
	return fs
}

// Store reads AMIs from EC2 tags. It is safe for concurrent use.
type Store struct {
	client      func(region string) EC2
	concurrency int
}

// DefaultPollInterval is how often a LifecycleStore asks EC2 whether an
// AMI copy is available unless WithPollInterval says otherwise.
const DefaultPollInterval = DefaultPoll

// options are what Option sets, for a Store and a LifecycleStore alike.
type options struct {
	concurrency int
	now         func() time.Time
	clock       awsx.Clock
	poll        time.Duration
	copyTimeout time.Duration
	encrypted   bool
	kmsKeys     map[string]string
	journal     catalog.Journal
	moreRegions func(context.Context) ([]string, error)
}

func newOptions(opts []Option) options {
	o := options{concurrency: DefaultConcurrency, now: time.Now, poll: DefaultPollInterval, copyTimeout: DefaultCopyTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Option configures a Store or a LifecycleStore.
type Option func(*options)

// WithConcurrency bounds how many regions are queried (and, by a
// LifecycleStore, changed) at once. Default: DefaultConcurrency. Values
// below 1 mean 1.
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = max(1, n) } }

// WithClock sets the clock a LifecycleStore reads the time of an event
// from when the event has none. Default: time.Now. A nil clock keeps the
// default. A Store reads no clock.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithWaitClock sets the clock a LifecycleStore's waits (copies,
// convergence back-off) run on. Default: the system clock. Tests pass a
// fake one to drive timeouts without sleeping.
func WithWaitClock(c awsx.Clock) Option { return func(o *options) { o.clock = c } }

// WithPollInterval sets how often a LifecycleStore polls EC2 while it
// waits for an AMI copy to become available. Default:
// DefaultPollInterval. Values of zero or less keep the default. A Store
// does not poll.
func WithPollInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.poll = d
		}
	}
}

// WithCopyTimeout bounds the wait for one promotion copy. Default:
// DefaultCopyTimeout. Values of zero or less keep the default.
func WithCopyTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.copyTimeout = d
		}
	}
}

// WithEncryption says how a LifecycleStore encrypts the copies a promotion
// makes: encrypted (the machine_image's encrypted), with keys[region]
// (its region_kms_key_ids) where the stage names no key of its own
// (catalog.StageSpec.KMSKeyIDs). Default: not encrypted unless a key is
// named, which is how the bake made the source.
func WithEncryption(encrypted bool, keys map[string]string) Option {
	return func(o *options) { o.encrypted, o.kmsKeys = encrypted, keys }
}

// WithJournal makes a LifecycleStore append every event it records to j
// (the S3 ledger) before it writes the event on the AMIs, where older
// events are pruned to stay under EC2's tag limit. Default: none; history
// is then what the tags hold. A Store records no events.
func WithJournal(j catalog.Journal) Option { return func(o *options) { o.journal = j } }

// WithMoreRegions makes a LifecycleStore look for the artifact's AMIs in
// the regions more returns too (asked once, on first use), besides those
// it was given: every region enabled for the account
// (awsx.EnabledRegions), so that a version's copies in regions the
// recipe no longer names are still seen, revoked and shown. Default: only
// the given regions.
func WithMoreRegions(more func(context.Context) ([]string, error)) Option {
	return func(o *options) { o.moreRegions = more }
}

// NewStore returns a Store that calls EC2 in a region through the client
// that client(region) returns. client is called from several goroutines.
func NewStore(client func(region string) EC2, opts ...Option) *Store {
	return &Store{client: client, concurrency: newOptions(opts).concurrency}
}

// NewStoreFromConfig returns a Store whose EC2 clients come from cfg
// (awsx.NewEC2), one per region, created on first use.
func NewStoreFromConfig(cfg aws.Config, opts ...Option) *Store {
	clients := newClients(cfg)
	return NewStore(func(region string) EC2 { return clients.Get(region) }, opts...)
}

// newClients hands out one EC2 client per region of cfg.
func newClients(cfg aws.Config) *awsx.Regional[*ec2.Client] {
	return awsx.NewRegional(func(region string) *ec2.Client { return awsx.NewEC2(cfg, region) })
}

// Find returns the AMIs owned by this account that match q in each of
// regions, ordered by region (in the order given), newest first within a
// region. It makes one paginated DescribeImages call per region, up to
// the Store's concurrency at once.
func (s *Store) Find(ctx context.Context, regions []string, q Query) ([]Image, error) {
	if q.Recipe == "" && q.BakeKey == "" && q.BakeID == "" {
		return nil, fmt.Errorf("finding AMIs: the query names no recipe, bake key or bake id")
	}
	regions = dedupe(regions)
	found := make([][]Image, len(regions))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.concurrency)
	for i, region := range regions {
		g.Go(func() error {
			imgs, err := s.findIn(gctx, region, q)
			if err != nil {
				return fmt.Errorf("finding AMIs with %s: %w", q, err)
			}
			found[i] = imgs
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	total := 0
	for _, imgs := range found {
		total += len(imgs)
	}
	out := make([]Image, 0, total)
	for _, imgs := range found {
		out = append(out, imgs...)
	}
	return out, nil
}

func (s *Store) findIn(ctx context.Context, region string, q Query) ([]Image, error) {
	imgs, err := s.List(ctx, region, q.filters()...)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(imgs, func(a, b int) bool {
		if !imgs[a].Created.Equal(imgs[b].Created) {
			return imgs[a].Created.After(imgs[b].Created)
		}
		return imgs[a].ImageID < imgs[b].ImageID
	})
	return imgs, nil
}

// PageSize is how many AMIs a DescribeImages call asks for at most (the
// most EC2 allows), so that an account with many AMIs is read in pages of
// bounded size rather than in one answer of any size: 10,000 AMIs in a
// region take 10 calls. moto 5.2.5 ignores it and answers in one page.
const PageSize = 1000

// List returns this account's AMIs in region that match every one of
// filters (DescribeImages filters), in one paginated call, PageSize AMIs
// a page.
func (s *Store) List(ctx context.Context, region string, filters ...ec2types.Filter) ([]Image, error) {
	p := ec2.NewDescribeImagesPaginator(s.client(region), &ec2.DescribeImagesInput{
		Owners:     []string{"self"},
		Filters:    filters,
		MaxResults: aws.Int32(PageSize),
	})
	var imgs []Image
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing AMIs in %s: %w", region, awsx.ExplainError(err))
		}
		for _, img := range page.Images {
			imgs = append(imgs, FromEC2(region, img))
		}
	}
	return imgs, nil
}

// ByBakeKey returns, for each of regions holding one, the newest complete
// AMI whose bake key is key.
func (s *Store) ByBakeKey(ctx context.Context, key string, regions []string) (map[string]Image, error) {
	if key == "" {
		return nil, fmt.Errorf("finding AMIs by bake key: the key is empty")
	}
	imgs, err := s.Find(ctx, regions, Query{BakeKey: key})
	if err != nil {
		return nil, err
	}
	return newestPerRegion(imgs), nil
}

// ByVersion returns, for each of regions holding one, the newest complete
// AMI of recipe's artifact at version.
func (s *Store) ByVersion(ctx context.Context, recipe, artifact, version string, regions []string) (map[string]Image, error) {
	if recipe == "" || artifact == "" || version == "" {
		return nil, fmt.Errorf("finding AMIs by version: recipe, artifact and version must all be set (got %q, %q, %q)", recipe, artifact, version)
	}
	imgs, err := s.Find(ctx, regions, Query{Recipe: recipe, Artifact: artifact, Version: version})
	if err != nil {
		return nil, err
	}
	return newestPerRegion(imgs), nil
}

// intern returns the canonical copy of s (unique.Make): equal strings
// read from many AMIs share one allocation.
func intern(s string) string { return unique.Make(s).Value() }

// newestPerRegion keeps the first (newest) image of each region.
func newestPerRegion(imgs []Image) map[string]Image {
	out := map[string]Image{}
	for _, img := range imgs {
		if _, ok := out[img.Region]; !ok {
			out[img.Region] = img
		}
	}
	return out
}

// FromEC2 reads the catalog fields of img, an AMI in region. Tag keys
// and values are interned: the AMIs of a version carry the same tags in
// every region, and every AMI the same keys, so a listing of 10,000
// versions × 3 regions keeps one copy of each string, not one per AMI.
func FromEC2(region string, img ec2types.Image) Image {
	tags := make(map[string]string, len(img.Tags))
	for _, t := range img.Tags {
		tags[intern(aws.ToString(t.Key))] = intern(aws.ToString(t.Value))
	}
	out := Image{
		Image: catalog.Image{
			Ref:       catalog.Ref{Recipe: tags[catalog.TagRecipe], Version: tags[catalog.TagVersion]},
			Artifact:  tags[catalog.TagArtifact],
			Kind:      Kind,
			BakeKey:   tags[catalog.TagBakeKey],
			Reference: aws.ToString(img.ImageId),
			BaseName:  tags[catalog.TagSourceAMI],
		},
		Region:            region,
		ImageID:           aws.ToString(img.ImageId),
		Name:              aws.ToString(img.Name),
		Description:       aws.ToString(img.Description),
		SourceInstanceID:  aws.ToString(img.SourceInstanceId),
		SourceImageID:     aws.ToString(img.SourceImageId),
		SourceImageRegion: aws.ToString(img.SourceImageRegion),
		State:             string(img.State),
		StateReason:       aws.ToString(stateMessage(img.StateReason)),
		BakeID:            tags[catalog.TagBakeID],
		Tags:              tags,
	}
	if t, err := time.Parse(time.RFC3339, aws.ToString(img.CreationDate)); err == nil {
		out.CreationDate = t.UTC()
	}
	out.Created = out.CreationDate
	if t, err := time.Parse(time.RFC3339, tags[catalog.TagCreated]); err == nil {
		out.Created = t.UTC()
	}
	for _, bdm := range img.BlockDeviceMappings {
		if bdm.Ebs != nil && aws.ToString(bdm.Ebs.SnapshotId) != "" {
			out.Snapshots = append(out.Snapshots, aws.ToString(bdm.Ebs.SnapshotId))
		}
	}
	return out
}

// dedupe drops empty and repeated regions, keeping the first occurrence.
func dedupe(regions []string) []string {
	out := make([]string, 0, len(regions))
	for _, r := range regions {
		if r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}
