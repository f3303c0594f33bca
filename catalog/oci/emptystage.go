package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// How a registry stage tag is emptied. Not every registry deletes a tag:
// Docker Distribution deletes manifests by digest only (which would take
// the version's own tag with it) and, with deletes disabled, nothing at
// all. So a stage that holds no version any more (its version was revoked,
// or the stage moved to another repository) is not deleted: its tag is
// pointed at an "empty stage" artifact, a tiny OCI manifest that is not an
// image. Its config has the media type EmptyStageArtifactType, which no
// container runtime knows, so a pull of REPO:STAGE fails naming that type,
// and its annotations say why the stage is empty
// (AnnotationEmptyStage, also in org.opencontainers.image.description).
// Stores ignore it: a stage tag on it holds no version.
const (
	// EmptyStageArtifactType is the artifactType and config media type of
	// the manifest an emptied stage tag points at.
	EmptyStageArtifactType = "application/vnd.dev.bakery.stage.empty.v1+json"
	// AnnotationEmptyStage is, on an empty stage manifest, why the stage
	// holds no version (for example "web@1.4.2 was revoked: CVE-...").
	AnnotationEmptyStage = "dev.bakery.stage.empty"
	// AnnotationEmptyStageName is, on an empty stage manifest, the stage.
	AnnotationEmptyStageName = "dev.bakery.stage.name"
	// annotationDescription is the OCI standard description annotation.
	annotationDescription = "org.opencontainers.image.description"
)

// emptyStage is the empty stage artifact for stage of recipe's artifact,
// saying why: its config blob and its manifest. The bytes depend on the
// arguments only, so processes emptying the same stage for the same
// reason write the same manifest.
type emptyStage struct {
	config   []byte
	manifest []byte
	desc     v1.Descriptor
}

func newEmptyStage(recipe, artifact, stage, why string) (*emptyStage, error) {
	config, err := json.Marshal(map[string]string{
		"recipe": recipe, "artifact": artifact, "stage": stage, "empty": why,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the empty stage %s: %w", stage, err)
	}
	msg := fmt.Sprintf("bakery: stage %s of %s holds no image: %s", stage, recipe, why)
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  EmptyStageArtifactType,
		Config: v1.Descriptor{
			MediaType: EmptyStageArtifactType,
			Digest:    hashOfBytes(config),
			Size:      int64(len(config)),
		},
		Layers: []v1.Descriptor{emptyDescriptor()},
		Annotations: map[string]string{
			catalog.AnnotationRecipe:   recipe,
			catalog.AnnotationArtifact: artifact,
			AnnotationEmptyStageName:   stage,
			AnnotationEmptyStage:       why,
			annotationDescription:      msg,
		},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding the empty stage %s: %w", stage, err)
	}
	return &emptyStage{config: config, manifest: raw, desc: v1.Descriptor{
		MediaType:    types.OCIManifestSchema1,
		ArtifactType: EmptyStageArtifactType,
		Digest:       hashOfBytes(raw),
		Size:         int64(len(raw)),
	}}, nil
}

// isEmptyStage reports whether raw is an empty stage manifest, and why.
func isEmptyStage(raw []byte) (string, bool) {
	var m struct {
		ArtifactType string            `json:"artifactType"`
		Annotations  map[string]string `json:"annotations"`
	}
	if json.Unmarshal(raw, &m) != nil || m.ArtifactType != EmptyStageArtifactType {
		return "", false
	}
	return m.Annotations[AnnotationEmptyStage], true
}

// emptyIf points tag at the empty stage artifact saying why, if the tag
// still points at digest (see emptyStageTag).
func (ss *regSession) emptyIf(tag name.Tag, digest v1.Hash, why string) error {
	return emptyStageTag(ss.ctx, ss.opts, ss.s.recipe, ss.s.artifact, tag, digest, why)
}

// emptyStageTag points tag at the empty stage artifact of recipe's
// artifact saying why, if the tag still points at digest (it is re-read
// right before); a tag that is absent or names another digest is left
// alone. It works on every registry that accepts a manifest: nothing is
// deleted.
func emptyStageTag(ctx context.Context, opts []remote.Option, recipe, artifact string, tag name.Tag, digest v1.Hash, why string) error {
	d, err := head(ctx, opts, tag)
	if err != nil || d == nil || d.Digest != digest {
		return err
	}
	es, err := newEmptyStage(recipe, artifact, tag.TagStr(), why)
	if err != nil {
		return err
	}
	repo := tag.Context()
	what := fmt.Sprintf("emptying stage tag %s", tag)
	for _, l := range []v1.Layer{
		static.NewLayer([]byte(emptyJSON), types.OCIEmptyJSON),
		static.NewLayer(es.config, EmptyStageArtifactType),
	} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return fmt.Errorf("%s: uploading its blobs: %w", what, explain(ctx, repo, err))
		}
	}
	if err := remote.Put(tag, rawManifest{es.manifest, es.desc.MediaType}, opts...); err != nil {
		return fmt.Errorf("%s: %w", what, explain(ctx, repo, err))
	}
	return nil
}

// revokedWhy says, for the empty stage artifact, that v was revoked: by
// its newest revoke event, else by re (the one being recorded), so that
// running a revocation again writes the same artifact.
func revokedWhy(v *version, re event) string {
	for _, e := range v.events {
		if e.Action == catalog.ActionRevoke {
			re = e // events are oldest first: the last one wins
		}
	}
	msg := fmt.Sprintf("%s was revoked at %s", v.ref(), re.Time.UTC().Format(time.RFC3339))
	if re.Actor != "" {
		msg += " by " + re.Actor
	}
	if re.Reason != "" {
		msg += ": " + re.Reason
	}
	return msg
}

// emptyLeftBehind empties the tags of stage that earlier promotions put
// in repositories other than where, the stage's repository now (home is
// the versions' registry repository, for promotions that named none; nil
// for a layout, whose own tags the caller handles): each is emptied when
// it still points at one of lc's versions, saying where the stage went.
func emptyLeftBehind(ctx context.Context, opts []remote.Option, recipe, artifact string, lc *lifecycle, stage string, home, where name.Repository) error {
	repos := map[string]name.Repository{}
	for _, v := range lc.versions {
		for _, e := range v.events {
			if e.Action != catalog.ActionPromote || e.Stage != stage {
				continue
			}
			r := home
			if e.Repository != "" {
				var err error
				if r, err = name.NewRepository(e.Repository); err != nil {
					continue // not a repository bakery wrote
				}
			} else if r == (name.Repository{}) {
				continue
			}
			if where == (name.Repository{}) || r.Name() != where.Name() {
				repos[r.Name()] = r
			}
		}
	}
	if len(repos) == 0 {
		return nil
	}
	why := "the stage moved to the local layout"
	if where != (name.Repository{}) {
		why = fmt.Sprintf("the stage moved to %s", where.Tag(stage))
	}
	for _, k := range slices.Sorted(maps.Keys(repos)) {
		tag := repos[k].Tag(stage)
		d, err := head(ctx, opts, tag)
		if err != nil {
			return err
		}
		if d == nil || !slices.ContainsFunc(lc.versions, func(v *version) bool { return v.desc.Digest == d.Digest }) {
			continue // gone, emptied already, or not ours
		}
		if err := emptyStageTag(ctx, opts, recipe, artifact, tag, d.Digest, why); err != nil {
			return err
		}
	}
	return nil
}
