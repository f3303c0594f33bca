package spdx_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/internal/sbom"
	"github.com/bakery-sh/bakery/internal/sbom/sbomtest"
	"github.com/bakery-sh/bakery/internal/sbom/spdx"
)

// input has one of everything the document can say.
func input() spdx.Input {
	return spdx.Input{
		Tool:    "bakery-v1.2.3",
		Created: time.Unix(1700000000, 0),
		Image:   spdx.Image{Name: "web", Version: "1.4.2", Repository: "registry.example/team/web", Digest: "sha256:" + strings.Repeat("a", 64)},
		Layers: []spdx.Layer{{
			Name: "layer 1: app/ → /app/", Digest: "sha256:" + strings.Repeat("b", 64), Platforms: []string{"linux/amd64"},
			Files: []sbom.File{
				{Path: "app/README", Size: 12, Mode: 0o644, FileDigest: sbom.FileDigest{SHA1: strings.Repeat("1", 40), SHA256: strings.Repeat("2", 64)}},
				{Path: "app/server", Size: 99, Mode: 0o755, FileDigest: sbom.FileDigest{SHA1: strings.Repeat("3", 40), SHA256: strings.Repeat("4", 64),
					Go: &sbom.GoBinary{GoVersion: "go1.26.8", Main: sbom.GoModule{Path: "example.com/web", Version: "(devel)"},
						Deps: []sbom.GoModule{{Path: "github.com/google/go-containerregistry", Version: "v0.22.1", Sum: "h1:x="}}}}},
			},
		}},
		Bases: []spdx.Base{{
			Name: "docker.io/library/debian:12", Digest: "sha256:" + strings.Repeat("c", 64), Platform: "linux/amd64",
			Packages: []sbom.Package{{Type: "deb", Distro: "debian", Name: "libc6", Version: "1:2.36-9+deb12u4", Arch: "amd64", Source: "glibc"}},
		}},
	}
}

func TestDocumentValidatesWithSPDXTools(t *testing.T) {
	doc, err := spdx.Build(input())
	if err != nil {
		t.Fatal(err)
	}
	if msg := sbomtest.SPDX(t, doc); msg != "" {
		t.Fatalf("pyspdxtools rejects the document: %s\n%s", msg, doc)
	}
	// The validator does reject what is wrong: a file without its SHA-1.
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	f := m["files"].([]any)[0].(map[string]any)
	f["checksums"] = f["checksums"].([]any)[1:]
	broken, _ := json.Marshal(m)
	if msg := sbomtest.SPDX(t, broken); !strings.Contains(msg, "SHA1") {
		t.Errorf("pyspdxtools accepted a file without SHA-1: %q", msg)
	}
}

func TestDocumentListsFilesPackagesAndBase(t *testing.T) {
	doc, err := spdx.Build(input())
	if err != nil {
		t.Fatal(err)
	}
	var d spdx.Document
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	purls := map[string]bool{}
	for _, p := range d.Packages {
		for _, r := range p.ExternalRefs {
			purls[r.Locator] = true
		}
	}
	for _, want := range []string{
		"pkg:golang/github.com/google/go-containerregistry@v0.22.1",
		"pkg:golang/example.com/web",
		"pkg:deb/debian/libc6@1%3A2.36-9+deb12u4?arch=amd64",
		"pkg:oci/debian@sha256%3A" + strings.Repeat("c", 64) + "?repository_url=docker.io%2Flibrary%2Fdebian",
	} {
		if !purls[want] {
			t.Errorf("no package with purl %s; have %v", want, purls)
		}
	}
	if len(d.Files) != 2 || d.Files[1].FileName != "./app/server" || d.Files[1].Comment != "size 99 bytes, mode 0755" {
		t.Errorf("files = %+v", d.Files)
	}
	if d.CreationInfo.Created != "2023-11-14T22:13:20Z" {
		t.Errorf("created = %s, want the input's time", d.CreationInfo.Created)
	}
}

func TestDocumentIsReproducible(t *testing.T) {
	a, _ := spdx.Build(input())
	b, _ := spdx.Build(input())
	if !bytes.Equal(a, b) {
		t.Fatal("equal inputs gave different documents")
	}
}
