package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/recipes"
)

// varFlags are the flags that set recipe variables, shared by the verbs
// that evaluate recipes.
func varFlags() []ucli.Flag {
	return []ucli.Flag{
		// KeepSpace: a value is taken exactly as given, spaces included.
		&ucli.StringSliceFlag{Name: "var", KeepSpace: true, Usage: "set a variable: -var name=value (repeatable; a list or map as HCL: -var 'regions=[\"eu-west-1\"]'; overrides -var-file and BAKERY_VAR_name)"},
		&ucli.StringSliceFlag{Name: "var-file", KeepSpace: true, Usage: "read variables from an HCL or JSON file (repeatable)"},
	}
}

// recipeOptions builds recipe load options from -var and -var-file.
func (e *env) recipeOptions(c *ucli.Context) (recipes.Options, error) {
	opts := recipes.Options{Vars: map[string]string{}, Env: e.environ, Now: e.now}
	for _, kv := range c.StringSlice("var") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return opts, usagef("-var %q: expected name=value, for example -var version=1.2.0 (one variable per -var)", kv)
		}
		opts.Vars[k] = v
	}
	opts.VarFiles = c.StringSlice("var-file")
	return opts, nil
}

// recipeFiles expands the arguments of verb: files as given, folders to
// the *.bake.hcl files in them.
func recipeFiles(verb string, args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, usagef("%s needs at least one recipe file or folder, for example: bakery %s recipes/hello.bake.hcl (or recipes/ for all)", verb, verb)
	}
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("reading recipe %s: %w", a, err)
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		found, err := filepath.Glob(filepath.Join(a, "*.bake.hcl"))
		if err != nil {
			return nil, fmt.Errorf("listing recipes in %s: %w", a, err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("no *.bake.hcl recipe files in folder %s", a)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// loadRecipes loads every recipe named by the arguments, printing all
// diagnostics. It fails if any recipe has an error.
func (e *env) loadRecipes(c *ucli.Context, g globals) ([]*recipes.Recipe, error) {
	if _, err := e.recipeOptions(c); err != nil {
		return nil, err
	}
	files, err := recipeFiles(c.Command.Name, c.Args().Slice())
	if err != nil {
		return nil, err
	}
	return e.loadRecipeFiles(c, g, files)
}

// loadRecipeFiles loads the given recipe files, printing all diagnostics.
func (e *env) loadRecipeFiles(c *ucli.Context, g globals, files []string) ([]*recipes.Recipe, error) {
	opts, err := e.recipeOptions(c)
	if err != nil {
		return nil, err
	}
	loader := recipes.NewLoader()
	var out []*recipes.Recipe
	failed := 0
	for _, f := range files {
		r, diags := loader.Load(f, opts)
		if len(diags) > 0 {
			if werr := e.writeDiagnostics(loader, diags, g); werr != nil {
				return nil, fmt.Errorf("printing diagnostics: %w", werr)
			}
		}
		if diags.HasErrors() {
			failed++
			continue
		}
		out = append(out, r)
	}
	if failed > 0 {
		e.noteFailure("%d of %d recipe files have errors; fix them and run again", failed, len(files))
		return out, exitError{exitFailure}
	}
	return out, nil
}
