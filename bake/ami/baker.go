package ami

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/redact"
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

// Defaults of the options and of the recipe's timeouts block.
const (
	DefaultCleanupTimeout  = 10 * time.Minute
	DefaultCopyConcurrency = 4
	// DefaultPollInterval is how often a wait asks EC2, as Packer does.
	DefaultPollInterval = catalogami.DefaultPoll
	// DefaultInstanceTimeout bounds a wait for the builder to be running,
	// stopped or terminated.
	DefaultInstanceTimeout = 10 * time.Minute
	// DefaultImageTimeout bounds the wait for the new AMI.
	DefaultImageTimeout = catalogami.DefaultImageTimeout
	// DefaultCopyTimeout bounds the wait for each region's copy.
	DefaultCopyTimeout = catalogami.DefaultCopyTimeout
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
	maxWait         time.Duration
	heartbeatEvery  time.Duration
	clock           awsx.Clock
	bakeID          func() string
	ops             *catalogami.Ops
	fleet           *fleet.Inventory
	secrets         []string
	getenv          func(string) string
	documents       func(r *recipes.Recipe) (DocumentStore, error)
	version         string
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
// or AMI reached the state it waits for. Default: DefaultPollInterval
// (15 s).
func WithPollInterval(d time.Duration) Option { return func(b *Baker) { b.pollInterval = d } }

// WithMaxWait caps every wait of a bake (instance, AMI, copy) at d,
// whatever the recipe's timeouts block says; tests use it to fail fast.
// Default: 0, no cap.
func WithMaxWait(d time.Duration) Option { return func(b *Baker) { b.maxWait = d } }

// DefaultHeartbeat is how often a running bake refreshes the
// bakery:heartbeat tag on its resources.
const DefaultHeartbeat = 5 * time.Minute

// WithHeartbeat sets how often a running bake refreshes the
// bakery:heartbeat tag on its resources. Default: DefaultHeartbeat.
// Values of zero or less keep the default.
func WithHeartbeat(d time.Duration) Option {
	return func(b *Baker) {
		if d > 0 {
			b.heartbeatEvery = d
		}
	}
}

// WithWaitClock sets the clock the baker's waits and retries run on.
// Default: the system clock. Tests pass a fake one.
func WithWaitClock(c awsx.Clock) Option { return func(b *Baker) { b.clock = c } }

// WithActor sets who bakes, recorded as the bakery:created-by tag.
// Default: "" (not recorded).
func WithActor(actor string) Option { return func(b *Baker) { b.actor = actor } }

// WithBakeID sets the function that names each bake run; the name is the
// bakery:bake-id tag on everything the run creates and part of the
// temporary key pair and security group names. Default: "bk-" and 12
// random hex digits.
func WithBakeID(f func() string) Option { return func(b *Baker) { b.bakeID = f } }

// WithSecrets sets strings that never reach the output (WithOutput) or a
// provisioner's error message: each is replaced by "(sensitive value)", as
// package redact does. Pass Secrets of every recipe the Baker bakes.
// Default: none; the env values of a shell provisioner are masked in its
// own output and error even so.
func WithSecrets(secrets []string) Option {
	return func(b *Baker) { b.secrets = append(b.secrets, secrets...) }
}

// WithGetenv sets how the Baker reads its environment. It reads
// BAKERY_CHECKIP_URL: the URL that answers this runner's public address
// (one IP and a newline), asked when the builder is reached on its public
// IP and the recipe sets no ssh_source_cidrs. Unset or empty, it is
// DefaultCheckIPURL. It also reads BAKERY_HOME: a bake that fails under
// OnErrorAbort and keeps its builder saves its in-memory SSH key there
// (see AbortedError.KeyFile). Default: os.Getenv.
func WithGetenv(getenv func(string) string) Option { return func(b *Baker) { b.getenv = getenv } }

// NewBaker returns a Baker that calls AWS with cfg. cfg.Region is the
// build region of recipes that name none.
func NewBaker(cfg aws.Config, opts ...Option) (*Baker, error) {
	b := &Baker{
		cfg:             cfg,
		clients:         newClients(cfg),
		progress:        progress.Discard(),
		out:             io.Discard,
		now:             time.Now,
		cleanupTimeout:  DefaultCleanupTimeout,
		copyConcurrency: DefaultCopyConcurrency,
		pollInterval:    DefaultPollInterval,
		heartbeatEvery:  DefaultHeartbeat,
		bakeID:          randomBakeID,
		getenv:          os.Getenv,
		version:         "dev",
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
	if len(b.secrets) > 0 {
		// Everything written to out is whole lines, so the writer holds
		// nothing back between bakes.
		b.out = redact.NewWriter(b.out, b.secrets...)
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
	if b.clock == nil {
		b.clock = awsx.SystemClock()
	}
	b.store = catalogami.NewStore(func(region string) catalogami.EC2 { return b.clients.EC2(region) })
	b.ops = catalogami.NewOps(func(region string) catalogami.API { return b.clients.EC2(region) }, b.pollInterval, b.clock)
	b.fleet = fleet.NewFromConfig(b.cfg, fleet.WithClock(b.clock), fleet.WithPollInterval(b.pollInterval))
	return b, nil
}

// timeout is the recipe's timeout (def when the recipe sets none), capped
// by WithMaxWait.
func (b *Baker) timeout(recipe, def time.Duration) time.Duration {
	if recipe <= 0 {
		recipe = def
	}
	if b.maxWait > 0 {
		recipe = min(recipe, b.maxWait)
	}
	return recipe
}

// wait returns the bounded wait for what (see timeout).
func (b *Baker) wait(what string, timeout, def time.Duration) awsx.Wait {
	return awsx.Wait{What: what, Timeout: b.timeout(timeout, def), Interval: b.pollInterval, Clock: b.clock}
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
	// SourceAMIOwner is the account id that owns the source AMI.
	SourceAMIOwner string
	// SourceAMICreated is the source AMI's creation date as EC2 gives it
	// (ISO 8601, "2026-09-30T18:04:05.000Z"); empty when unknown.
	SourceAMICreated string

	recipe  *recipes.Recipe
	machine *recipes.MachineImage
	source  sourceImage
}

// sourceImage is what a bake needs to know of its source AMI.
type sourceImage struct {
	id, name, rootDevice, arch string
	owner, created             string
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

// Fill copies the existing AMIs of p's version to the regions of p that
// lack one (a region added to the recipe, or a copy deleted), instead of
// baking again: the same bytes, with the version's tags, stage marks and
// history, encrypted with each region's key, and shared like the others.
// It returns the version's AMI in every region of p, in p's order.
func (b *Baker) Fill(ctx context.Context, p *Plan, e *Existing) ([]RegionImage, error) {
	if p == nil || p.machine == nil {
		return nil, errors.New("copying AMIs: the plan was not made by Prepare")
	}
	m := p.machine
	missing := e.Missing(p)
	if len(missing) == 0 {
		return e.Images, nil
	}
	keys := maps.Clone(m.RegionKMSKeyIDs)
	if keys == nil {
		keys = map[string]string{}
	}
	if m.KMSKeyID != "" {
		keys[p.BuildRegion] = m.KMSKeyID
	}
	store := catalogami.NewLifecycleStore(b.cfg, p.Recipe, p.Artifact, p.Regions,
		catalogami.WithEncryption(m.Encrypted, keys),
		catalogami.WithPollInterval(b.pollInterval),
		catalogami.WithCopyTimeout(b.timeout(m.Timeouts.Copy, DefaultCopyTimeout)),
		catalogami.WithWaitClock(b.clock),
		catalogami.WithClock(b.now))
	step := progress.WithPrefix(progress.For(ctx, b.progress), m.Name+": ").Step("copy to " + strings.Join(missing, ", "))
	imgs, err := store.Replicate(ctx, p.Version, missing)
	if err == nil && len(m.ShareWith) > 0 {
		for _, img := range imgs {
			if err = b.ops.Share(ctx, img, m.ShareWith); err != nil {
				err = fmt.Errorf("%s: %w", m.Pos("share_with"), err)
				break
			}
		}
	}
	if after := p.recipe.Retain.DeprecateAfter; err == nil && after > 0 {
		// A copy does not keep its source's deprecation time.
		for _, img := range imgs {
			at := img.Created.Add(after)
			if soon := b.now().Add(time.Minute); at.Before(soon) {
				at = soon // its time has passed: deprecated at once
			}
			if err = b.ops.Deprecate(ctx, img.Region, img.ImageID, at); err != nil {
				break
			}
		}
	}
	step.Done(err)
	if err != nil {
		return nil, fmt.Errorf("machine image %s: %w", m.Name, err)
	}
	out := slices.Clone(e.Images)
	for _, img := range imgs {
		out = append(out, RegionImage{Region: img.Region, ImageID: img.ImageID, Snapshots: img.Snapshots})
	}
	slices.SortStableFunc(out, func(a, c RegionImage) int {
		return slices.Index(p.Regions, a.Region) - slices.Index(p.Regions, c.Region)
	})
	return out, nil
}

// Replace retires the AMIs of old that a forced rebake (res) replaced, as
// Packer's force_deregister and force_delete_snapshot do, but without
// losing anything: in each region the new AMI first takes over the old
// one's stage marks, revocation, history and launch permissions (see
// catalogami.Ops.Supersede), then the old AMI is deregistered and each of
// its snapshots deleted. A version has one AMI per region again.
func (b *Baker) Replace(ctx context.Context, p *Plan, old *Existing, res *Result) error {
	var errs []error
	for _, o := range old.Images {
		i := slices.IndexFunc(res.Images, func(n RegionImage) bool { return n.Region == o.Region })
		if i < 0 || res.Images[i].ImageID == o.ImageID {
			continue
		}
		n := res.Images[i]
		err := b.ops.Supersede(ctx,
			catalogami.Image{Region: o.Region, ImageID: o.ImageID, Snapshots: o.Snapshots},
			catalogami.Image{Region: n.Region, ImageID: n.ImageID, Snapshots: n.Snapshots})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("machine image %s: the new AMIs are complete, but replacing the old ones failed: %w (bake again with --force to finish)", p.Artifact, err)
	}
	return nil
}

// checkName refuses, before anything is created, a fixed ami_name that an
// AMI in one of p's regions has already: EC2 names are unique per region
// and account, so CreateImage or CopyImage would fail after the builder
// ran.
func (b *Baker) checkName(ctx context.Context, p *Plan) error {
	m := p.machine
	if m.AMIName == "" {
		return nil
	}
	for _, r := range p.Regions {
		imgs, err := b.store.List(ctx, r, filter("name", m.AMIName))
		if err != nil {
			return fmt.Errorf("%s: checking that AMI name %q is free in %s: %w", m.Pos("ami_name"), m.AMIName, r, err)
		}
		for _, img := range imgs {
			owner := ""
			if img.Recipe != "" {
				owner = fmt.Sprintf(", %s@%s", img.Recipe, img.Version)
			}
			return fmt.Errorf("%s: an AMI named %q exists in %s already (%s%s): AMI names are unique per region; change ami_name (a fixed name cannot be baked twice, not even with --force), or leave it out to name AMIs %s-%s-TIMESTAMP",
				m.Pos("ami_name"), m.AMIName, r, img.ImageID, owner, p.Recipe, p.Version)
		}
	}
	return nil
}
