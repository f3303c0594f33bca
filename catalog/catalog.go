// Package catalog holds bakery's domain types and the names under which
// lifecycle metadata is stored on the artifacts themselves (principle 1:
// the artifacts are the catalog). The stores live in catalog/oci and
// catalog/ami.
package catalog

import (
	"context"
	"errors"
	"time"
)

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
	// AnnotationBaseRecipe records, on an image whose base names another
	// recipe ("recipe:NAME"), that recipe and version as "NAME@VERSION".
	AnnotationBaseRecipe = "dev.bakery.base-recipe"
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
	// TagCreatedBy is who baked it (the AWS caller identity or $USER).
	TagCreatedBy = "bakery:created-by"
	// TagBakeID identifies one bake run; every resource the run creates
	// carries it from the moment it exists, so an orphan sweep finds them.
	TagBakeID = "bakery:bake-id"
	// TagHeartbeat is the last sign of life of a running bake (RFC 3339,
	// UTC): the bake refreshes it on its resources while it runs, so a
	// sweep judges their age by it and never removes a live bake's work.
	TagHeartbeat = "bakery:heartbeat"
	// TagDocuments names, on an AMI baked with a ledger, where its SBOM
	// and provenance are: "sbom=sha256:HEX provenance=sha256:HEX", the
	// digests of the documents in the ledger (ledger.Document).
	TagDocuments = "bakery:documents"
)

// The tag budget of an AMI: EC2 allows MaxAMITags tags on one resource,
// and bakery's own must fit with room for some history. A recipe fits
// when
//
//	AMIBaseTags + len(tags) + len(stages) + AMIRevokedTags + AMIReservedTags + MinAMIEvents <= MaxAMITags
//
// (one stage mark per stage, at most: an image is in each stage once);
// recipes.Load refuses one that does not. The events beyond what fits
// are pruned from the AMI, oldest first; the ledger keeps them all.
const (
	// MaxAMITags is how many tags EC2 allows on one AMI or snapshot.
	MaxAMITags = 50
	// AMIBaseTags is how many tags every AMI bakery bakes may carry from
	// its bake: TagRecipe, TagArtifact, TagVersion, TagBakeKey,
	// TagSourceAMI, TagCreated, TagCreatedBy, TagBakeID, TagHeartbeat
	// (a bake that ran for minutes), TagDocuments (with a ledger) and the
	// count of pruned events (bakery:pruned).
	AMIBaseTags = 11
	// AMIRevokedTags is the room a revocation takes: the mark
	// (bakery:revoked) and the accounts whose access it took away
	// (bakery:revoked-access).
	AMIRevokedTags = 2
	// AMIReservedTags is how many tags are left free for writers working
	// on the same AMI at the same time (one more stage mark, one more
	// event).
	AMIReservedTags = 2
	// MinAMIEvents is the fewest history events an AMI must have room
	// for: a recipe whose own tags and stages leave less is refused.
	MinAMIEvents = 4
)

// Kind is what kind of image an artifact bakes.
type Kind string

// The kinds of images bakery bakes.
const (
	// KindContainer is an OCI container image (a container block).
	KindContainer Kind = "container"
	// KindAMI is an AWS machine image (a machine_image block).
	KindAMI Kind = "ami"
)

// Ref names one version of a recipe, written RECIPE@VERSION.
type Ref struct {
	// Recipe is the recipe name.
	Recipe string `json:"recipe"`
	// Version is the recipe version.
	Version string `json:"version"`
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
	// Kind is KindContainer or KindAMI.
	Kind Kind
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

// Actions recorded in an image's history.
const (
	// ActionBake is the bake that made the image.
	ActionBake = "bake"
	// ActionPromote is the image entering a stage.
	ActionPromote = "promote"
	// ActionDemote is the image leaving a stage because another version
	// entered it.
	ActionDemote = "demote"
	// ActionRevoke marks the image unusable: it leaves every stage.
	ActionRevoke = "revoke"
	// ActionUnrevoke lifts a revocation (the image enters no stage).
	ActionUnrevoke = "unrevoke"
	// ActionLaunch is a fleet of the image launched for a stage (its
	// Reason names the group); it changes nothing on the image.
	ActionLaunch = "launch"
	// ActionRollback is a disabled fleet of the image brought back to
	// serve a stage (its Reason names the group); it changes nothing on
	// the image.
	ActionRollback = "rollback"
	// ActionRetire is the image deleted by a retention policy (bakery
	// retire): recorded before its AMIs or manifests go, so the ledger
	// keeps the version's end.
	ActionRetire = "retire"
	// ActionAdopt is an image bakery did not bake (a Packer AMI) taken
	// into the catalog as a version of a recipe (bakery adopt); its
	// Reason says where it came from.
	ActionAdopt = "adopt"
	// ActionApprove is an approval of the version for a stage whose gate
	// requires one (bakery approve): its Stage is the stage, its Actor
	// the approver, Unverified set when that identity is only a name.
	// It changes nothing on the image; promote reads it.
	ActionApprove = "approve"
)

// BakeKeyUnknown is the bake key of an adopted image: bakery did not bake
// it, so what went into it is unknown. No real bake key equals it (those
// are "sha256:<hex>"), so a bake never takes an adopted version for up to
// date, and status marks the version as adopted.
const BakeKeyUnknown = "unknown"

// Adopted reports whether an image with bake key key was adopted rather
// than baked by bakery.
func Adopted(key string) bool { return key == BakeKeyUnknown }

// Event is one entry of an image's history. Events are stored on the
// image itself (EC2 tags on AMIs; OCI referrer artifacts in registries and
// layouts), never in a separate database.
type Event struct {
	// Time is when it happened (UTC).
	Time time.Time `json:"time"`
	// Action is one of the Action constants.
	Action string `json:"action"`
	// Recipe, Version and Artifact name the image.
	Recipe   string `json:"recipe"`
	Version  string `json:"version"`
	Artifact string `json:"artifact"`
	// Kind is KindContainer or KindAMI.
	Kind Kind `json:"kind"`
	// Stage is the stage entered or left (promote, demote).
	Stage string `json:"stage,omitempty"`
	// Actor is who did it: the AWS caller identity, the registry user or $USER.
	Actor string `json:"actor"`
	// Reason is the reason given (--reason), if any.
	Reason string `json:"reason,omitempty"`
	// Forced is true when gates or stage order were overridden (--force).
	Forced bool `json:"forced,omitempty"`
	// ApprovedBy is, on a promotion into a stage that requires approval,
	// the identity whose approve event let it through.
	ApprovedBy string `json:"approved_by,omitempty"`
	// Unverified is true when Actor is a name nobody checked ($BAKERY_ACTOR,
	// a registry user name, $USER) rather than a verified AWS caller
	// identity. Only approve events set it: an unverified approval never
	// satisfies a gate's approvers.
	Unverified bool `json:"unverified,omitempty"`
}

// StageEntry says since when, and by whom, an image has been in a stage.
type StageEntry struct {
	// Since is when the image entered the stage.
	Since time.Time `json:"since"`
	// By is who promoted it.
	By string `json:"by"`
	// Unfinished is true when a promotion into the stage stopped part
	// way: some of the places that hold the image lack the stage mark, or
	// the promotion is not in the image's history yet. Promoting it again
	// finishes the job.
	Unfinished bool `json:"unfinished,omitempty"`
}

// Location is one place an image is: an AWS region and AMI id, or a
// repository (or local layout) and manifest digest.
type Location struct {
	// Where is the region or repository.
	Where string `json:"where"`
	// ID is the AMI id or the digest.
	ID string `json:"id"`
}

// Lifecycle is what the catalog knows of an image beyond its bake: the
// stages it is in, its revocation, where it is, and its history.
type Lifecycle struct {
	// Stages maps each stage the image is in to when and by whom it entered.
	Stages map[string]StageEntry `json:"stages"`
	// Revoked is true when the image was revoked and not unrevoked since.
	Revoked bool `json:"revoked"`
	// RevokeReason is the reason of the revocation.
	RevokeReason string `json:"revoke_reason,omitempty"`
	// RevokeUnfinished is true when the image is revoked but some of the
	// places that hold it lack the mark (a revocation that stopped half
	// way): revoking it again finishes the job.
	RevokeUnfinished bool `json:"revoke_unfinished,omitempty"`
	// Locations are the places the image is.
	Locations []Location `json:"locations"`
	// Events is the image's history, oldest first.
	Events []Event `json:"events"`
	// Pruned is how many older events the image itself no longer holds
	// (an AMI keeps its most recent events in tags, at most 50 in all);
	// the ledger, when one is configured, has them all.
	Pruned int `json:"pruned,omitempty"`
}

// StageSpec is what a stage requires of an image entering it.
type StageSpec struct {
	// Name is the stage name.
	Name string
	// Accounts are AWS accounts an AMI in this stage is shared with.
	Accounts []string
	// Regions are AWS regions an AMI in this stage must be in.
	Regions []string
	// Repository is where a container image of this stage is copied (and
	// the stage tag set); empty means the image's own repository.
	Repository string
	// KMSKeyIDs maps a region to the KMS key an AMI copied there for
	// this stage is encrypted with.
	KMSKeyIDs map[string]string
}

// Entry is an image with its lifecycle: one row of the catalog.
type Entry struct {
	Image
	Lifecycle
}

// Store reads and changes the lifecycle of one artifact's images (all
// versions of one container block or machine_image block of a recipe).
// catalog/oci and catalog/ami implement it.
type Store interface {
	// Entries returns every version of the artifact with its lifecycle,
	// oldest version first. It does not issue a call per image where the
	// backend can list (AMIs: one paginated call per region).
	Entries(ctx context.Context) ([]Entry, error)
	// Promote puts e into the stage: it makes the image meet spec
	// (shares, copies, repository), marks it as in the stage, takes the
	// stage away from every other version (recording their demotion) and
	// records ev. It is idempotent and resumable: running it again after
	// a crash finishes the job.
	Promote(ctx context.Context, e Entry, spec StageSpec, ev Event) error
	// Revoke takes e out of every stage and marks it revoked, recording ev.
	Revoke(ctx context.Context, e Entry, ev Event) error
	// Unrevoke lifts e's revocation, recording ev.
	Unrevoke(ctx context.Context, e Entry, ev Event) error
	// Record adds ev, an event that changes nothing on the image (an
	// approval, a launch), to e's history. Recording the same event
	// again (same action, stage and time) changes nothing.
	Record(ctx context.Context, e Entry, ev Event) error
}

// ErrSuperseded is returned, wrapped, by a Store's Promote when another
// version's newer promotion into the same stage won a concurrent race:
// the promotion is recorded in the history, but the other version holds
// the stage.
var ErrSuperseded = errors.New("a newer promotion holds the stage")

// Journal keeps the full history of a recipe's images where the images
// themselves cannot hold it all (an AMI has at most 50 tags): the
// append-only ledger on S3 (catalog/ledger). Stores that prune events
// append every event to it before they record it on the image.
type Journal interface {
	// Append records ev once: appending the same event again (a retry)
	// changes nothing.
	Append(ctx context.Context, ev Event) error
	// Events returns every event of recipe's images, oldest first.
	Events(ctx context.Context, recipe string) ([]Event, error)
}
