package recipes

import (
	"bytes"
	"encoding/json"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns src in canonical HCL layout: indentation, alignment of
// "=" in consecutive attributes and spacing, as `packer fmt` and
// `terraform fmt` do. Formatting formatted source changes nothing.
// Format does not check that src is valid; invalid input is returned
// with whatever layout fixes could be applied to its tokens
// (Loader.Format refuses it).
func Format(src []byte) []byte {
	return hclwrite.Format(src)
}

// Format parses src, the content of the file name, as HCL native syntax
// and returns it in canonical layout (see the function Format). A file
// that does not parse is not formatted: Format returns nil and the
// syntax errors, which point at name:line:col; the loader keeps src so
// that WriteDiagnostics shows them with their source.
func (l *Loader) Format(name string, src []byte) ([]byte, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if file != nil && file.Bytes == nil {
		file.Bytes = src
	}
	l.addFile(name, file)
	if diags.HasErrors() {
		return nil, diags
	}
	return Format(src), diags
}

// canonicalRecipe is what Canonical encodes.
type canonicalRecipe struct {
	Name      string     `json:"name"`
	Version   *string    `json:"version,omitempty"`
	Stages    []string   `json:"stages"`
	Container *Container `json:"container,omitempty"`
}

// Canonical returns a deterministic JSON encoding of what decides the
// bake of container c: the recipe's name, version (none for version =
// "auto") and stages and c's
// evaluated fields. Paths appear as written in the recipe (relative to
// its folder), never resolved, so the bytes do not depend on where the
// checkout lives or on the working directory. Object keys are in a fixed
// order (struct fields in declaration order, map keys sorted). c may be
// nil, for the recipe alone.
func Canonical(r *Recipe, c *Container) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	stages := r.Stages
	if stages == nil {
		stages = []string{}
	}
	// Encoding these types cannot fail: they hold only strings, numbers,
	// slices and string maps.
	if err := enc.Encode(canonicalRecipe{Name: r.Name, Version: keyVersion(r), Stages: stages, Container: c}); err != nil {
		panic("recipes: encoding canonical recipe: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// keyVersion is the version as the canonical encodings hold it: the
// recipe's version, or nil (left out) for version = "auto", whose bake
// key must not depend on the version it is assigned. A fixed version is
// encoded as it always was, so its keys do not change.
func keyVersion(r *Recipe) *string {
	if r.VersionAuto {
		return nil
	}
	v := r.Version
	return &v
}

// canonicalMachineImageRecipe is what CanonicalMachineImage encodes.
type canonicalMachineImageRecipe struct {
	Name         string        `json:"name"`
	Version      *string       `json:"version,omitempty"`
	Stages       []string      `json:"stages"`
	MachineImage *MachineImage `json:"machine_image"`
}

// CanonicalMachineImage returns a deterministic JSON encoding of what
// decides the bake of machine image m, for its bake key: the recipe's
// name, version and stages and m's evaluated fields, its provisioners
// included. As in Canonical, paths appear as written in the recipe
// (provisioner sources and scripts, relative to its folder) and never
// resolved, and object keys are in a fixed order.
//
// Left out is what does not change the image's bytes:
//   - its metadata, AMIName and Tags, alike: they label the image, and
//     are written when a version is baked. Changing them does not rebake
//     the version (nor refuse it as other content); the next version
//     baked carries them. A timestamp in the name would otherwise defeat
//     skipping, and a version is immutable: its AMIs keep the name and
//     tags they were baked with (--force rebakes it with the new ones);
//   - SSHPrivateKeyFile (an absolute path, and only how bakery logs in,
//     not what it bakes);
//   - where the image goes rather than what it is: the copy regions,
//     their KMS keys and the accounts it is shared with (a region added
//     later gets a copy of the same AMI, not a new bake).
//
// The content of user_data_file is included, as UserData; the content of
// the other input files is not, and the bake key hashes it separately.
func CanonicalMachineImage(r *Recipe, m *MachineImage) []byte {
	c := *m
	c.SSHPrivateKeyFile = ""
	c.Tags = nil // AMIName is never encoded (json:"-")
	c.Regions, c.RegionKMSKeyIDs, c.ShareWith = nil, nil, nil
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	stages := r.Stages
	if stages == nil {
		stages = []string{}
	}
	// Encoding these types cannot fail: they hold only strings, numbers,
	// bools, slices and string maps.
	if err := enc.Encode(canonicalMachineImageRecipe{Name: r.Name, Version: keyVersion(r), Stages: stages, MachineImage: &c}); err != nil {
		panic("recipes: encoding canonical machine image: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
