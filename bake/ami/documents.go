package ami

import (
	"context"
	"crypto/sha1" //nolint:gosec // SPDX 2.3 requires a SHA-1 for every file
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/sbom"
	"github.com/bakery-sh/bakery/internal/sbom/intoto"
	"github.com/bakery-sh/bakery/internal/sbom/spdx"
	"github.com/bakery-sh/bakery/recipes"
)

// MachineImageBuildType is the SLSA buildType of bakery's AMI bakes.
const MachineImageBuildType = "https://bakery.dev/machine-image/v1"

// AMIDigestAlgorithm is the key under which a provenance subject of an
// AMI holds its id: an AMI has no content digest, its id names it.
const AMIDigestAlgorithm = "awsAmiId"

// DocumentStore keeps documents by content and returns their digest
// ("sha256:HEX"). *ledger.Ledger implements it.
type DocumentStore interface {
	PutDocument(ctx context.Context, recipe string, data []byte) (digest string, err error)
}

// WithDocuments makes a bake store the AMI's SBOM and provenance in the
// store stores returns for its recipe (nil: none, for a recipe without a
// ledger) and tag every AMI of the bake with catalog.TagDocuments.
// Default: none.
func WithDocuments(stores func(r *recipes.Recipe) (DocumentStore, error)) Option {
	return func(b *Baker) { b.documents = stores }
}

// WithBakeryVersion sets the bakery version the documents name. Default: "dev".
func WithBakeryVersion(v string) Option { return func(b *Baker) { b.version = v } }

// DocumentsTag is the value of catalog.TagDocuments for the digests of
// an SBOM and a provenance.
func DocumentsTag(sbomDigest, provenanceDigest string) string {
	return "sbom=" + sbomDigest + " provenance=" + provenanceDigest
}

// ParseDocumentsTag returns the digest of kind ("sbom", "provenance") in
// a catalog.TagDocuments value, or "".
func ParseDocumentsTag(value, kind string) string {
	for _, f := range strings.Fields(value) {
		if k, v, ok := strings.Cut(f, "="); ok && k == kind {
			return v
		}
	}
	return ""
}

// attachDocuments stores the SBOM and provenance of a finished bake and
// tags its AMIs with their digests. The AMIs are complete without them,
// so a failure is reported as a warning and does not fail the bake.
func (b *Baker) attachDocuments(ctx context.Context, st *bakeState, res *Result) {
	if b.documents == nil || st.plan.recipe == nil {
		return
	}
	if err := b.writeDocuments(ctx, st, res); err != nil {
		st.rep.Info(fmt.Sprintf("warning: %s@%s: %v", st.plan.Recipe, st.plan.Version, err))
	}
}

func (b *Baker) writeDocuments(ctx context.Context, st *bakeState, res *Result) error {
	p := st.plan
	store, err := b.documents(p.recipe)
	if err != nil || store == nil {
		return err
	}
	inputs, err := machineInputs(ctx, p.recipe, st.m)
	if err != nil {
		return fmt.Errorf("writing the SBOM: %w", err)
	}
	var images []string
	var subjects []intoto.ResourceDescriptor
	for _, img := range res.Images {
		images = append(images, img.Region+"/"+img.ImageID)
		subjects = append(subjects, intoto.ResourceDescriptor{Name: "ec2:" + img.Region + ":" + img.ImageID, Digest: map[string]string{AMIDigestAlgorithm: img.ImageID}})
	}
	tool := "bakery-" + b.version
	// The documents' time is the AMIs' creation, not the wall clock: the
	// same bake writes the same documents.
	sb, err := spdx.BuildMachineImage(tool, st.created, spdx.MachineImage{
		Name: st.m.Name, Version: p.Version, Images: images, Key: p.Key,
		SourceID: p.SourceAMI, SourceName: p.SourceAMIName, SourceOwner: p.SourceAMIOwner, SourceRegion: p.BuildRegion,
		Inputs: inputs,
	})
	if err != nil {
		return err
	}
	deps := []intoto.ResourceDescriptor{{
		Name: "source AMI", URI: "ec2:" + p.BuildRegion + ":" + p.SourceAMI, Digest: map[string]string{AMIDigestAlgorithm: p.SourceAMI},
		Annotations: map[string]any{"name": p.SourceAMIName, "owner": p.SourceAMIOwner},
	}}
	for _, f := range inputs {
		deps = append(deps, intoto.ResourceDescriptor{Name: "input", URI: "file:" + f.Path, Digest: map[string]string{"sha256": f.SHA256}})
	}
	prov, err := intoto.Build(intoto.Input{
		Subjects:           subjects,
		BuildType:          MachineImageBuildType,
		ExternalParameters: map[string]any{"recipe": p.Recipe, "version": p.Version, "machine_image": p.Artifact, "regions": p.Regions},
		InternalParameters: map[string]any{"bakeKey": p.Key, "bakeId": st.bakeID, "created": st.created.UTC().Format(time.RFC3339)},
		Dependencies:       deps,
		BakeryVersion:      b.version,
		InvocationID:       st.bakeID,
	})
	if err != nil {
		return err
	}
	sd, err := store.PutDocument(ctx, p.Recipe, sb)
	if err != nil {
		return err
	}
	pd, err := store.PutDocument(ctx, p.Recipe, prov)
	if err != nil {
		return err
	}
	tags := catalogami.EC2Tags(map[string]string{catalog.TagDocuments: DocumentsTag(sd, pd)})
	for _, img := range res.Images {
		if _, err := b.clients.EC2(img.Region).CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{img.ImageID}, Tags: tags}); err != nil {
			return fmt.Errorf("tagging %s in %s with its documents: %w", img.ImageID, img.Region, err)
		}
	}
	return nil
}

// machineInputs returns the recipe file and the local inputs of m's
// provisioners with their digests, paths relative to the recipe's folder.
func machineInputs(ctx context.Context, r *recipes.Recipe, m *recipes.MachineImage) ([]sbom.File, error) {
	var files []sbom.File
	seen := map[string]bool{}
	add := func(path string) error {
		if seen[path] {
			return nil
		}
		seen[path] = true
		f, err := digestFile(path)
		if err != nil {
			return err
		}
		f.Path = relPath(r.Dir, path)
		files = append(files, f)
		return nil
	}
	if r.File != "" {
		if err := add(r.File); err != nil {
			return nil, err
		}
	}
	for _, p := range m.Provisioners {
		switch {
		case p.Type == "file" && p.SourcePath != "" && p.SourceIsDir:
			root, err := filepath.EvalSymlinks(p.SourcePath)
			if err != nil {
				return nil, err
			}
			err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil || ctx.Err() != nil {
					return firstErr(err, ctx.Err())
				}
				if d.Type().IsRegular() {
					return add(path)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		case p.Type == "file" && p.SourcePath != "":
			if err := add(p.SourcePath); err != nil {
				return nil, err
			}
		case p.Type == "shell" && p.ScriptPath != "":
			if err := add(p.ScriptPath); err != nil {
				return nil, err
			}
		}
	}
	return files, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// relPath is path relative to dir when it is inside it, else path.
func relPath(dir, path string) string {
	if dir != "" {
		if rel, err := filepath.Rel(dir, path); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.ToSlash(rel)
		}
	}
	return filepath.ToSlash(path)
}

// digestFile reads a file's SHA-1 and SHA-256, size and mode.
func digestFile(path string) (sbom.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return sbom.File{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return sbom.File{}, err
	}
	h1, h2 := sha1.New(), sha256.New() //nolint:gosec // see the import
	n, err := io.Copy(io.MultiWriter(h1, h2), f)
	if err != nil {
		return sbom.File{}, err
	}
	return sbom.File{Size: n, Mode: int64(fi.Mode().Perm()), FileDigest: sbom.FileDigest{
		SHA1: hex.EncodeToString(h1.Sum(nil)), SHA256: hex.EncodeToString(h2.Sum(nil)),
	}}, nil
}
