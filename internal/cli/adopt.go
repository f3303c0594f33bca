package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/adopt"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/recipes"
)

func adoptCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "adopt",
		Usage:     "take AMIs Packer built into the catalog as a version of a recipe",
		ArgsUsage: "--recipe NAME --version V (--packer-manifest FILE | --ami REGION:AMI-ID ...)",
		Description: "Tags the AMIs of a Packer manifest.json (its last run's builds, every\n" +
			"region's AMI), or the AMIs named with --ami, as version V of the recipe's\n" +
			"machine_image, the way bakery tags the AMIs it bakes, so that promote,\n" +
			"launch, retire, status and history manage them from then on. The recipe\n" +
			"must exist (./recipes/NAME.bake.hcl or -f FILE): its stages, regions and\n" +
			"fleets are what the other verbs work from. The bake key is recorded as\n" +
			"unknown: bake never takes the version for up to date, and status marks it\n" +
			"adopted. Everything is checked before any tag is written; running the same\n" +
			"adopt again changes nothing.",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "recipe", Usage: "the recipe `NAME` (required)"},
			&ucli.StringFlag{Name: "version", Usage: "the version `V` the AMIs become (required; must not exist yet)"},
			&ucli.StringFlag{Name: "packer-manifest", Usage: "the `FILE` Packer's manifest post-processor wrote (manifest.json)"},
			&ucli.StringFlag{Name: "build", Usage: "adopt only the manifest's build `NAME` (default: every build of the run)"},
			&ucli.StringFlag{Name: "run-uuid", Usage: "adopt the builds of the manifest's run `U` (default: its last run)"},
			&ucli.StringSliceFlag{Name: "ami", Usage: "an AMI to adopt, `REGION:AMI-ID` (repeatable)"},
			&ucli.StringFlag{Name: "artifact", Usage: "the machine_image block `NAME` (needed when the recipe has several)"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			if c.NArg() > 0 {
				return usagef("adopt takes no arguments: bakery adopt --recipe NAME --version V --packer-manifest manifest.json")
			}
			name, version := c.String("recipe"), c.String("version")
			// The JSON error document names them, as for RECIPE@VERSION.
			e.failed.recipe, e.failed.version = name, version
			if name == "" || version == "" {
				return usagef("adopt needs --recipe NAME and --version V, for example: bakery adopt --recipe web --version 1.0.0 --packer-manifest manifest.json")
			}
			if c.String("packer-manifest") == "" && len(c.StringSlice("ami")) == 0 {
				return usagef("adopt needs the AMIs: --packer-manifest manifest.json, or --ami REGION:AMI-ID (repeatable)")
			}
			rs, err := e.catalogRecipes(c, g, name)
			if err != nil {
				return err
			}
			r := rs[0]
			m, err := adoptTarget(r, c.String("artifact"))
			if err != nil {
				return err
			}
			s := &session{e: e, c: c}
			arts, err := s.artifacts(r)
			if err != nil {
				return err
			}
			var store adopt.Adopter
			var others []catalog.Store
			for _, a := range arts {
				if st, ok := a.Store.(adopt.Adopter); ok && a.Kind == catalog.KindAMI && a.Name == m.Name {
					store = st
				} else if a.Kind != catalog.KindAMI {
					// The store checks the recipe's AMIs itself.
					others = append(others, a.Store)
				}
			}
			if store == nil {
				return fmt.Errorf("adopting into %s: machine image %s has no AMI catalog", r.Name, m.Name)
			}
			res, err := adopt.Run(c.Context, store, adopt.Request{
				Manifest: c.String("packer-manifest"),
				Build:    c.String("build"),
				RunUUID:  c.String("run-uuid"),
				AMIs:     c.StringSlice("ami"),
				Version:  version,
				Actor:    s.actor(),
				Tags:     m.Tags,
				Stages:   len(r.Stages),
			}, others...)
			if err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(e.stdout).Encode(res)
			}
			var where []string
			for _, a := range res.AMIs {
				where = append(where, a.Region+" "+a.ImageID)
			}
			verb := "adopted"
			if !res.Changed {
				verb = "already adopted"
			}
			fmt.Fprintf(e.stdout, "%s %s as %s (%s), bake key unknown\n", verb, strings.Join(where, ", "), res.Ref, res.Artifact)
			return nil
		},
	})
}

// adoptTarget returns the machine_image of r that adopted AMIs join:
// the one named, or r's only one.
func adoptTarget(r *recipes.Recipe, name string) (*recipes.MachineImage, error) {
	var names []string
	for _, m := range r.MachineImages {
		if m.Name == name || name == "" && len(r.MachineImages) == 1 {
			return m, nil
		}
		names = append(names, m.Name)
	}
	switch {
	case len(names) == 0:
		return nil, fmt.Errorf("recipe %s has no machine_image block: AMIs can join only a recipe that makes AMIs; add a machine_image block to it", r.Name)
	case name == "":
		return nil, usagef("recipe %s has several machine_image blocks (%s): name one with --artifact", r.Name, strings.Join(names, ", "))
	}
	return nil, usagef("recipe %s has no machine_image %q: it has %s; name one with --artifact", r.Name, name, strings.Join(names, ", "))
}
