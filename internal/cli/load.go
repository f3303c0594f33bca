package cli

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
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
	return e.loadRecipeFilesScoped(c, g, files, recipes.ScopeAll)
}

// loadRecipeFilesScoped loads the given recipe files for what scope
// needs, printing all diagnostics. It fails if any recipe has an error.
// The -var and -var-file values apply to the recipes that declare them;
// a name that none declares is an error.
func (e *env) loadRecipeFilesScoped(c *ucli.Context, g globals, files []string, scope recipes.Scope) ([]*recipes.Recipe, error) {
	opts, err := e.recipeOptions(c)
	if err != nil {
		return nil, err
	}
	opts.Scope, opts.SharedVars = scope, true
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
	e.hide(loader)
	if err := e.checkVars(g, loader, opts); err != nil {
		return out, err
	}
	if failed > 0 {
		e.noteFailure("%d of %d recipe files have errors; fix them and run again", failed, len(files))
		return out, exitError{exitFailure}
	}
	return out, nil
}

// checkVars prints and fails on the -var and -var-file names that no
// recipe loaded by loader declares.
func (e *env) checkVars(g globals, loader *recipes.Loader, opts recipes.Options) error {
	diags := loader.CheckVars(opts)
	if len(diags) == 0 {
		return nil
	}
	if err := e.writeDiagnostics(loader, diags, g); err != nil {
		return fmt.Errorf("printing diagnostics: %w", err)
	}
	return exitError{exitFailure}
}

// findRecipesIn loads the recipe named name (every recipe when name is
// empty) from -f FILE or ./recipes/*.bake.hcl, for what scope needs. A
// recipe with errors is reported when it is the one asked for, or when
// name is empty: then, with keepGoing, its name (or file) is returned in
// broken and the others are still returned; without, it is an error. The
// -var and -var-file values apply to the recipes that declare them; a name
// none declares is an error.
func (e *env) findRecipesIn(c *ucli.Context, g globals, name string, scope recipes.Scope, keepGoing bool) (found []*recipes.Recipe, broken []string, err error) {
	opts, err := e.recipeOptions(c)
	if err != nil {
		return nil, nil, err
	}
	opts.Scope, opts.SharedVars = scope, true
	files := []string{c.String("file")}
	if files[0] == "" {
		files, err = filepath.Glob(filepath.Join("recipes", "*.bake.hcl"))
		if err != nil {
			return nil, nil, fmt.Errorf("listing ./recipes: %w", err)
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, nil, fmt.Errorf("no recipe files in ./recipes: run bakery from your project folder or %s", nameTheFile(c))
		}
	}
	loader := recipes.NewLoader()
	type loaded struct {
		file  string
		r     *recipes.Recipe
		diags hcl.Diagnostics
	}
	all := make([]loaded, 0, len(files))
	for _, f := range files {
		r, diags := loader.Load(f, opts)
		all = append(all, loaded{f, r, diags})
	}
	e.hide(loader)
	if err := e.checkVars(g, loader, opts); err != nil {
		return nil, nil, err
	}
	// listed is every recipe, for "unknown recipe"; names and loadedFrom
	// are those that loaded.
	var listed, names, loadedFrom []string
	for _, l := range all {
		if l.diags.HasErrors() {
			rname := loader.RecipeName(l.file)
			listed = append(listed, cmp.Or(rname, l.file)+" (has errors)")
			// A broken recipe matters only when it is the one asked for.
			if c.String("file") == "" && name != "" && rname != name {
				continue
			}
			if werr := e.writeDiagnostics(loader, l.diags, g); werr != nil {
				return nil, nil, werr
			}
			if !keepGoing || name != "" {
				return nil, nil, exitError{exitFailure}
			}
			broken = append(broken, cmp.Or(rname, l.file))
			continue
		}
		r := l.r
		if i := slices.Index(names, r.Name); i >= 0 {
			return nil, nil, fmt.Errorf("recipe %q is defined twice, in %s and %s: rename one (bakery would not know which stages to use)", r.Name, loadedFrom[i], l.file)
		}
		names = append(names, r.Name)
		listed = append(listed, r.Name)
		loadedFrom = append(loadedFrom, l.file)
		if name == "" || r.Name == name {
			found = append(found, r)
		}
	}
	if len(found) == 0 && name != "" {
		if c.String("file") != "" {
			return nil, nil, fmt.Errorf("%s defines recipe %q, not %q", c.String("file"), strings.Join(names, ", "), name)
		}
		return nil, nil, fmt.Errorf("unknown recipe %q; ./recipes has: %s (or %s)", name, strings.Join(listed, ", "), nameTheFile(c))
	}
	return found, broken, nil
}

// catalogRecipes loads the recipe named name (every recipe when name is
// empty) for the verbs that read and change the catalog: only what
// decides where the artifacts live must be known (recipes.ScopeCatalog),
// so they work without the layer sources and without values for the
// variables only a bake reads.
func (e *env) catalogRecipes(c *ucli.Context, g globals, name string) ([]*recipes.Recipe, error) {
	rs, _, err := e.findRecipesIn(c, g, name, recipes.ScopeCatalog, false)
	return rs, err
}

// hide masks the sensitive values of the recipes loader loaded, from now
// on, in everything bakery prints: results, JSON documents, progress,
// errors and the debug log.
func (e *env) hide(loader *recipes.Loader) {
	secrets := loader.SensitiveValues()
	if e.outMask != nil { // nil in tests that make an env of their own
		e.outMask.Add(secrets...)
		e.errMask.Add(secrets...)
	}
	if e.logMask != nil {
		e.logMask.Add(secrets...)
	}
}
