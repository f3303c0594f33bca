package oci

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bakery-sh/bakery/bake/bakekey"
	"github.com/bakery-sh/bakery/catalog"
	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// keyScheme names the bake key layout for container images. Changing how
// keys are computed must change it, so old keys never match new bakes.
// v2: the canonical recipe names the container's compression, and the
// key has an "oci.compression" part (compressionFormat); input file
// contents are hashed with BLAKE3 (newInputHash).
const keyScheme = "bakery/oci/v2"

// Baker bakes container images: it resolves bases, computes bake keys,
// builds layers and writes images to the local OCI layout or a registry.
type Baker struct {
	home      string
	epoch     time.Time
	keychain  authn.Keychain
	transport http.RoundTripper
	progress  progress.Reporter
	jobs      int
	now       func() time.Time
	actor     string
	version   string
}

// Option configures a Baker.
type Option func(*Baker)

// WithHome sets the local OCI layout folder. Default: ".bakery".
func WithHome(dir string) Option { return func(b *Baker) { b.home = dir } }

// WithEpoch sets the timestamp written into layers, config and the
// created annotation. Default: the Unix epoch (reproducible output).
func WithEpoch(t time.Time) Option { return func(b *Baker) { b.epoch = t.UTC() } }

// WithKeychain sets registry credentials. Default: authn.DefaultKeychain
// (Docker config and credential helpers).
func WithKeychain(k authn.Keychain) Option { return func(b *Baker) { b.keychain = k } }

// WithTransport sets the HTTP transport for registries. Default:
// remote.DefaultTransport.
func WithTransport(t http.RoundTripper) Option { return func(b *Baker) { b.transport = t } }

// WithProgress sets where step lines and progress bars go. Default: nowhere.
func WithProgress(r progress.Reporter) Option { return func(b *Baker) { b.progress = r } }

// WithJobs bounds concurrent layer builds and blob uploads. Default:
// GOMAXPROCS.
func WithJobs(n int) Option { return func(b *Baker) { b.jobs = n } }

// WithClock sets the clock of the bake event recorded in the image's
// history (the image itself carries the epoch). Default: time.Now.
func WithClock(now func() time.Time) Option { return func(b *Baker) { b.now = now } }

// WithActor sets who bakes, for the history. Default: "" (unknown).
func WithActor(actor string) Option { return func(b *Baker) { b.actor = actor } }

// NewBaker returns a Baker.
func NewBaker(opts ...Option) (*Baker, error) {
	b := &Baker{
		home:      ".bakery",
		epoch:     time.Unix(0, 0).UTC(),
		keychain:  authn.DefaultKeychain,
		transport: remote.DefaultTransport,
		progress:  progress.Discard(),
		jobs:      runtime.GOMAXPROCS(0),
		now:       time.Now,
		version:   "dev",
	}
	for _, o := range opts {
		o(b)
	}
	if b.jobs < 1 {
		b.jobs = 1
	}
	return b, nil
}

// Plan is a prepared container bake: base pinned, target known.
// Nothing has been written yet.
type Plan struct {
	// Key is the bake key, once known: Baker.Key computes it by reading
	// every input, and Baker.Build, when it is not known yet, as it
	// reads them to build the layers (a bake with nothing to compare
	// the key with reads its inputs once).
	Key string
	// Target is where the image goes: "REPO:VERSION" in a registry, or
	// "NAME:VERSION" in the local layout.
	Target string
	// Location is the local layout folder, or "" for a registry target.
	Location string

	recipe    *recipes.Recipe
	container *recipes.Container
	base      *base
	tag       name.Tag // set for registry targets
	// keyer holds every part of the key but the inputs until Key is set.
	keyer *bakekey.Hasher
	// sums are the content hashes of each layer's inputs (see
	// hashInputs), which key the SBOM's digest cache; set with Key.
	sums []inputSums
}

// Prepare resolves the base image by digest and starts the bake key with
// everything but the inputs, which Key (or Build) adds. It reads but
// writes nothing.
func (b *Baker) Prepare(ctx context.Context, r *recipes.Recipe, c *recipes.Container) (*Plan, error) {
	p := &Plan{container: c}
	if err := b.target(p, r); err != nil {
		return nil, err
	}
	step := progress.For(ctx, b.progress).Step(fmt.Sprintf("%s: resolve base %s", c.Name, c.Base))
	bs, err := b.resolveBase(ctx, c)
	step.Done(err)
	if err != nil {
		return nil, err
	}
	p.base = bs
	k := bakekey.New(keyScheme)
	k.Add("recipe", recipes.Canonical(r, c))
	k.AddString("base", bs.name+"@"+bs.digest)
	k.AddString("epoch", b.epoch.Format(time.RFC3339))
	k.AddString("oci.compression", compressionFormat(c.Compression))
	p.keyer = k
	return p, nil
}

// target sets p's recipe and where its image goes, for r's version.
func (b *Baker) target(p *Plan, r *recipes.Recipe) error {
	c := p.container
	p.recipe = r
	if c.Repository != "" {
		tag, err := name.NewTag(c.Repository + ":" + r.Version)
		if err != nil {
			return fmt.Errorf("container %s: %s:%s is not a valid image tag: %w; versions may use letters, digits, '.', '_' and '-'", c.Name, c.Repository, r.Version, err)
		}
		p.tag, p.Target = tag, tag.String()
		return nil
	}
	if _, err := name.NewTag("bakery.local/"+c.Name+":"+r.Version, name.StrictValidation); err != nil {
		return fmt.Errorf("container %s: version %q is not a valid image tag: %w; versions may use letters, digits, '.', '_' and '-'", c.Name, r.Version, err)
	}
	p.Target, p.Location = c.Name+":"+r.Version, b.home
	return nil
}

// Key sets p.Key, reading every input of the bake (see HashInputs),
// unless it is known already. It is the whole cost of a bake that finds
// its image up to date.
func (b *Baker) Key(ctx context.Context, p *Plan) error {
	if p.Key != "" {
		return nil
	}
	c := p.container
	step := progress.For(ctx, b.progress).Step(fmt.Sprintf("%s: hash inputs", c.Name))
	sums, err := hashInputs(ctx, c.Layers, p.keyer, runtime.GOMAXPROCS(0))
	step.Done(err)
	if err != nil {
		return fmt.Errorf("container %s: hashing inputs: %w", c.Name, err)
	}
	p.Key, p.keyer, p.sums = p.keyer.Sum(), nil, sums
	return nil
}

// Existing returns the image already at p's target, or nil if there is none.
func (b *Baker) Existing(ctx context.Context, p *Plan) (*catalog.Image, error) {
	store, err := b.store(p)
	if err != nil {
		return nil, err
	}
	img, err := store.Lookup(ctx, p.Target)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", p.container.Name, err) // err names the target
	}
	return img, nil
}

func (b *Baker) store(p *Plan) (catalogoci.Store, error) {
	if p.Location != "" {
		l, err := catalogoci.OpenLayout(p.Location)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	return catalogoci.NewRegistry(catalogoci.WithKeychain(b.keychain), catalogoci.WithTransport(b.transport)), nil
}

func (b *Baker) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(b.keychain),
		remote.WithTransport(b.transport),
		remote.WithJobs(b.jobs),
		remote.WithUserAgent("bakery"),
	}
}
