package recipes

import (
	"path/filepath"
	"strings"
	"testing"
)

// okRecipe is a valid recipe block, lines 1-4 of most cases below.
const okRecipe = `recipe "r" {
  version = "1.0.0"
  stages  = ["dev"]
}
`

// container returns a container block starting at line 5 (after
// okRecipe) whose line 6 is base = "scratch" and whose lines from 7 on are
// the given lines followed by a valid layer block (unless noLayer).
func container(lines ...string) string {
	return okRecipe + "container \"c\" {\n  base = \"scratch\"\n" + join(lines) + `  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`
}

// layer returns okRecipe plus a container whose layer block (line 7)
// holds the given lines from line 8 on.
func layer(lines ...string) string {
	return okRecipe + "container \"c\" {\n  base = \"scratch\"\n  layer {\n" + join(lines) + "  }\n}\n"
}

func join(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestLoadErrors(t *testing.T) {
	// Every case's directory holds app/hello (so "app/" is a directory)
	// besides the recipe r.bake.hcl and the case's own files.
	type tc struct {
		name  string
		src   string
		files map[string]string
		opts  func(dir string) Options

		// The diagnostic expected: its Summary contains summary, and its
		// Subject starts in file (a base name) at line:col.
		summary   string
		detail    string // optional: a phrase of the Detail
		file      string // default r.bake.hcl
		line, col int
		// count, when not zero, is the exact number of diagnostics:
		// errors must not cascade.
		count int
	}
	cases := []tc{
		// Syntax and schema.
		{name: "malformed HCL", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\"\n}\n",
			summary: "Missing item separator", line: 4, col: 1, count: 1},
		{name: "unknown block", src: okRecipe + "builder \"docker\" {}\n",
			summary: "Unsupported block type", line: 5, col: 1, count: 1},
		{name: "unknown attribute", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\"]\n  owner   = \"me\"\n}\n",
			summary: "Unsupported argument", line: 4, col: 3, count: 1},
		{name: "unknown attribute in layer", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    owner       = "me"`),
			summary: "Unsupported argument", line: 10, col: 5, count: 1},
		{name: "missing recipe block", src: "variable \"x\" {\n  default = \"y\"\n}\n",
			summary: "missing recipe block", line: 1, col: 1, count: 1},
		{name: "recipe block without a name", src: "recipe {\n  version = \"1.0.0\"\n  stages  = [\"dev\"]\n}\n",
			summary: "Missing name for recipe", line: 1, col: 8, count: 1},
		{name: "two recipe blocks", src: okRecipe + strings.Replace(okRecipe, `"r"`, `"s"`, 1),
			summary: "duplicate recipe block", detail: "r.bake.hcl:1,1", line: 5, col: 1, count: 1},

		// The recipe block.
		{name: "missing version", src: "recipe \"r\" {\n  stages = [\"dev\"]\n}\n",
			summary: `missing required argument "version"`, line: 1, col: 1, count: 1},
		{name: "missing stages", src: "recipe \"r\" {\n  version = \"1.0.0\"\n}\n",
			summary: `missing required argument "stages"`, line: 1, col: 1, count: 1},
		{name: "version not a string", src: "recipe \"r\" {\n  version = 1.10\n  stages  = [\"dev\"]\n}\n",
			summary: `invalid type for "version"`, detail: `quote it`, line: 2, col: 13, count: 1},
		{name: "empty version", src: "recipe \"r\" {\n  version = \"\"\n  stages  = [\"dev\"]\n}\n",
			summary: "empty version", line: 2, col: 13, count: 1},
		{name: "version not a tag", src: "recipe \"r\" {\n  version = \"1.0 beta\"\n  stages  = [\"dev\"]\n}\n",
			summary: "invalid version", line: 2, col: 13, count: 1},
		{name: "invalid recipe name", src: "recipe \"Web@1\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\"]\n}\n",
			summary: "invalid recipe name", line: 1, col: 8, count: 1},
		{name: "empty stages", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = []\n}\n",
			summary: "empty stages", line: 3, col: 13, count: 1},
		{name: "stages not a list", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = \"dev\"\n}\n",
			summary: `invalid type for "stages"`, detail: "Expected a list of strings", line: 3, col: 13, count: 1},
		{name: "duplicate stage", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\", \"prod\", \"dev\"]\n}\n",
			summary: `duplicate stage "dev"`, detail: "r.bake.hcl:3,14", line: 3, col: 29, count: 1},
		{name: "invalid stage name", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\", \"Prod\"]\n}\n",
			summary: `invalid stage name "Prod"`, line: 3, col: 21, count: 1},

		// The container block.
		{name: "duplicate container label", src: container() + "container \"c\" {\n  base = \"scratch\"\n  layer {\n    source      = \"app/\"\n    destination = \"/\"\n  }\n}\n",
			summary: `duplicate container block "c"`, detail: "r.bake.hcl:5,1", line: 12, col: 1, count: 1},
		{name: "invalid container name", src: strings.Replace(container(), `container "c"`, `container "Web_"`, 1),
			summary: `invalid container name "Web_"`, line: 5, col: 11, count: 1},
		{name: "missing base", src: okRecipe + "container \"c\" {\n  layer {\n    source      = \"app/\"\n    destination = \"/app/\"\n  }\n}\n",
			summary: `missing required argument "base"`, line: 5, col: 1, count: 1},
		{name: "missing layer", src: okRecipe + "container \"c\" {\n  base = \"scratch\"\n}\n",
			summary: "missing layer block", line: 5, col: 1, count: 1},
		{name: "invalid base reference", src: strings.Replace(container(), `"scratch"`, `"Not A Ref!"`, 1),
			summary: "invalid base image reference", line: 6, col: 10, count: 1},
		{name: "missing OCI layout", src: strings.Replace(container(), `"scratch"`, `"./nolayout"`, 1),
			summary: `no such OCI layout "./nolayout"`, detail: "relative to", line: 6, col: 10, count: 1},
		{name: "directory that is not an OCI layout", src: strings.Replace(container(), `"scratch"`, `"oci:./app:v1"`, 1),
			summary: `"./app" is not an OCI image layout`, detail: "no oci-layout file", line: 6, col: 10, count: 1},
		{name: "invalid repository", src: container(`  repository = "127.0.0.1:5000/Team/hello"`),
			summary: "invalid repository", line: 7, col: 16, count: 1},
		{name: "entrypoint not a list", src: container(`  entrypoint = "/app/hello"`),
			summary: `invalid type for "entrypoint"`, detail: "Expected a list of strings", line: 7, col: 16, count: 1},
		{name: "env not a map", src: container(`  env = ["A=b"]`),
			summary: `invalid type for "env"`, detail: "Expected a map of strings", line: 7, col: 9, count: 1},
		{name: "env value not a string", src: container(`  env = { A = "b", B = ["c"] }`),
			summary: `invalid type for "env"`, detail: `the value of "B"`, line: 7, col: 24, count: 1},
		{name: "env name with =", src: container(`  env = { "A=B" = "x" }`),
			summary: `invalid environment variable name "A=B"`, line: 7, col: 11, count: 1},
		{name: "base layout that is a file", src: strings.Replace(container(), `"scratch"`, `"./app/hello"`, 1),
			summary: `OCI layout "./app/hello" is not a directory`, line: 6, col: 10, count: 1},
		{name: "relative workdir", src: container(`  workdir = "app"`),
			summary: "workdir must be an absolute path", line: 7, col: 13, count: 1},
		{name: "bad port", src: container(`  exposed_ports = ["8080", "70000"]`),
			summary: `invalid exposed port "70000"`, line: 7, col: 28, count: 1},
		{name: "bad port protocol", src: container(`  exposed_ports = [53, "53/icmp"]`),
			summary: `invalid exposed port "53/icmp"`, line: 7, col: 24, count: 1},
		{name: "bad platform", src: container(`  platforms = ["linux/amd64", "linux"]`),
			summary: `invalid platform "linux"`, line: 7, col: 31, count: 1},
		{name: "duplicate platform", src: container(`  platforms = ["linux/amd64", "linux/amd64"]`),
			summary: `duplicate platform "linux/amd64"`, line: 7, col: 31, count: 1},

		// The layer block.
		{name: "missing source", src: layer(`    destination = "/app/"`),
			summary: `missing required argument "source"`, line: 7, col: 3, count: 1},
		{name: "missing destination", src: layer(`    source = "app/"`),
			summary: `missing required argument "destination"`, line: 7, col: 3, count: 1},
		{name: "missing source file", src: layer(`    source      = "missing.txt"`, `    destination = "/app/"`),
			summary: `no such file or directory "missing.txt"`, detail: "paths are relative to", line: 8, col: 19, count: 1},
		{name: "directory source without slash", src: layer(`    source      = "app"`, `    destination = "/app/"`),
			summary: `directory source "app" must end with "/"`, detail: `write source = "app/"`, line: 8, col: 19, count: 1},
		{name: "file source with slash", src: layer(`    source      = "app/hello/"`, `    destination = "/app/"`),
			summary: `layer source "app/hello/" is not a directory`, line: 8, col: 19, count: 1},
		{name: "relative destination", src: layer(`    source      = "app/"`, `    destination = "app/"`),
			summary: "destination must be an absolute path", line: 9, col: 19, count: 1},
		{name: "bad mode string", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    mode        = "0999"`),
			summary: "invalid mode", line: 10, col: 19, count: 1},
		{name: "mode out of range", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    mode        = 17777`),
			summary: "invalid mode", line: 10, col: 19, count: 1},
		{name: "mode of wrong type", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    mode        = true`),
			summary: `invalid type for "mode"`, line: 10, col: 19, count: 1},
		{name: "negative uid", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    uid         = -1`),
			summary: "invalid uid", line: 10, col: 19, count: 1},
		{name: "fractional gid", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    gid         = 1.5`),
			summary: "invalid gid", line: 10, col: 19, count: 1},

		// Variables.
		{name: "undeclared -var", src: okRecipe,
			opts:    func(string) Options { return Options{Vars: map[string]string{"verison": "1"}} },
			summary: `undeclared variable "verison"`, file: "<-var verison>", line: 1, col: 1, count: 1},
		{name: "-var-file with undeclared variable",
			src:     "variable \"version\" {\n  default = \"1.0.0\"\n}\n" + strings.Replace(okRecipe, `"1.0.0"`, "var.version", 1),
			files:   map[string]string{"prod.vars.hcl": "# production\nversion = \"2.0.0\"\nverison = \"2.0.1\"\n"},
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "prod.vars.hcl")}} },
			summary: `undeclared variable "verison"`, detail: `did you mean "version"?`, file: "prod.vars.hcl", line: 3, col: 1, count: 1},
		{name: "JSON -var-file with undeclared variable", src: okRecipe,
			files:   map[string]string{"prod.vars.json": "{\n  \"nope\": 1\n}\n"},
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "prod.vars.json")}} },
			summary: `undeclared variable "nope"`, file: "prod.vars.json", line: 2, col: 3, count: 1},
		{name: "missing -var-file", src: okRecipe,
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "nope.vars.hcl")}} },
			summary: "reading var file", count: 1},
		{name: "variable with no value",
			src:     "variable \"region\" {\n  type = string\n}\n" + strings.Replace(okRecipe, `"1.0.0"`, "var.region", 1),
			summary: `no value for required variable "region"`, detail: "BAKERY_VAR_region", line: 1, col: 1, count: 1},
		{name: "variable type mismatch from -var",
			src:     "variable \"count\" {\n  type    = number\n  default = 1\n}\n" + okRecipe,
			opts:    func(string) Options { return Options{Vars: map[string]string{"count": "abc"}} },
			summary: `invalid value for variable "count"`, detail: "a number is required", file: "<-var count>", line: 1, col: 1, count: 1},
		{name: "variable type mismatch from the environment",
			src:     "variable \"count\" {\n  type    = number\n  default = 1\n}\n" + okRecipe,
			opts:    func(string) Options { return Options{Env: []string{"BAKERY_VAR_count=abc"}} },
			summary: `invalid value for variable "count"`, file: "<env BAKERY_VAR_count>", line: 1, col: 1, count: 1},
		{name: "variable type mismatch from a var file",
			src:     "variable \"count\" {\n  type    = number\n  default = 1\n}\n" + okRecipe,
			files:   map[string]string{"x.vars.hcl": "count = \"abc\"\n"},
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "x.vars.hcl")}} },
			summary: `invalid value for variable "count"`, file: "x.vars.hcl", line: 1, col: 9, count: 1},
		{name: "list element of the wrong type in a var file",
			src:     "variable \"ports\" {\n  type    = list(number)\n  default = []\n}\n" + okRecipe,
			files:   map[string]string{"x.vars.hcl": "ports = [80, \"http\"]\n"},
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "x.vars.hcl")}} },
			summary: `invalid value for variable "ports"`, detail: "does not conform: a number is required (at [1])", file: "x.vars.hcl", line: 1, col: 9, count: 1},
		{name: "list -var that does not parse",
			src:     "variable \"stages\" {\n  type    = list(string)\n  default = [\"dev\"]\n}\n" + okRecipe,
			opts:    func(string) Options { return Options{Vars: map[string]string{"stages": `["dev", `}} },
			summary: "", detail: "read as an HCL expression", file: "<-var stages>", line: 1, col: 9},
		{name: "default of the wrong type",
			src:     "variable \"count\" {\n  type    = number\n  default = \"many\"\n}\n" + okRecipe,
			summary: `invalid default value for variable "count"`, line: 3, col: 13, count: 1},
		{name: "invalid type constraint",
			src:     "variable \"count\" {\n  type = integer\n}\n" + okRecipe,
			summary: "Invalid type specification", line: 2, col: 10, count: 1},
		{name: "duplicate variable",
			src:     "variable \"v\" {\n  default = 1\n}\nvariable \"v\" {\n  default = 2\n}\n" + okRecipe,
			summary: `duplicate variable block "v"`, detail: "r.bake.hcl:1,1", line: 4, col: 1, count: 1},
		{name: "validation block failing on the default", src: `variable "version" {
  type    = string
  default = "latest"
  validation {
    condition     = can(regex("^[0-9.]+$", var.version))
    error_message = "The version must be numeric, like 1.2.3."
  }
}
` + strings.Replace(okRecipe, `"1.0.0"`, "var.version", 1),
			summary: `invalid value for variable "version"`, detail: "must be numeric", line: 3, col: 13, count: 1},
		{name: "validation block failing on a -var", src: `variable "version" {
  type    = string
  default = "1.0.0"
  validation {
    condition     = can(regex("^[0-9.]+$", var.version))
    error_message = "The version must be numeric, like 1.2.3."
  }
}
` + strings.Replace(okRecipe, `"1.0.0"`, "var.version", 1),
			opts:    func(string) Options { return Options{Vars: map[string]string{"version": "latest"}} },
			summary: `invalid value for variable "version"`, detail: "r.bake.hcl:5,21", file: "<-var version>", line: 1, col: 1, count: 1},
		{name: "validation block without error_message", src: `variable "v" {
  default = "x"
  validation {
    condition = var.v != ""
  }
}
` + okRecipe,
			summary: `missing required argument "error_message"`, line: 3, col: 3, count: 1},

		// Locals and expressions.
		{name: "locals cycle", src: "locals {\n  a = local.b\n  b = local.c\n  c = local.a\n}\n" + strings.Replace(okRecipe, `"1.0.0"`, "local.a", 1),
			summary: "cycle", detail: "local.a → local.b → local.c → local.a", line: 2, col: 3, count: 1},
		{name: "local referring to itself", src: "locals {\n  a = \"${local.a}x\"\n}\n" + okRecipe,
			summary: "cycle", detail: "local.a → local.a", line: 2, col: 3, count: 1},
		{name: "duplicate local", src: "locals {\n  a = 1\n}\nlocals {\n  a = 2\n}\n" + okRecipe,
			summary: `duplicate local value "a"`, line: 5, col: 3, count: 1},
		{name: "reference to an undeclared local", src: "locals {\n  a = 1\n}\n" + strings.Replace(okRecipe, `"1.0.0"`, "local.b", 1),
			summary: "Unsupported attribute", line: 5, col: 18, count: 1},
		{name: "reference to an undeclared variable", src: strings.Replace(okRecipe, `"1.0.0"`, "var.version", 1),
			summary: "Unsupported attribute", line: 2, col: 16, count: 1},
		{name: "unknown function", src: strings.Replace(okRecipe, `"1.0.0"`, "uuidv4()", 1),
			summary: "Call to unknown function", line: 2, col: 13, count: 1},
		{name: "file() of a missing file", src: "recipe \"r\" {\n  version     = \"1.0.0\"\n  stages      = [\"dev\"]\n  description = file(\"nope.txt\")\n}\n",
			summary: "Error in function call", detail: `no such file "nope.txt"; paths are relative to`, line: 4, col: 17, count: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{"app/hello": "#!/bin/sh\necho hello\n", "r.bake.hcl": c.src}
			for k, v := range c.files {
				files[k] = v
			}
			dir := writeTree(t, files)
			var opts Options
			if c.opts != nil {
				opts = c.opts(dir)
			}
			r, diags := NewLoader().Load(filepath.Join(dir, "r.bake.hcl"), opts)
			if !diags.HasErrors() {
				t.Fatalf("no error; want %q", c.summary)
			}
			if r != nil {
				t.Errorf("Load returned a recipe along with errors")
			}
			if c.count != 0 && len(diags) != c.count {
				t.Errorf("got %d diagnostics, want %d:\n%s", len(diags), c.count, diagText(diags))
			}
			for _, d := range diags {
				if !strings.Contains(d.Summary, c.summary) || !strings.Contains(d.Detail, c.detail) {
					continue
				}
				if d.Detail == "" {
					t.Errorf("diagnostic %q has no detail saying what to do", d.Summary)
				}
				if c.line == 0 {
					return // no position to check
				}
				if d.Subject == nil {
					t.Fatalf("diagnostic %q has no subject", d.Summary)
				}
				file := c.file
				if file == "" {
					file = "r.bake.hcl"
				}
				if got := filepath.Base(d.Subject.Filename); got != file && d.Subject.Filename != file {
					t.Errorf("subject file = %s, want %s", d.Subject.Filename, file)
				}
				if d.Subject.Start.Line != c.line || d.Subject.Start.Column != c.col {
					t.Errorf("subject starts at %d:%d, want %d:%d (%s)", d.Subject.Start.Line, d.Subject.Start.Column, c.line, c.col, d.Summary)
				}
				return
			}
			t.Fatalf("no diagnostic with summary containing %q and detail containing %q in:\n%s", c.summary, c.detail, diagText(diags))
		})
	}
}

// TestLoadCollectsIndependentErrors checks that one pass reports every
// independent problem rather than stopping at the first.
func TestLoadCollectsIndependentErrors(t *testing.T) {
	src := `recipe "r" {
  version = "1.0.0"
  stages  = []
}
container "c" {
  base          = "Not A Ref!"
  exposed_ports = ["http"]
  layer {
    source      = "missing/"
    destination = "relative"
  }
}
container "d" {
  base = "scratch"
  layer {
    source      = "app"
    destination = "/"
    mode        = "rwx"
  }
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src, "app/hello": "x"})
	_, diags := NewLoader().Load(filepath.Join(dir, "r.bake.hcl"), Options{})
	want := []string{
		"3,13: empty stages",
		"6,19: invalid base image reference",
		`7,20: invalid exposed port "http"`,
		`9,19: no such file or directory "missing/"`,
		"10,19: destination must be an absolute path",
		`16,19: directory source "app" must end with "/"`,
		"18,19: invalid mode",
	}
	got := make(map[string]bool)
	for _, d := range diags {
		got[strings.TrimPrefix(posString(*d.Subject), filepath.Join(dir, "r.bake.hcl")+":")+": "+d.Summary] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing %q", w)
		}
	}
	if len(diags) != len(want) {
		t.Errorf("got %d diagnostics, want %d:\n%s", len(diags), len(want), diagText(diags))
	}
}
