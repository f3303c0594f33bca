package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	catalogoci "github.com/bakery-sh/bakery/catalog/oci"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/bakery-sh/bakery/catalog"
)

func TestBakeHelloIntoLocalLayoutThenUpToDate(t *testing.T) {
	recipe := helloProject(t, "")
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}

	first := bakeJSON(t, env, recipe)
	if first.Recipe != "hello" || first.Version != "1.0.0" || first.Cached {
		t.Fatalf("first bake = %+v, want hello 1.0.0 not cached", first)
	}
	if len(first.Artifacts) != 1 {
		t.Fatalf("artifacts = %+v, want one", first.Artifacts)
	}
	a := first.Artifacts[0]
	if a.Kind != "container" || a.Name != "hello" || a.Ref != "hello:1.0.0" || !strings.HasPrefix(a.Digest, "sha256:") || a.Size <= 0 {
		t.Fatalf("artifact = %+v", a)
	}
	if !strings.HasPrefix(first.BakeKey, "sha256:") || first.BakeKey != a.BakeKey {
		t.Fatalf("bake key %q, artifact key %q", first.BakeKey, a.BakeKey)
	}

	// The layout is a valid OCI layout whose image carries the annotations.
	idx, err := layout.ImageIndexFromPath(home)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("layout does not validate: %v", err)
	}
	im, _ := idx.IndexManifest()
	tagged := refNamed(im.Manifests)
	if len(tagged) != 1 || tagged[0].Annotations[catalog.AnnotationRefName] != "hello:1.0.0" || tagged[0].Digest.String() != a.Digest {
		t.Fatalf("index.json manifests = %+v", im.Manifests)
	}
	// The real bake time is in the image's history (a referrer, listed in
	// the layout's history file, not index.json), not in the image, whose
	// created time is the epoch for reproducibility.
	if len(im.Manifests) != len(tagged) {
		t.Fatalf("index.json lists more than images: %+v", im.Manifests)
	}
	hl, err := catalogoci.OpenLayout(home)
	if err != nil {
		t.Fatal(err)
	}
	all, err := hl.History()
	// Beside the events, the history file lists the image's SBOM and
	// provenance (see attest_test.go).
	hist := slices.DeleteFunc(slices.Clone(all), func(d v1.Descriptor) bool { return d.ArtifactType != catalogoci.EventArtifactType })
	if err != nil || len(hist) != 1 || hist[0].Annotations["dev.bakery.event.action"] != "bake" || hist[0].Annotations["dev.bakery.subject"] != a.Digest {
		t.Fatalf("want one bake event for %s in the history file: %+v, %v", a.Digest, all, err)
	}
	img, err := idx.Image(tagged[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	for k, want := range map[string]string{
		catalog.AnnotationVersion: "1.0.0",
		catalog.AnnotationCreated: "1970-01-01T00:00:00Z",
		catalog.AnnotationRecipe:  "hello",
		catalog.AnnotationBakeKey: first.BakeKey,
	} {
		if m.Annotations[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], want)
		}
	}
	cfg, _ := img.ConfigFile()
	if strings.Join(cfg.Config.Entrypoint, " ") != "/app/hello" || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config = %+v", cfg.Config)
	}

	// Unchanged inputs: up to date, no work, same digest.
	before := snapshot(t, home)
	r := mustRun(t, env, "bake", recipe)
	if !strings.Contains(r.stdout, "up to date") || !strings.Contains(r.stdout, a.Digest) {
		t.Fatalf("second bake stdout = %q, want up to date with %s", r.stdout, a.Digest)
	}
	if strings.Contains(r.stderr, "build layers") {
		t.Errorf("second bake built layers:\n%s", r.stderr)
	}
	sameTree(t, before, snapshot(t, home))

	// A -var sets the version: a new tag beside the old one.
	second := bakeJSON(t, env, "-var", "version=1.1.0", recipe)
	if second.Version != "1.1.0" || second.Artifacts[0].Ref != "hello:1.1.0" || second.Cached {
		t.Fatalf("bake -var version=1.1.0 = %+v", second)
	}
	im, _ = mustIndex(t, home).IndexManifest()
	if n := len(refNamed(im.Manifests)); n != 2 {
		t.Fatalf("index has %d tagged manifests, want 2", n)
	}
}

// refNamed keeps the descriptors that carry a tag (not history events).
func refNamed(ds []v1.Descriptor) []v1.Descriptor {
	var out []v1.Descriptor
	for _, d := range ds {
		if d.Annotations[catalog.AnnotationRefName] != "" {
			out = append(out, d)
		}
	}
	return out
}

func mustIndex(t *testing.T, home string) v1.ImageIndex {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(home)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestSameInputsSameDigestAnywhere(t *testing.T) {
	// Two checkouts at different paths, different homes, different file
	// times and umask-dependent modes: the same digest.
	r1, r2 := helloProject(t, ""), helloProject(t, "")
	app2 := filepath.Join(filepath.Dir(r2), "app", "README")
	if err := os.Chmod(app2, 0o664); err != nil {
		t.Fatal(err)
	}
	d1 := bakeJSON(t, []string{"BAKERY_HOME=" + t.TempDir()}, r1).Artifacts[0].Digest
	d2 := bakeJSON(t, []string{"BAKERY_HOME=" + t.TempDir()}, r2).Artifacts[0].Digest
	if d1 != d2 {
		t.Fatalf("digests differ: %s vs %s", d1, d2)
	}
	// SOURCE_DATE_EPOCH changes the timestamps, so the digest.
	d3 := bakeJSON(t, []string{"BAKERY_HOME=" + t.TempDir(), "SOURCE_DATE_EPOCH=1700000000"}, r1).Artifacts[0].Digest
	if d3 == d1 {
		t.Fatal("SOURCE_DATE_EPOCH did not change the digest")
	}
}

func TestBakeFromAnotherWorkingDirectory(t *testing.T) {
	recipe := helloProject(t, "")
	home := t.TempDir()
	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	if err := os.Chdir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(mustGetwd(t), recipe)
	if err != nil {
		t.Fatal(err)
	}
	a := bakeJSON(t, []string{"BAKERY_HOME=" + home}, rel).Artifacts[0]
	b := bakeJSON(t, []string{"BAKERY_HOME=" + t.TempDir()}, recipe).Artifacts[0]
	if a.Digest != b.Digest {
		t.Fatalf("relative %s and absolute path give different digests", rel)
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func TestVersionIsImmutable(t *testing.T) {
	recipe := helloProject(t, "")
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	bakeJSON(t, env, recipe)
	before := snapshot(t, home)

	if err := os.WriteFile(filepath.Join(filepath.Dir(recipe), "app", "README"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"bake", recipe}, {"bake", "--force", recipe}} {
		r := run(t, env, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "already holds other content") || !strings.Contains(r.stderr, "bump the recipe version") {
			t.Fatalf("%v: exit %d, stderr %q; want exit 1 refusing the existing version", args, r.code, r.stderr)
		}
		sameTree(t, before, snapshot(t, home))
	}
}

func TestForceRebakesSameDigest(t *testing.T) {
	recipe := helloProject(t, "")
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	first := bakeJSON(t, env, recipe)
	forced := bakeJSON(t, env, "--force", recipe)
	if forced.Cached || forced.Artifacts[0].Digest != first.Artifacts[0].Digest {
		t.Fatalf("--force = %+v, want a rebake with digest %s", forced, first.Artifacts[0].Digest)
	}
}

func TestManifestFileAndTextProgress(t *testing.T) {
	recipe := helloProject(t, "")
	manifest := filepath.Join(t.TempDir(), "bake.json")
	r := mustRun(t, []string{"BAKERY_HOME=" + t.TempDir()}, "--output", "json", "bake", "--manifest", manifest, recipe)
	got, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != r.stdout {
		t.Fatalf("manifest %q differs from stdout %q", got, r.stdout)
	}
	var doc map[string]any
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"recipe", "version", "bake_key", "cached", "artifacts"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, got)
		}
	}
	// Off a terminal, progress is structured lines with durations.
	if !strings.Contains(r.stderr, `status=done duration=`) || !strings.Contains(r.stderr, `layer 1/1 app/ → /app/`) {
		t.Errorf("progress lines = %q", r.stderr)
	}
}

func TestOtherToolsReadTheLayout(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	umoci := requireTool(t, "umoci")
	recipe := helloProject(t, "")
	home := t.TempDir()
	digest := bakeJSON(t, []string{"BAKERY_HOME=" + home}, recipe).Artifacts[0].Digest

	out, err := exec.Command(skopeo, "inspect", "oci:"+home+":hello:1.0.0").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var info struct {
		Digest       string
		Architecture string
		Os           string
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Digest != digest || info.Os != "linux" || info.Architecture != "amd64" {
		t.Fatalf("skopeo sees %+v, want digest %s linux/amd64", info, digest)
	}
	// skopeo copy verifies every blob digest on the way.
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command(skopeo, "copy", "oci:"+home+":hello:1.0.0", "oci:"+dst+":hello").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	// umoci unpacks the filesystem: the app is there, executable.
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command(umoci, "unpack", "--rootless", "--image", home+":hello:1.0.0", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	st, err := os.Stat(filepath.Join(bundle, "rootfs", "app", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("/app/hello mode = %v, want 0755", st.Mode().Perm())
	}
	content, _ := os.ReadFile(filepath.Join(bundle, "rootfs", "app", "hello"))
	if string(content) != "#!/bin/sh\necho hello\n" {
		t.Errorf("/app/hello = %q", content)
	}
}

func TestBakeFromLayoutBaseRecordsLineage(t *testing.T) {
	recipe := helloProject(t, "")
	baseHome := t.TempDir()
	baseDigest := bakeJSON(t, []string{"BAKERY_HOME=" + baseHome}, recipe).Artifacts[0].Digest

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"web.bake.hcl": `recipe "web" {
  version = "2.0.0"
  stages  = ["dev"]
}
container "web" {
  base = "oci:` + baseHome + `:hello:1.0.0"
  layer {
    source      = "site/index.html"
    destination = "/srv/"
  }
  env           = { PORT = "8080" }
  exposed_ports = ["8080"]
}
`,
		"site/index.html": "<h1>hi</h1>\n",
	})
	home := t.TempDir()
	res := bakeJSON(t, []string{"BAKERY_HOME=" + home}, filepath.Join(dir, "web.bake.hcl"))
	idx := mustIndex(t, home)
	im, _ := idx.IndexManifest()
	img, err := idx.Image(refNamed(im.Manifests)[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("image does not validate: %v", err)
	}
	m, _ := img.Manifest()
	if m.Annotations[catalog.AnnotationBaseDigest] != baseDigest || !strings.Contains(m.Annotations[catalog.AnnotationBaseName], baseHome) {
		t.Errorf("base annotations = %v, want digest %s", m.Annotations, baseDigest)
	}
	if len(m.Layers) != 2 {
		t.Errorf("layers = %d, want base layer + 1", len(m.Layers))
	}
	cfg, _ := img.ConfigFile()
	if strings.Join(cfg.Config.Entrypoint, " ") != "/app/hello" || cfg.Config.Env[0] != "PORT=8080" {
		t.Errorf("config = %+v: want the base's entrypoint and the recipe's env", cfg.Config)
	}
	if _, ok := cfg.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports = %v", cfg.Config.ExposedPorts)
	}
	if d := refNamed(im.Manifests)[0].Digest; res.Artifacts[0].Digest != d.String() {
		t.Errorf("reported digest %s, layout has %s", res.Artifacts[0].Digest, d)
	}
}

func TestBakeFolderContinuesPastAFailingRecipe(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.bake.hcl": strings.Replace(helloRecipe(""), `"hello"`, `"aaa"`, 2),
		"b.bake.hcl": strings.Replace(strings.Replace(helloRecipe(""), `"hello"`, `"bbb"`, 2), `"scratch"`, `"127.0.0.1:1/no/base:1"`, 1),
		"c.bake.hcl": strings.Replace(helloRecipe(""), `"hello"`, `"ccc"`, 2),
		"app/hello":  "#!/bin/sh\n",
	})
	home := t.TempDir()
	r := run(t, []string{"BAKERY_HOME=" + home}, "-q", "--output", "json", "bake", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "1 of 3 recipes failed (bbb)") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	// The results of the good recipes, then the error document.
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"recipe":"aaa"`) || !strings.Contains(lines[1], `"recipe":"ccc"`) ||
		!strings.HasPrefix(lines[2], `{"error":{"message":"1 of 3 recipes failed (bbb)`) {
		t.Fatalf("stdout = %q, want the two good recipes and the error, one JSON document per line", r.stdout)
	}
}

func TestGlobalFlagsAfterTheCommand(t *testing.T) {
	recipe := helloProject(t, "")
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	r := mustRun(t, env, "bake", "-q", "--output", "json", recipe)
	if !strings.HasPrefix(r.stdout, `{"recipe":"hello"`) || r.stderr != "" {
		t.Fatalf("bake -q --output json: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	// The flag nearest the command wins.
	r = mustRun(t, env, "--output", "json", "bake", "--output", "text", recipe)
	if !strings.Contains(r.stdout, "up to date") || strings.HasPrefix(r.stdout, "{") {
		t.Fatalf("--output json bake --output text: stdout %q", r.stdout)
	}
}
