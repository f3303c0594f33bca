package oci

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Test images are versions of recipe "web"'s container "hello".
const (
	testRecipe   = "web"
	testArtifact = "hello"
)

// bakedImage returns a random OCI image with bakery's annotations for
// version, created at created (RFC 3339).
func bakedImage(t *testing.T, version, created string) v1.Image {
	t.Helper()
	return randomImage(t, map[string]string{
		catalog.AnnotationRecipe:   testRecipe,
		catalog.AnnotationArtifact: testArtifact,
		catalog.AnnotationVersion:  version,
		catalog.AnnotationCreated:  created,
		catalog.AnnotationBakeKey:  "sha256:key-" + version,
	})
}

// testTime is a fixed instant plus d.
func testTime(d time.Duration) time.Time {
	return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).Add(d)
}

// promoteEvent is the event promote.Check would build.
func promoteEvent(version, stage, actor string, at time.Time) catalog.Event {
	return catalog.Event{Time: at, Action: catalog.ActionPromote, Recipe: testRecipe, Version: version,
		Artifact: testArtifact, Kind: KindContainer, Stage: stage, Actor: actor}
}

func revokeEvent(action, version, reason string, at time.Time) catalog.Event {
	return catalog.Event{Time: at, Action: action, Recipe: testRecipe, Version: version,
		Artifact: testArtifact, Kind: KindContainer, Actor: "ops", Reason: reason}
}

// scopedBlobs is a registry.BlobHandler that keeps blobs per repository,
// as real registries do: a blob pushed to one repository is not in another
// until it is pushed or mounted there. go-containerregistry's default
// handler shares blobs across repositories, which would hide whether a
// copy mounted or uploaded.
type scopedBlobs struct {
	mu    sync.Mutex
	repos map[string]map[string][]byte
}

// repoName undoes the in-process registry's inconsistent repository
// argument (".../blobs" on upload requests).
func repoName(repo string) string { return strings.TrimSuffix(repo, "/blobs") }

func (b *scopedBlobs) Get(_ context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	blob, ok := b.repos[repoName(repo)][h.String()]
	if !ok {
		return nil, registry.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(blob)), nil
}

func (b *scopedBlobs) Stat(_ context.Context, repo string, h v1.Hash) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	blob, ok := b.repos[repoName(repo)][h.String()]
	if !ok {
		return 0, registry.ErrNotFound
	}
	return int64(len(blob)), nil
}

func (b *scopedBlobs) Put(_ context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	blob, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	repo = repoName(repo)
	if b.repos[repo] == nil {
		b.repos[repo] = map[string][]byte{}
	}
	b.repos[repo][h.String()] = blob
	return nil
}

// mount links digest from repository from into repo, if from has it.
func (b *scopedBlobs) mount(from, repo, digest string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	blob, ok := b.repos[from][digest]
	if !ok {
		return false
	}
	if b.repos[repo] == nil {
		b.repos[repo] = map[string][]byte{}
	}
	b.repos[repo][digest] = blob
	return true
}

// testRegistry is go-containerregistry's in-process registry with
// per-repository blobs, cross-repository mounts (POST
// /v2/REPO/blobs/uploads/?mount=DIGEST&from=OTHER answers 201 when OTHER
// has the blob, as the distribution spec says) and a log of requests.
type testRegistry struct {
	host  string
	blobs *scopedBlobs

	mu   sync.Mutex
	reqs []string // "METHOD PATH?QUERY"
}

func newTestRegistry(t *testing.T, referrersAPI bool) *testRegistry {
	t.Helper()
	tr := &testRegistry{blobs: &scopedBlobs{repos: map[string]map[string][]byte{}}}
	h := registry.New(
		registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithReferrersSupport(referrersAPI),
		registry.WithBlobHandler(tr.blobs),
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.reqs = append(tr.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		tr.mu.Unlock()
		q := r.URL.Query()
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") && q.Get("mount") != "" {
			repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/uploads/")
			if tr.blobs.mount(q.Get("from"), repo, q.Get("mount")) {
				w.Header().Set("Location", "/v2/"+repo+"/blobs/"+q.Get("mount"))
				w.Header().Set("Docker-Content-Digest", q.Get("mount"))
				w.WriteHeader(http.StatusCreated)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

func (tr *testRegistry) reset() {
	tr.mu.Lock()
	tr.reqs = nil
	tr.mu.Unlock()
}

func (tr *testRegistry) requests() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.reqs)
}

// count returns how many requests had method and a path containing part.
func (tr *testRegistry) count(method, part string) int {
	n := 0
	for _, r := range tr.requests() {
		if strings.HasPrefix(r, method+" ") && strings.Contains(r, part) {
			n++
		}
	}
	return n
}

// writes returns the requests that change something.
func (tr *testRegistry) writes() []string {
	var ws []string
	for _, r := range tr.requests() {
		if !strings.HasPrefix(r, "GET ") && !strings.HasPrefix(r, "HEAD ") {
			ws = append(ws, r)
		}
	}
	return ws
}

// uploaded returns the digests whose content was sent to repo (a
// monolithic POST or the closing PUT of an upload), not mounted.
func (tr *testRegistry) uploaded(repo string) []string {
	var ds []string
	for _, r := range tr.requests() {
		method, rest, _ := strings.Cut(r, " ")
		path, query, _ := strings.Cut(rest, "?")
		if !strings.HasPrefix(path, "/v2/"+repo+"/blobs/uploads/") {
			continue
		}
		q, _ := url.ParseQuery(query)
		if d := q.Get("digest"); d != "" && (method == http.MethodPut || method == http.MethodPost) {
			ds = append(ds, d)
		}
	}
	slices.Sort(ds)
	return ds
}

func (tr *testRegistry) repo(t *testing.T, path string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(tr.host + "/" + path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// push writes img to REPO:tag.
func push(t *testing.T, repo name.Repository, tag string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(repo.Tag(tag), img, remote.WithAuth(authn.Anonymous)); err != nil {
		t.Fatalf("pushing %s:%s: %v", repo, tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tagged returns the digest REPO:tag points at, or "" if none.
func tagged(t *testing.T, repo name.Repository, tag string) string {
	t.Helper()
	d, err := remote.Head(repo.Tag(tag), remote.WithAuth(authn.Anonymous))
	if err != nil {
		if isAbsent(err) {
			return ""
		}
		t.Fatalf("HEAD %s:%s: %v", repo, tag, err)
	}
	return d.Digest.String()
}

func newStore(t *testing.T, repo name.Repository, opts ...Option) *RegistryStore {
	t.Helper()
	s, err := NewRegistryStore(repo.Name(), testRecipe, testArtifact, append([]Option{WithKeychain(anonymous)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func entries(t *testing.T, s catalog.Store) []catalog.Entry {
	t.Helper()
	es, err := s.Entries(context.Background())
	if err != nil {
		t.Fatalf("Entries: %v", err)
	}
	return es
}

func entryOf(t *testing.T, es []catalog.Entry, version string) catalog.Entry {
	t.Helper()
	for _, e := range es {
		if e.Version == version {
			return e
		}
	}
	t.Fatalf("no entry for version %s in %v", version, versionsOf(es))
	return catalog.Entry{}
}

func versionsOf(es []catalog.Entry) []string {
	var vs []string
	for _, e := range es {
		vs = append(vs, e.Version)
	}
	return vs
}

// holders returns the versions whose Stages include stage.
func holders(es []catalog.Entry, stage string) []string {
	var vs []string
	for _, e := range es {
		if _, ok := e.Stages[stage]; ok {
			vs = append(vs, e.Version)
		}
	}
	return vs
}

// actions renders an entry's history as "action[:stage]" items, oldest first.
func actions(e catalog.Entry) []string {
	var as []string
	for _, ev := range e.Events {
		a := ev.Action
		if ev.Stage != "" {
			a += ":" + ev.Stage
		}
		as = append(as, a)
	}
	return as
}

// findEvent returns the entry's events with action and stage.
func findEvents(e catalog.Entry, action, stage string) []catalog.Event {
	var evs []catalog.Event
	for _, ev := range e.Events {
		if ev.Action == action && ev.Stage == stage {
			evs = append(evs, ev)
		}
	}
	return evs
}

// failingTransport fails every request after the first n.
type failingTransport struct {
	n    int64
	seen atomic.Int64
}

var errInjected = errors.New("injected failure: connection reset")

func (f *failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.seen.Add(1) > f.n {
		return nil, errInjected
	}
	return remote.DefaultTransport.RoundTrip(r)
}

// refusingRegistry serves an in-process registry that refuses every
// DELETE as a registry with deletion disabled does (405 UNSUPPORTED),
// and returns its repository hello.
func refusingRegistry(t *testing.T) name.Repository {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			w.Write([]byte(`{"errors":[{"code":"UNSUPPORTED","message":"deletion disabled"}]}`))
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	repo, err := name.NewRepository(srv.Listener.Addr().String() + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	return repo
}
