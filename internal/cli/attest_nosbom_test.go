package cli

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"

	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/internal/sbom/intoto"
	"github.com/bakery-sh/bakery/internal/sbom/sbomtest"
)

// sbom = false: the bake attaches the provenance only, which names the
// inputs by their BLAKE3 hashes (no SHA-256 of every file was computed);
// bakery sbom says why there is none; and the setting is in the bake key.
func TestBakeWithSBOMOffAttachesProvenanceOnly(t *testing.T) {
	noDockerConfig(t)
	recipe := shopProject(t, "scratch", "", "")
	raw, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	on := bakeJSON(t, []string{"BAKERY_HOME=" + t.TempDir()}, recipe)
	off := strings.Replace(string(raw), `base = "scratch"`, "base = \"scratch\"\n  sbom = false", 1)
	if err := os.WriteFile(recipe, []byte(off), 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	res := bakeJSON(t, env, recipe)
	if res.BakeKey == on.BakeKey {
		t.Error("sbom = false left the bake key as it was: an image baked with an SBOM would be up to date without one, and the other way round")
	}
	digest := res.Artifacts[0].Digest
	refs := historyReferrers(t, home, digest)
	if _, ok := refs[catalogoci.SBOMArtifactType]; ok {
		t.Errorf("sbom = false, yet an SBOM is attached: %v", refs)
	}
	if _, ok := refs[catalogoci.ProvenanceArtifactType]; !ok {
		t.Fatalf("no provenance attached with sbom = false: %v", refs)
	}

	r := run(t, env, "sbom", "shop@1.0.0", "-f", recipe)
	if r.code != 1 || !strings.Contains(r.stderr, "sbom = false") {
		t.Errorf("bakery sbom of an image baked with sbom = false: exit %d, stderr %q; want 1 and a message naming sbom = false", r.code, r.stderr)
	}

	provOut := mustRun(t, env, "provenance", "shop@1.0.0", "-f", recipe).stdout
	if msg := sbomtest.InToto(t, []byte(provOut)); msg != "" {
		t.Fatalf("the in-toto bindings reject the provenance: %s", msg)
	}
	var st intoto.Statement
	if err := json.Unmarshal([]byte(provOut), &st); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, d := range st.Predicate.BuildDefinition.ResolvedDependencies {
		got[d.URI] = d.Digest
	}
	dir := filepath.Dir(recipe)
	for _, in := range []string{"app/start.sh", "app/README.md", "bin/probe"} {
		content, err := os.ReadFile(filepath.Join(dir, in))
		if err != nil {
			t.Fatal(err)
		}
		sum := blake3.Sum256(content)
		d := got["file:"+in]
		if d["blake3"] != hex.EncodeToString(sum[:]) {
			t.Errorf("provenance names %s with %v, want blake3 %x", in, d, sum)
		}
		if _, ok := d["sha256"]; ok {
			t.Errorf("provenance names %s with a sha256 although sbom = false spares hashing files with it", in)
		}
	}
}
