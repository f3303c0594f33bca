package oci

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// staticKeychain hands out one authenticator for every registry.
type staticKeychain struct{ auth authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, nil }

var anonymous = staticKeychain{authn.Anonymous}

// requestLog records the requests a registry served.
type requestLog struct {
	mu   sync.Mutex
	reqs []string
	ua   []string
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.Path)
		l.ua = append(l.ua, r.UserAgent())
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) reset() {
	l.mu.Lock()
	l.reqs, l.ua = nil, nil
	l.mu.Unlock()
}

func (l *requestLog) count(method, pathPart string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.reqs {
		if strings.HasPrefix(r, method+" ") && strings.Contains(r, pathPart) {
			n++
		}
	}
	return n
}

// newRegistry starts an in-process registry, wrapped by wrap when not nil,
// and returns its host.
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) (host string, srv *httptest.Server) {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv = httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), srv
}

var bakeAnnotations = map[string]string{
	catalog.AnnotationRecipe:     "hello",
	catalog.AnnotationArtifact:   "app",
	catalog.AnnotationVersion:    "1.1.0",
	catalog.AnnotationBakeKey:    "sha256:abc",
	catalog.AnnotationBaseName:   "docker.io/library/alpine:3.20",
	catalog.AnnotationBaseDigest: "sha256:def",
	catalog.AnnotationCreated:    "2025-03-01T10:20:30Z",
}

func TestRegistryLookupImage(t *testing.T) {
	ctx := context.Background()
	var rl requestLog
	host, _ := newRegistry(t, rl.wrap)
	img := randomImage(t, bakeAnnotations)
	ref := host + "/team/hello:1.1.0"
	if err := remote.Write(mustRef(t, ref), img); err != nil {
		t.Fatal(err)
	}

	rl.reset()
	r := NewRegistry(WithKeychain(anonymous), WithUserAgent("bakery/test"))
	got, err := r.Lookup(ctx, ref)
	if err != nil || got == nil {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	want := wantImage(t, ref, img, bakeAnnotations[catalog.AnnotationCreated])
	want.Size = imageSize(t, img)
	if *got != want {
		t.Errorf("Lookup =\n%+v\nwant\n%+v", *got, want)
	}
	if n := rl.count("GET", "/manifests/"); n != 1 {
		t.Errorf("Lookup made %d manifest GETs, want 1 (%v)", n, rl.reqs)
	}
	if n := rl.count("", "/blobs/"); n != 0 {
		t.Errorf("Lookup made %d blob requests, want none (%v)", n, rl.reqs)
	}
	for _, ua := range rl.ua {
		if !strings.Contains(ua, "bakery/test") {
			t.Errorf("User-Agent %q lacks bakery/test", ua)
		}
	}

	// By digest too.
	byDigest := host + "/team/hello@" + want.Digest
	if got, err := r.Lookup(ctx, byDigest); err != nil || got == nil || got.Digest != want.Digest {
		t.Errorf("Lookup(by digest) = %+v, %v", got, err)
	}
}

func TestRegistryLookupIndex(t *testing.T) {
	ctx := context.Background()
	var rl requestLog
	host, _ := newRegistry(t, rl.wrap)
	base, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	layer, _ := random.Layer(512, types.OCILayer)
	second, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: base}, mutate.IndexAddendum{Add: second})
	idx = mutate.Annotations(idx, bakeAnnotations).(v1.ImageIndex)
	ref := host + "/hello:1.1.0"
	if err := remote.WriteIndex(mustRef(t, ref), idx); err != nil {
		t.Fatal(err)
	}
	rl.reset()
	got, err := NewRegistry(WithKeychain(anonymous)).Lookup(ctx, ref)
	if err != nil || got == nil {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	want := wantImage(t, ref, idx, bakeAnnotations[catalog.AnnotationCreated])
	want.Size = indexSize(t, idx)
	if *got != want {
		t.Errorf("Lookup =\n%+v\nwant\n%+v", *got, want)
	}
	if n := rl.count("", "/blobs/"); n != 0 {
		t.Errorf("Lookup made %d blob requests, want none (%v)", n, rl.reqs)
	}
	if n := rl.count("GET", "/manifests/"); n != 3 {
		t.Errorf("Lookup made %d manifest GETs, want 3: index and two children (%v)", n, rl.reqs)
	}
}

func TestRegistryLookupMiss(t *testing.T) {
	ctx := context.Background()
	host, _ := newRegistry(t, nil)
	if err := remote.Write(mustRef(t, host+"/hello:1.0.0"), randomImage(t, nil)); err != nil {
		t.Fatal(err)
	}
	r := NewRegistry(WithKeychain(anonymous))
	for _, ref := range []string{host + "/hello:9.9.9", host + "/nosuchrepo:1"} {
		if got, err := r.Lookup(ctx, ref); got != nil || err != nil {
			t.Errorf("Lookup(%s) = %v, %v; want nil, nil", ref, got, err)
		}
	}
	if _, err := r.Lookup(ctx, "Not A Reference"); err == nil || !strings.Contains(err.Error(), "HOST/REPO:TAG") {
		t.Errorf("Lookup(bad reference) = %v", err)
	}
}

// requireBasicAuth answers 401 unless the request carries user:pass.
func requireBasicAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func TestRegistryLookupRefusedCredentials(t *testing.T) {
	ctx := context.Background()
	host, _ := newRegistry(t, requireBasicAuth)
	good := staticKeychain{&authn.Basic{Username: "user", Password: "pass"}}
	ref := host + "/hello:1.1.0"
	img := randomImage(t, bakeAnnotations)
	if err := remote.Write(mustRef(t, ref), img, remote.WithAuthFromKeychain(good)); err != nil {
		t.Fatal(err)
	}

	_, err := NewRegistry(WithKeychain(anonymous)).Lookup(ctx, ref)
	want := "registry " + host + " refused credentials for hello: run `docker login " + host + "` or set up a credential helper"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Lookup without credentials = %v\nwant it to contain %q", err, want)
	}
	t.Logf("error: %v", err)

	bad := staticKeychain{&authn.Basic{Username: "user", Password: "wrong"}}
	if _, err := NewRegistry(WithKeychain(bad)).Lookup(ctx, ref); err == nil || !strings.Contains(err.Error(), "refused credentials") {
		t.Errorf("Lookup with a wrong password = %v", err)
	}
	if got, err := NewRegistry(WithKeychain(good)).Lookup(ctx, ref); err != nil || got == nil || got.Version != "1.1.0" {
		t.Errorf("Lookup with credentials = %+v, %v", got, err)
	}
}

func TestRegistryLookupUnreachable(t *testing.T) {
	host, srv := newRegistry(t, nil)
	srv.Close()
	_, err := NewRegistry(WithKeychain(anonymous)).Lookup(context.Background(), host+"/hello:1.1.0")
	if err == nil || !strings.Contains(err.Error(), "registry "+host+" is unreachable") || !strings.Contains(err.Error(), "check the address or start the registry") {
		t.Fatalf("Lookup on a closed registry = %v, want an unreachable error", err)
	}
	t.Logf("error: %v", err)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = NewRegistry(WithKeychain(anonymous)).Lookup(ctx, "no-such-host.invalid/hello:1")
	if err == nil || !strings.Contains(err.Error(), "registry no-such-host.invalid is unreachable") {
		t.Fatalf("Lookup on an unknown host = %v, want an unreachable error", err)
	}
	t.Logf("error: %v", err)
}

func TestRegistryWithTransport(t *testing.T) {
	host, _ := newRegistry(t, nil)
	ref := host + "/hello:1"
	if err := remote.Write(mustRef(t, ref), randomImage(t, nil)); err != nil {
		t.Fatal(err)
	}
	var calls int
	var mu sync.Mutex
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})
	if got, err := NewRegistry(WithKeychain(anonymous), WithTransport(tr)).Lookup(context.Background(), ref); err != nil || got == nil {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	if calls == 0 {
		t.Error("WithTransport's transport was not used")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistryLookupNotARegistry(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	got, err := NewRegistry(WithKeychain(anonymous)).Lookup(context.Background(), host+"/hello:1")
	if err == nil || !strings.Contains(err.Error(), "does not answer as an OCI registry") {
		t.Fatalf("Lookup on a plain web server = %v, %v; want a not-a-registry error", got, err)
	}
}

func TestExplainRegistryError(t *testing.T) {
	ctx := context.Background()
	host, _ := newRegistry(t, requireBasicAuth)
	repo := mustRef(t, host+"/hello:1").Context()

	// A push without credentials.
	err := remote.Write(mustRef(t, host+"/hello:1"), randomImage(t, nil), remote.WithAuthFromKeychain(anonymous), remote.WithContext(ctx))
	if got := ExplainRegistryError(repo, err); got == nil || !strings.Contains(got.Error(), "refused credentials for hello") || !errors.Is(got, err) {
		t.Errorf("ExplainRegistryError(push without credentials) = %v", got)
	}

	// A missing base image.
	plain, _ := newRegistry(t, nil)
	openRepo := mustRef(t, plain+"/alpine:3").Context()
	_, err = remote.Get(mustRef(t, plain+"/alpine:3"))
	if got := ExplainRegistryError(openRepo, err); got == nil || !strings.Contains(got.Error(), "has no such manifest in alpine") {
		t.Errorf("ExplainRegistryError(missing manifest) = %v", got)
	}

	if ExplainRegistryError(repo, nil) != nil {
		t.Error("ExplainRegistryError(nil) != nil")
	}
	if got := ExplainRegistryError(repo, context.Canceled); got != context.Canceled {
		t.Errorf("ExplainRegistryError(Canceled) = %v, want it unchanged", got)
	}
}
