package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/bakery-sh/bakery/catalog"
)

// requestLog records the requests a registry served.
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.Path)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.reqs
	l.reqs = nil
	return r
}

// uploads counts blob upload starts (POST .../blobs/uploads/) that are not mounts.
func uploads(reqs []string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, "POST ") && strings.Contains(r, "/blobs/uploads/") {
			n++
		}
	}
	return n
}

// noDockerConfig points the Docker credential lookup at an empty folder.
func noDockerConfig(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
}

func TestBakePushesToRegistryAndSkipsUnchanged(t *testing.T) {
	noDockerConfig(t)
	log := &requestLog{}
	srv := httptest.NewServer(log.wrap(quietRegistry()))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	recipe := helloProject(t, host+"/team/hello")
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}

	res := bakeJSON(t, env, recipe)
	a := res.Artifacts[0]
	if a.Ref != host+"/team/hello:1.0.0" || res.Cached {
		t.Fatalf("push result = %+v", res)
	}
	ref, _ := name.ParseReference(a.Ref)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("pushed image does not validate: %v", err)
	}
	d, _ := img.Digest()
	if d.String() != a.Digest {
		t.Fatalf("registry has %s, bake reported %s", d, a.Digest)
	}
	m, _ := img.Manifest()
	if m.Annotations[catalog.AnnotationBakeKey] != res.BakeKey {
		t.Errorf("bake key annotation = %q, want %q", m.Annotations[catalog.AnnotationBakeKey], res.BakeKey)
	}
	// Pushing left nothing in the local layout but its empty skeleton.
	if ents, _ := os.ReadDir(filepath.Join(home, "blobs", "sha256")); len(ents) != 0 {
		t.Errorf("push left %d blobs in the local layout", len(ents))
	}
	log.take()

	// Unchanged: up to date after one manifest read, nothing uploaded.
	again := bakeJSON(t, env, recipe)
	reqs := log.take()
	if !again.Cached || again.Artifacts[0].Digest != a.Digest {
		t.Fatalf("second bake = %+v, want cached", again)
	}
	for _, r := range reqs {
		if !strings.HasPrefix(r, "GET ") && !strings.HasPrefix(r, "HEAD ") {
			t.Errorf("up-to-date bake sent %s", r)
		}
	}

	// A new version with the same layer: only the blobs the registry lacks
	// (the config, and the new image's SBOM and provenance, which name its
	// digest) are uploaded, the layer is not.
	v2 := bakeJSON(t, env, "-var", "version=1.1.0", recipe)
	reqs = log.take()
	if v2.Cached {
		t.Fatal("1.1.0 reported cached")
	}
	if n := uploads(reqs); n != 3 {
		t.Errorf("pushing 1.1.0 started %d blob uploads, want 3 (the config, the SBOM and the provenance): %v", n, reqs)
	}
}

func TestBakeMultiPlatformBaseFromRegistry(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	// A two-platform base image in the registry.
	var adds []mutate.IndexAddendum
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := img.ConfigFile()
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture = p.OS, p.Architecture
		img, _ = mutate.ConfigFile(img, cfg)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(emptyIndex(), "application/vnd.oci.image.index.v1+json"), adds...)
	baseRef, _ := name.ParseReference(host + "/base/os:1")
	if err := remote.WriteIndex(baseRef, idx); err != nil {
		t.Fatal(err)
	}
	baseDigest, _ := idx.Digest()

	dir := t.TempDir()
	write := func(platforms string) string {
		p := filepath.Join(dir, "multi"+strings.NewReplacer("/", "-", `"`, "").Replace(platforms)+".bake.hcl")
		plat := ""
		if platforms != "" {
			plat = "  platforms = [" + platforms + "]\n"
		}
		writeFiles(t, dir, map[string]string{
			filepath.Base(p): `recipe "multi" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "multi` + map[bool]string{true: "one", false: "all"}[platforms != ""] + `" {
  base = "` + host + `/base/os:1"
` + plat + `  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`,
			"app/hello": "#!/bin/sh\necho hello\n",
		})
		return p
	}
	home := t.TempDir()
	all := bakeJSON(t, []string{"BAKERY_HOME=" + home}, write(""))
	one := bakeJSON(t, []string{"BAKERY_HOME=" + home}, write(`"linux/arm64"`))

	lidx := mustIndex(t, home)
	im, _ := lidx.IndexManifest()
	seen := map[string]int{}
	for _, d := range refNamed(im.Manifests) {
		seen[d.Annotations[catalog.AnnotationRefName]]++
		switch d.Annotations[catalog.AnnotationRefName] {
		case "multiall:1.0.0":
			if !d.MediaType.IsIndex() || d.Digest.String() != all.Artifacts[0].Digest {
				t.Errorf("multiall is %s %s, want an index", d.MediaType, d.Digest)
			}
			child, err := lidx.ImageIndex(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(child); err != nil {
				t.Fatalf("index does not validate: %v", err)
			}
			cm, _ := child.IndexManifest()
			if len(cm.Manifests) != 2 || cm.Annotations[catalog.AnnotationBaseDigest] != baseDigest.String() {
				t.Errorf("index = %d manifests, annotations %v", len(cm.Manifests), cm.Annotations)
			}
		case "multione:1.0.0":
			img, err := lidx.Image(d.Digest)
			if err != nil {
				t.Fatalf("multione is not an image: %v", err)
			}
			cfg, _ := img.ConfigFile()
			if cfg.Architecture != "arm64" {
				t.Errorf("multione architecture = %s, want arm64", cfg.Architecture)
			}
			if d.Digest.String() != one.Artifacts[0].Digest {
				t.Errorf("reported %s, layout has %s", one.Artifacts[0].Digest, d.Digest)
			}
		default:
			t.Errorf("unexpected image %v", d.Annotations)
		}
	}
	// Both bakes are in the layout, once each: the checks above ran on them.
	if seen["multiall:1.0.0"] != 1 || seen["multione:1.0.0"] != 1 {
		t.Errorf("tags in the layout = %v, want multiall:1.0.0 and multione:1.0.0 once each", seen)
	}

	// A platform the base lacks is a clear error.
	r := run(t, []string{"BAKERY_HOME=" + home}, "bake", write(`"linux/s390x"`))
	if r.code != 1 || !strings.Contains(r.stderr, "has no platform linux/s390x") || !strings.Contains(r.stderr, "linux/arm64") {
		t.Errorf("missing platform: exit %d, %q", r.code, r.stderr)
	}
}
