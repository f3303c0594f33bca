// Package recipes implements bakery's recipe language: HCL2 files named
// *.bake.hcl with variable, locals, recipe, artifact and stage blocks. It
// parses, evaluates and validates recipes and reports every problem as an
// HCL diagnostic that points at file:line:col.
package recipes

import (
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Recipe is a fully evaluated recipe file: every expression has been
// resolved against variables, locals and functions.
type Recipe struct {
	// Name is the recipe block label.
	Name string `json:"name"`
	// Version is the evaluated version attribute.
	Version string `json:"version"`
	// Stages is the ordered list of promotion stages.
	Stages []string `json:"stages"`
	// Description is the optional free-text description. It is not part
	// of the bake key: changing it does not cause a rebake.
	Description string `json:"description,omitempty"`
	// File is the absolute path of the recipe file.
	File string `json:"-"`
	// Dir is the absolute path of the folder holding the recipe file;
	// relative paths in the recipe resolve against it.
	Dir string `json:"-"`
	// Containers are the container blocks, in file order.
	Containers []*Container `json:"containers,omitempty"`
	// MachineImages are the machine_image blocks, in file order.
	MachineImages []*MachineImage `json:"machine_images,omitempty"`
	// StageSpecs maps the name of each stage that has a stage block to
	// what the block asks of that stage. Stages without a block are not
	// in it; Stage returns their default spec. Stage specs say how an
	// image is promoted, not what is baked: they are not part of the bake
	// key (Canonical and CanonicalMachineImage leave them out), so
	// changing them causes no rebake.
	StageSpecs map[string]*Stage `json:"stage_specs,omitempty"`
	// Catalog is the catalog block: where the recipe's ledger is. Nil
	// when the recipe has none. It says where history is kept, not what is
	// baked: it is not part of the bake key.
	Catalog *Catalog `json:"catalog,omitempty"`
	// Fleets maps each stage that has a fleet block to how `bakery
	// launch` runs its image. They say where images run, not what is
	// baked: not part of the bake key.
	Fleets map[string]*Fleet `json:"fleets,omitempty"`
	// Retain is the retain block: what `bakery retire` keeps. Load sets
	// DefaultRetain when the recipe has none. Not part of the bake key.
	Retain Retain `json:"retain"`
	// DeclRange is where the recipe block starts.
	DeclRange hcl.Range `json:"-"`
	// VersionRange is where the version attribute's value is written;
	// VersionVars are the variables it reads (["version"] for
	// version = var.version), empty for a fixed version. See
	// NewVersionHint.
	VersionRange hcl.Range `json:"-"`
	VersionVars  []string  `json:"-"`
	// VersionAuto is true for version = "auto": bakery assigns the
	// version when it bakes (see NextAutoVersion), and the bake key
	// leaves it out. Version is then "auto" until the bake engine
	// resolves it (WithVersion).
	VersionAuto bool `json:"version_auto,omitempty"`
	// VersionFormat is the version_format attribute of an auto-versioned
	// recipe, "" for DefaultVersionFormat.
	VersionFormat string `json:"version_format,omitempty"`

	// stageRanges maps each stage to where it is written in the stages
	// list, for the DeclRange of a stage without a block.
	stageRanges map[string]hcl.Range
	// sensitive are the values of the variables declared sensitive.
	sensitive []string
}

// SensitiveValues returns the values of the variables the recipe declares
// with sensitive = true, as text: a string as it is, a number in decimal,
// and every string or number inside a list, map or object value. Bools
// and nulls are left out. Whoever prints what a bake does (logs, command
// lines, provisioner output) masks these. A value the recipe derives from
// a sensitive variable contains it and is masked with it; one it
// transforms (base64encode, upper) is not.
func (r *Recipe) SensitiveValues() []string { return slices.Clone(r.sensitive) }

// StageIndex returns the position of stage name in Stages (0 for the
// first stage), or -1 when name is not one of the recipe's stages.
func (r *Recipe) StageIndex(name string) int { return slices.Index(r.Stages, name) }

// Stage returns the spec of stage name: its stage block, or, for a stage
// of Stages without a block, a default spec that has only Name set (no
// accounts, regions or repository and an empty gate) and whose DeclRange
// is where the stage is listed in stages. It returns nil when name is not
// one of the recipe's stages. The spec of a block is shared with
// StageSpecs; a default spec is new on every call.
func (r *Recipe) Stage(name string) *Stage {
	if r.StageIndex(name) < 0 {
		return nil
	}
	if st := r.StageSpecs[name]; st != nil {
		return st
	}
	rng, ok := r.stageRanges[name]
	if !ok {
		rng = r.DeclRange
	}
	return &Stage{Name: name, DeclRange: rng, Ranges: map[string]hcl.Range{}}
}

// Stage is an evaluated stage block: what an image needs to be in one
// promotion stage, and the gate it passes to enter it.
type Stage struct {
	// Name is the block label, one of the recipe's stages.
	Name string `json:"name"`
	// Accounts are the AWS account ids (12 digits) an AMI in this stage
	// is shared with.
	Accounts []string `json:"accounts,omitempty"`
	// Regions are the AWS regions an AMI in this stage must be in, each
	// listed once.
	Regions []string `json:"regions,omitempty"`
	// Repository is the registry repository container images of this
	// stage are copied to; empty means the image's own repository.
	Repository string `json:"repository,omitempty"`
	// RegionKMSKeyIDs maps a region to the KMS key an AMI copied there
	// for this stage is encrypted with; it wins over the machine_image's
	// region_kms_key_ids.
	RegionKMSKeyIDs map[string]string `json:"region_kms_key_ids,omitempty"`
	// Gate is what promotion into this stage requires.
	Gate Gate `json:"gate"`
	// DeclRange is where the stage block starts (for a default spec,
	// where the stage is listed in the recipe's stages).
	DeclRange hcl.Range `json:"-"`
	// Ranges maps each attribute or nested block name that was written
	// ("accounts", "regions", "repository", "gate") to where its value is
	// (for the gate block, its header), and the attributes of the gate to
	// their values under "gate.NAME" ("gate.min_soak").
	Ranges map[string]hcl.Range `json:"-"`
}

// Pos returns "file:line:col" of attribute attr, or of the block when
// attr was not written.
func (st *Stage) Pos(attr string) string { return pos(st.Ranges, attr, st.DeclRange) }

// Gate is what promotion into a stage requires. The zero Gate requires
// nothing.
type Gate struct {
	// MinSoak is how long an image must have been in the previous stage
	// before it may enter this one; 0 means no minimum. The recipe writes
	// a Go duration ("24h", "90m") or days ("1d", "7d", "1d12h"); the
	// first stage has no previous stage, so its MinSoak is always 0.
	MinSoak time.Duration `json:"min_soak,omitempty"`
	// RequireApproval makes promotion into this stage need an approval
	// of the version for the stage (bakery approve) by another identity
	// than the promoter's, recorded at most ApprovalValidFor ago.
	RequireApproval bool `json:"require_approval,omitempty"`
	// Approvers, when set, are the AWS identity ARN patterns ("*"
	// matches any run of characters) of whom an approval counts, such as
	// "arn:aws:iam::123456789012:role/release-managers" (which an
	// assumed-role session of that role matches too). Empty: any
	// identity other than the promoter's.
	Approvers []string `json:"approvers,omitempty"`
	// ApprovalValidFor is how long an approval counts after it was
	// recorded; 0 means the default, 7 days (promote's
	// DefaultApprovalValidFor). The recipe writes a duration as for
	// MinSoak ("7d", "36h").
	ApprovalValidFor time.Duration `json:"approval_valid_for,omitempty"`
}

// Container is an evaluated container block: one OCI image to bake.
type Container struct {
	// Name is the block label. It is also the repository name in the
	// local OCI layout when Repository is empty.
	Name string `json:"name"`
	// Base is "scratch", a registry reference, or an OCI layout path
	// ("oci:PATH[:REF]" or a path starting with "/", "./" or "../").
	Base string `json:"base"`
	// BaseRange is where the base attribute's value is written.
	BaseRange hcl.Range `json:"-"`
	// BaseKind says which of the three forms Base takes.
	BaseKind BaseKind `json:"-"`
	// BaseLayoutPath is the absolute path of the OCI image layout when
	// BaseKind is BaseLayout; empty otherwise.
	BaseLayoutPath string `json:"-"`
	// BaseLayoutRef is the REF of "oci:PATH:REF" or "./PATH:REF" (the text
	// after the first ':' that follows the last '/': an image name stored
	// in the layout's org.opencontainers.image.ref.name annotation, or a
	// digest); empty when the layout is named without one.
	BaseLayoutRef string `json:"-"`
	// BaseLink is set when Base names another recipe's container
	// ("recipe:NAME[/BLOCK]", BaseKind BaseRecipe); nil otherwise.
	BaseLink *Link `json:"-"`
	// Repository is the registry repository to push to; empty means the
	// local OCI layout.
	Repository string `json:"repository,omitempty"`
	// Layers are the layer blocks, in file order.
	Layers []*Layer `json:"layers"`
	// Env holds environment variables for the image config.
	Env map[string]string `json:"env,omitempty"`
	// Entrypoint is the image entrypoint.
	Entrypoint []string `json:"entrypoint,omitempty"`
	// Cmd is the image default command.
	Cmd []string `json:"cmd,omitempty"`
	// Workdir is the image working directory.
	Workdir string `json:"workdir,omitempty"`
	// User is the image user.
	User string `json:"user,omitempty"`
	// Labels are image config labels.
	Labels map[string]string `json:"labels,omitempty"`
	// ExposedPorts are ports in "PORT/PROTO" form. The recipe may write
	// "PORT" or a number, PROTO defaulting to tcp; Load normalises every
	// entry to "PORT/PROTO" (for example "8080/tcp").
	ExposedPorts []string `json:"exposed_ports,omitempty"`
	// Platforms selects platforms ("os/arch[/variant]") from a
	// multi-platform base, or sets the platform of a scratch image.
	// Empty means every platform of the base, or linux/amd64 for scratch.
	Platforms []string `json:"platforms,omitempty"`
	// Compression is how the container's layers are compressed:
	// CompressionGzip (the default, which Load sets when the recipe has
	// no compression attribute) or CompressionZstd. It changes the
	// layers' bytes, so it is part of the bake key.
	Compression Compression `json:"compression"`
	// NoSBOM is set by sbom = false: the bake attaches no SBOM, and so
	// computes no SHA-1 and SHA-256 of every file; the provenance still
	// is attached, naming the inputs by their BLAKE3 hashes. It changes
	// what is attached to the image, so it is part of the bake key (left
	// out when false, so that keys of other recipes do not change).
	NoSBOM bool `json:"no_sbom,omitempty"`
	// DeclRange is where the container block starts.
	DeclRange hcl.Range `json:"-"`
}

// Compression is how the layers of a container image are compressed.
type Compression string

const (
	// CompressionGzip writes application/vnd.oci.image.layer.v1.tar+gzip
	// layers, which every registry and runtime reads. The default.
	CompressionGzip Compression = "gzip"
	// CompressionZstd writes application/vnd.oci.image.layer.v1.tar+zstd
	// layers: faster to write and to unpack, read by containerd 1.5+,
	// Docker 23+, podman, skopeo and umoci.
	CompressionZstd Compression = "zstd"
)

// Layer is an evaluated layer block: one filesystem layer.
type Layer struct {
	// Source is the source as written in the recipe (relative to the
	// recipe folder unless absolute). A trailing "/" means a directory
	// whose contents are copied. It is what the bake key records.
	Source string `json:"source"`
	// Path is Source resolved to an absolute path (trailing "/" removed).
	Path string `json:"-"`
	// Kind says whether Source is a file, a directory or a tarball.
	Kind SourceKind `json:"kind"`
	// Destination is the absolute path inside the image. A trailing "/"
	// means a directory into which a file source is placed by its base name.
	Destination string `json:"destination"`
	// Mode, when set, is the permission mode of every regular file.
	Mode *uint32 `json:"mode,omitempty"`
	// UID, when set, owns every entry (default 0).
	UID *int `json:"uid,omitempty"`
	// GID, when set, is the group of every entry (default 0).
	GID *int `json:"gid,omitempty"`
	// DeclRange is where the layer block starts.
	DeclRange hcl.Range `json:"-"`
	// SourceRange is where the source attribute's value is written.
	SourceRange hcl.Range `json:"-"`
}

// SourceKind is the kind of a layer source.
type SourceKind string

const (
	// SourceFile is a single regular file.
	SourceFile SourceKind = "file"
	// SourceDir is a directory (written with a trailing "/").
	SourceDir SourceKind = "dir"
	// SourceTarball is a tar archive (.tar, .tar.gz, .tgz), unpacked
	// into the destination.
	SourceTarball SourceKind = "tarball"
)

// BaseKind is the form of a container's base image.
type BaseKind string

const (
	// BaseScratch is the empty base image ("scratch").
	BaseScratch BaseKind = "scratch"
	// BaseRegistry is an image in a registry, named by a reference such
	// as "alpine:3.20" or "ghcr.io/org/img@sha256:...".
	BaseRegistry BaseKind = "registry"
	// BaseLayout is an image in an OCI image layout on disk.
	BaseLayout BaseKind = "layout"
)

// MachineImage is an evaluated machine_image block: one AMI to bake, the
// way Packer's amazon-ebs builder does.
type MachineImage struct {
	// Name is the block label.
	Name string `json:"name"`
	// Region is where the builder runs; empty means the AWS config's region.
	Region string `json:"region,omitempty"`
	// SourceAMI is an AMI id ("ami-..."); exactly one of SourceAMI,
	// SourceAMIFilter and SourceAMISSM is set.
	SourceAMI string `json:"source_ami,omitempty"`
	// SourceAMIFilter selects the source AMI with DescribeImages.
	SourceAMIFilter *AMIFilter `json:"source_ami_filter,omitempty"`
	// SourceAMISSM is an SSM parameter path holding an AMI id
	// ("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64").
	SourceAMISSM string `json:"source_ami_ssm,omitempty"`
	// SourceLink is set when source_ami names another recipe's AMI
	// ("recipe:NAME[/BLOCK]"); SourceAMI is then set to that AMI's id in
	// the build region when the link is resolved, before the bake.
	SourceLink *Link `json:"-"`
	// InstanceType is the builder's instance type. Default "t3.micro".
	InstanceType string `json:"instance_type"`
	// SubnetID and VPCID place the builder; both empty means the default
	// VPC's default subnet.
	SubnetID string `json:"subnet_id,omitempty"`
	VPCID    string `json:"vpc_id,omitempty"`
	// SSHUsername is the login user. Default "ec2-user".
	SSHUsername string `json:"ssh_username"`
	// SSHHost overrides the address bakery connects to (default: the
	// builder's address that SSHInterface chooses).
	SSHHost string `json:"ssh_host,omitempty"`
	// SSHPort is the SSH port. Default 22.
	SSHPort int `json:"ssh_port"`
	// SSHTimeout bounds waiting for SSH to answer. Default 5 minutes.
	SSHTimeout time.Duration `json:"ssh_timeout"`
	// SSHPrivateKeyFile, when set, is a private key (absolute path) whose
	// public half bakery imports as the temporary key pair instead of
	// generating one. The recipe writes it relative to its folder; Load
	// checks that the file exists. It is not part of the bake key.
	SSHPrivateKeyFile string `json:"ssh_private_key_file,omitempty"`
	// SSHSourceCIDRs are the addresses allowed to reach SSH in the
	// temporary security group. Default: this runner's address as the
	// builder sees it, /32 (or /128): its public address when SSH goes to
	// the builder's public IP, else (private IP, or SSHHost set) its
	// interface address.
	SSHSourceCIDRs []string `json:"ssh_source_cidrs,omitempty"`
	// SSHInterface is the builder address bakery connects to,
	// SSHInterfacePublicIP or SSHInterfacePrivateIP; empty means the
	// public address when the subnet assigns one, else the private one.
	// With a public address and no SSHSourceCIDRs, SSH is allowed from
	// this runner's public address (as seen from the internet). It is
	// not part of the bake key: it is how bakery reaches the builder, not
	// what it bakes.
	SSHInterface string `json:"-"`
	// IAMInstanceProfile is the name of the IAM instance profile the
	// builder runs with (RunInstances IamInstanceProfile), so that
	// provisioners can read from S3 or SSM; empty means none. Like
	// Packer's iam_instance_profile it is builder configuration, not part
	// of the bake key: it decides what the builder may fetch, not what
	// the recipe says to bake.
	IAMInstanceProfile string `json:"-"`
	// UserData is the instance user data (from user_data, or the content
	// of user_data_file, read relative to the recipe's folder by Load);
	// at most 16 KiB.
	UserData string `json:"user_data,omitempty"`
	// RootVolumeSize is the root volume size in GiB; 0 keeps the source's.
	RootVolumeSize int `json:"root_volume_size,omitempty"`
	// RootVolumeType is the root volume type. Default "gp3".
	RootVolumeType string `json:"root_volume_type"`
	// Encrypted encrypts the root volume and so the AMI's snapshot.
	// Default true.
	Encrypted bool `json:"encrypted"`
	// KMSKeyID is the KMS key for the build region; empty means the
	// account's default EBS key.
	KMSKeyID string `json:"kms_key_id,omitempty"`
	// Regions are the other regions the AMI is copied to. Load rejects a
	// list that names Region; when Region is empty (the AWS config's
	// region) the builder has to check that itself.
	Regions []string `json:"regions,omitempty"`
	// RegionKMSKeyIDs maps a copy region to its KMS key.
	RegionKMSKeyIDs map[string]string `json:"region_kms_key_ids,omitempty"`
	// ShareWith are account ids given launch permission (and snapshot
	// create-volume permission).
	ShareWith []string `json:"share_with,omitempty"`
	// Tags are extra tags on the AMI and its snapshots.
	Tags map[string]string `json:"tags,omitempty"`
	// AMIName is the AMI name; empty means "RECIPE-VERSION-TIMESTAMP".
	// It is not part of the bake key (a timestamp in it would defeat
	// skipping).
	AMIName string `json:"-"`
	// Provisioners run over SSH on the builder, in order.
	Provisioners []*Provisioner `json:"provisioners,omitempty"`
	// Timeouts bound the bake's waits (the timeouts block). They say how
	// long to wait, not what is baked: not part of the bake key.
	Timeouts Timeouts `json:"-"`
	// DeclRange is where the machine_image block starts.
	DeclRange hcl.Range `json:"-"`
	// Ranges maps each attribute or nested block name that was written
	// ("regions", "instance_type", "source_ami_filter", ...) to where its
	// value is, so errors found later (by AWS) can name the recipe line.
	// A nested block maps to its header ("provision" to the first one;
	// each Provisioner has its own DeclRange), and the attributes of
	// source_ami_filter to their values under "source_ami_filter.NAME"
	// ("source_ami_filter.owners").
	Ranges map[string]hcl.Range `json:"-"`
}

// Pos returns "file:line:col" of attribute attr, or of the block when
// attr was not written.
func (m *MachineImage) Pos(attr string) string { return pos(m.Ranges, attr, m.DeclRange) }

// Timeouts bound the waits of an AMI bake. Zero means the builder's
// default (10 minutes for the instance, 60 for the AMI, 120 for a copy,
// as Packer's).
type Timeouts struct {
	// Instance bounds each wait for the builder to be running, stopped
	// or terminated.
	Instance time.Duration `json:"instance,omitempty"`
	// Image bounds the wait for the new AMI to be available.
	Image time.Duration `json:"image,omitempty"`
	// Copy bounds the wait for each region's copy to be available.
	Copy time.Duration `json:"copy,omitempty"`
}

// AMIFilter selects a source AMI, as Packer's source_ami_filter.
type AMIFilter struct {
	// Name is an AMI name pattern (DescribeImages "name" filter, * wildcards).
	Name string `json:"name,omitempty"`
	// Owners are account ids or aliases ("amazon", "self"). Required.
	Owners []string `json:"owners"`
	// Architecture is "x86_64", "arm64", "i386", "x86_64_mac" or
	// "arm64_mac"; empty means any.
	Architecture string `json:"architecture,omitempty"`
	// MostRecent picks the newest match; without it more than one match
	// is an error.
	MostRecent bool `json:"most_recent"`
	// Filters are further DescribeImages filters (name → value).
	Filters map[string]string `json:"filters,omitempty"`
}

// Provisioner is one provision block.
type Provisioner struct {
	// Type is "file" or "shell".
	Type string `json:"type"`
	// Source is a file provisioner's source as written; a trailing "/"
	// means a directory whose contents are uploaded.
	Source string `json:"source,omitempty"`
	// SourcePath is Source resolved to an absolute path (no trailing "/").
	SourcePath string `json:"-"`
	// SourceIsDir is true when Source names a directory.
	SourceIsDir bool `json:"source_is_dir,omitempty"`
	// Destination is the absolute path on the builder (file provisioner).
	Destination string `json:"destination,omitempty"`
	// Inline are shell commands run in order with /bin/sh -e.
	Inline []string `json:"inline,omitempty"`
	// Script is a local script as written; ScriptPath is its absolute path.
	Script     string `json:"script,omitempty"`
	ScriptPath string `json:"-"`
	// Env are environment variables for the shell commands.
	Env map[string]string `json:"env,omitempty"`
	// ExpectDisconnect lets the connection drop (a reboot) without failing.
	ExpectDisconnect bool `json:"expect_disconnect,omitempty"`
	// PauseBefore waits this long before the provisioner runs.
	PauseBefore time.Duration `json:"pause_before,omitempty"`
	// DeclRange is where the provision block starts.
	DeclRange hcl.Range `json:"-"`
	// Ranges maps each written attribute name to where its value is.
	Ranges map[string]hcl.Range `json:"-"`
}

// Pos returns "file:line:col" of attribute attr, or of the block when
// attr was not written.
func (p *Provisioner) Pos(attr string) string { return pos(p.Ranges, attr, p.DeclRange) }

func pos(ranges map[string]hcl.Range, attr string, block hcl.Range) string {
	r, ok := ranges[attr]
	if !ok {
		r = block
	}
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}
