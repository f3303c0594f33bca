package cli

import (
	"encoding/json"
	"fmt"
	"time"

	ucli "github.com/urfave/cli/v2"

	bakeami "github.com/bakery-sh/bakery/bake/ami"
)

func sweepCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:  "sweep",
		Usage: "find and remove what killed machine-image bakes left behind",
		Description: "Finds builder instances, key pairs, security groups and unfinished AMIs\n" +
			"(tagged bakery:bake-id but without a bake key) older than --older-than, in\n" +
			"the AWS config's region or the --region ones. It prints the plan; with\n" +
			"--yes it removes them. A finished AMI is never touched.",
		Flags: []ucli.Flag{
			&ucli.DurationFlag{Name: "older-than", Value: time.Hour, Usage: "only resources at least this old (a running bake's resources are younger)"},
			&ucli.StringSliceFlag{Name: "region", Usage: "region to sweep (repeatable; default: the AWS config's region)"},
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
			regions := c.StringSlice("region")
			if len(regions) == 0 {
				regions = []string{cfg.Region}
			}
			b, err := bakeami.NewBaker(cfg, bakeami.WithProgress(e.reporter(g)), bakeami.WithClock(e.now))
			if err != nil {
				return err
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
