// Package catalog holds bakery's domain types and the names under which
// lifecycle metadata is stored on the artifacts themselves (principle 1:
// the artifacts are the catalog). The stores live in catalog/oci and
// catalog/ami.
package catalog

import "time"

// OCI annotation keys bakery writes on every image manifest it bakes.
const (
	// AnnotationVersion is the OCI standard version annotation.
	AnnotationVersion = "org.opencontainers.image.version"
	// AnnotationCreated is the OCI standard creation time annotation (RFC 3339).
	AnnotationCreated = "org.opencontainers.image.created"
	// AnnotationBaseName is the OCI standard base image name annotation.
	AnnotationBaseName = "org.opencontainers.image.base.name"
	// AnnotationBaseDigest is the OCI standard base image digest annotation.
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"
	// AnnotationRefName is the OCI image layout tag annotation.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationRecipe is the name of the recipe that baked the image.
	AnnotationRecipe = "dev.bakery.recipe"
	// AnnotationArtifact is the name of the artifact block within the recipe.
	AnnotationArtifact = "dev.bakery.artifact"
	// AnnotationBakeKey is the bake key (see package bake/bakekey).
	AnnotationBakeKey = "dev.bakery.bake-key"
)

// EC2 tag keys bakery writes on AMIs and their snapshots (the catalog of
// machine images) and on the temporary resources of a bake.
const (
	// TagRecipe is the recipe name.
	TagRecipe = "bakery:recipe"
	// TagArtifact is the machine_image block name.
	TagArtifact = "bakery:artifact"
	// TagVersion is the recipe version.
	TagVersion = "bakery:version"
	// TagBakeKey is the bake key; it is written only once the AMI is
	// complete, so an AMI without it is an unfinished bake.
	TagBakeKey = "bakery:bake-key"
	// TagSourceAMI is the id of the AMI the image was baked from.
	TagSourceAMI = "bakery:source-ami"
	// TagCreated is the bake's creation time (RFC 3339, UTC).
	TagCreated = "bakery:created"
	// TagBakeID identifies one bake run; every resource the run creates
	// carries it from the moment it exists, so an orphan sweep finds them.
	TagBakeID = "bakery:bake-id"
)

// Ref names one version of a recipe, written RECIPE@VERSION.
type Ref struct {
	// Recipe is the recipe name.
	Recipe string
	// Version is the recipe version.
	Version string
}

// String returns RECIPE@VERSION.
func (r Ref) String() string { return r.Recipe + "@" + r.Version }

// Image is what the catalog knows about one baked image, read from the
// image's own metadata.
type Image struct {
	// Recipe and Version identify the bake.
	Ref
	// Artifact is the artifact block name within the recipe.
	Artifact string
	// Kind is "container" or "ami".
	Kind string
	// BakeKey is the bake key stored on the image.
	BakeKey string
	// Reference is where the image lives (registry ref, layout ref name or AMI id).
	Reference string
	// Digest is the manifest (or index) digest for container images.
	Digest string
	// Size is the total size in bytes (manifest, config and layers).
	Size int64
	// BaseName and BaseDigest record the image it was baked from.
	BaseName, BaseDigest string
	// Created is the bake's creation time.
	Created time.Time
}
