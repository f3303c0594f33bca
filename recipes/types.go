// Package recipes implements bakery's recipe language: HCL2 files named
// *.bake.hcl with variable, locals, recipe and artifact blocks. It parses,
// evaluates and validates recipes and reports every problem as an HCL
// diagnostic that points at file:line:col.
package recipes

import (
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
	// DeclRange is where the recipe block starts.
	DeclRange hcl.Range `json:"-"`
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
	// DeclRange is where the container block starts.
	DeclRange hcl.Range `json:"-"`
}

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
