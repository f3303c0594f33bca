package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bakery-sh/bakery/catalog"
)

// How SBOMs and provenance are stored. Each is an OCI 1.1 artifact
// manifest whose subject is the image (or index): artifactType the
// document's media type, the empty config, and the document as its only
// layer, of that same media type. Registries list them with the referrers
// API (or the referrers fallback tag, sha256-HEX, where the registry has
// none); a layout lists them in its history file like the events, with
// AnnotationSubject naming the image. The manifest has no annotations, so
// equal documents about equal images are equal manifests.
const (
	// SBOMArtifactType is the artifactType of an SPDX 2.3 JSON SBOM.
	SBOMArtifactType = "application/spdx+json"
	// ProvenanceArtifactType is the artifactType of an in-toto statement
	// (bakery's: SLSA provenance v1).
	ProvenanceArtifactType = "application/vnd.in-toto+json"
)

// ErrNoAttestation is returned, wrapped, when an image has no document of
// the kind asked for (an image baked by a bakery without SBOMs).
var ErrNoAttestation = errors.New("the image has no such document")

// Attestation is a document about an image: an SBOM or a provenance
// statement.
type Attestation struct {
	// ArtifactType is SBOMArtifactType or ProvenanceArtifactType (any
	// media type works).
	ArtifactType string
	// Data is the document.
	Data []byte
}

// attestationManifest returns the artifact manifest attaching a to
// subject, its descriptor and the descriptor of the document's blob.
func attestationManifest(subject v1.Descriptor, a Attestation) (raw []byte, desc, blob v1.Descriptor, err error) {
	if a.ArtifactType == "" || len(a.Data) == 0 {
		return nil, v1.Descriptor{}, v1.Descriptor{}, fmt.Errorf("attaching a document to %s: it needs an artifact type and content", subject.Digest)
	}
	blob = v1.Descriptor{MediaType: types.MediaType(a.ArtifactType), Digest: hashOfBytes(a.Data), Size: int64(len(a.Data))}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  a.ArtifactType,
		Config:        emptyDescriptor(),
		Layers:        []v1.Descriptor{blob},
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
	}
	if raw, err = json.Marshal(m); err != nil {
		return nil, v1.Descriptor{}, v1.Descriptor{}, fmt.Errorf("encoding the %s manifest: %w", a.ArtifactType, err)
	}
	desc = v1.Descriptor{MediaType: types.OCIManifestSchema1, ArtifactType: a.ArtifactType, Digest: hashOfBytes(raw), Size: int64(len(raw))}
	return raw, desc, blob, nil
}

// AttachAttestations stages, in tx, docs as referrers of subject (an
// image or index written in the same or an earlier transaction): their
// blobs, their artifact manifests, and the manifests' descriptors in the
// layout's history file. They appear with the image on Commit, and go
// with it when it is retired.
func (tx *Tx) AttachAttestations(subject v1.Descriptor, docs ...Attestation) error {
	for _, a := range docs {
		raw, d, blob, err := attestationManifest(subject, a)
		if err != nil {
			return err
		}
		what := fmt.Sprintf("attaching the %s document to %s", a.ArtifactType, subject.Digest)
		empty := emptyDescriptor()
		for _, b := range []struct {
			h    v1.Hash
			data []byte
		}{{empty.Digest, []byte(emptyJSON)}, {blob.Digest, a.Data}, {d.Digest, raw}} {
			if _, err := tx.WriteBlob(b.h, bytes.NewReader(b.data)); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		d.Annotations = map[string]string{AnnotationSubject: subject.Digest.String()}
		if err := tx.attach(d); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// WriteAttestations writes docs to repo as referrers of subject, which
// must be there: the blobs, then each artifact manifest by digest
// (go-containerregistry updates the referrers fallback tag when the
// registry has no referrers API). Documents already there are not
// written again.
func WriteAttestations(ctx context.Context, repo name.Repository, subject v1.Descriptor, opts []remote.Option, docs ...Attestation) error {
	opts = append(slices.Clone(opts), remote.WithContext(ctx))
	for _, a := range docs {
		raw, d, _, err := attestationManifest(subject, a)
		if err != nil {
			return err
		}
		if err := putReferrer(ctx, repo, opts, referrer{raw: raw, desc: d, data: a.Data}); err != nil {
			return fmt.Errorf("attaching the %s document to %s in %s: %w", a.ArtifactType, subject.Digest, repo, err)
		}
	}
	return nil
}

// referrer is a stored document: its artifact manifest and content.
type referrer struct {
	raw  []byte
	desc v1.Descriptor
	data []byte
}

// putReferrer writes r to repo unless its manifest is there already.
func putReferrer(ctx context.Context, repo name.Repository, opts []remote.Option, r referrer) error {
	there, err := head(ctx, opts, repo.Digest(r.desc.Digest.String()))
	if err != nil {
		return err
	}
	if there != nil {
		return nil
	}
	var m v1.Manifest
	if err := json.Unmarshal(r.raw, &m); err != nil || len(m.Layers) != 1 {
		return fmt.Errorf("manifest %s is not a document's artifact manifest", r.desc.Digest)
	}
	if err := remote.WriteLayer(repo, static.NewLayer([]byte(emptyJSON), types.OCIEmptyJSON), opts...); err != nil {
		return fmt.Errorf("uploading the empty blob: %w", explain(ctx, repo, err))
	}
	if err := remote.WriteLayer(repo, static.NewLayer(r.data, m.Layers[0].MediaType), opts...); err != nil {
		return fmt.Errorf("uploading the document: %w", explain(ctx, repo, err))
	}
	if err := remote.Put(repo.Digest(r.desc.Digest.String()), rawManifest{r.raw, r.desc.MediaType}, opts...); err != nil {
		return fmt.Errorf("writing the document's manifest: %w", explain(ctx, repo, err))
	}
	return nil
}

// isAttestation reports whether a referrer's descriptor is a document
// (an SBOM or provenance) rather than an event.
func isAttestation(d v1.Descriptor) bool {
	return d.ArtifactType == SBOMArtifactType || d.ArtifactType == ProvenanceArtifactType
}

// layoutReferrers returns the documents attached to subject in l.
func (l *Layout) layoutReferrers(subject v1.Hash) ([]referrer, error) {
	hist, err := l.allDescriptors()
	if err != nil {
		return nil, err
	}
	var out []referrer
	for _, d := range hist {
		if _, named := d.Annotations[catalog.AnnotationRefName]; named || d.Annotations[AnnotationSubject] != subject.String() || !isAttestation(d) {
			continue
		}
		r, err := readReferrer(d, func(h v1.Hash) ([]byte, error) { return l.readBlob(h) })
		if err != nil {
			return nil, fmt.Errorf("reading the %s document of %s in layout %s: %w: the layout is damaged; re-bake the image", d.ArtifactType, subject, l.dir, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// registryReferrers returns the documents attached to subject in repo.
func registryReferrers(ctx context.Context, repo name.Repository, subject v1.Hash, opts []remote.Option) ([]referrer, error) {
	idx, err := remote.Referrers(repo.Digest(subject.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s in %s: %w", subject, repo, explain(ctx, repo, err))
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s in %s: %w", subject, repo, err)
	}
	var out []referrer
	seen := map[v1.Hash]bool{}
	for _, d := range im.Manifests {
		// Registries report the manifest's artifactType or, like
		// go-containerregistry's own, the config media type (the empty
		// one): such a referrer that is not an event is read to see.
		maybe := (d.ArtifactType == "" || d.ArtifactType == string(types.OCIEmptyJSON)) && d.Annotations[AnnotationEventAction] == ""
		if (!isAttestation(d) && !maybe) || seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		r, err := readReferrer(d, func(h v1.Hash) ([]byte, error) {
			if h == d.Digest {
				got, err := remote.Get(repo.Digest(h.String()), opts...)
				if err != nil {
					return nil, explain(ctx, repo, err)
				}
				return got.Manifest, nil
			}
			layer, err := remote.Layer(repo.Digest(h.String()), opts...)
			if err != nil {
				return nil, explain(ctx, repo, err)
			}
			rc, err := layer.Compressed()
			if err != nil {
				return nil, explain(ctx, repo, err)
			}
			defer rc.Close()
			return io.ReadAll(io.LimitReader(rc, maxDocumentSize+1))
		})
		if err != nil && maybe {
			continue // not a document of bakery's form
		}
		if err != nil {
			return nil, fmt.Errorf("reading the %s document of %s in %s: %w", d.ArtifactType, subject, repo, err)
		}
		if isAttestation(r.desc) {
			out = append(out, r)
		}
	}
	return out, nil
}

// maxDocumentSize bounds the size of a document bakery reads back.
const maxDocumentSize = 512 << 20

// readReferrer reads the manifest d and its one layer with read, checking
// their digests.
func readReferrer(d v1.Descriptor, read func(v1.Hash) ([]byte, error)) (referrer, error) {
	raw, err := read(d.Digest)
	if err != nil {
		return referrer{}, err
	}
	if hashOfBytes(raw) != d.Digest {
		return referrer{}, fmt.Errorf("manifest %s does not match its digest", d.Digest)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) != 1 {
		return referrer{}, fmt.Errorf("manifest %s is not a document's artifact manifest", d.Digest)
	}
	data, err := read(m.Layers[0].Digest)
	if err != nil {
		return referrer{}, err
	}
	if hashOfBytes(data) != m.Layers[0].Digest {
		return referrer{}, fmt.Errorf("document %s does not match its digest", m.Layers[0].Digest)
	}
	return referrer{raw: raw, desc: v1.Descriptor{MediaType: types.OCIManifestSchema1, ArtifactType: m.ArtifactType, Digest: d.Digest, Size: int64(len(raw))}, data: data}, nil
}

// pick returns the data of the document of artifactType among rs.
func pick(rs []referrer, artifactType string) ([]byte, bool) {
	var found []referrer
	for _, r := range rs {
		if r.desc.ArtifactType == artifactType {
			found = append(found, r)
		}
	}
	if len(found) == 0 {
		return nil, false
	}
	// Several (not written by bakery): the one with the smallest digest,
	// so every reader shows the same.
	slices.SortFunc(found, func(a, b referrer) int { return strings.Compare(a.desc.Digest.Hex, b.desc.Digest.Hex) })
	return found[0].data, true
}

// Attestation returns the document of artifactType (SBOMArtifactType,
// ProvenanceArtifactType) attached to version's image in the layout; the
// error wraps ErrNoAttestation when there is none.
func (s *LayoutStore) Attestation(ctx context.Context, version, artifactType string) ([]byte, error) {
	fail := func(err error) error {
		return fmt.Errorf("reading the %s of %s@%s (%s in layout %s): %w", documentName(artifactType), s.recipe, version, s.name, s.l.dir, err)
	}
	st, err := s.read(ctx)
	if err != nil {
		return nil, fail(err)
	}
	v, ok := st.byTag[version]
	if !ok {
		return nil, fail(fmt.Errorf("no such version: bakery status %s lists the versions", s.recipe))
	}
	rs, err := s.l.layoutReferrers(v.desc.Digest)
	if err != nil {
		return nil, fail(err)
	}
	data, ok := pick(rs, artifactType)
	if !ok {
		return nil, fail(noAttestation(artifactType))
	}
	return data, nil
}

// Attestation returns the document of artifactType attached to version's
// image in the registry (see LayoutStore.Attestation).
func (s *RegistryStore) Attestation(ctx context.Context, version, artifactType string) ([]byte, error) {
	fail := func(err error) error {
		return fmt.Errorf("reading the %s of %s@%s in %s: %w", documentName(artifactType), s.recipe, version, s.repo, err)
	}
	ss, err := s.session(ctx)
	if err != nil {
		return nil, fail(err)
	}
	v, _, err := ss.readTag(ctx, version)
	if err != nil {
		return nil, fail(err)
	}
	if v == nil {
		return nil, fail(fmt.Errorf("no such version: bakery status %s lists the versions", s.recipe))
	}
	rs, err := registryReferrers(ctx, s.repo, v.desc.Digest, ss.with(ctx))
	if err != nil {
		return nil, fail(err)
	}
	data, ok := pick(rs, artifactType)
	if !ok {
		return nil, fail(noAttestation(artifactType))
	}
	return data, nil
}

func noAttestation(artifactType string) error {
	return fmt.Errorf("%w: no %s is attached to it (bakery attaches one to every image it bakes since SBOMs were added, except SBOMs of containers whose recipe says sbom = false; bake a new version to get one)", ErrNoAttestation, documentName(artifactType))
}

// documentName names a document kind for messages.
func documentName(artifactType string) string {
	switch artifactType {
	case SBOMArtifactType:
		return "SBOM"
	case ProvenanceArtifactType:
		return "provenance"
	}
	return artifactType + " document"
}

// copyReferrers writes the documents of source to dst (see publish).
func copyReferrers(ctx context.Context, opts []remote.Option, dst name.Repository, rs []referrer) error {
	for _, r := range rs {
		if err := putReferrer(ctx, dst, opts, r); err != nil {
			return fmt.Errorf("copying the %s to %s: %w", documentName(r.desc.ArtifactType), dst, err)
		}
	}
	return nil
}
