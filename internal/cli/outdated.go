package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/bake"
	bakeoci "github.com/bakery-sh/bakery/bake/oci"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/report"
	"github.com/bakery-sh/bakery/recipes"
)

// exitOutdated is outdated's exit code when some recipe needs a rebake.
const exitOutdated = 3

func outdatedCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "outdated",
		Usage:     "list recipes whose base image has moved on since their newest bake (exit 3 if any)",
		ArgsUsage: "[RECIPE|FILE...]",
		Description: "For each container, resolves its base tag again and compares the digest with\n" +
			"the one the newest bake recorded; for each machine image, resolves the source\n" +
			"AMI (id, filter or SSM parameter) again. Recipes never baked are listed too.\n" +
			"Exit code 3 when anything is outdated, so a nightly job can rebake exactly\n" +
			"those: bakery bake $(bakery -q outdated --files)",
		Flags: append(varFlags(),
			&ucli.BoolFlag{Name: "files", Usage: "print only the recipe files that need a rebake, one per line"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			rs, err := e.outdatedRecipes(c, g)
			if err != nil {
				return err
			}
			stale, err := (&session{e: e, c: c}).outdated(rs, e.stderr)
			if err != nil {
				return err
			}
			switch {
			case g.json:
				if err := json.NewEncoder(e.stdout).Encode(report.Outdated{Outdated: stale}); err != nil {
					return err
				}
			case c.Bool("files"):
				seen := map[string]bool{}
				for _, s := range stale {
					if !seen[s.File] {
						seen[s.File] = true
						fmt.Fprintln(e.stdout, s.File)
					}
				}
			case len(stale) == 0:
				if !g.quiet {
					fmt.Fprintf(e.stdout, "all %d recipe(s) are up to date with their bases\n", len(rs))
				}
			default:
				for _, s := range stale {
					fmt.Fprintf(e.stdout, "%s: %s %s: %s\n", s.Recipe, s.Kind, s.Artifact, s.Reason)
				}
			}
			if len(stale) > 0 {
				return exitError{exitOutdated}
			}
			return nil
		},
	})
}

// outdated lists the artifacts of rs whose base moved on (never nil),
// the list outdated prints and the dashboard serves; the warnings of
// warnFixedVersion go to warn.
func (s *session) outdated(rs []*recipes.Recipe, warn io.Writer) ([]bake.Stale, error) {
	e := s.e
	baker, err := bakeoci.NewBaker(bakeoci.WithHome(e.home()))
	if err != nil {
		return nil, err
	}
	stale := []bake.Stale{}
	for _, r := range rs {
		resolved, linkErr := s.resolveLinksNewest(r, append(slices.Clone(rs), siblingRecipes(rs)...), nil)
		arts, err := s.loadCatalog([]*recipes.Recipe{r})
		if err != nil {
			return nil, err
		}
		entries := map[string][]catalog.Entry{}
		for _, a := range arts[0] {
			entries[a.Name] = a.Entries
			if linkErr != nil && len(a.Entries) > 0 {
				return nil, linkErr // baked on a base recipe outdated cannot find
			}
		}
		if linkErr == nil {
			r = resolved
		} // else: never baked, which Outdated says without its base
		var opts []bake.Option
		if len(r.MachineImages) > 0 {
			cfg, err := s.awsFor(r)
			if err != nil {
				return nil, err
			}
			mb, err := newAMIBaker(cfg, e)
			if err != nil {
				return nil, err
			}
			opts = append(opts, bake.WithMachineImages(mb))
		}
		found, err := bake.New(baker, opts...).Outdated(s.c.Context, baker, r, entries)
		if err != nil {
			return nil, err
		}
		stale = append(stale, found...)
		warnFixedVersion(warn, r, found)
	}
	return stale, nil
}

// warnFixedVersion says, for a recipe whose version is written in it and
// already baked, that rebaking it needs a new version there first: bake
// would refuse to put other content under the same version.
func warnFixedVersion(w io.Writer, r *recipes.Recipe, found []bake.Stale) {
	if !r.VersionFixed() {
		return
	}
	for _, s := range found {
		if s.Version == r.Version {
			fmt.Fprintf(w, "bakery: warning: %s's version %q is written in the recipe (%s:%d:%d) and already baked: "+
				"bake will refuse to rebake it until it is bumped there, or until the recipe says version = var.version and the job gives -var version=...\n",
				r.Name, r.Version, r.VersionRange.Filename, r.VersionRange.Start.Line, r.VersionRange.Start.Column)
			return
		}
	}
}

// outdatedRecipes loads the recipes named by the arguments (names or
// files), or every recipe in ./recipes.
func (e *env) outdatedRecipes(c *ucli.Context, g globals) ([]*recipes.Recipe, error) {
	args := c.Args().Slice()
	if len(args) == 0 {
		rs, _, err := e.findRecipesIn(c, g, "", recipes.ScopeBases, false)
		return rs, err
	}
	var out []*recipes.Recipe
	var files []string
	for _, a := range args {
		if _, err := os.Stat(a); err == nil || strings.HasSuffix(a, ".hcl") {
			files = append(files, a)
			continue
		}
		rs, _, err := e.findRecipesIn(c, g, a, recipes.ScopeBases, false)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	if len(files) > 0 {
		rs, err := e.loadRecipeFilesScoped(c, g, files, recipes.ScopeBases)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}
