package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/launch"
)

func rollbackCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "rollback",
		Usage:     "bring back the newest disabled group of a stage and disable the serving one",
		ArgsUsage: "RECIPE --stage STAGE",
		Description: "Re-enables the stage's newest disabled group (its min and desired pinned\n" +
			"to the serving group's desired capacity, processes resumed, target groups\n" +
			"attached), waits for the same health gate as launch, then disables the\n" +
			"serving group, drains it and scales it to 0, and gives the restored group\n" +
			"the serving group's min. If the gate fails, times out or the run is\n" +
			"interrupted, both groups are put back exactly as they were. A group whose\n" +
			"version was revoked, or whose AMI is gone, is refused. With no disabled\n" +
			"group left, the version that was in the stage before is launched again\n" +
			"(unless it was revoked or retired).",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "stage", Usage: "the `STAGE` to roll back (required)"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the plan; change nothing"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			fc, err := e.openFleet(c, g, "rollback", "roll back")
			if err != nil {
				return err
			}
			s, r, stage, f, l, cfg := fc.s, fc.r, fc.stage, fc.f, fc.l, fc.cfg
			ctx, unlock, err := s.stageContext(r, stage, c.Bool("dry-run"), fmt.Sprintf("roll back %s in %s", r.Name, stage))
			if err != nil {
				return err
			}
			res, err := l.Rollback(ctx, launch.Request{Recipe: r.Name, Stage: stage, Fleet: f, Region: cfg.Region,
				DryRun: c.Bool("dry-run"), Actor: s.actor()})
			unlock()
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(e.stderr, "bakery: warning: "+w)
			}
			if g.json {
				return json.NewEncoder(e.stdout).Encode(res)
			}
			verb := "rolled back"
			if res.DryRun {
				verb = "would roll back"
			}
			fmt.Fprintf(e.stdout, "%s %s in %s to %s (%s@%s, %s), %d/%d/%d (min/desired/max)\n", verb, res.Recipe, res.Stage, res.Group,
				res.Recipe, res.Version, res.Image, res.Min, res.Desired, res.Max)
			if len(res.Disabled) > 0 {
				disabled := "disabled"
				if res.DryRun {
					disabled = "would disable"
				}
				fmt.Fprintf(e.stdout, "%s %s\n", disabled, strings.Join(res.Disabled, ", "))
			}
			return nil
		},
	})
}
