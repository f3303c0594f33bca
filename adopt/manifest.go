// Package adopt takes images bakery did not bake into its catalog: the
// AMIs a Packer build made, read from the manifest.json Packer's
// manifest post-processor writes, or named one by one. It reads and
// checks what to adopt (no AWS call); catalog/ami's LifecycleStore.Adopt
// tags the AMIs. It imports none of the verbs (bake, promote, launch,
// retire).
package adopt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	catalogami "github.com/bakery-sh/bakery/catalog/ami"
)

// Manifest is a Packer manifest.json, as the manifest post-processor
// writes it: every build of every run it saw (runs append to the file
// unless packer build -force starts it again), and the last run's id.
type Manifest struct {
	// Path is the file it was read from, for messages.
	Path string `json:"-"`
	// Builds are the builds, oldest first.
	Builds []Build `json:"builds"`
	// LastRunUUID is the id of the last run that wrote the file.
	LastRunUUID string `json:"last_run_uuid"`
}

// Build is one build of a Packer manifest.
type Build struct {
	// Name is the build's name (the source's name in HCL2 templates).
	Name string `json:"name"`
	// BuilderType is the builder, such as amazon-ebs or docker.
	BuilderType string `json:"builder_type"`
	// BuildTime is when the build finished (Unix seconds); 0 when the
	// post-processor was told not to write it (strip_time).
	BuildTime int64 `json:"build_time,omitempty"`
	// Files are the files the build made (none for AMIs).
	Files []File `json:"files"`
	// ArtifactID is what the build made: for the amazon builders
	// "REGION:AMI-ID" for every region, comma separated.
	ArtifactID string `json:"artifact_id"`
	// PackerRunUUID is the run the build was part of.
	PackerRunUUID string `json:"packer_run_uuid"`
	// CustomData is the post-processor's custom_data.
	CustomData map[string]string `json:"custom_data"`
}

// File is a file a build made.
type File struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// ReadManifest reads and parses the Packer manifest at path.
func ReadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the Packer manifest: %w", err)
	}
	return ParseManifest(path, data)
}

// ParseManifest parses data, the Packer manifest read from path. A
// syntax or type error is reported at its file:line:col.
func ParseManifest(path string, data []byte) (*Manifest, error) {
	m := &Manifest{Path: path}
	if err := json.Unmarshal(data, m); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("%s: %v: this is not a Packer manifest (manifest.json, written by Packer's manifest post-processor)", at(path, data, syn.Offset-1), err)
		case errors.As(err, &typ):
			return nil, fmt.Errorf("%s: %s is a JSON %s where a Packer manifest has a %s: this is not a Packer manifest", at(path, data, typ.Offset-1), fieldOr(typ.Field), typ.Value, typ.Type)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(m.Builds) == 0 {
		return nil, fmt.Errorf("%s lists no builds: add the manifest post-processor to the Packer template and run packer build, or name the AMIs with --ami REGION:AMI-ID", path)
	}
	return m, nil
}

func fieldOr(f string) string {
	if f == "" {
		return "the document"
	}
	return f
}

// at returns path:line:col of the byte at offset off of data (line and
// column 1-based; an offset outside data is clamped to it). encoding/json
// reports an error's offset after the byte it stopped at, so callers
// pass that less one.
func at(path string, data []byte, off int64) string {
	off = max(0, min(off, int64(len(data))))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return fmt.Sprintf("%s:%d:%d", path, line, col)
}

// Runs returns the run ids of m's builds, in the order they first appear.
func (m *Manifest) Runs() []string {
	var out []string
	for _, b := range m.Builds {
		if !slices.Contains(out, b.PackerRunUUID) {
			out = append(out, b.PackerRunUUID)
		}
	}
	return out
}

// Select returns the builds of run (the last run when empty) named name
// (every build of the run when empty).
func (m *Manifest) Select(name, run string) ([]Build, error) {
	if run == "" {
		run = m.LastRunUUID
	}
	var inRun []Build
	for _, b := range m.Builds {
		if b.PackerRunUUID == run {
			inRun = append(inRun, b)
		}
	}
	if len(inRun) == 0 {
		if run == m.LastRunUUID {
			return nil, fmt.Errorf("%s: no build belongs to its last run %q: name a run with --run-uuid (it has %s)", m.Path, run, quoteAll(m.Runs()))
		}
		return nil, fmt.Errorf("%s: run %q not found: it has runs %s; name one with --run-uuid, or leave it out for the last run", m.Path, run, quoteAll(m.Runs()))
	}
	if name == "" {
		return inRun, nil
	}
	var out []Build
	var names []string
	for _, b := range inRun {
		if b.Name == name {
			out = append(out, b)
		}
		if !slices.Contains(names, b.Name) {
			names = append(names, b.Name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: build %q not found in run %s: it has builds %s; name one of them with --build", m.Path, name, run, quoteAll(names))
	}
	return out, nil
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// AMIs returns the AMIs of b's artifact_id ("REGION:AMI-ID,..."), or an
// error when b made something else (a docker image, files).
func (b Build) AMIs() ([]catalogami.RegionAMI, error) {
	var out []catalogami.RegionAMI
	for _, part := range strings.Split(b.ArtifactID, ",") {
		r, err := catalogami.ParseRegionAMI(part)
		if err != nil {
			return nil, fmt.Errorf("build %q (%s) made %q, not AMIs (REGION:AMI-ID, as the amazon builders write): bakery adopts only AMIs; name an amazon build with --build", b.Name, b.BuilderType, b.ArtifactID)
		}
		out = append(out, r)
	}
	return out, nil
}

// Built returns when b finished, zero when the manifest does not say.
func (b Build) Built() time.Time {
	if b.BuildTime <= 0 {
		return time.Time{}
	}
	return time.Unix(b.BuildTime, 0).UTC()
}
