package cli

import (
	"crypto/sha1" //nolint:gosec // what SPDX records
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/internal/sbom/intoto"
	"github.com/bakery-sh/bakery/internal/sbom/sbomtest"
	"github.com/bakery-sh/bakery/internal/sbom/spdx"
)

const shopDpkgStatus = `Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
`

// debianBase pushes to host a base image whose dpkg database lists two
// packages, and returns its reference and digest.
func debianBase(t *testing.T, host string) (string, string) {
	t.Helper()
	ref := host + "/base/debian:12"
	img := baseImage(t, false, &v1.Platform{OS: "linux", Architecture: "amd64"}, baseLayer(t, false,
		dirEntry("etc/", 0o755, 0, 0, tmpTime),
		fileEntry("etc/os-release", 0o644, []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n")),
		dirEntry("var/", 0o755, 0, 0, tmpTime),
		dirEntry("var/lib/", 0o755, 0, 0, tmpTime),
		dirEntry("var/lib/dpkg/", 0o755, 0, 0, tmpTime),
		fileEntry("var/lib/dpkg/status", 0o644, []byte(shopDpkgStatus)),
	))
	pushBase(t, ref, img)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref, d.String()
}

// shopProject writes a recipe over base (pushed to repo, or the layout
// when repo is empty) with an app folder and a Go binary, and returns
// the recipe path.
func shopProject(t *testing.T, base, repo, extra string) string {
	t.Helper()
	dir := t.TempDir()
	repoLine := ""
	if repo != "" {
		repoLine = `  repository = "` + repo + `"` + "\n"
	}
	writeFiles(t, dir, map[string]string{
		"shop.bake.hcl": `variable "version" {
  type    = string
  default = "1.0.0"
}
recipe "shop" {
  version = var.version
  stages  = ["dev", "prod"]
}
container "shop" {
  base = "` + base + `"
` + repoLine + `  layer {
    source      = "app/"
    destination = "/app/"
  }
  layer {
    source      = "bin/probe"
    destination = "/usr/local/bin/"
  }
}
` + extra,
		"app/start.sh":  "#!/bin/sh\nexec /usr/local/bin/probe\n",
		"app/README.md": "the shop\n",
	})
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "probe"), buildProbeOnce(t), 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "shop.bake.hcl")
}

var probeBinary []byte

// buildProbeOnce builds the probe (a Go binary, module "probe") once per
// test process.
func buildProbeOnce(t *testing.T) []byte {
	t.Helper()
	if probeBinary == nil {
		probeBinary = buildProbe(t)
	}
	return probeBinary
}

func hexSHA256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func hexSHA1(b []byte) string   { s := sha1.Sum(b); return hex.EncodeToString(s[:]) } //nolint:gosec // see the import

// historyReferrers returns the artifact types attached to subject in
// the layout's history file, read as plain JSON.
func historyReferrers(t *testing.T, home, subject string) map[string]v1.Descriptor {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(home, "bakery-history.json"))
	if err != nil {
		t.Fatal(err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(raw, &im); err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Descriptor{}
	for _, d := range im.Manifests {
		if d.Annotations[catalogoci.AnnotationSubject] == subject && d.ArtifactType != catalogoci.EventArtifactType {
			out[d.ArtifactType] = d
		}
	}
	return out
}

func fileOf(d spdx.Document, name string) *spdx.File {
	for i, f := range d.Files {
		if f.FileName == name {
			return &d.Files[i]
		}
	}
	return nil
}

func checksum(f *spdx.File, alg string) string {
	for _, c := range f.Checksums {
		if c.Algorithm == alg {
			return c.Value
		}
	}
	return ""
}

func purls(d spdx.Document) []string {
	var out []string
	for _, p := range d.Packages {
		for _, r := range p.ExternalRefs {
			out = append(out, r.Locator)
		}
	}
	return out
}

func TestBakeAttachesSBOMAndProvenanceInTheLayout(t *testing.T) {
	noDockerConfig(t)
	host := referrersRegistry(t, nil)
	base, baseDigest := debianBase(t, host)
	recipe := shopProject(t, base, "", "")
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	res := bakeJSON(t, env, recipe)
	digest := res.Artifacts[0].Digest

	refs := historyReferrers(t, home, digest)
	for _, at := range []string{catalogoci.SBOMArtifactType, catalogoci.ProvenanceArtifactType} {
		if _, ok := refs[at]; !ok {
			t.Errorf("the layout's history lists no %s referrer of %s: %v", at, digest, refs)
		}
	}

	sbomOut := mustRun(t, env, "sbom", "shop@1.0.0", "-f", recipe).stdout
	if msg := sbomtest.SPDX(t, []byte(sbomOut)); msg != "" {
		t.Fatalf("pyspdxtools rejects the SBOM: %s", msg)
	}
	// What sbom prints is the document the referrer holds.
	raw, err := os.ReadFile(filepath.Join(home, "blobs", "sha256", refs[catalogoci.SBOMArtifactType].Digest.Hex))
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil || m.Subject == nil || m.Subject.Digest.String() != digest || m.ArtifactType != catalogoci.SBOMArtifactType {
		t.Fatalf("SBOM manifest %s: %v", raw, err)
	}
	blob, err := os.ReadFile(filepath.Join(home, "blobs", "sha256", m.Layers[0].Digest.Hex))
	if err != nil || string(blob) != sbomOut {
		t.Errorf("bakery sbom printed something else than the attached document (%v)", err)
	}

	var doc spdx.Document
	if err := json.Unmarshal([]byte(sbomOut), &doc); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(recipe)
	for in, img := range map[string]string{"app/start.sh": "./app/start.sh", "app/README.md": "./app/README.md", "bin/probe": "./usr/local/bin/probe"} {
		content, err := os.ReadFile(filepath.Join(dir, in))
		if err != nil {
			t.Fatal(err)
		}
		f := fileOf(doc, img)
		if f == nil {
			t.Errorf("the SBOM lists no %s", img)
			continue
		}
		if checksum(f, "SHA256") != hexSHA256(content) || checksum(f, "SHA1") != hexSHA1(content) {
			t.Errorf("%s: checksums %+v, want sha256 %s", img, f.Checksums, hexSHA256(content))
		}
	}
	ps := purls(doc)
	for _, want := range []string{
		"pkg:golang/probe", // the Go binary's main module
		"pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64",                       // from the base's dpkg status
		"pkg:deb/debian/tzdata@2024a-0+deb12u1?arch=all",                       // idem
		"pkg:oci/debian@sha256%3A" + strings.TrimPrefix(baseDigest, "sha256:"), // the base, by digest
	} {
		if !slices.ContainsFunc(ps, func(p string) bool { return p == want || strings.HasPrefix(p, want+"?") }) {
			t.Errorf("the SBOM has no package %s; it has %v", want, ps)
		}
	}

	provOut := mustRun(t, env, "provenance", "shop@1.0.0", "-f", recipe).stdout
	if msg := sbomtest.InToto(t, []byte(provOut)); msg != "" {
		t.Fatalf("the in-toto bindings reject the provenance: %s", msg)
	}
	var st intoto.Statement
	if err := json.Unmarshal([]byte(provOut), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Subject) != 1 || "sha256:"+st.Subject[0].Digest["sha256"] != digest {
		t.Errorf("subject = %+v, want %s", st.Subject, digest)
	}
	if got := st.Predicate.BuildDefinition.InternalParameters["bakeKey"]; got != res.BakeKey {
		t.Errorf("bake key = %v, want %s", got, res.BakeKey)
	}
	if id := st.Predicate.RunDetails.Builder.ID; id != intoto.BuilderID+"@"+Version {
		t.Errorf("builder id = %s", id)
	}
	recipeBytes, _ := os.ReadFile(recipe)
	probe := buildProbeOnce(t)
	want := map[string]string{ // uri → sha256
		"file:shop.bake.hcl": hexSHA256(recipeBytes),
		base:                 strings.TrimPrefix(baseDigest, "sha256:"),
		"file:app/start.sh":  hexSHA256([]byte("#!/bin/sh\nexec /usr/local/bin/probe\n")),
		"file:app/README.md": hexSHA256([]byte("the shop\n")),
		"file:bin/probe":     hexSHA256(probe),
	}
	got := map[string]string{}
	for _, d := range st.Predicate.BuildDefinition.ResolvedDependencies {
		got[d.URI] = d.Digest["sha256"]
	}
	for uri, sum := range want {
		if got[uri] != sum {
			t.Errorf("material %s: sha256 %q, want %s", uri, got[uri], sum)
		}
	}
	if len(got) != len(want) {
		t.Errorf("materials %v, want exactly %v", got, want)
	}
}

func TestSBOMAndProvenanceAreReproducible(t *testing.T) {
	noDockerConfig(t)
	recipe := shopProject(t, "scratch", "", "")
	// Two bakes in fresh layouts, at different times of the (injected)
	// wall clock.
	docs := func(now time.Time) (string, string) {
		env := []string{"BAKERY_HOME=" + t.TempDir(), "SOURCE_DATE_EPOCH=1700000000"}
		mustRunAt(t, now, env, "-q", "bake", recipe)
		return mustRun(t, env, "sbom", "shop@1.0.0", "-f", recipe).stdout, mustRun(t, env, "provenance", "shop@1.0.0", "-f", recipe).stdout
	}
	s1, p1 := docs(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s2, p2 := docs(time.Date(2026, 6, 1, 12, 30, 0, 0, time.UTC))
	if s1 != s2 || p1 != p2 {
		t.Fatal("two bakes of the same inputs attached different documents")
	}
	var doc spdx.Document
	if err := json.Unmarshal([]byte(s1), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.CreationInfo.Created != "2023-11-14T22:13:20Z" {
		t.Errorf("created = %s, want SOURCE_DATE_EPOCH", doc.CreationInfo.Created)
	}
}

// referrerTypes lists the artifact types of digest's referrers in repo
// with go-containerregistry's remote.Referrers (crane's API), which
// falls back to the sha256-HEX tag.
func referrerTypes(t *testing.T, repo, digest string) map[string]v1.Hash {
	t.Helper()
	d, err := name.NewDigest(repo + "@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Hash{}
	for _, m := range im.Manifests {
		// go-containerregistry's registry reports the config media type:
		// read the manifest's own artifactType.
		got, err := remote.Get(d.Context().Digest(m.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		var mf v1.Manifest
		if err := json.Unmarshal(got.Manifest, &mf); err != nil {
			t.Fatal(err)
		}
		if mf.Subject == nil || mf.Subject.Digest.String() != digest {
			t.Errorf("referrer %s has subject %v, want %s", m.Digest, mf.Subject, digest)
		}
		out[mf.ArtifactType] = m.Digest
	}
	return out
}

func TestBakeAttachesSBOMAndProvenanceInARegistry(t *testing.T) {
	noDockerConfig(t)
	for _, tc := range []struct {
		name      string
		referrers bool
	}{{"referrers API", true}, {"fallback tag", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var host string
			if tc.referrers {
				host = referrersRegistry(t, nil)
			} else {
				host = registryWithoutReferrers(t)
			}
			recipe := shopProject(t, "scratch", host+"/team/shop", "")
			env := []string{"BAKERY_HOME=" + t.TempDir()}
			digest := bakeJSON(t, env, recipe).Artifacts[0].Digest
			types := referrerTypes(t, host+"/team/shop", digest)
			for _, at := range []string{catalogoci.SBOMArtifactType, catalogoci.ProvenanceArtifactType} {
				if _, ok := types[at]; !ok {
					t.Errorf("no %s referrer of %s: %v", at, digest, types)
				}
			}
			fallback, err := name.NewTag(host + "/team/shop:sha256-" + strings.TrimPrefix(digest, "sha256:"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := remote.Head(fallback); (err == nil) == tc.referrers {
				t.Errorf("fallback tag %s: head error %v (registry with referrers API: %v)", fallback, err, tc.referrers)
			}
			out := mustRun(t, env, "sbom", "shop@1.0.0", "-f", recipe).stdout
			if msg := sbomtest.SPDX(t, []byte(out)); msg != "" {
				t.Fatalf("pyspdxtools rejects the SBOM: %s", msg)
			}
			if !strings.Contains(out, "pkg:golang/probe") {
				t.Error("the SBOM read from the registry does not list the Go binary's module")
			}
			prov := mustRun(t, env, "provenance", "shop@1.0.0", "-f", recipe).stdout
			if !strings.Contains(prov, strings.TrimPrefix(digest, "sha256:")) {
				t.Error("the provenance read from the registry does not name the image")
			}
		})
	}
}

// registryWithoutReferrers starts a registry without the referrers API.
func registryWithoutReferrers(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(quietRegistry())
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestPromoteCopiesSBOMAndProvenance(t *testing.T) {
	noDockerConfig(t)
	for _, tc := range []struct{ name, repo string }{{"from the layout", ""}, {"from a registry", "team/shop"}} {
		t.Run(tc.name, func(t *testing.T) {
			host := registryWithoutReferrers(t) // the fallback tag is copied too
			repo := ""
			if tc.repo != "" {
				repo = host + "/" + tc.repo
			}
			recipe := shopProject(t, "scratch", repo, `stage "prod" {
  repository = "`+host+`/prod/shop"
}
`)
			home := t.TempDir()
			env := []string{"BAKERY_HOME=" + home}
			digest := bakeJSON(t, env, recipe).Artifacts[0].Digest
			var before map[string]v1.Hash
			if repo == "" {
				before = map[string]v1.Hash{}
				for at, d := range historyReferrers(t, home, digest) {
					before[at] = d.Digest
				}
			} else {
				before = referrerTypes(t, repo, digest)
			}
			mustRun(t, env, "promote", "shop@1.0.0", "--to", "dev", "-f", recipe)
			mustRun(t, env, "promote", "shop@1.0.0", "--to", "prod", "-f", recipe)
			after := referrerTypes(t, host+"/prod/shop", digest)
			for _, at := range []string{catalogoci.SBOMArtifactType, catalogoci.ProvenanceArtifactType} {
				if before[at] == (v1.Hash{}) || after[at] != before[at] {
					t.Errorf("%s: promoted copy %v, want the baked %v", at, after[at], before[at])
				}
			}
		})
	}
}

func TestSBOMCommandErrors(t *testing.T) {
	noDockerConfig(t)
	recipe := shopProject(t, "scratch", "", "")
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	bakeJSON(t, env, recipe)

	if r := run(t, env, "sbom", "shop@9.9.9", "-f", recipe); r.code != 1 || !strings.Contains(r.stderr, "no such version") {
		t.Errorf("unknown version: exit %d, %q", r.code, r.stderr)
	}
	if r := run(t, env, "sbom", "-f", recipe); r.code != 2 || !strings.Contains(r.stderr, "RECIPE@VERSION") {
		t.Errorf("no argument: exit %d, %q", r.code, r.stderr)
	}
	if r := run(t, env, "provenance", "shop", "-f", recipe); r.code != 2 || !strings.Contains(r.stderr, "RECIPE@VERSION") {
		t.Errorf("no version: exit %d, %q", r.code, r.stderr)
	}

	// An image baked before bakery attached documents: drop them from the
	// history file, as an older bakery wrote it.
	path := filepath.Join(home, "bakery-history.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(raw, &im); err != nil {
		t.Fatal(err)
	}
	im.Manifests = slices.DeleteFunc(im.Manifests, func(d v1.Descriptor) bool { return d.ArtifactType != catalogoci.EventArtifactType })
	raw, _ = json.Marshal(im)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"sbom", "provenance"} {
		r := run(t, env, verb, "shop@1.0.0", "-f", recipe)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "no "+map[string]string{"sbom": "SBOM", "provenance": "provenance"}[verb]+" is attached") || !strings.Contains(r.stderr, "bake a new version") {
			t.Errorf("%s of an image without one: exit %d, stdout %q, stderr %q", verb, r.code, r.stdout, r.stderr)
		}
	}

	// Two artifacts: the command asks which.
	two := shopProject(t, "scratch", "", `container "worker" {
  base = "scratch"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`)
	if r := run(t, env, "sbom", "shop@1.0.0", "-f", two); r.code != 2 || !strings.Contains(r.stderr, "--artifact") {
		t.Errorf("two artifacts without --artifact: exit %d, %q", r.code, r.stderr)
	}
	if r := run(t, env, "sbom", "shop@1.0.0", "--artifact", "nope", "-f", two); r.code != 2 || !strings.Contains(r.stderr, "shop, worker") {
		t.Errorf("unknown artifact: exit %d, %q", r.code, r.stderr)
	}
}

func TestRepeatedBakeTakesFileDigestsFromTheCache(t *testing.T) {
	noDockerConfig(t)
	recipe := shopProject(t, "scratch", "", "")
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	bakeJSON(t, env, recipe)

	// Replace the cached SHA-256 of app/README.md: a bake that hashed the
	// file again would not show it.
	real := hexSHA256([]byte("the shop\n"))
	cachePath := filepath.Join(home, "cache", "sbom-file-digests.json")
	raw, err := os.ReadFile(cachePath)
	if err != nil {
		t.Fatalf("the first bake left no digest cache: %v", err)
	}
	if !strings.Contains(string(raw), real) {
		t.Fatalf("the cache does not hold app/README.md's digest: %s", raw)
	}
	fake := strings.Repeat("f", 64)
	if err := os.WriteFile(cachePath, []byte(strings.ReplaceAll(string(raw), real, fake)), 0o644); err != nil {
		t.Fatal(err)
	}
	bakeJSON(t, env, "-var", "version=1.1.0", recipe)
	out := mustRun(t, env, "sbom", "shop@1.1.0", "-f", recipe).stdout
	if !strings.Contains(out, fake) {
		t.Error("the second bake hashed app/README.md again instead of taking its digest from the cache")
	}
}

func TestRetireRemovesSBOMAndProvenanceFromTheLayout(t *testing.T) {
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	recipe := retainContainerRecipe(t, "")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var digests []string
	for i, v := range []string{"1.0.0", "1.0.1"} {
		mustRunAt(t, t0.Add(time.Duration(i)*time.Hour), env, "bake", "-var", "version="+v, recipe)
		l, err := catalogoci.OpenLayout(home)
		if err != nil {
			t.Fatal(err)
		}
		d, err := l.Find("hello:" + v)
		if err != nil || d == nil {
			t.Fatalf("finding hello:%s: %v", v, err)
		}
		digests = append(digests, d.Digest.String())
	}
	old := historyReferrers(t, home, digests[0])
	sbomManifest := old[catalogoci.SBOMArtifactType].Digest
	if sbomManifest.Hex == "" {
		t.Fatal("1.0.0 has no SBOM to retire")
	}
	mustRunAt(t, t0.Add(10*time.Hour), env, "retire", "--yes", recipe)
	if left := historyReferrers(t, home, digests[0]); len(left) != 0 {
		t.Errorf("the retired version's documents are still listed: %v", left)
	}
	if _, err := os.Stat(filepath.Join(home, "blobs", "sha256", sbomManifest.Hex)); !os.IsNotExist(err) {
		t.Errorf("the retired version's SBOM manifest is still in blobs/ (%v)", err)
	}
	if r := mustRun(t, env, "sbom", "hello@1.0.1", "-f", recipe); !strings.Contains(r.stdout, "SPDX-2.3") {
		t.Error("the kept version lost its SBOM")
	}
}

func TestMultiPlatformBakeAttachesDocumentsToTheIndex(t *testing.T) {
	noDockerConfig(t)
	host := referrersRegistry(t, nil)
	amd := baseImage(t, false, &v1.Platform{OS: "linux", Architecture: "amd64"}, baseLayer(t, false,
		dirEntry("var/", 0o755, 0, 0, tmpTime), dirEntry("var/lib/", 0o755, 0, 0, tmpTime), dirEntry("var/lib/dpkg/", 0o755, 0, 0, tmpTime),
		fileEntry("var/lib/dpkg/status", 0o644, []byte(shopDpkgStatus))))
	arm := baseImage(t, false, &v1.Platform{OS: "linux", Architecture: "arm64"}, baseLayer(t, false,
		dirEntry("lib/", 0o755, 0, 0, tmpTime), dirEntry("lib/apk/", 0o755, 0, 0, tmpTime), dirEntry("lib/apk/db/", 0o755, 0, 0, tmpTime),
		fileEntry("lib/apk/db/installed", 0o644, []byte("P:musl\nV:1.2.4-r2\nA:aarch64\n\n"))))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	ref, err := name.ParseReference(host + "/base/multi:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	recipe := shopProject(t, host+"/base/multi:1", "", "")
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	digest := bakeJSON(t, env, recipe).Artifacts[0].Digest
	if refs := historyReferrers(t, home, digest); len(refs) != 2 {
		t.Fatalf("the index %s has referrers %v, want the SBOM and the provenance", digest, refs)
	}
	out := mustRun(t, env, "sbom", "shop@1.0.0", "-f", recipe).stdout
	if msg := sbomtest.SPDX(t, []byte(out)); msg != "" {
		t.Fatalf("pyspdxtools rejects the multi-platform SBOM: %s", msg)
	}
	var doc spdx.Document
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	ps := purls(doc)
	for _, want := range []string{"pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64", "pkg:apk/alpine/musl@1.2.4-r2?arch=aarch64"} {
		if !slices.Contains(ps, want) {
			t.Errorf("the SBOM lacks %s (each platform's base packages): %v", want, ps)
		}
	}
}

func TestRetireRemovesSBOMAndProvenanceFromTheRegistries(t *testing.T) {
	noDockerConfig(t)
	host := registryWithoutReferrers(t)
	recipe := retainContainerRecipe(t, host+"/team/hello")
	b, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recipe, append(b, "stage \"prod\" {\n  repository = \""+host+"/prod/hello\"\n}\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first := ""
	for i, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
		r := mustRunAt(t, t0.Add(time.Duration(i)*time.Hour), env, "-q", "--output", "json", "bake", "-var", "version="+v, recipe)
		if i == 0 {
			var res struct {
				Artifacts []struct{ Digest string } `json:"artifacts"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Artifacts) != 1 {
				t.Fatalf("bake output %q: %v", r.stdout, err)
			}
			first = res.Artifacts[0].Digest
		}
	}
	// 1.0.0 went to prod (copied to prod/hello with its documents), then
	// left it for 1.0.2.
	for _, stage := range []string{"dev", "staging", "prod"} {
		mustRunAt(t, t0.Add(4*time.Hour), env, "promote", "hello@1.0.0", "--to", stage, "-f", recipe)
	}
	for _, stage := range []string{"dev", "staging", "prod"} {
		mustRunAt(t, t0.Add(5*time.Hour), env, "promote", "hello@1.0.2", "--to", stage, "-f", recipe)
	}
	var docs []string
	for _, repo := range []string{host + "/team/hello", host + "/prod/hello"} {
		for _, d := range referrerTypesOf(t, repo, first, catalogoci.SBOMArtifactType, catalogoci.ProvenanceArtifactType) {
			docs = append(docs, repo+"@"+d.String())
		}
	}
	if len(docs) != 4 {
		t.Fatalf("1.0.0's documents before retire: %v, want 2 in each repository", docs)
	}
	mustRunAt(t, t0.Add(10*time.Hour), env, "retire", "--yes", recipe)
	for _, d := range docs {
		ref, err := name.NewDigest(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Head(ref); err == nil {
			t.Errorf("%s is still there after 1.0.0 was retired", d)
		}
	}
}

// referrerTypesOf returns the digests of digest's referrers in repo
// whose artifact type is one of types.
func referrerTypesOf(t *testing.T, repo, digest string, types ...string) []v1.Hash {
	t.Helper()
	var out []v1.Hash
	for at, d := range referrerTypes(t, repo, digest) {
		if slices.Contains(types, at) {
			out = append(out, d)
		}
	}
	return out
}
