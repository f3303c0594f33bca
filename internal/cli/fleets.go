package cli

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/report"
	"github.com/bakery-sh/bakery/recipes"
)

// fleetRow is one group in the fleets table and JSON (report.FleetRow).
type fleetRow = report.FleetRow

// fleetsDoc is the JSON document fleets prints per recipe (report.Fleets).
type fleetsDoc = report.Fleets

func fleetsCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "fleets",
		Usage:     "list the Auto Scaling groups bakery launched, per stage",
		ArgsUsage: "[RECIPE]",
		Description: "Lists the groups of every fleet block of RECIPE (every recipe in\n" +
			"./recipes by default): name, version, AMI, launch template version, state\n" +
			"(serving, launching, draining, disabled, failed), sizes, healthy instances\n" +
			"(in the group and in its target groups), age, and the rollback target (the\n" +
			"newest disabled group). Read from the groups' own tags.",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "stage", Usage: "only this `STAGE`"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			if c.NArg() > 1 {
				return usagef("fleets takes at most one RECIPE")
			}
			rs, err := e.findRecipes(c, g, c.Args().First())
			if err != nil {
				return err
			}
			var docs []fleetsDoc
			for _, r := range rs {
				if len(r.Fleets) == 0 {
					continue
				}
				if st := c.String("stage"); st != "" && r.StageIndex(st) < 0 {
					return usagef("unknown stage %q; %s's stages are %s", st, r.Name, strings.Join(r.Stages, " → "))
				}
				doc, err := e.fleets(c, r, c.String("stage"))
				if err != nil {
					return err
				}
				docs = append(docs, doc)
			}
			for _, d := range docs {
				for _, a := range d.Anomalies {
					fmt.Fprintln(e.stderr, "bakery: warning: "+a)
				}
			}
			if g.json {
				return writeJSONLines(e.stdout, docs)
			}
			return e.writeFleets(docs)
		},
	})
}

// fleets reads the groups of r's fleets (only stage's, when set).
func (e *env) fleets(c *ucli.Context, r *recipes.Recipe, stage string) (fleetsDoc, error) {
	doc := fleetsDoc{Recipe: r.Name, Groups: []fleetRow{}, Anomalies: []string{}}
	s := &session{e: e, c: c}
	cfg, err := s.awsFor(r)
	if err != nil {
		return doc, err
	}
	poll, err := e.pollInterval()
	if err != nil {
		return doc, err
	}
	inv := fleet.NewFromConfig(cfg, fleet.WithPollInterval(poll))
	now := e.now()
	for _, st := range r.Stages {
		f := r.Fleet(st)
		if f == nil || (stage != "" && st != stage) {
			continue
		}
		region := cmp.Or(f.Region, cfg.Region)
		groups, err := inv.List(c.Context, region, fleet.Selector{Recipe: r.Name, Stage: st})
		if err != nil {
			return doc, err
		}
		var rows []fleetRow
		rollback := -1
		for i, g := range groups {
			row := fleetRow{Group: g, Healthy: g.InService(), AgeSeconds: int64(now.Sub(g.Created) / time.Second)}
			if len(g.TargetGroups) > 0 {
				h, err := inv.Health(c.Context, region, g.Name, nil)
				if err != nil {
					return doc, err
				}
				row.TargetHealthy = map[string]int{}
				for _, tg := range g.TargetGroups {
					row.TargetHealthy[tg] = h.Healthy(tg)
				}
			}
			switch g.State {
			case fleet.StateDisabled, fleet.StateDraining:
				if rollback < 0 || g.Disabled.After(groups[rollback].Disabled) ||
					g.Disabled.Equal(groups[rollback].Disabled) && g.Number > groups[rollback].Number {
					rollback = i
				}
			}
			rows = append(rows, row)
		}
		if rollback >= 0 {
			rows[rollback].RollbackTarget = true
		}
		o, err := inv.Observe(c.Context, region, groups)
		if err != nil {
			return doc, err
		}
		if o.Revoked, err = revokedVersions(c.Context, s, r, f.Image); err != nil {
			return doc, err
		}
		doc.Anomalies = append(doc.Anomalies, fleet.Anomalies(r.Name, st, groups, o)...)
		doc.Groups = append(doc.Groups, rows...)
	}
	return doc, nil
}

// revokedVersions returns the revoked versions of r's machine_image
// image, read from the catalog.
func revokedVersions(ctx context.Context, s *session, r *recipes.Recipe, image string) (map[string]bool, error) {
	arts, err := s.artifacts(r)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, a := range arts {
		if a.Kind != catalog.KindAMI || a.Name != image {
			continue
		}
		entries, err := a.Store.Entries(ctx)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Revoked {
				out[e.Version] = true
			}
		}
	}
	return out, nil
}

// writeFleets prints the fleets table.
func (e *env) writeFleets(docs []fleetsDoc) error {
	if len(docs) == 0 {
		fmt.Fprintln(e.stdout, "no fleets: add a fleet \"STAGE\" block to a recipe, then bakery launch RECIPE --stage STAGE")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECIPE\tSTAGE\tGROUP\tVERSION\tAMI\tLT\tSTATE\tMIN/DES/MAX\tHEALTHY\tAGE\tROLLBACK")
	for _, d := range docs {
		if len(d.Groups) == 0 {
			fmt.Fprintf(tw, "%s\t-\t(no groups)\t\t\t\t\t\t\t\t\n", d.Recipe)
		}
		for _, row := range d.Groups {
			healthy := fmt.Sprintf("%d/%d", row.Healthy, row.Desired)
			for _, tg := range slices.Sorted(maps.Keys(row.TargetHealthy)) {
				healthy += fmt.Sprintf(", tg %s %d/%d", tgShort(tg), row.TargetHealthy[tg], row.Desired)
			}
			rb := ""
			if row.RollbackTarget {
				rb = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d/%d\t%s\t%s\t%s\n", d.Recipe, row.Stage, row.Name, row.Version, row.Image,
				row.TemplateVersion, row.State, row.Min, row.Desired, row.Max, healthy, age(time.Duration(row.AgeSeconds)*time.Second), rb)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the fleets table: %w", err)
	}
	return nil
}

// tgShort is the name part of a target group ARN.
func tgShort(arn string) string {
	_, rest, ok := strings.Cut(arn, ":targetgroup/")
	if !ok {
		return arn
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// age renders d in its largest unit: 45s, 12m, 5h, 3d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}
