package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"

	bakeami "github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/recipes"
)

// documentKind is what `bakery sbom` and `bakery provenance` print.
type documentKind struct {
	command, what, artifactType, format string
}

var (
	sbomDocument       = documentKind{"sbom", "SBOM", catalogoci.SBOMArtifactType, "an SPDX 2.3 JSON document"}
	provenanceDocument = documentKind{"provenance", "provenance", catalogoci.ProvenanceArtifactType, "an in-toto statement (SLSA provenance v1)"}
)

func sbomCommand(e *env) *ucli.Command       { return documentCommand(e, sbomDocument) }
func provenanceCommand(e *env) *ucli.Command { return documentCommand(e, provenanceDocument) }

func documentCommand(e *env, k documentKind) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      k.command,
		Usage:     fmt.Sprintf("print the %s bakery attached to a baked image", k.what),
		ArgsUsage: "RECIPE@VERSION",
		Description: fmt.Sprintf("Prints, as JSON on stdout, the %s of RECIPE@VERSION: %s.\n", k.what, k.format) +
			"bakery attaches it when it bakes: to a container image as an OCI 1.1\n" +
			"referrer (in the local layout, listed in bakery-history.json), and for a\n" +
			"machine image in the recipe's ledger. With several artifacts in the recipe,\n" +
			"name one with --artifact.",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "artifact", Usage: "the container or machine_image `NAME` (needed when the recipe has several)"},
		),
		Action: func(c *ucli.Context) error {
			g, name, version, err := oneRef(c, k.command, "")
			if err != nil {
				return err
			}
			rs, err := e.catalogRecipes(c, g, name)
			if err != nil {
				return err
			}
			r := rs[0]
			ct, mi, err := pickArtifact(r, c.String("artifact"), k.command)
			if err != nil {
				return err
			}
			var data []byte
			switch {
			case ct != nil:
				data, err = e.containerDocument(c, r, ct, version, k)
			default:
				data, err = e.machineImageDocument(c, r, mi, version, k)
			}
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(data)
			return err
		},
	})
}

// pickArtifact returns the artifact of r named name, or its only one.
func pickArtifact(r *recipes.Recipe, name, command string) (*recipes.Container, *recipes.MachineImage, error) {
	var names []string
	for _, ct := range r.Containers {
		if ct.Name == name || (name == "" && len(r.Containers)+len(r.MachineImages) == 1) {
			return ct, nil, nil
		}
		names = append(names, ct.Name)
	}
	for _, m := range r.MachineImages {
		if m.Name == name || (name == "" && len(r.Containers)+len(r.MachineImages) == 1) {
			return nil, m, nil
		}
		names = append(names, m.Name)
	}
	slices.Sort(names)
	if name == "" {
		if len(names) == 0 {
			return nil, nil, fmt.Errorf("recipe %s has no container or machine_image block: nothing to print", r.Name)
		}
		return nil, nil, usagef("recipe %s has several artifacts (%s): name one with bakery %s --artifact NAME", r.Name, strings.Join(names, ", "), command)
	}
	return nil, nil, usagef("recipe %s has no artifact %q: it has %s", r.Name, name, strings.Join(names, ", "))
}

// containerDocument reads the document of a container image from the
// layout or its registry.
func (e *env) containerDocument(c *ucli.Context, r *recipes.Recipe, ct *recipes.Container, version string, k documentKind) ([]byte, error) {
	if ct.Repository == "" {
		l, err := catalogoci.OpenLayout(e.home())
		if err != nil {
			return nil, err
		}
		return l.Store(ct.Name, r.Name, ct.Name).Attestation(c.Context, version, k.artifactType)
	}
	rs, err := catalogoci.NewRegistryStore(ct.Repository, r.Name, ct.Name)
	if err != nil {
		return nil, err
	}
	return rs.Attestation(c.Context, version, k.artifactType)
}

// machineImageDocument reads the document of a machine image from the
// recipe's ledger, by the digest its AMIs' documents tag names.
func (e *env) machineImageDocument(c *ucli.Context, r *recipes.Recipe, m *recipes.MachineImage, version string, k documentKind) ([]byte, error) {
	fail := func(err error) error {
		return fmt.Errorf("reading the %s of %s@%s (%s): %w", k.what, r.Name, version, m.Name, err)
	}
	s := &session{e: e, c: c}
	l, err := s.ledger(r)
	if err != nil {
		return nil, fail(err)
	}
	if l == nil {
		return nil, fail(fmt.Errorf("a machine image's SBOM and provenance are kept in the recipe's ledger, and %s has none: add a catalog block to the recipe or set %s", r.Name, LedgerEnv))
	}
	cfg, err := s.awsFor(r)
	if err != nil {
		return nil, fail(err)
	}
	imgs, err := catalogami.NewStoreFromConfig(cfg).ByVersion(c.Context, r.Name, m.Name, version, amiRegions(r, m, cfg.Region))
	if err != nil {
		return nil, fail(err)
	}
	if len(imgs) == 0 {
		return nil, fail(fmt.Errorf("no such version: bakery status %s lists the versions", r.Name))
	}
	digest := ""
	for _, region := range slices.Sorted(maps.Keys(imgs)) {
		if d := bakeami.ParseDocumentsTag(imgs[region].Tags[catalog.TagDocuments], k.command); d != "" {
			digest = d
			break
		}
	}
	if digest == "" {
		return nil, fail(fmt.Errorf("%w: its AMIs name no %s (bakery stores one in the ledger for every AMI it bakes with a ledger configured, since SBOMs were added; bake a new version to get one)", catalogoci.ErrNoAttestation, k.what))
	}
	data, err := l.Document(c.Context, r.Name, digest)
	if err != nil {
		return nil, fail(err)
	}
	return data, nil
}
