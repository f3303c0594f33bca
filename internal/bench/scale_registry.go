package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/oci"
)

// registryReport is what status cost against the registry.
type registryReport struct {
	Versions  int            `json:"versions"`
	Referrers bool           `json:"referrers_api"`
	SeedWall  time.Duration  `json:"seed_wall_ns"`
	Wall      time.Duration  `json:"wall_ns"`
	MaxRSSKiB int64          `json:"max_rss_kib"`
	Requests  map[string]int `json:"requests"`
}

// requestCounter counts a registry's requests by kind.
type requestCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *requestCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := requestKind(r)
		c.mu.Lock()
		c.n[k]++
		c.mu.Unlock()
		if k == "GET tags/list" {
			paginateTags(w, r, h)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// paginateTags serves a tags/list request with the Link header of the
// next page, which pkg/registry leaves out: without it a client asking
// for pages of n tags (go-containerregistry asks for 1000) stops after the
// first. Registries such as distribution/registry send it. It also drops
// the tags up to last, which pkg/registry returns again when no tag
// follows last.
func paginateTags(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	body := rec.Body.Bytes()
	if rec.Code == http.StatusOK && json.Unmarshal(body, &list) == nil {
		if last := r.URL.Query().Get("last"); last != "" {
			list.Tags = slices.DeleteFunc(list.Tags, func(t string) bool { return t <= last })
		}
		if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && n > 0 && len(list.Tags) == n {
			q := url.Values{"n": {strconv.Itoa(n)}, "last": {list.Tags[n-1]}}
			w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, q.Encode()))
		}
		body, _ = json.Marshal(list)
		rec.Header().Del("Content-Length")
	}
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	return out
}

// requestKind names a distribution API request: "GET manifest",
// "GET tags/list", "GET referrers", "HEAD blob", ...
func requestKind(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		return r.Method + " /v2/"
	case strings.Contains(p, "/manifests/"):
		return r.Method + " manifest"
	case strings.HasSuffix(p, "/tags/list"):
		return r.Method + " tags/list"
	case strings.Contains(p, "/referrers/"):
		return r.Method + " referrers"
	case strings.Contains(p, "/blobs/uploads"):
		return r.Method + " blob upload"
	case strings.Contains(p, "/blobs/"):
		return r.Method + " blob"
	}
	return r.Method + " other"
}

// runRegistry pushes n versions of a container recipe (annotated as bakery
// bakes them) to an in-process registry, promotes the newest three
// through dev, staging and prod with catalog/oci (stage tags and event
// referrers as bakery writes them), and measures `bakery status`.
//
// With referrers false the registry lacks the OCI 1.1 referrers API (the
// default of pkg/registry, and of distribution/registry 2.x): reading a
// version's history then costs the referrers probe and a GET of the
// fallback tag.
func runRegistry(ctx context.Context, bakery, dir string, n int, referrers bool) (registryReport, error) {
	rep := registryReport{Versions: n, Referrers: referrers}
	if err := os.MkdirAll(filepath.Join(dir, "recipes"), 0o755); err != nil {
		return rep, err
	}
	counter := &requestCounter{n: map[string]int{}}
	srv := httptest.NewServer(counter.wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrers))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	repoName := host + "/bench/scale"
	repo, err := name.NewRepository(repoName)
	if err != nil {
		return rep, err
	}

	start := time.Now()
	base := mutate.MediaType(empty.Image, "application/vnd.oci.image.manifest.v1+json")
	base = mutate.ConfigMediaType(base, "application/vnd.oci.image.config.v1+json")
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			version := versionName(i)
			key := sha256.Sum256([]byte("scale container " + version))
			img := mutate.Annotations(base, map[string]string{
				catalog.AnnotationRecipe:   scaleRecipe,
				catalog.AnnotationArtifact: scaleArtifact,
				catalog.AnnotationVersion:  version,
				catalog.AnnotationBakeKey:  hex.EncodeToString(key[:]),
				catalog.AnnotationCreated:  t0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339),
			}).(v1.Image)
			if err := remote.Write(repo.Tag(version), img, remote.WithContext(gctx)); err != nil {
				return fmt.Errorf("pushing %s: %w", version, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return rep, err
	}
	store, err := oci.NewRegistryStore(repoName, scaleRecipe, scaleArtifact)
	if err != nil {
		return rep, err
	}
	entries, err := store.Entries(ctx)
	if err != nil {
		return rep, err
	}
	if len(entries) != n {
		return rep, fmt.Errorf("the registry holds %d versions of %s, want %d", len(entries), scaleRecipe, n)
	}
	for j, stage := range []string{"dev", "staging", "prod"} {
		e := entries[len(entries)-1-j]
		ev := catalog.Event{Time: t0.Add(time.Duration(n+j) * time.Minute), Actor: scaleActor}
		if err := store.Promote(ctx, e, catalog.StageSpec{Name: stage}, ev); err != nil {
			return rep, err
		}
	}
	rep.SeedWall = time.Since(start)

	recipe := `# Generated by internal/bench -scale.
recipe "` + scaleRecipe + `" {
  version = "1.0.0"
  stages  = ["dev", "staging", "prod"]
}

container "` + scaleArtifact + `" {
  base       = "scratch"
  repository = "` + repoName + `"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`
	if err := os.MkdirAll(filepath.Join(dir, "recipes", "app"), 0o755); err != nil {
		return rep, err
	}
	if err := os.WriteFile(filepath.Join(dir, "recipes", "app", "hello"), []byte("hello\n"), 0o644); err != nil {
		return rep, err
	}
	if err := os.WriteFile(filepath.Join(dir, "recipes", "scale.bake.hcl"), []byte(recipe), 0o644); err != nil {
		return rep, err
	}
	counter.take()
	env := []string{"BAKERY_HOME=" + filepath.Join(dir, "home"), "DOCKER_CONFIG=" + filepath.Join(dir, "docker")}
	s, _, err := runVerb(ctx, command{Dir: dir, Env: env, Args: []string{bakery, "status", scaleRecipe}})
	if err != nil {
		return rep, err
	}
	rep.Wall, rep.MaxRSSKiB, rep.Requests = s.Wall, s.MaxRSSKiB, counter.take()
	return rep, nil
}
