package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	catalogoci "github.com/bakery-sh/bakery/catalog/oci"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// installCrane installs go-containerregistry's crane, at the version
// go.mod requires, into a temporary folder and returns that folder.
// Without the go tool or the module it fails under CI and skips elsewhere.
func installCrane(t *testing.T) string {
	t.Helper()
	goBin := requireTool(t, "go")
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Version}}", "github.com/google/go-containerregistry").Output()
	if err != nil {
		t.Fatalf("finding go-containerregistry's version: %v", err)
	}
	bin := t.TempDir()
	cmd := exec.Command(goBin, "install", "github.com/google/go-containerregistry/cmd/crane@"+strings.TrimSpace(string(out)))
	cmd.Dir = bin // outside this module: crane has its own dependencies
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("installing crane: %v\n%s", err, msg)
		}
		t.Skipf("cannot install crane (%v): %s", err, msg)
	}
	return bin
}

// readmeSection returns the README section that starts with heading.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no section %q", heading)
	}
	s = s[i+1+len(heading):]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// shellLines returns the commands of the first ```sh block of section.
func shellLines(t *testing.T, section string) []string {
	t.Helper()
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(section)
	if m == nil {
		t.Fatal("no ```sh block in the README section")
	}
	var lines []string
	for _, l := range strings.Split(m[1], "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestReadmeLayoutCommandsRunAsWritten runs every command README's
// "Reading the output with other tools" gives for the local layout, after
// one bake, as written (the registry host and the bundle folder replaced
// by the test's), with skopeo, umoci and crane, and checks what each did;
// then the skopeo command "Promoting" gives for a stage tag.
func TestReadmeLayoutCommandsRunAsWritten(t *testing.T) {
	requireTool(t, "skopeo")
	requireTool(t, "umoci")
	craneDir := installCrane(t)
	noDockerConfig(t)
	host := referrersRegistry(t, nil)
	recipe := helloProject(t, "")
	dir := filepath.Dir(recipe)
	env := []string{"BAKERY_HOME=" + filepath.Join(dir, ".bakery")}
	digest := bakeJSON(t, env, recipe).Artifacts[0].Digest

	// skopeo may speak plain HTTP to the test's registry: the user's
	// registries.conf (skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF).
	home := t.TempDir()
	conf := filepath.Join(home, ".config", "containers", "registries.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", host)), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "hello-bundle")
	shEnv := append(os.Environ(), "PATH="+craneDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "DOCKER_CONFIG="+t.TempDir())
	sh := func(line string) string {
		t.Helper()
		line = strings.ReplaceAll(line, "registry.example.com", host)
		line = strings.ReplaceAll(line, "/tmp/hello-bundle", bundle)
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir, cmd.Env = dir, shEnv
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("README command %q: %v\n%s", line, err, out.String())
		}
		return out.String()
	}
	remoteDigest := func(tag string) string {
		t.Helper()
		ref, err := name.ParseReference(host + "/team/hello:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Head(ref)
		if err != nil {
			t.Fatalf("HEAD %s: %v", ref, err)
		}
		return d.Digest.String()
	}
	untag := func(tag string) {
		t.Helper()
		ref, _ := name.ParseReference(host + "/team/hello:" + tag)
		if err := remote.Delete(ref); err != nil {
			t.Fatalf("deleting %s: %v", ref, err)
		}
	}

	lines := shellLines(t, readmeSection(t, "## Reading the output with other tools"))
	seen := map[string]bool{}
	for _, line := range lines {
		out := sh(line)
		tool := strings.Join(strings.Fields(line)[:2], " ")
		seen[tool] = true
		switch tool {
		case "skopeo inspect":
			if !strings.Contains(out, digest) {
				t.Errorf("%q printed no %s:\n%s", line, digest, out)
			}
		case "skopeo copy", "crane push":
			if m := regexp.MustCompile(`docker-archive:([^:\s]+):(\S+)`).FindStringSubmatch(line); m != nil {
				// A docker load archive: the same layers (diff IDs) as the baked image.
				tag, err := name.NewTag(m[2])
				if err != nil {
					t.Fatal(err)
				}
				archived, err := tarball.ImageFromPath(filepath.Join(dir, m[1]), &tag)
				if err != nil {
					t.Fatalf("after %q: reading %s: %v", line, m[1], err)
				}
				if got, want := diffIDs(t, archived), diffIDs(t, layoutImage(t, filepath.Join(dir, ".bakery"), "hello:1.0.0")); !slices.Equal(got, want) {
					t.Errorf("after %q: the archive's layers are %v, want the baked image's %v", line, got, want)
				}
				continue
			}
			if got := remoteDigest("1.0.0"); got != digest {
				t.Errorf("after %q: team/hello:1.0.0 = %s, want %s", line, got, digest)
			}
			untag("1.0.0") // so that the next push is checked on its own
		case "umoci unpack":
			if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "app", "hello")); err != nil || !strings.Contains(string(b), "echo hello") {
				t.Errorf("after %q: rootfs/app/hello = %q, %v", line, b, err)
			}
		default:
			t.Errorf("the test does not know how to check %q: teach it", line)
		}
	}
	for _, tool := range []string{"skopeo inspect", "skopeo copy", "umoci unpack", "crane push"} {
		if !seen[tool] {
			t.Errorf("README gives no %s command any more; the test expected one", tool)
		}
	}

	// "Promoting": the stage tag in the layout, read with skopeo.
	m := regexp.MustCompile("`(skopeo inspect oci:\\.bakery:hello:dev)`").FindStringSubmatch(readmeSection(t, "## Promoting"))
	if m == nil {
		t.Fatal("README's Promoting section no longer names skopeo inspect oci:.bakery:hello:dev")
	}
	mustRun(t, env, "promote", "hello@1.0.0", "--to", "dev", "-f", recipe)
	if out := sh(m[1]); !strings.Contains(out, digest) {
		t.Errorf("%q printed no %s:\n%s", m[1], digest, out)
	}
}

// TestLayoutBaseCountsImagesNotHistory bakes on top of a bakery layout
// (base = "oci:DIR") that holds one image under two tags (a version and
// its stage) and history entries listed in index.json, as older bakery
// versions wrote them: the base is that one image.
func TestLayoutBaseCountsImagesNotHistory(t *testing.T) {
	recipe := helloProject(t, "")
	dir := filepath.Dir(recipe)
	baseDir := filepath.Join(dir, "base-layout")
	env := []string{"BAKERY_HOME=" + baseDir}
	digest := bakeJSON(t, env, recipe).Artifacts[0].Digest
	mustRun(t, env, "promote", "hello@1.0.0", "--to", "dev", "-f", recipe)
	// Make it an older bakery's layout: the history in index.json.
	var idx, hist v1.IndexManifest
	for path, into := range map[string]*v1.IndexManifest{"index.json": &idx, "bakery-history.json": &hist} {
		b, err := os.ReadFile(filepath.Join(baseDir, path))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatal(err)
		}
	}
	if len(hist.Manifests) == 0 {
		t.Fatal("no history entries to move")
	}
	idx.Manifests = append(idx.Manifests, hist.Manifests...)
	b, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(baseDir, "index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	writeFiles(t, dir, map[string]string{"child.bake.hcl": `recipe "child" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "child" {
  base = "oci:./base-layout"
  layer {
    source      = "app/"
    destination = "/child/"
  }
}
`})
	out := filepath.Join(dir, "out")
	bakeJSON(t, []string{"BAKERY_HOME=" + out}, filepath.Join(dir, "child.bake.hcl"))
	l, err := catalogoci.OpenLayout(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.Lookup(context.Background(), "child:1.0.0")
	if err != nil || img == nil {
		t.Fatalf("looking up the child: %v, %v", img, err)
	}
	if img.BaseDigest != digest {
		t.Errorf("child's base digest = %q, want the hello image %s", img.BaseDigest, digest)
	}
}

// diffIDs returns the uncompressed layer digests of img.
func diffIDs(t *testing.T, img v1.Image) []string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, h := range cf.RootFS.DiffIDs {
		ids = append(ids, h.String())
	}
	return ids
}
