package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	bakeami "github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/recipes"
)

func sweepCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:  "sweep",
		Usage: "find and remove what killed machine-image bakes and launches left behind",
		Description: "Finds builder instances, key pairs, security groups and unfinished AMIs\n" +
			"(tagged bakery:bake-id but without a bake key) whose bake showed no sign of\n" +
			"life (creation or heartbeat) for --older-than, and launch templates of\n" +
			"bakery launches that no Auto Scaling group launches from, created at least\n" +
			"--older-than ago, in every region the recipes\n" +
			"in ./recipes name and the AWS config's region (or the --region ones, or\n" +
			"--all-regions). It prints the plan; with --yes it removes them. A finished\n" +
			"AMI, and an AMI still being created or copied, is never touched.",
		Flags: []ucli.Flag{
			&ucli.DurationFlag{Name: "older-than", Value: time.Hour, Usage: "only resources at least this old (a running bake's resources are younger)"},
			&ucli.StringSliceFlag{Name: "region", Usage: "region to sweep (repeatable or comma-separated; default: every region of ./recipes and the AWS config's)"},
			&ucli.BoolFlag{Name: "all-regions", Usage: "sweep every region enabled for the account"},
			&ucli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "remove what the plan lists"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the plan only (the default without --yes)"},
		},
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			if c.NArg() > 0 {
				return usagef("sweep takes no arguments; name regions with --region")
			}
			if c.Bool("yes") && c.Bool("dry-run") {
				return usagef("--yes and --dry-run contradict each other; give one")
			}
			cfg, err := e.awsConfig(c, "")
			if err != nil {
				return err
			}
			regions := splitList(c.StringSlice("region"))
			if c.Bool("all-regions") && len(regions) > 0 {
				return usagef("--all-regions and --region contradict each other; give one")
			}
			b, err := bakeami.NewBaker(cfg, bakeami.WithProgress(e.reporter(g)), bakeami.WithClock(e.now))
			if err != nil {
				return err
			}
			switch {
			case c.Bool("all-regions"):
				if regions, err = b.EnabledRegions(c.Context); err != nil {
					return err
				}
			case len(regions) == 0:
				regions = append([]string{cfg.Region}, e.recipeRegions(c, cfg.Region)...)
			}
			apply := c.Bool("yes")
			plan, err := b.Sweep(c.Context, regions, c.Duration("older-than"), apply)
			if plan != nil {
				if g.json {
					if jerr := json.NewEncoder(e.stdout).Encode(plan); jerr != nil {
						return fmt.Errorf("writing JSON output: %w", jerr)
					}
				} else {
					fmt.Fprint(e.stdout, plan.String())
					if !apply && len(plan.Remove) > 0 {
						fmt.Fprintln(e.stdout, "nothing removed: run again with --yes to remove them")
					}
				}
			}
			return err
		},
	})
}

// recipeRegions returns every region the machine images of the recipes in
// ./recipes may have AMIs in (build, copy and stage regions; fallback for
// a block that names no region), and their fleets' regions. Recipes that
// do not load are passed over: sweep cleans up after any bake, whatever
// the recipes say now.
func (e *env) recipeRegions(c *ucli.Context, fallback string) []string {
	files, _ := filepath.Glob(filepath.Join("recipes", "*.bake.hcl"))
	opts := recipes.Options{Vars: map[string]string{}, Env: e.environ, Now: e.now}
	var out []string
	loader := recipes.NewLoader()
	for _, f := range files {
		r, diags := loader.Load(f, opts)
		if diags.HasErrors() {
			continue
		}
		for _, m := range r.MachineImages {
			out = append(out, amiRegions(r, m, fallback)...)
		}
		for _, f := range r.Fleets {
			out = append(out, cmp.Or(f.Region, fallback))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// splitList splits comma-separated values ("us-east-1,eu-west-1") of a
// repeatable flag: the app does not split slice flags (a -var value may
// hold commas), but a list of regions may be written either way.
func splitList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
