package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/report"
	"github.com/bakery-sh/bakery/promote"
	"github.com/bakery-sh/bakery/recipes"
)

// loadCatalog opens and reads the catalogs of rs.
func (s *session) loadCatalog(rs []*recipes.Recipe) ([][]*promote.Artifact, error) {
	all := make([][]*promote.Artifact, len(rs))
	for i, r := range rs {
		arts, err := s.artifacts(r)
		if err != nil {
			return nil, err
		}
		if err := promote.Load(s.c.Context, arts); err != nil {
			return nil, err
		}
		all[i] = arts
	}
	return all, nil
}

func statusCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "status",
		Usage:     "show which version is in which stage, since when and where",
		ArgsUsage: "[RECIPE]",
		Description: "A versions × stages table per recipe (every recipe in ./recipes without\n" +
			"RECIPE), read from the images themselves: no local state is needed.\n" +
			"Revoked versions and versions baked from a revoked image (tainted) are marked.",
		Flags: recipeFlags(),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			if c.NArg() > 1 {
				return usagef("status takes at most one RECIPE")
			}
			// A recipe that does not load is reported and the others shown.
			rs, failed, err := e.findRecipesIn(c, g, c.Args().First(), recipes.ScopeCatalog, true)
			if err != nil {
				return err
			}
			s := &session{e: e, c: c}
			// With every recipe, one that cannot be read (no AWS
			// credentials, registry down) does not hide the others.
			total := len(rs) + len(failed)
			var elsewhere []string
			if c.Args().First() != "" && c.String("file") == "" {
				// One recipe's images may be baked from another's: its
				// taint needs the others' revocations, as without RECIPE.
				elsewhere = []string{c.Args().First()}
			}
			docs, err := s.statusDocs(rs, elsewhere, func(r *recipes.Recipe, err error) bool {
				if total == 1 || c.Context.Err() != nil {
					return false
				}
				fmt.Fprintf(e.stderr, "bakery: %s: %v\n", r.Name, err)
				failed = append(failed, r.Name)
				return true
			})
			if err != nil {
				return err
			}
			if len(failed) > 0 {
				defer e.noteFailure("could not read %d of %d recipes (%s); see above", len(failed), total, strings.Join(failed, ", "))
			}
			if g.json {
				if err := writeJSONLines(e.stdout, docs); err != nil {
					return err
				}
			} else {
				for i, d := range docs {
					if i > 0 {
						fmt.Fprintln(e.stdout)
					}
					printStatus(e.stdout, d)
				}
			}
			if len(failed) > 0 {
				return exitError{exitFailure}
			}
			return nil
		},
	})
}

// statusDocs builds the documents status prints (and the dashboard
// serves), one per recipe of rs that could be read. The revocations of
// the recipes in ./recipes other than those named in elsewhere are added
// for the taint (status of one recipe names it; nil adds none). A recipe
// whose catalog cannot be read is passed to skip: it is left out when
// skip returns true, else its error is returned.
func (s *session) statusDocs(rs []*recipes.Recipe, elsewhere []string, skip func(*recipes.Recipe, error) bool) ([]statusDoc, error) {
	var read []*recipes.Recipe
	var all [][]*promote.Artifact
	for _, r := range rs {
		arts, err := s.loadCatalog([]*recipes.Recipe{r})
		if err != nil {
			if !skip(r, err) {
				return nil, err
			}
			continue
		}
		read = append(read, r)
		all = append(all, arts[0])
	}
	var revoked []promote.RevokedImage
	for i, r := range read {
		revoked = append(revoked, promote.Revoked(r.Name, all[i])...)
	}
	if len(elsewhere) > 0 {
		revoked = append(revoked, s.revokedElsewhere(elsewhere...)...)
	}
	docs := []statusDoc{}
	for i, r := range read {
		d := statusDoc{RecipeStatus: promote.Status(r.Name, r.Stages, all[i], revoked)}
		var err error
		if d.Fleets, err = s.e.runningFleets(s.c, s, r); err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, nil
}

// revokedElsewhere lists the revoked images of the recipes in ./recipes
// other than names, for the taint of their versions. A recipe that does
// not load or whose catalog cannot be read is left out quietly: status
// of every recipe reports it.
func (s *session) revokedElsewhere(names ...string) []promote.RevokedImage {
	opts, err := s.e.recipeOptions(s.c)
	if err != nil {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join("recipes", "*.bake.hcl"))
	loader := recipes.NewLoader()
	var out []promote.RevokedImage
	for _, f := range files {
		r, diags := loader.Load(f, opts)
		if diags.HasErrors() || slices.Contains(names, r.Name) {
			continue
		}
		arts, err := s.loadCatalog([]*recipes.Recipe{r})
		if err != nil {
			continue
		}
		out = append(out, promote.Revoked(r.Name, arts[0])...)
	}
	return out
}

// statusDoc is one recipe's status document (report.Status).
type statusDoc = report.Status

// fleetRun is a group serving a stage (report.FleetRun).
type fleetRun = report.FleetRun

// runningFleets returns, for each stage of r with a fleet block, the
// groups serving it (one paginated DescribeAutoScalingGroups per stage);
// nil when r has no fleet.
func (e *env) runningFleets(c *ucli.Context, s *session, r *recipes.Recipe) (map[string][]fleetRun, error) {
	var out map[string][]fleetRun
	var inv *fleet.Inventory
	for _, st := range r.Stages {
		f := r.Fleet(st)
		if f == nil {
			continue
		}
		cfg, err := s.awsFor(r)
		if err != nil {
			return nil, err
		}
		if inv == nil {
			inv = fleet.NewFromConfig(cfg)
			out = map[string][]fleetRun{}
		}
		region := cmp.Or(f.Region, cfg.Region)
		groups, err := inv.List(c.Context, region, fleet.Selector{Recipe: r.Name, Stage: st})
		if err != nil {
			return nil, fmt.Errorf("reading the fleet of %s in %s: %w", r.Name, st, err)
		}
		out[st] = []fleetRun{}
		for _, g := range groups {
			if g.State == fleet.StateServing {
				out[st] = append(out[st], fleetRun{Group: g.Name, Region: g.Region, Version: g.Version, Image: g.Image})
			}
		}
	}
	return out, nil
}

func printStatus(w io.Writer, d statusDoc) {
	fmt.Fprintf(w, "%s  (%s)\n", d.Recipe, strings.Join(d.Stages, " → "))
	if len(d.Versions) == 0 {
		fmt.Fprintln(w, "  no versions baked yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "VERSION")
	for _, s := range d.Stages {
		fmt.Fprint(tw, "\t"+strings.ToUpper(s))
	}
	if d.Fleets != nil {
		fmt.Fprint(tw, "\tFLEET")
	}
	fmt.Fprintln(tw, "\tWHERE\tNOTES")
	for _, v := range d.Versions {
		fmt.Fprint(tw, v.Version)
		for _, s := range d.Stages {
			cell := "-"
			if se, ok := v.Stages[s]; ok {
				cell = se.Since.UTC().Format("2006-01-02 15:04") + " " + shortActor(se.By)
			}
			fmt.Fprint(tw, "\t"+cell)
		}
		var notes []string
		if v.Adopted {
			notes = append(notes, "ADOPTED: not baked by bakery (bake key unknown)")
		}
		if v.Revoked {
			notes = append(notes, "REVOKED: "+v.RevokeReason)
		}
		for _, s := range d.Stages {
			if f, ok := v.Forced[s]; ok {
				notes = append(notes, fmt.Sprintf("FORCED into %s: %s", s, f.Reason))
			}
		}
		for _, s := range d.Stages {
			if v.Stages[s].Unfinished {
				notes = append(notes, fmt.Sprintf("UNFINISHED: the promotion to %s stopped part way: promote %s@%s --to %s again", s, d.Recipe, v.Version, s))
			}
		}
		if len(v.TaintedBy) > 0 {
			notes = append(notes, "TAINTED: baked from revoked "+strings.Join(v.TaintedBy, ", "))
		}
		if d.Fleets != nil {
			var runs []string
			for _, st := range d.Stages {
				for _, run := range d.Fleets[st] {
					if run.Version == v.Version {
						runs = append(runs, st+" "+run.Group)
					}
				}
			}
			fmt.Fprint(tw, "\t"+orDash(strings.Join(runs, ", ")))
		}
		fmt.Fprintf(tw, "\t%s\t%s\n", where(v.Artifacts), strings.Join(notes, "; "))
	}
	tw.Flush()
}

// where summarises an artifact's locations in one cell.
func where(arts []promote.ArtifactState) string {
	var parts []string
	for _, a := range arts {
		for _, l := range a.Locations {
			id := l.ID
			if strings.HasPrefix(id, "sha256:") && len(id) > 19 {
				id = id[:19]
			}
			parts = append(parts, l.Where+" "+id)
		}
	}
	return strings.Join(parts, ", ")
}

// shortActor keeps the last part of an ARN ("user/ann" → "ann").
func shortActor(a string) string {
	if i := strings.LastIndex(a, "/"); i >= 0 && strings.HasPrefix(a, "arn:") {
		return a[i+1:]
	}
	return a
}

// historyDoc is the JSON document history prints (report.History).
type historyDoc = report.History

func historyCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "history",
		Usage:     "list every bake, promotion, demotion and revocation of a recipe, newest first",
		ArgsUsage: "RECIPE | --verify [RECIPE]",
		Description: "The history is read from the images themselves. An AMI keeps only its\n" +
			"most recent events (it has at most 50 tags); with a ledger (a catalog\n" +
			"block in the recipe, or BAKERY_LEDGER) the full history is read from it\n" +
			"and merged in. Without one, history says how many older events are gone.\n\n" +
			"--verify checks the ledger's chain of the recipe (of every recipe when none\n" +
			"is named): an event edited, deleted or missing since it was written is\n" +
			"reported, one per line, and history exits 3. Events written before the\n" +
			"chain and events on the images alone are listed as unverifiable.",
		Flags: append(recipeFlags(),
			&ucli.BoolFlag{Name: "verify", Usage: "check that no event of the ledger was edited or deleted since it was written (exit 3 if one was)"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			if c.Bool("verify") {
				return e.verifyHistory(c, g)
			}
			if c.NArg() != 1 {
				return usagef("history takes one RECIPE, for example: bakery history web")
			}
			rs, err := e.catalogRecipes(c, g, c.Args().First())
			if err != nil {
				return err
			}
			doc, err := (&session{e: e, c: c}).historyDoc(rs[0])
			if err != nil {
				return err
			}
			return e.writeHistory(g, doc)
		},
	})
}

// historyDoc builds the document history prints (and the dashboard
// serves) for r: the events on its images, with the retire events that
// outlive a container version and, with a ledger, the full history.
func (s *session) historyDoc(r *recipes.Recipe) (historyDoc, error) {
	events, arts, err := s.imageHistory(r)
	if err != nil {
		return historyDoc{}, err
	}
	doc := historyDoc{Recipe: r.Name, Events: events}
	l, err := s.ledger(r)
	if err != nil {
		return historyDoc{}, err
	}
	if l != nil {
		kept, err := l.Events(s.c.Context, r.Name)
		if err != nil {
			return historyDoc{}, err
		}
		doc.Events, doc.Ledger = promote.MergeHistory(doc.Events, kept), l.String()
	} else {
		doc.Pruned = promote.Pruned(arts)
	}
	if doc.Events == nil {
		doc.Events = []catalog.Event{}
	}
	return doc, nil
}

// writeHistory prints doc: a JSON document, or a table on stdout and,
// when older events were pruned, a note on stderr.
func (e *env) writeHistory(g globals, doc historyDoc) error {
	if doc.Events == nil {
		doc.Events = []catalog.Event{}
	}
	if g.json {
		return json.NewEncoder(e.stdout).Encode(doc)
	}
	if doc.Pruned > 0 {
		fmt.Fprintf(e.stderr, "bakery: %d older event(s) of %s are no longer on its images, which keep only their most recent; "+
			"to keep the whole history, configure a ledger: a catalog { bucket = \"...\" } block in the recipe, or %s=s3://BUCKET/PREFIX\n",
			doc.Pruned, doc.Recipe, LedgerEnv)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTION\tVERSION\tSTAGE\tARTIFACT\tACTOR\tREASON")
	for _, ev := range doc.Events {
		reason := ev.Reason
		if ev.Forced {
			reason = "FORCED: " + reason
		}
		if ev.ApprovedBy != "" {
			reason = strings.TrimSpace(reason + " (approved by " + shortActor(ev.ApprovedBy) + ")")
		}
		actor := shortActor(ev.Actor)
		if ev.Unverified {
			actor += " (unverified)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s %s\t%s\t%s\n", ev.Time.UTC().Format(time.RFC3339), ev.Action, ev.Version,
			orDash(ev.Stage), ev.Kind, ev.Artifact, actor, reason)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
