// Package spdx writes bakery's SBOM of an image as an SPDX 2.3 JSON
// document (https://spdx.github.io/spdx-spec/v2.3/): a package for the
// image, one per layer bakery wrote (filesAnalyzed, with every regular
// file and its SHA-1 and SHA-256), one per base image (by digest, with
// the dpkg and apk packages installed in it), and one per Go module built
// into a Go binary of a layer.
package spdx

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // the SPDX package verification code is SHA-1
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/internal/sbom"
)

// MediaType is the media type (and OCI artifactType) of the document.
const MediaType = "application/spdx+json"

// Image describes the image the document is about.
type Image struct {
	// Name is the artifact's name; Version the recipe version.
	Name, Version string
	// Repository is the registry repository it was pushed to; "" for an
	// image of the local layout.
	Repository string
	// Digest is the image manifest's (or index's) digest, "sha256:HEX".
	Digest string
}

// Layer is a layer bakery wrote.
type Layer struct {
	// Name says which layer it is ("layer 1: ./app/ → /app/").
	Name string
	// Digest is the layer blob's digest, "sha256:HEX".
	Digest string
	// Platforms lists the platforms whose images hold it.
	Platforms []string
	Files     []sbom.File
}

// Base is the base image of one platform.
type Base struct {
	// Name is the base as written in the recipe, resolved ("docker.io/library/debian:12").
	Name string
	// Digest pins it, "sha256:HEX".
	Digest   string
	Platform string
	Packages []sbom.Package
}

// Input is everything the document says.
type Input struct {
	// Tool is the creator, "bakery-VERSION".
	Tool string
	// Created is the document's creation time: the bake's epoch, so that
	// equal inputs give equal documents.
	Created time.Time
	Image   Image
	Layers  []Layer
	Bases   []Base
}

// Document is an SPDX 2.3 document, as much of it as bakery writes.
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	Comment           string         `json:"comment,omitempty"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Packages          []Package      `json:"packages"`
	Files             []File         `json:"files,omitempty"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo says who made the document and when.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// Package is an SPDX package.
type Package struct {
	Name                  string            `json:"name"`
	SPDXID                string            `json:"SPDXID"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	VerificationCode      *VerificationCode `json:"packageVerificationCode,omitempty"`
	Checksums             []Checksum        `json:"checksums,omitempty"`
	SourceInfo            string            `json:"sourceInfo,omitempty"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
	Comment               string            `json:"comment,omitempty"`
	ExternalRefs          []ExternalRef     `json:"externalRefs,omitempty"`
}

// VerificationCode is a package's verification code (SPDX 2.3 §7.9).
type VerificationCode struct {
	Value string `json:"packageVerificationCodeValue"`
}

// Checksum is a digest of a file or package.
type Checksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

// ExternalRef is a package's external reference (a purl).
type ExternalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

// File is an SPDX file.
type File struct {
	FileName  string     `json:"fileName"`
	SPDXID    string     `json:"SPDXID"`
	Checksums []Checksum `json:"checksums"`
	FileTypes []string   `json:"fileTypes,omitempty"`
	Comment   string     `json:"comment,omitempty"`
}

// Relationship is an SPDX relationship.
type Relationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// Build returns the document of in, as indented JSON. Equal inputs give
// equal bytes.
func Build(in Input) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(New(in)); err != nil {
		return nil, fmt.Errorf("encoding the SPDX document: %w", err)
	}
	return buf.Bytes(), nil
}

// New returns the document of in.
func New(in Input) *Document {
	created := in.Created.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05Z")
	name := in.Image.Name + "@" + in.Image.Version
	doc := &Document{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              name,
		DocumentNamespace: "https://bakery.dev/spdx/" + url.PathEscape(in.Image.Name) + "/" + url.PathEscape(in.Image.Version) + "/" + strings.TrimPrefix(in.Image.Digest, "sha256:"),
		CreationInfo:      CreationInfo{Created: created, Creators: []string{"Tool: " + in.Tool}},
	}
	rel := func(a, typ, b string) {
		doc.Relationships = append(doc.Relationships, Relationship{Element: a, Type: typ, Related: b})
	}
	image := Package{
		Name: in.Image.Name, SPDXID: "SPDXRef-Image", VersionInfo: in.Image.Version,
		DownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "CONTAINER",
		Comment: "the image bakery baked",
	}
	if hexd, ok := strings.CutPrefix(in.Image.Digest, "sha256:"); ok {
		image.Checksums = []Checksum{{Algorithm: "SHA256", Value: hexd}}
		image.ExternalRefs = []ExternalRef{purlRef(ociPurl(in.Image.Name, in.Image.Digest, in.Image.Repository))}
	}
	doc.Packages = append(doc.Packages, image)
	rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")

	for bi, b := range in.Bases {
		id := fmt.Sprintf("SPDXRef-Base-%d", bi+1)
		p := Package{
			Name: b.Name, SPDXID: id, VersionInfo: b.Digest, DownloadLocation: "NOASSERTION",
			PrimaryPackagePurpose: "CONTAINER", Comment: "base image for " + b.Platform,
		}
		if hexd, ok := strings.CutPrefix(b.Digest, "sha256:"); ok {
			p.Checksums = []Checksum{{Algorithm: "SHA256", Value: hexd}}
			p.ExternalRefs = []ExternalRef{purlRef(ociPurl(baseName(b.Name), b.Digest, baseRepository(b.Name)))}
		}
		doc.Packages = append(doc.Packages, p)
		rel("SPDXRef-Image", "DESCENDANT_OF", id)
		for pi, pk := range b.Packages {
			pid := fmt.Sprintf("%s-Package-%d", id, pi+1)
			pp := Package{
				Name: pk.Name, SPDXID: pid, VersionInfo: pk.Version, DownloadLocation: "NOASSERTION",
				Comment:      pk.Type + " package installed in the base image",
				ExternalRefs: []ExternalRef{purlRef(distroPurl(pk))},
			}
			if pk.Source != "" {
				pp.SourceInfo = "built from source package " + pk.Source
			}
			doc.Packages = append(doc.Packages, pp)
			rel(id, "CONTAINS", pid)
		}
	}

	for li, l := range in.Layers {
		id := fmt.Sprintf("SPDXRef-Layer-%d", li+1)
		p := Package{
			Name: l.Name, SPDXID: id, DownloadLocation: "NOASSERTION", FilesAnalyzed: true,
			VerificationCode: &VerificationCode{Value: verificationCode(l.Files)},
			Comment:          "a layer bakery wrote, for " + strings.Join(l.Platforms, ", "),
		}
		if hexd, ok := strings.CutPrefix(l.Digest, "sha256:"); ok {
			p.Checksums = []Checksum{{Algorithm: "SHA256", Value: hexd}}
			p.VersionInfo = l.Digest
		}
		doc.Packages = append(doc.Packages, p)
		rel("SPDXRef-Image", "CONTAINS", id)
		for fi, f := range l.Files {
			fid := fmt.Sprintf("%s-File-%d", id, fi+1)
			doc.Files = append(doc.Files, File{
				FileName: "./" + f.Path, SPDXID: fid,
				Checksums: []Checksum{{Algorithm: "SHA1", Value: f.SHA1}, {Algorithm: "SHA256", Value: f.SHA256}},
				Comment:   fmt.Sprintf("size %d bytes, mode %04o", f.Size, f.Mode),
			})
			rel(id, "CONTAINS", fid)
			if f.Go != nil {
				goPackages(doc, fid, f.Go, rel)
			}
		}
	}
	return doc
}

// goPackages adds the modules of a Go binary: its main module, which the
// file is GENERATED_FROM, and the modules that one DEPENDS_ON.
func goPackages(doc *Document, fileID string, g *sbom.GoBinary, rel func(a, typ, b string)) {
	mainID := fileID + "-GoMain"
	mp := Package{
		Name: g.Main.Path, SPDXID: mainID, VersionInfo: g.Main.Version, DownloadLocation: "NOASSERTION",
		PrimaryPackagePurpose: "APPLICATION", Comment: "Go main module, built with " + g.GoVersion,
		ExternalRefs: []ExternalRef{purlRef(goPurl(g.Main))},
	}
	doc.Packages = append(doc.Packages, mp)
	rel(fileID, "GENERATED_FROM", mainID)
	for i, d := range g.Deps {
		id := fmt.Sprintf("%s-GoModule-%d", fileID, i+1)
		doc.Packages = append(doc.Packages, Package{
			Name: d.Path, SPDXID: id, VersionInfo: d.Version, DownloadLocation: "NOASSERTION",
			PrimaryPackagePurpose: "LIBRARY", ExternalRefs: []ExternalRef{purlRef(goPurl(d))},
		})
		rel(mainID, "DEPENDS_ON", id)
	}
}

// verificationCode is the SPDX package verification code of files: the
// SHA-1 of their sorted SHA-1s concatenated.
func verificationCode(files []sbom.File) string {
	sums := make([]string, len(files))
	for i, f := range files {
		sums[i] = f.SHA1
	}
	slices.Sort(sums)
	h := sha1.Sum([]byte(strings.Join(sums, ""))) //nolint:gosec // the spec's algorithm
	return hex.EncodeToString(h[:])
}

func purlRef(purl string) ExternalRef {
	return ExternalRef{Category: "PACKAGE-MANAGER", Type: "purl", Locator: purl}
}

// purlEscape escapes a purl name or version component.
func purlEscape(s string) string {
	return strings.NewReplacer("%", "%25", ":", "%3A", "@", "%40", "?", "%3F", "#", "%23", " ", "%20", "/", "%2F").Replace(s)
}

// goPurl is the purl of a Go module: pkg:golang/PATH@VERSION.
func goPurl(m sbom.GoModule) string {
	var parts []string
	for _, p := range strings.Split(m.Path, "/") {
		parts = append(parts, purlEscape(p))
	}
	p := "pkg:golang/" + strings.Join(parts, "/")
	if m.Version != "" && m.Version != "(devel)" {
		p += "@" + purlEscape(m.Version)
	}
	return p
}

// distroPurl is the purl of a dpkg or apk package.
func distroPurl(pk sbom.Package) string {
	p := "pkg:" + pk.Type + "/" + purlEscape(pk.Distro) + "/" + purlEscape(pk.Name) + "@" + purlEscape(pk.Version)
	if pk.Arch != "" {
		p += "?arch=" + purlEscape(pk.Arch)
	}
	return p
}

// ociPurl is the purl of an OCI image: pkg:oci/NAME@DIGEST?repository_url=REPO.
func ociPurl(name, digest, repository string) string {
	p := "pkg:oci/" + purlEscape(strings.ToLower(name)) + "@" + purlEscape(digest)
	if repository != "" {
		p += "?repository_url=" + url.QueryEscape(repository)
	}
	return p
}

// baseRepository is the repository of a base reference (without tag or
// digest); "" for a layout base ("oci:DIR").
func baseRepository(ref string) string {
	if strings.HasPrefix(ref, "oci:") || strings.HasPrefix(ref, "/") {
		return ""
	}
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

// baseName is the last path component of an image reference, without
// tag or digest: the name of its purl.
func baseName(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		ref = ref[i+1:]
	}
	if i := strings.IndexByte(ref, ':'); i >= 0 {
		ref = ref[:i]
	}
	if ref == "" {
		return "base"
	}
	return ref
}

// MachineImage describes a baked machine image (its AMIs, one per region).
type MachineImage struct {
	// Name is the machine_image block's name; Version the recipe version.
	Name, Version string
	// Images are "REGION/AMI-ID", build region first.
	Images []string
	// Source is the source AMI: its id, name, owner and region.
	SourceID, SourceName, SourceOwner, SourceRegion string
	// Inputs are the recipe file and the provisioners' local inputs
	// (path relative to the recipe's folder, digests, size and mode).
	Inputs []sbom.File
	// Key is the bake key, which names the document.
	Key string
}

// machineImageComment says what an AMI's SBOM can and cannot list.
const machineImageComment = "The SBOM of a machine image lists what bakery knows without reading the image's disk: " +
	"the source AMI it was baked from, the recipe file, and the local inputs of its provisioners (the files file " +
	"provisioners uploaded and the scripts shell provisioners ran). What the provisioners installed or changed on " +
	"the instance is not listed."

// BuildMachineImage returns the SBOM of a machine image as indented JSON:
// a package for the image (its AMIs in the comment), one for the source
// AMI, and one holding the recipe and provisioner inputs as files.
// Equal inputs give equal bytes.
func BuildMachineImage(tool string, created time.Time, m MachineImage) ([]byte, error) {
	doc := &Document{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              m.Name + "@" + m.Version,
		DocumentNamespace: "https://bakery.dev/spdx/ami/" + url.PathEscape(m.Name) + "/" + url.PathEscape(m.Version) + "/" + strings.TrimPrefix(m.Key, "sha256:"),
		Comment:           machineImageComment,
		CreationInfo:      CreationInfo{Created: created.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05Z"), Creators: []string{"Tool: " + tool}},
	}
	rel := func(a, typ, b string) {
		doc.Relationships = append(doc.Relationships, Relationship{Element: a, Type: typ, Related: b})
	}
	doc.Packages = append(doc.Packages, Package{
		Name: m.Name, SPDXID: "SPDXRef-Image", VersionInfo: m.Version, DownloadLocation: "NOASSERTION",
		PrimaryPackagePurpose: "OPERATING-SYSTEM", Comment: "AMIs: " + strings.Join(m.Images, ", "),
	})
	rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")
	if m.SourceID != "" {
		doc.Packages = append(doc.Packages, Package{
			Name: orNoName(m.SourceName, m.SourceID), SPDXID: "SPDXRef-Source", VersionInfo: m.SourceID, DownloadLocation: "NOASSERTION",
			PrimaryPackagePurpose: "OPERATING-SYSTEM",
			Comment:               fmt.Sprintf("source AMI %s in %s, owned by %s", m.SourceID, m.SourceRegion, m.SourceOwner),
		})
		rel("SPDXRef-Image", "DESCENDANT_OF", "SPDXRef-Source")
	}
	if len(m.Inputs) > 0 {
		doc.Packages = append(doc.Packages, Package{
			Name: "recipe and provisioner inputs", SPDXID: "SPDXRef-Inputs", DownloadLocation: "NOASSERTION", FilesAnalyzed: true,
			VerificationCode: &VerificationCode{Value: verificationCode(m.Inputs)},
			Comment:          "the local files bakery used to bake the image",
		})
		rel("SPDXRef-Image", "GENERATED_FROM", "SPDXRef-Inputs")
		for i, f := range m.Inputs {
			id := fmt.Sprintf("SPDXRef-Input-%d", i+1)
			doc.Files = append(doc.Files, File{
				FileName: "./" + f.Path, SPDXID: id,
				Checksums: []Checksum{{Algorithm: "SHA1", Value: f.SHA1}, {Algorithm: "SHA256", Value: f.SHA256}},
				Comment:   fmt.Sprintf("size %d bytes, mode %04o", f.Size, f.Mode),
			})
			rel("SPDXRef-Inputs", "CONTAINS", id)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encoding the SPDX document: %w", err)
	}
	return buf.Bytes(), nil
}

func orNoName(name, id string) string {
	if name == "" {
		return id
	}
	return name
}
