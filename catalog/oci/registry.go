package oci

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DefaultConcurrency is how many registry requests a [RegistryStore]
// issues at once unless [WithConcurrency] says otherwise.
const DefaultConcurrency = 8

// Registry reads baked images from OCI registries.
type Registry struct {
	keychain  authn.Keychain
	transport http.RoundTripper
	userAgent string
	jobs      int
}

// Compile-time check that Registry is a Store.
var _ Store = (*Registry)(nil)

// Option configures a [Registry].
type Option func(*Registry)

// WithKeychain sets where registry credentials come from. The default is
// authn.DefaultKeychain (docker's config.json and credential helpers).
func WithKeychain(kc authn.Keychain) Option {
	return func(r *Registry) { r.keychain = kc }
}

// WithTransport sets the HTTP transport used to reach registries. The
// default is remote.DefaultTransport.
func WithTransport(t http.RoundTripper) Option {
	return func(r *Registry) { r.transport = t }
}

// WithUserAgent adds ua to the User-Agent header of registry requests. The
// default is go-containerregistry's own User-Agent alone.
func WithUserAgent(ua string) Option {
	return func(r *Registry) { r.userAgent = ua }
}

// WithConcurrency bounds how many requests a [RegistryStore] issues at once
// when it reads one manifest and one referrers list per version. The
// default is [DefaultConcurrency]; values below 1 mean 1. Lookup is not
// affected.
func WithConcurrency(n int) Option {
	return func(r *Registry) { r.jobs = max(1, n) }
}

// NewRegistry returns a Registry configured by opts.
func NewRegistry(opts ...Option) *Registry {
	r := &Registry{keychain: authn.DefaultKeychain, transport: remote.DefaultTransport, jobs: DefaultConcurrency}
	for _, o := range opts {
		o(r)
	}
	return r
}

func (r *Registry) remoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(r.keychain),
		remote.WithTransport(r.transport),
	}
	if r.userAgent != "" {
		opts = append(opts, remote.WithUserAgent(r.userAgent))
	}
	return opts
}

// Lookup returns the image tagged ref, a full registry reference
// ("HOST/REPO:TAG" or "HOST/REPO@sha256:..."), or nil, nil if the registry
// has no such manifest. The catalog entry comes from the manifest's (or
// index's) annotations; its Size sums the manifest, config and layers (for
// an index, every child's, each blob counted once). It costs one manifest
// GET, plus one per child manifest of an index, and no blob requests.
func (r *Registry) Lookup(ctx context.Context, ref string) (*catalog.Image, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("looking up %q: %w: write it as HOST/REPO:TAG", ref, err)
	}
	repo := parsed.Context()
	opts := r.remoteOptions(ctx)
	desc, err := remote.Get(parsed, opts...)
	if err != nil {
		if ctx.Err() == nil && isAbsent(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("looking up %s: %w", ref, explain(ctx, repo, err))
	}
	blobs := map[v1.Hash]v1.Descriptor{}
	fetch := func(ctx context.Context, d v1.Descriptor) ([]byte, error) {
		child, err := remote.Get(repo.Digest(d.Digest.String()), opts...)
		if err != nil {
			return nil, explain(ctx, repo, err)
		}
		return child.Manifest, nil
	}
	if err := collect(ctx, desc.Descriptor, desc.Manifest, fetch, blobs); err != nil {
		return nil, fmt.Errorf("looking up %s: %w", ref, err)
	}
	return imageFromManifest(ref, desc.Digest, desc.Manifest, totalSize(blobs))
}

// explain is ExplainRegistryError, except that once ctx has ended the error
// is only about that.
func explain(ctx context.Context, repo name.Repository, err error) error {
	if ctx.Err() != nil {
		return err
	}
	return ExplainRegistryError(repo, err)
}

// ExplainRegistryError turns an error from a go-containerregistry call on
// repo (remote.Get, remote.Write, ...) into one that says what to do, still
// wrapping err: refused credentials (401/403, UNAUTHORIZED, DENIED), an
// unreachable registry (connection refused, DNS failure), a server that is
// not a registry, or a missing manifest. Other errors, cancellation among
// them, are returned unchanged; nil stays nil.
func ExplainRegistryError(repo name.Repository, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	host := repo.RegistryStr()
	var terr *transport.Error
	if errors.As(err, &terr) {
		if terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden {
			return credentialsError(host, repo.RepositoryStr(), err)
		}
		for _, d := range terr.Errors {
			if d.Code == transport.UnauthorizedErrorCode || d.Code == transport.DeniedErrorCode {
				return credentialsError(host, repo.RepositoryStr(), err)
			}
		}
		if terr.StatusCode == http.StatusNotFound {
			if !onManifest(terr) {
				return fmt.Errorf("%s does not answer as an OCI registry: check the address: %w", host, err)
			}
			return fmt.Errorf("registry %s has no such manifest in %s: check the tag or digest: %w", host, repo.RepositoryStr(), err)
		}
		return fmt.Errorf("registry %s answered: %w", host, err)
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.Is(err, syscall.ECONNREFUSED) ||
		(errors.As(err, &opErr) && opErr.Op == "dial") {
		return fmt.Errorf("registry %s is unreachable: %w: check the address or start the registry", host, err)
	}
	return err
}

// isAbsent reports whether err says the manifest (or its whole repository)
// does not exist, as opposed to the server not being a registry.
func isAbsent(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) || !onManifest(terr) {
		return false
	}
	for _, d := range terr.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
			return true
		}
	}
	return terr.StatusCode == http.StatusNotFound && len(terr.Errors) == 0
}

// onManifest reports whether the failed request was for a manifest, rather
// than, say, the /v2/ ping.
func onManifest(terr *transport.Error) bool {
	return terr.Request == nil || strings.Contains(terr.Request.URL.Path, "/manifests/")
}

func credentialsError(host, repo string, err error) error {
	return fmt.Errorf("registry %s refused credentials for %s: run `docker login %s` or set up a credential helper: %w", host, repo, host, err)
}
