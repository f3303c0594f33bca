package recipes

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lenientRecipe needs its layer sources, its scripts and two variables
// (one of them, team, only in what is baked) to be baked.
const lenientRecipe = `variable "version" {
  type = string
}
variable "team" {
  type = string
}
variable "registry" {
  type    = string
  default = "127.0.0.1:5000"
}
locals {
  labels = { team = var.team, motd = file("motd.txt") }
}
recipe "web" {
  version = var.version
  stages  = ["dev", "prod"]
}
container "web" {
  base       = "oci:./base-layout"
  repository = "${var.registry}/web"
  labels     = local.labels
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
stage "prod" {
  repository = "${var.registry}/prod/web"
}
`

func TestScopeCatalogNeedsNoSourcesNorUnneededVariables(t *testing.T) {
	dir := writeTree(t, map[string]string{"web.bake.hcl": lenientRecipe})
	path := filepath.Join(dir, "web.bake.hcl")

	// Everything is checked for a bake: the missing variables and files
	// are errors.
	_, diags := NewLoader().Load(path, Options{})
	text := diagText(diags)
	for _, want := range []string{`no value for required variable "version"`, `no value for required variable "team"`, `no such file "motd.txt"`, `no such file or directory "app/"`, `no such OCI layout "./base-layout"`} {
		if !strings.Contains(text, want) {
			t.Errorf("a full load does not report %q:\n%s", want, text)
		}
	}

	for _, scope := range []Scope{ScopeCatalog, ScopeBases} {
		r := mustLoad(t, path, Options{Scope: scope})
		if r.Name != "web" || strings.Join(r.Stages, ",") != "dev,prod" {
			t.Errorf("scope %d: recipe %q stages %v", scope, r.Name, r.Stages)
		}
		if got := r.Containers[0].Repository; got != "127.0.0.1:5000/web" {
			t.Errorf("scope %d: repository = %q", scope, got)
		}
		if got := r.Stage("prod").Repository; got != "127.0.0.1:5000/prod/web" {
			t.Errorf("scope %d: prod repository = %q", scope, got)
		}
		if r.Version != "" {
			t.Errorf("scope %d: version = %q, want unknown (empty)", scope, r.Version)
		}
	}
}

func TestScopeCatalogSaysWhichVariableIsNeededAndWhere(t *testing.T) {
	src := strings.Replace(lenientRecipe, `  default = "127.0.0.1:5000"
`, "", 1)
	dir := writeTree(t, map[string]string{"web.bake.hcl": src})
	path := filepath.Join(dir, "web.bake.hcl")
	l := NewLoader()
	r, diags := l.Load(path, Options{Scope: ScopeCatalog})
	if r != nil || !diags.HasErrors() {
		t.Fatalf("loaded without the registry variable: %s", diagText(diags))
	}
	if len(diags) != 1 {
		t.Errorf("want one diagnostic (the first place registry is needed), got:\n%s", diagText(diags))
	}
	d := diags[0]
	want := `variable "registry" is needed to find where web's images live (repository at ` + path + `:19:16)`
	if d.Summary != want {
		t.Errorf("summary:\n got %s\nwant %s", d.Summary, want)
	}
	if want := "Set it with -var registry=... or BAKERY_VAR_registry=...; the variables that only a bake reads may stay unset."; d.Detail != want {
		t.Errorf("detail:\n got %s\nwant %s", d.Detail, want)
	}
	if d.Subject == nil || d.Subject.Start.Line != 19 || d.Subject.Start.Column != 16 {
		t.Errorf("subject = %v, want line 19 column 16", d.Subject)
	}
	var buf bytes.Buffer
	if err := l.WriteDiagnostics(&buf, diags, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `repository = "${var.registry}/web"`) {
		t.Errorf("no snippet of the attribute:\n%s", buf.String())
	}
}

func TestScopeCatalogThroughLocalsAndStages(t *testing.T) {
	src := `variable "regions" {
  type = list(string)
}
variable "account" {
  type = string
}
variable "version" {
  type = string
}
locals {
  copies = concat(["eu-west-1"], var.regions)
}
recipe "base" {
  version = var.version
  stages  = ["dev", "prod"]
}
machine_image "base" {
  region         = "us-east-1"
  source_ami     = "ami-12345678"
  regions        = local.copies
  instance_type  = "t3.micro"
  share_with     = [var.account]
  provision "shell" {
    script = "setup.sh"
  }
}
stage "prod" {
  accounts = [var.account]
}
`
	dir := writeTree(t, map[string]string{"base.bake.hcl": src})
	path := filepath.Join(dir, "base.bake.hcl")
	_, diags := NewLoader().Load(path, Options{Scope: ScopeCatalog})
	text := diagText(diags)
	if len(diags) != 2 ||
		!strings.Contains(text, `variable "regions" is needed to find where base's images live (regions at `+path+`:20:20)`) ||
		!strings.Contains(text, `variable "account" is needed to find where base's images live and what its stages ask (accounts of stage "prod" at `+path+`:28:14)`) {
		t.Errorf("diagnostics:\n%s", text)
	}
}

func TestScopeBasesNeedsTheBase(t *testing.T) {
	src := `variable "base" {
  type = string
}
recipe "api" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "api" {
  base = var.base
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`
	dir := writeTree(t, map[string]string{"api.bake.hcl": src})
	path := filepath.Join(dir, "api.bake.hcl")
	if r := mustLoad(t, path, Options{Scope: ScopeCatalog}); r.Containers[0].Base != "" {
		t.Errorf("base = %q", r.Containers[0].Base)
	}
	_, diags := NewLoader().Load(path, Options{Scope: ScopeBases})
	if len(diags) != 1 || !strings.Contains(diags[0].Summary, `variable "base" is needed to check whether api's base has moved on (base at `+path+`:9:10)`) {
		t.Errorf("diagnostics:\n%s", diagText(diags))
	}
}

func TestScopeCatalogNeedsTheFilesOfWhatItReads(t *testing.T) {
	src := `recipe "api" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "api" {
  base       = "scratch"
  repository = trimspace(file("registry.txt"))
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`
	dir := writeTree(t, map[string]string{"api.bake.hcl": src})
	_, diags := NewLoader().Load(filepath.Join(dir, "api.bake.hcl"), Options{Scope: ScopeCatalog})
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, "reads a file that is not here (registry.txt)") {
		t.Errorf("diagnostics:\n%s", diagText(diags))
	}
}

func TestExampleRecipesLoadForTheCatalogWithoutTheirFiles(t *testing.T) {
	files, err := filepath.Glob("*.bake.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example recipes: %v", err)
	}
	empty := t.TempDir()
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(empty, f)
		if err := os.WriteFile(dst, src, 0o644); err != nil {
			t.Fatal(err)
		}
		r := mustLoad(t, dst, Options{Scope: ScopeCatalog})
		if len(r.Stages) == 0 {
			t.Errorf("%s: no stages", f)
		}
	}
}

func TestSharedVarsApplyToTheRecipesThatDeclareThem(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"a.bake.hcl": `variable "region" {
  type = string
}
recipe "a" {
  version = "1.0.0"
  stages  = ["dev"]
}
machine_image "a" {
  region     = var.region
  source_ami = "ami-12345678"
}
`,
		"b.bake.hcl": `variable "registry" {
  type = string
}
recipe "b" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "b" {
  base       = "scratch"
  repository = "${var.registry}/b"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`,
		"app/x":        "x",
		"vars.pkrvars": "region = \"eu-west-1\"\nregistrie = \"typo\"\n",
	})
	opts := Options{
		Vars:       map[string]string{"registry": "127.0.0.1:5000", "colour": "red"},
		VarFiles:   []string{filepath.Join(dir, "vars.pkrvars")},
		SharedVars: true,
	}
	l := NewLoader()
	a := mustLoadWith(t, l, filepath.Join(dir, "a.bake.hcl"), opts)
	b := mustLoadWith(t, l, filepath.Join(dir, "b.bake.hcl"), opts)
	if a.MachineImages[0].Region != "eu-west-1" || b.Containers[0].Repository != "127.0.0.1:5000/b" {
		t.Errorf("region %q, repository %q", a.MachineImages[0].Region, b.Containers[0].Repository)
	}
	diags := l.CheckVars(opts)
	text := diagText(diags)
	if len(diags) != 2 ||
		!strings.Contains(text, `undeclared variable "registrie"`) || !strings.Contains(text, `(did you mean "registry"?)`) ||
		!strings.Contains(text, `undeclared variable "colour"`) || !strings.Contains(text, "-var colour=... sets a variable that none of the recipes (a, b) declares.") {
		t.Errorf("CheckVars:\n%s", text)
	}
	if !strings.HasPrefix(text, filepath.Join(dir, "vars.pkrvars")+":2:1") {
		t.Errorf("the var file's entry is not pointed at:\n%s", text)
	}

	// Without SharedVars, a recipe reports the names it does not declare.
	_, diags = NewLoader().Load(filepath.Join(dir, "a.bake.hcl"), opts.withShared(false))
	if !strings.Contains(diagText(diags), `undeclared variable "registry"`) {
		t.Errorf("not shared: %s", diagText(diags))
	}
}

func (o Options) withShared(shared bool) Options { o.SharedVars = shared; return o }

func mustLoadWith(t *testing.T, l *Loader, path string, opts Options) *Recipe {
	t.Helper()
	r, diags := l.Load(path, opts)
	if diags.HasErrors() {
		t.Fatalf("loading %s: %s", path, diagText(diags))
	}
	return r
}

func TestRecipeNameOfABrokenRecipe(t *testing.T) {
	dir := writeTree(t, map[string]string{"x.bake.hcl": "recipe \"broken\" {\n  version = \n}\n"})
	l := NewLoader()
	path := filepath.Join(dir, "x.bake.hcl")
	if _, diags := l.Load(path, Options{}); !diags.HasErrors() {
		t.Fatal("no error")
	}
	if got := l.RecipeName(path); got != "broken" {
		t.Errorf("RecipeName = %q", got)
	}
}

func TestCheckVarsCountsTheVariablesOfARecipeWithASyntaxError(t *testing.T) {
	dir := writeTree(t, map[string]string{"x.bake.hcl": "variable \"region\" {}\nrecipe \"x\" {\n  version = \n}\n"})
	l := NewLoader()
	opts := Options{Vars: map[string]string{"region": "eu-west-1"}, SharedVars: true}
	if _, diags := l.Load(filepath.Join(dir, "x.bake.hcl"), opts); !diags.HasErrors() {
		t.Fatal("no error")
	}
	if diags := l.CheckVars(opts); len(diags) != 0 {
		t.Errorf("CheckVars: %s", diagText(diags))
	}
}
