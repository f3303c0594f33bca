package cli

import (
	"fmt"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/recipes"
)

// validation is the JSON document validate prints per recipe.
type validation struct {
	File      string   `json:"file"`
	Valid     bool     `json:"valid"`
	Recipe    string   `json:"recipe"`
	Version   string   `json:"version"`
	Artifacts []string `json:"artifacts"`
}

func validateCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:  "validate",
		Usage: "check recipes offline: syntax, types, variables, input files, references",
		Description: "Checks each recipe as bake would load it, and across the recipes given:\n" +
			"no recipe name defined twice, no version equal to a stage name, and no\n" +
			"named pipe, socket or device in a layer source folder.",
		ArgsUsage: "RECIPE.bake.hcl|FOLDER...",
		Flags:     varFlags(),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			rs, err := e.loadRecipes(c, g)
			if err != nil {
				return err
			}
			if diags := recipes.CheckSet(rs, siblingRecipes(rs)...); diags.HasErrors() {
				// A loader that holds the files shows the snippets.
				loader := recipes.NewLoader()
				for _, d := range diags {
					if d.Subject != nil {
						if src, err := os.ReadFile(d.Subject.Filename); err == nil {
							loader.Format(d.Subject.Filename, src)
						}
					}
				}
				if err := e.writeDiagnostics(loader, diags, g); err != nil {
					return err
				}
				e.noteFailure("%d problem(s) across the recipes; fix them and run again", len(diags))
				return exitError{exitFailure}
			}
			var docs []validation
			for _, r := range rs {
				v := validation{File: r.File, Valid: true, Recipe: r.Name, Version: r.Version, Artifacts: []string{}}
				for _, ct := range r.Containers {
					v.Artifacts = append(v.Artifacts, "container."+ct.Name)
				}
				for _, m := range r.MachineImages {
					v.Artifacts = append(v.Artifacts, "machine_image."+m.Name)
				}
				docs = append(docs, v)
				if !g.json {
					fmt.Fprintf(e.stdout, "%s: valid (recipe %s %s, %d artifact(s))\n", r.File, r.Name, r.Version, len(v.Artifacts))
				}
			}
			if g.json {
				return writeJSONLines(e.stdout, docs)
			}
			return nil
		},
	})
}
