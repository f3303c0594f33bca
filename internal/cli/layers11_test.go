package cli

// Tests of issue 11, items 1, 2 and 4 (second half): a layer keeps the
// base's folders as they are, the result carries only OCI media types
// and a config with os and architecture, and it runs in runc.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/bakery-sh/bakery/catalog"
)

// baseEntry is one entry of a test base layer.
type baseEntry struct {
	name string
	typ  byte
	mode int64
	uid  int
	gid  int
	time time.Time
	link string
	data []byte
}

var (
	tmpTime  = time.Unix(1600000000, 0)
	homeTime = time.Unix(1600000100, 0)
)

func dirEntry(name string, mode int64, uid, gid int, mt time.Time) baseEntry {
	return baseEntry{name: name, typ: tar.TypeDir, mode: mode, uid: uid, gid: gid, time: mt}
}

func fileEntry(name string, mode int64, data []byte) baseEntry {
	return baseEntry{name: name, typ: tar.TypeReg, mode: mode, data: data, time: tmpTime}
}

// baseLayer returns a gzip layer holding entries, with the Docker layer
// media type when docker is set.
func baseLayer(t *testing.T, docker bool, entries ...baseEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: e.time, Linkname: e.link, Size: int64(len(e.data)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	mt := types.OCILayer
	if docker {
		mt = types.DockerLayer
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(mt))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// baseImage returns an image of the layers, in Docker format (the
// Docker manifest, config and layer types) when docker is set. plat
// nil leaves os and architecture out of the config.
func baseImage(t *testing.T, docker bool, plat *v1.Platform, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if docker {
		img = mutate.MediaType(empty.Image, types.DockerManifestSchema2)
		img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	}
	for _, l := range layers {
		mt, _ := l.MediaType()
		var err error
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: mt, History: v1.History{CreatedBy: "test base"}}); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "", ""
	if plat != nil {
		cfg.OS, cfg.Architecture, cfg.Variant = plat.OS, plat.Architecture, plat.Variant
	}
	cfg.Config.Env = []string{"PATH=/bin"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// pushBase writes img to ref in the test registry.
func pushBase(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// layoutImage returns the image named ref in the layout at home.
func layoutImage(t *testing.T, home, ref string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(home)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Annotations[catalog.AnnotationRefName] == ref {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no image %s in %s", ref, home)
	return nil
}

// flatten returns the headers of img's flattened filesystem by clean
// name ("tmp", "home/app"), as go-containerregistry's mutate.Extract
// gives it (whiteouts applied, the topmost entry of each path).
func flatten(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	fs := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fs
		}
		if err != nil {
			t.Fatal(err)
		}
		fs[strings.TrimSuffix(filepath.Clean(strings.TrimPrefix(h.Name, "/")), "/")] = h
	}
}

// wantDir checks one folder of a flattened filesystem.
func wantDir(t *testing.T, fs map[string]*tar.Header, name string, mode int64, uid, gid int, mt time.Time) {
	t.Helper()
	h, ok := fs[name]
	if !ok {
		t.Errorf("/%s: missing from the image", name)
		return
	}
	if h.Typeflag != tar.TypeDir || h.Mode&0o7777 != mode || h.Uid != uid || h.Gid != gid || (!mt.IsZero() && !h.ModTime.Equal(mt)) {
		t.Errorf("/%s: type %c mode %o owner %d:%d time %v; want a folder, mode %o owner %d:%d time %v",
			name, h.Typeflag, h.Mode&0o7777, h.Uid, h.Gid, h.ModTime.UTC(), mode, uid, gid, mt.UTC())
	}
}

// keepBaseLayers is a base with the folders the issue names: /tmp
// (1777), /home/app (1000:1000, 0700), and folders that a later layer
// of the base removes with a whiteout and an opaque marker.
func keepBaseLayers(t *testing.T, docker bool, appMode int64) []v1.Layer {
	return []v1.Layer{
		baseLayer(t, docker,
			dirEntry("tmp/", 0o1777, 0, 0, tmpTime),
			dirEntry("home/", 0o755, 0, 0, homeTime),
			dirEntry("home/app/", appMode, 1000, 1000, homeTime),
			dirEntry("opt/", 0o755, 0, 0, homeTime),
			dirEntry("opt/old/", 0o700, 0, 0, homeTime),
			dirEntry("srv/", 0o755, 0, 0, homeTime),
			dirEntry("srv/data/", 0o700, 0, 0, homeTime),
			dirEntry("usr/", 0o755, 0, 0, homeTime),
			dirEntry("usr/bin/", 0o755, 0, 0, homeTime),
			baseEntry{name: "bin", typ: tar.TypeSymlink, mode: 0o777, link: "usr/bin", time: homeTime},
		),
		baseLayer(t, docker,
			fileEntry("opt/.wh.old", 0o644, nil),
			dirEntry("srv/", 0o755, 0, 0, homeTime),
			fileEntry("srv/.wh..wh..opq", 0o644, nil),
		),
	}
}

const keepRecipe = `recipe "keep" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "keep" {
  base = "BASE"
  PLATFORMS
  layer {
    source      = "worker/"
    destination = "/tmp/worker/"
    uid         = 1000
    gid         = 1000
  }
  layer {
    source      = "config.toml"
    destination = "/home/app/.config/"
    uid         = 1000
    gid         = 1000
  }
  layer {
    source      = "config.toml"
    destination = "/opt/old/new/"
    uid         = 5
    gid         = 5
  }
  layer {
    source      = "config.toml"
    destination = "/srv/data/"
    uid         = 6
    gid         = 6
  }
  layer {
    source      = "worker/"
    destination = "/app/"
    uid         = 1000
    gid         = 1000
  }
  layer {
    source      = "config.toml"
    destination = "/app/conf/"
  }
}
`

// keepProject writes keepRecipe for base and returns its path.
func keepProject(t *testing.T, base, platforms string) string {
	t.Helper()
	dir := t.TempDir()
	r := strings.ReplaceAll(keepRecipe, "BASE", base)
	r = strings.ReplaceAll(r, "PLATFORMS", platforms)
	writeFiles(t, dir, map[string]string{
		"keep.bake.hcl": r,
		"worker/run.sh": "#!/bin/sh\necho work\n",
		"config.toml":   "a = 1\n",
	})
	return filepath.Join(dir, "keep.bake.hcl")
}

// checkKept checks the flattened filesystem of a keepRecipe image over
// a keepBaseLayers base whose /home/app has mode appMode.
func checkKept(t *testing.T, fs map[string]*tar.Header, appMode int64) {
	t.Helper()
	epoch := time.Unix(0, 0)
	// Folders of the base keep mode, owner and time.
	wantDir(t, fs, "tmp", 0o1777, 0, 0, tmpTime)
	wantDir(t, fs, "home", 0o755, 0, 0, homeTime)
	wantDir(t, fs, "home/app", appMode, 1000, 1000, homeTime)
	wantDir(t, fs, "opt", 0o755, 0, 0, homeTime)
	wantDir(t, fs, "srv", 0o755, 0, 0, homeTime)
	// New folders take the layer's owner.
	wantDir(t, fs, "tmp/worker", 0o755, 1000, 1000, epoch)
	wantDir(t, fs, "home/app/.config", 0o755, 1000, 1000, epoch)
	// Whited out by the base: new again, owned by the layer.
	wantDir(t, fs, "opt/old", 0o755, 5, 5, epoch)
	wantDir(t, fs, "opt/old/new", 0o755, 5, 5, epoch)
	wantDir(t, fs, "srv/data", 0o755, 6, 6, epoch)
	// Made by an earlier layer of the recipe: as that layer made it.
	wantDir(t, fs, "app", 0o755, 1000, 1000, epoch)
	wantDir(t, fs, "app/conf", 0o755, 0, 0, epoch)
	if h := fs["bin"]; h == nil || h.Typeflag != tar.TypeSymlink {
		t.Errorf("/bin: %+v, want the base's symlink", h)
	}
	for _, f := range []string{"tmp/worker/run.sh", "home/app/.config/config.toml", "opt/old/new/config.toml", "srv/data/config.toml", "app/conf/config.toml"} {
		if h := fs[f]; h == nil || h.Typeflag != tar.TypeReg {
			t.Errorf("/%s: %+v, want a file", f, h)
		}
	}
}

func TestLayerKeepsTheBaseFolders(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	base := host + "/base/keep:1"
	pushBase(t, base, baseImage(t, false, &v1.Platform{OS: "linux", Architecture: "amd64"}, keepBaseLayers(t, false, 0o700)...))

	home := t.TempDir()
	bakeJSON(t, []string{"BAKERY_HOME=" + home}, keepProject(t, base, ""))
	img := layoutImage(t, home, "keep:1.0.0")
	if err := validate.Image(img); err != nil {
		t.Fatalf("image does not validate: %v", err)
	}
	checkKept(t, flatten(t, img), 0o700)

	// umoci, as root, unpacks the same modes and owners onto disk.
	umoci := requireTool(t, "umoci")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("unpacking with owners needs root; CI runs as root")
		}
		t.Skip("unpacking with owners needs root")
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", home+":keep:1.0.0", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	for _, c := range []struct {
		name     string
		mode     os.FileMode
		uid, gid uint32
	}{
		{"tmp", os.ModeDir | os.ModeSticky | 0o777, 0, 0},
		{"home/app", os.ModeDir | 0o700, 1000, 1000},
		{"tmp/worker", os.ModeDir | 0o755, 1000, 1000},
		{"opt/old", os.ModeDir | 0o755, 5, 5},
	} {
		st, err := os.Lstat(filepath.Join(bundle, "rootfs", c.name))
		if err != nil {
			t.Error(err)
			continue
		}
		uid, gid := fileOwner(st)
		if st.Mode() != c.mode || uid != c.uid || gid != c.gid {
			t.Errorf("unpacked /%s: %v %d:%d, want %v %d:%d", c.name, st.Mode(), uid, gid, c.mode, c.uid, c.gid)
		}
	}
}

func TestLayerKeepsTheBaseFoldersPerPlatform(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	// Two platforms whose /home/app differ (0700 and 0750), and two that agree.
	index := func(modes ...int64) v1.ImageIndex {
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for i, arch := range []string{"amd64", "arm64"} {
			p := v1.Platform{OS: "linux", Architecture: arch}
			img := baseImage(t, false, &p, keepBaseLayers(t, false, modes[i])...)
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		}
		return idx
	}
	for _, tc := range []struct {
		name   string
		modes  []int64
		shared bool
	}{
		{"differ", []int64{0o700, 0o750}, false},
		{"agree", []int64{0o700, 0o700}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, _ := name.ParseReference(host + "/base/multi:" + tc.name)
			if err := remote.WriteIndex(ref, index(tc.modes...)); err != nil {
				t.Fatal(err)
			}
			home := t.TempDir()
			bakeJSON(t, []string{"BAKERY_HOME=" + home}, keepProject(t, ref.String(), ""))
			idx, err := layout.ImageIndexFromPath(home)
			if err != nil {
				t.Fatal(err)
			}
			im, _ := idx.IndexManifest()
			var out v1.ImageIndex
			for _, d := range im.Manifests {
				if d.Annotations[catalog.AnnotationRefName] == "keep:1.0.0" {
					out, err = idx.ImageIndex(d.Digest)
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			if out == nil {
				t.Fatal("no index keep:1.0.0 in the layout")
			}
			if err := validate.Index(out); err != nil {
				t.Fatalf("index does not validate: %v", err)
			}
			om, _ := out.IndexManifest()
			if len(om.Manifests) != 2 {
				t.Fatalf("index lists %d images, want 2", len(om.Manifests))
			}
			var homeLayers []v1.Hash
			for i, d := range om.Manifests {
				img, err := out.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				checkKept(t, flatten(t, img), tc.modes[i])
				m, _ := img.Manifest()
				homeLayers = append(homeLayers, m.Layers[len(m.Layers)-5].Digest) // the /home/app/.config/ layer
			}
			if same := homeLayers[0] == homeLayers[1]; same != tc.shared {
				t.Errorf("the /home/app/.config/ layer of both platforms: %v; want shared=%v", homeLayers, tc.shared)
			}
		})
	}
}

func TestLayerOverABaseSymlinkIsRefused(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	base := host + "/base/keep:1"
	pushBase(t, base, baseImage(t, false, &v1.Platform{OS: "linux", Architecture: "amd64"}, keepBaseLayers(t, false, 0o700)...))
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"tool.bake.hcl": `recipe "tool" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "tool" {
  base = "` + base + `"
  layer {
    source      = "tool"
    destination = "/bin/"
  }
}
`,
		"tool": "#!/bin/sh\n",
	})
	home := t.TempDir()
	r := run(t, []string{"BAKERY_HOME=" + home}, "bake", filepath.Join(dir, "tool.bake.hcl"))
	if r.code != 1 || !strings.Contains(r.stderr, "/bin is a symlink to usr/bin") || !strings.Contains(r.stderr, "write to the symlink's target instead") {
		t.Fatalf("bake over /bin → usr/bin: exit %d\n%s", r.code, r.stderr)
	}
	if idx, err := layout.ImageIndexFromPath(home); err == nil {
		if im, _ := idx.IndexManifest(); len(refNamed(im.Manifests)) != 0 {
			t.Errorf("a refused bake left an image: %+v", im.Manifests)
		}
	}
}

func TestDockerBaseBakesToOCIMediaTypes(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	umoci := requireTool(t, "umoci")
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	base := host + "/base/docker:1"
	baseImg := baseImage(t, true, &v1.Platform{OS: "linux", Architecture: "amd64"}, keepBaseLayers(t, true, 0o700)...)
	pushBase(t, base, baseImg)
	bm, _ := baseImg.Manifest()
	if bm.MediaType != types.DockerManifestSchema2 || bm.Layers[0].MediaType != types.DockerLayer {
		t.Fatalf("test base is not in Docker format: %s %s", bm.MediaType, bm.Layers[0].MediaType)
	}

	// checkOCI checks that m lists only OCI types and the base's layers
	// unchanged (same digests and sizes).
	checkOCI := func(where string, img v1.Image) {
		t.Helper()
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: image does not validate: %v", where, err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
			t.Errorf("%s: manifest %s, config %s; want OCI types", where, m.MediaType, m.Config.MediaType)
		}
		for i, l := range m.Layers {
			if l.MediaType != types.OCILayer {
				t.Errorf("%s: layer %d has media type %s, want %s", where, i, l.MediaType, types.OCILayer)
			}
			if i < len(bm.Layers) && (l.Digest != bm.Layers[i].Digest || l.Size != bm.Layers[i].Size) {
				t.Errorf("%s: base layer %d is %s (%d bytes), want the base's %s (%d bytes)", where, i, l.Digest, l.Size, bm.Layers[i].Digest, bm.Layers[i].Size)
			}
		}
		cfg, _ := img.ConfigFile()
		if len(cfg.History) < len(bm.Layers) || cfg.History[0].CreatedBy != "test base" || cfg.Config.Env[0] != "PATH=/bin" {
			t.Errorf("%s: config lost the base's history or env: %+v", where, cfg)
		}
	}

	// Into the local layout: OCI types, readable by umoci and skopeo.
	home := t.TempDir()
	recipe := keepProject(t, base, "")
	bakeJSON(t, []string{"BAKERY_HOME=" + home}, recipe)
	checkOCI("layout", layoutImage(t, home, "keep:1.0.0"))
	checkKept(t, flatten(t, layoutImage(t, home, "keep:1.0.0")), 0o700)
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command(umoci, "unpack", "--rootless", "--image", home+":keep:1.0.0", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "tmp", "worker", "run.sh")); err != nil || string(b) != "#!/bin/sh\necho work\n" {
		t.Errorf("unpacked /tmp/worker/run.sh = %q, %v", b, err)
	}
	out := t.TempDir()
	for _, dst := range []string{"docker-archive:" + filepath.Join(out, "keep.tar") + ":keep:1.0.0", "oci:" + filepath.Join(out, "oci") + ":keep:1.0.0"} {
		if b, err := exec.Command(skopeo, "copy", "--quiet", "oci:"+home+":keep:1.0.0", dst).CombinedOutput(); err != nil {
			t.Errorf("skopeo copy to %s: %v\n%s", dst, err, b)
		}
	}
	if _, err := tarball.ImageFromPath(filepath.Join(out, "keep.tar"), nil); err != nil {
		t.Errorf("reading skopeo's docker-archive: %v", err)
	}

	// Pushed to another repository of the same registry: OCI types too
	// (validate reads every blob back from the registry).
	pushed := host + "/team/keep"
	r := strings.Replace(keepRecipe, "  PLATFORMS\n", "  PLATFORMS\n  repository = \""+pushed+"\"\n", 1)
	if err := os.WriteFile(recipe, []byte(strings.ReplaceAll(strings.ReplaceAll(r, "BASE", base), "PLATFORMS", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	bakeJSON(t, []string{"BAKERY_HOME=" + t.TempDir()}, recipe)
	ref, _ := name.ParseReference(pushed + ":1.0.0")
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	checkOCI("registry", img)
}

func TestConfigTakesPlatformFromRecipeWhenBaseLacksIt(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	base := host + "/base/noplat:1"
	pushBase(t, base, baseImage(t, false, nil, keepBaseLayers(t, false, 0o700)...))

	// Without platforms: the default platform, as for scratch.
	home := t.TempDir()
	bakeJSON(t, []string{"BAKERY_HOME=" + home}, keepProject(t, base, ""))
	if cfg, err := layoutImage(t, home, "keep:1.0.0").ConfigFile(); err != nil || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config without platforms: %+v, %v; want linux/amd64", cfg, err)
	}
	// Two platforms for a single-platform base: refused.
	r := run(t, []string{"BAKERY_HOME=" + t.TempDir()}, "bake", keepProject(t, base, `platforms = ["linux/amd64", "linux/arm64"]`))
	if r.code != 1 || !strings.Contains(r.stderr, "cannot be linux/amd64 and linux/arm64") {
		t.Fatalf("two platforms on a base without os/architecture: exit %d\n%s", r.code, r.stderr)
	}

	// With one platform: the config says it.
	home = t.TempDir()
	bakeJSON(t, []string{"BAKERY_HOME=" + home}, keepProject(t, base, `platforms = ["linux/arm64/v8"]`))
	img := layoutImage(t, home, "keep:1.0.0")
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "arm64" || cfg.Variant != "v8" {
		t.Errorf("config platform = %s/%s/%s, want linux/arm64/v8", cfg.OS, cfg.Architecture, cfg.Variant)
	}
	umoci := requireTool(t, "umoci")
	if out, err := exec.Command(umoci, "unpack", "--rootless", "--image", home+":keep:1.0.0", filepath.Join(t.TempDir(), "b")).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
}

// probeSource is a static program that runs in the baked image as a
// non-root user: it writes a new file into the base's /tmp and into
// the user's home, reads what the recipe put under /tmp/worker/, and
// prints what it found.
const probeSource = `package main

import (
	"fmt"
	"os"
)

func main() {
	fail := func(what string, err error) {
		fmt.Printf("FAIL %s: %v\n", what, err)
		os.Exit(3)
	}
	if err := os.WriteFile("/tmp/probe.out", []byte("written\n"), 0o644); err != nil {
		fail("writing /tmp/probe.out", err)
	}
	if err := os.WriteFile("/home/app/probe.out", []byte("written\n"), 0o644); err != nil {
		fail("writing /home/app/probe.out", err)
	}
	b, err := os.ReadFile("/tmp/worker/input.txt")
	if err != nil {
		fail("reading /tmp/worker/input.txt", err)
	}
	fmt.Printf("uid=%d gid=%d input=%s", os.Getuid(), os.Getgid(), b)
}
`

// buildProbe compiles probeSource statically and returns the binary.
func buildProbe(t *testing.T) []byte {
	t.Helper()
	goTool := requireTool(t, "go")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"main.go": probeSource, "go.mod": "module probe\n\ngo 1.22\n"})
	bin := filepath.Join(dir, "probe")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBakedImageRunsInRuncAsNonRootUser(t *testing.T) {
	runc := "/usr/sbin/runc" // where Debian installs it, often not on PATH
	if _, err := os.Stat(runc); err != nil {
		runc = requireTool(t, "runc")
	}
	umoci := requireTool(t, "umoci")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("running runc needs root; CI runs as root")
		}
		t.Skip("running runc needs root")
	}
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	// A Docker-format base without os/architecture in its config (both
	// once stopped umoci), with /tmp 1777 and /home/app 1000:1000 0700.
	probe := buildProbe(t)
	base := host + "/base/run:1"
	pushBase(t, base, baseImage(t, true, nil,
		baseLayer(t, true,
			dirEntry("bin/", 0o755, 0, 0, homeTime),
			fileEntry("bin/probe", 0o755, probe),
			dirEntry("tmp/", 0o1777, 0, 0, tmpTime),
			dirEntry("home/", 0o755, 0, 0, homeTime),
			dirEntry("home/app/", 0o700, 1000, 1000, homeTime),
			dirEntry("etc/", 0o755, 0, 0, homeTime),
			fileEntry("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/probe\napp:x:1000:1000:app:/home/app:/bin/probe\n")),
			fileEntry("etc/group", 0o644, []byte("root:x:0:\napp:x:1000:\n")),
		)))

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"run.bake.hcl": `recipe "run" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "run" {
  base      = "` + base + `"
  platforms = ["linux/amd64"]
  layer {
    source      = "input.txt"
    destination = "/tmp/worker/"
    uid         = 1000
    gid         = 1000
  }
  layer {
    source      = "config.toml"
    destination = "/home/app/.config/"
    uid         = 1000
    gid         = 1000
  }
  user       = "app"
  entrypoint = ["/bin/probe"]
}
`,
		"input.txt":   "from the recipe\n",
		"config.toml": "a = 1\n",
	})
	home := t.TempDir()
	bakeJSON(t, []string{"BAKERY_HOME=" + home}, filepath.Join(dir, "run.bake.hcl"))

	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", home+":run:1.0.0", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	// umoci writes a runtime config for a terminal; run without one.
	cfgPath := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	process := spec["process"].(map[string]any)
	process["terminal"] = false
	if user := process["user"].(map[string]any); user["uid"] != float64(1000) || user["gid"] != float64(1000) {
		t.Errorf("umoci's runtime config runs as %v, want the recipe's user app (1000:1000)", user)
	}
	if raw, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(runc, "--root", filepath.Join(t.TempDir(), "state"), "run", "--bundle", bundle, "bakery-layers11-"+strings.ReplaceAll(filepath.Base(filepath.Dir(bundle)), "/", ""))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("runc run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if got, want := stdout.String(), "uid=1000 gid=1000 input=from the recipe\n"; got != want {
		t.Errorf("the probe printed %q, want %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "tmp", "probe.out")); err != nil || string(b) != "written\n" {
		t.Errorf("/tmp/probe.out after the run: %q, %v", b, err)
	}
}

func TestChangedBaseFoldersChangeTheBakeKey(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	base := host + "/base/keep:1"
	amd64 := &v1.Platform{OS: "linux", Architecture: "amd64"}
	pushBase(t, base, baseImage(t, false, amd64, keepBaseLayers(t, false, 0o700)...))
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	recipe := keepProject(t, base, "")
	first := bakeJSON(t, env, recipe)
	if again := bakeJSON(t, env, recipe); !again.Cached {
		t.Fatalf("unchanged base: %+v, want up to date", again)
	}
	// The same tag now holds a base whose /home/app differs: the layers
	// would differ, so the bake is not up to date (the version is taken).
	pushBase(t, base, baseImage(t, false, amd64, keepBaseLayers(t, false, 0o750)...))
	r := run(t, env, "bake", recipe)
	if r.code == 0 || !strings.Contains(r.stderr, "already holds other content") || !strings.Contains(r.stderr, first.Artifacts[0].BakeKey[:len("sha256:")+12]) {
		t.Fatalf("bake over a changed base: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestLayerKeepsFoldersOfEarlierLayersOnScratch(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"app.bake.hcl": `recipe "app" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "app" {
  base = "scratch"
  layer {
    source      = "bin/"
    destination = "/app/"
    uid         = 1000
    gid         = 1000
  }
  layer {
    source      = "app.conf"
    destination = "/app/conf/"
  }
}
`,
		"bin/run":  "#!/bin/sh\n",
		"app.conf": "a = 1\n",
	})
	home := t.TempDir()
	bakeJSON(t, []string{"BAKERY_HOME=" + home}, filepath.Join(dir, "app.bake.hcl"))
	fs := flatten(t, layoutImage(t, home, "app:1.0.0"))
	wantDir(t, fs, "app", 0o755, 1000, 1000, time.Unix(0, 0))
	wantDir(t, fs, "app/conf", 0o755, 0, 0, time.Unix(0, 0))
}

func TestDockerManifestListBaseBakesToOCIIndex(t *testing.T) {
	noDockerConfig(t)
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	for _, arch := range []string{"amd64", "arm64"} {
		p := v1.Platform{OS: "linux", Architecture: arch}
		img := baseImage(t, true, &p, keepBaseLayers(t, true, 0o700)...)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{MediaType: types.DockerManifestSchema2, Platform: &p}})
	}
	ref, _ := name.ParseReference(host + "/base/list:1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	bakeJSON(t, []string{"BAKERY_HOME=" + home}, keepProject(t, ref.String(), ""))
	skopeo := requireTool(t, "skopeo")
	// skopeo reads the index and copies every platform.
	if out, err := exec.Command(skopeo, "copy", "--quiet", "--all", "oci:"+home+":keep:1.0.0", "oci:"+filepath.Join(t.TempDir(), "copy")+":keep").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy --all: %v\n%s", err, out)
	}
	lp, err := layout.FromPath(home)
	if err != nil {
		t.Fatal(err)
	}
	li, _ := lp.ImageIndex()
	im, _ := li.IndexManifest()
	for _, d := range im.Manifests {
		if d.Annotations[catalog.AnnotationRefName] != "keep:1.0.0" {
			continue
		}
		out, err := li.ImageIndex(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		om, _ := out.IndexManifest()
		if om.MediaType != types.OCIImageIndex || len(om.Manifests) != 2 {
			t.Fatalf("index %s with %d images, want an OCI index of 2", om.MediaType, len(om.Manifests))
		}
		for _, c := range om.Manifests {
			img, err := out.Image(c.Digest)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := img.Manifest()
			for i, l := range m.Layers {
				if c.MediaType != types.OCIManifestSchema1 || m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || l.MediaType != types.OCILayer {
					t.Errorf("%s: descriptor %s, manifest %s, config %s, layer %d %s; want OCI types", c.Platform, c.MediaType, m.MediaType, m.Config.MediaType, i, l.MediaType)
				}
			}
		}
		return
	}
	t.Fatal("no keep:1.0.0 in the layout")
}
