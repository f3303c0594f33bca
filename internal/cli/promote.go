package cli

import (
	"encoding/json"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/promote"
)

// promotion is the JSON document promote prints.
type promotion struct {
	Recipe  string   `json:"recipe"`
	Version string   `json:"version"`
	Stage   string   `json:"stage"`
	NoOp    bool     `json:"noop"`
	Forced  bool     `json:"forced"`
	Actor   string   `json:"actor"`
	Checks  []string `json:"checks,omitempty"`
	Moved   []string `json:"moved"`
}

func promoteCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "promote",
		Usage:     "move a baked image into a stage, without rebuilding it",
		ArgsUsage: "RECIPE@VERSION --to STAGE",
		Description: "Promotes every artifact of RECIPE@VERSION into STAGE: only from the stage\n" +
			"before it (or into the first), after the stage's gates (min_soak,\n" +
			"require_approval). AMIs are tagged, shared with the stage's accounts and\n" +
			"copied to its regions; container images are copied by digest to the\n" +
			"stage's repository and the stage tag is moved. The version that held the\n" +
			"stage leaves it. Promoting what is already there changes nothing; after a\n" +
			"failure, running the same command again finishes the job.",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "to", Usage: "the target `STAGE` (required)"},
			&ucli.BoolFlag{Name: "force", Usage: "override stage order and gates (needs --reason; never a revocation)"},
			&ucli.StringFlag{Name: "reason", Usage: "why; recorded in the history"},
			&ucli.StringFlag{Name: "approved-by", Usage: "who approved (satisfies require_approval)"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			if c.NArg() != 1 {
				return usagef("promote takes one RECIPE@VERSION, for example: bakery promote web@1.4.2 --to prod")
			}
			name, version, err := parseRef(c.Args().First())
			if err != nil {
				return err
			}
			if c.String("to") == "" {
				return usagef("promote needs the target stage: --to STAGE")
			}
			rs, err := e.findRecipes(c, g, name)
			if err != nil {
				return err
			}
			r := rs[0]
			s := &session{e: e, c: c}
			arts, err := s.artifacts(r)
			if err != nil {
				return err
			}
			if err := promote.Load(c.Context, arts); err != nil {
				return err
			}
			req := promote.Request{Recipe: r.Name, Version: version, To: c.String("to"), Force: c.Bool("force"),
				Reason: c.String("reason"), ApprovedBy: c.String("approved-by"), Actor: s.actor()}
			plan, err := promote.Check(r.Stages, stages(r), arts, req, e.now())
			if err != nil {
				return err
			}
			doc := promotion{Recipe: r.Name, Version: version, Stage: req.To, NoOp: plan.NoOp(), Forced: req.Force, Actor: req.Actor, Checks: plan.Checks, Moved: []string{}}
			if !plan.NoOp() {
				if err := promote.Apply(c.Context, plan); err != nil {
					return err
				}
				for _, m := range plan.Moves {
					if !m.NoOp {
						doc.Moved = append(doc.Moved, string(m.Artifact.Kind)+" "+m.Artifact.Name)
					}
				}
			}
			if g.json {
				return json.NewEncoder(e.stdout).Encode(doc)
			}
			for _, ch := range plan.Checks {
				fmt.Fprintln(e.stderr, "bakery: warning: "+ch)
			}
			if plan.NoOp() {
				fmt.Fprintf(e.stdout, "%s@%s is already in %s: nothing to do\n", r.Name, version, req.To)
				return nil
			}
			fmt.Fprintf(e.stdout, "promoted %s@%s to %s (%d artifact(s)) as %s\n", r.Name, version, req.To, len(doc.Moved), req.Actor)
			return nil
		},
	})
}

func revokeCommand(e *env, revoke bool) *ucli.Command {
	name, usage := "revoke", "take an image out of every stage and forbid promoting it"
	if !revoke {
		name, usage = "unrevoke", "lift a revocation (the image enters no stage)"
	}
	return withUsageErrors(&ucli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "RECIPE@VERSION --reason \"...\"",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "reason", Usage: "why; recorded in the history and shown by status"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			if c.NArg() != 1 {
				return usagef("%s takes one RECIPE@VERSION", name)
			}
			rname, version, err := parseRef(c.Args().First())
			if err != nil {
				return err
			}
			rs, err := e.findRecipes(c, g, rname)
			if err != nil {
				return err
			}
			s := &session{e: e, c: c}
			arts, err := s.artifacts(rs[0])
			if err != nil {
				return err
			}
			if err := promote.Load(c.Context, arts); err != nil {
				return err
			}
			apply := promote.Unrevoke
			if revoke {
				apply = promote.Revoke
			}
			if err := apply(c.Context, arts, rs[0].Name, version, c.String("reason"), s.actor(), e.now()); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(e.stdout).Encode(map[string]any{"recipe": rs[0].Name, "version": version, "revoked": revoke})
			}
			fmt.Fprintf(e.stdout, "%sd %s@%s\n", name, rs[0].Name, version)
			return nil
		},
	})
}
