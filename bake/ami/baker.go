package ami

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// OnError says what a failed or interrupted bake does with what it made.
type OnError int

const (
	// OnErrorCleanup removes every resource the bake created: builder,
	// key pair, security group, AMIs and snapshots in every region.
	OnErrorCleanup OnError = iota
	// OnErrorAbort keeps every resource for debugging and names them in
	// the error (*AbortedError). Temporary resources are still removed
	// after a successful bake.
	OnErrorAbort
)

// String returns "cleanup" or "abort".
func (o OnError) String() string {
	if o == OnErrorAbort {
		return "abort"
	}
	return "cleanup"
}

// Defaults of the options.
const (
	DefaultCleanupTimeout  = 10 * time.Minute
	DefaultCopyConcurrency = 4
	DefaultPollInterval    = 2 * time.Second
)

// Baker bakes AMIs. It is safe for concurrent use by several bakes.
type Baker struct {
	actor           string
	cfg             aws.Config
	clients         *clients
	store           *catalogami.Store
	progress        progress.Reporter
	out             io.Writer
	now             func() time.Time
	onError         OnError
	cleanupTimeout  time.Duration
	copyConcurrency int
	pollInterval    time.Duration
	bakeID          func() string
	getenv          func(string) string
}

// Option configures a Baker.
type Option func(*Baker)

// WithProgress sets where step lines go. Default: nowhere
// (progress.Discard()).
func WithProgress(r progress.Reporter) Option { return func(b *Baker) { b.progress = r } }

// WithOutput sets where the provisioners' output (and SSH connection
// messages) is streamed. Default: io.Discard.
func WithOutput(w io.Writer) Option { return func(b *Baker) { b.out = w } }

// WithClock sets the clock that dates bakes (bakery:created, the default
// AMI name) and ages resources for Sweep. Default: time.Now.
func WithClock(now func() time.Time) Option { return func(b *Baker) { b.now = now } }

// WithOnError sets what a failed bake does with what it created. Default:
// OnErrorCleanup.
func WithOnError(o OnError) Option { return func(b *Baker) { b.onError = o } }

// WithCleanupTimeout bounds all the cleanups of one bake together (they
// run on a fresh context, so an interrupted bake still cleans up).
// Default: DefaultCleanupTimeout (10 minutes).
func WithCleanupTimeout(d time.Duration) Option { return func(b *Baker) { b.cleanupTimeout = d } }

// WithCopyConcurrency bounds how many regions an AMI is copied to at once.
// Default: DefaultCopyConcurrency (4). Values below 1 mean 1.
func WithCopyConcurrency(n int) Option { return func(b *Baker) { b.copyConcurrency = max(1, n) } }

// WithPollInterval sets how often the baker asks EC2 whether an instance
// or AMI reached the state it waits for. Default: DefaultPollInterval (2s).
func WithPollInterval(d time.Duration) Option { return func(b *Baker) { b.pollInterval = d } }

// WithActor sets who bakes, recorded as the bakery:created-by tag.
// Default: "" (not recorded).
func WithActor(actor string) Option { return func(b *Baker) { b.actor = actor } }

// WithBakeID sets the function that names each bake run; the name is the
// bakery:bake-id tag on everything the run creates and part of the
// temporary key pair and security group names. Default: "bk-" and 12
// random hex digits.
func WithBakeID(f func() string) Option { return func(b *Baker) { b.bakeID = f } }

// WithGetenv sets how the Baker reads its environment. It reads
// BAKERY_CHECKIP_URL: the URL that answers this runner's public address
// (one IP and a newline), asked when the builder is reached on its public
// IP and the recipe sets no ssh_source_cidrs. Unset or empty, it is
// DefaultCheckIPURL. Default: os.Getenv.
func WithGetenv(getenv func(string) string) Option { return func(b *Baker) { b.getenv = getenv } }

// NewBaker returns a Baker that calls AWS with cfg. cfg.Region is the
// build region of recipes that name none.
func NewBaker(cfg aws.Config, opts ...Option) (*Baker, error) {
	b := &Baker{
		cfg:             cfg,
		clients:         &clients{cfg: cfg},
		progress:        progress.Discard(),
		out:             io.Discard,
		now:             time.Now,
		cleanupTimeout:  DefaultCleanupTimeout,
		copyConcurrency: DefaultCopyConcurrency,
		pollInterval:    DefaultPollInterval,
		bakeID:          randomBakeID,
		getenv:          os.Getenv,
	}
	for _, o := range opts {
		o(b)
	}
	if b.progress == nil {
		b.progress = progress.Discard()
	}
	if b.out == nil {
		b.out = io.Discard
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.bakeID == nil {
		b.bakeID = randomBakeID
	}
	if b.getenv == nil {
		b.getenv = os.Getenv
	}
	if b.cleanupTimeout <= 0 {
		return nil, fmt.Errorf("creating the AMI baker: cleanup timeout %s is not positive", b.cleanupTimeout)
	}
	if b.pollInterval <= 0 {
		return nil, fmt.Errorf("creating the AMI baker: poll interval %s is not positive", b.pollInterval)
	}
	b.store = catalogami.NewStore(func(region string) catalogami.EC2 { return b.clients.EC2(region) })
	return b, nil
}

func randomBakeID() string {
	var buf [6]byte
	_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails
	return "bk-" + hex.EncodeToString(buf[:])
}

// Plan is a prepared AMI bake: regions checked, source AMI resolved, bake
// key computed. Nothing has been created yet.
type Plan struct {
	// Key is the bake key.
	Key string
	// Recipe and Version are the recipe's name and version; Artifact is
	// the machine_image block's name.
	Recipe, Version, Artifact string
	// BuildRegion is where the builder runs and the AMI is created.
	BuildRegion string
	// Regions are BuildRegion followed by the regions the AMI is copied
	// to, without repeats.
	Regions []string
	// SourceAMI is the resolved source AMI id in BuildRegion.
	SourceAMI string
	// SourceAMIName is the source AMI's name.
	SourceAMIName string

	recipe  *recipes.Recipe
	machine *recipes.MachineImage
	source  sourceImage
}

// sourceImage is what a bake needs to know of its source AMI.
type sourceImage struct {
	id, name, rootDevice, arch string
	rootSize                   int32 // GiB; 0 when unknown
}

// CopyRegions returns the regions the AMI is copied to.
func (p *Plan) CopyRegions() []string { return p.Regions[1:] }

// RegionImage is an AMI in one region.
type RegionImage struct {
	// Region is the AWS region.
	Region string `json:"region"`
	// ImageID is the AMI id.
	ImageID string `json:"image_id"`
	// Snapshots are the AMI's EBS snapshot ids.
	Snapshots []string `json:"snapshots,omitempty"`
}

// Existing is what the catalog holds for a plan's recipe, artifact and
// version.
type Existing struct {
	// BakeKey is the bake key the existing AMIs carry.
	BakeKey string
	// Images are the existing AMIs, in the plan's region order; a region
	// without one is missing.
	Images []RegionImage
}

// Missing returns the regions of p that hold no AMI of e.
func (e *Existing) Missing(p *Plan) []string {
	var out []string
	for _, r := range p.Regions {
		if !slices.ContainsFunc(e.Images, func(i RegionImage) bool { return i.Region == r }) {
			out = append(out, r)
		}
	}
	return out
}

// Existing returns the complete AMIs tagged with p's recipe, artifact and
// version in p's regions, or nil when there are none. The engine bakes
// nothing when their BakeKey is p.Key and no region is missing, and
// refuses to bake when it differs (a version is immutable). Existing
// fails when regions disagree on the key.
func (b *Baker) Existing(ctx context.Context, p *Plan) (*Existing, error) {
	found, err := b.store.ByVersion(ctx, p.Recipe, p.Artifact, p.Version, p.Regions)
	if err != nil {
		return nil, fmt.Errorf("machine image %s: looking up version %s: %w", p.Artifact, p.Version, err)
	}
	if len(found) == 0 {
		return nil, nil
	}
	e := &Existing{}
	var keys []string
	for _, r := range p.Regions {
		img, ok := found[r]
		if !ok {
			continue
		}
		if e.BakeKey == "" {
			e.BakeKey = img.BakeKey
		}
		if img.BakeKey != e.BakeKey {
			keys = append(keys, fmt.Sprintf("%s in %s", img.BakeKey, r))
		}
		e.Images = append(e.Images, RegionImage{Region: r, ImageID: img.ImageID, Snapshots: img.Snapshots})
	}
	if len(keys) > 0 {
		return nil, fmt.Errorf("machine image %s: version %s is stored with different bake keys (%s in %s, %s); a version is immutable: bump the recipe version to bake a new one",
			p.Artifact, p.Version, e.BakeKey, e.Images[0].Region, strings.Join(keys, ", "))
	}
	return e, nil
}
