package recipes

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// sensitiveRecipe declares a sensitive token that must start with "tk-"
// and uses it in an expression that fails for a token that is not a
// number.
func sensitiveRecipe(def, use string) string {
	return `variable "token" {
  type      = string
  sensitive = true
` + def + `  validation {
    condition     = substr(var.token, 0, 3) == "tk-"
    error_message = "The token starts with tk-."
  }
}
recipe "r" {
  version = ` + use + `
  stages  = ["dev"]
}
container "r" {
  base = "scratch"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`
}

// printed loads the recipe with opts and returns the diagnostics as
// WriteDiagnostics prints them, failing unless there is an error.
func printed(t *testing.T, src string, files map[string]string, opts func(dir string) Options) string {
	t.Helper()
	all := map[string]string{"r.bake.hcl": src, "app/x": "x"}
	for k, v := range files {
		all[k] = v
	}
	dir := writeTree(t, all)
	l := NewLoader()
	_, diags := l.Load(filepath.Join(dir, "r.bake.hcl"), opts(dir))
	if !diags.HasErrors() {
		t.Fatal("no error")
	}
	var buf bytes.Buffer
	if err := l.WriteDiagnostics(&buf, diags, false); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestSensitiveValuesAreNotPrintedFromAnySource(t *testing.T) {
	for _, c := range []struct {
		name  string
		def   string
		files map[string]string
		opts  func(dir string) Options
		want  string // what the diagnostics say in its place
	}{
		{"-var failing validation", "", nil,
			func(string) Options { return Options{Vars: map[string]string{"token": "hunter2-secret"}} },
			"on <-var token> line 1:\n   1: (sensitive value)"},
		{"environment failing validation", "", nil,
			func(string) Options { return Options{Env: []string{"BAKERY_VAR_token=hunter2-secret"}} },
			"on <env BAKERY_VAR_token> line 1:\n   1: (sensitive value)"},
		{"var file failing validation", "", map[string]string{"v.hcl": "token = \"hunter2-secret\"\n"},
			func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "v.hcl")}} },
			`   1: token = "(sensitive value)"`},
		{"default failing validation", "  default   = \"hunter2-secret\"\n", nil,
			func(string) Options { return Options{} },
			`   4:   default   = "(sensitive value)"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := printed(t, sensitiveRecipe(c.def, `"1.0.0"`), c.files, c.opts)
			if strings.Contains(out, "hunter2") {
				t.Errorf("the sensitive value is printed:\n%s", out)
			}
			if !strings.Contains(out, c.want) || !strings.Contains(out, "The token starts with tk-.") {
				t.Errorf("want %q and the validation message in:\n%s", c.want, out)
			}
		})
	}
}

func TestSensitiveValueInAFailingExpressionIsNotPrinted(t *testing.T) {
	// parseint quotes the text it cannot parse in its error.
	out := printed(t, sensitiveRecipe("", `parseint(var.token, 10)`), nil,
		func(string) Options { return Options{Vars: map[string]string{"token": "tk-hunter2"}} })
	if strings.Contains(out, "hunter2") || !strings.Contains(out, "(sensitive value)") {
		t.Errorf("the sensitive value is printed, or not replaced:\n%s", out)
	}
}

func TestValidationMessageDerivedFromASensitiveValueIsNotPrinted(t *testing.T) {
	src := strings.Replace(sensitiveRecipe("", `"1.0.0"`), `"The token starts with tk-."`, `"${upper(var.token)} does not start with tk-."`, 1)
	out := printed(t, src, nil, func(string) Options { return Options{Vars: map[string]string{"token": "hunter2-secret"}} })
	if strings.Contains(strings.ToLower(out), "hunter2") {
		t.Errorf("the sensitive value is printed:\n%s", out)
	}
	if !strings.Contains(out, "derived from a sensitive value, so it is not shown") {
		t.Errorf("no word of the hidden message:\n%s", out)
	}
}

func TestLoaderSensitiveValuesIncludeRejectedOnes(t *testing.T) {
	dir := writeTree(t, map[string]string{"r.bake.hcl": sensitiveRecipe("", `"1.0.0"`), "app/x": "x"})
	l := NewLoader()
	if _, diags := l.Load(filepath.Join(dir, "r.bake.hcl"), Options{Vars: map[string]string{"token": "hunter2-secret"}}); !diags.HasErrors() {
		t.Fatal("no error")
	}
	if got := l.SensitiveValues(); len(got) != 1 || got[0] != "hunter2-secret" {
		t.Errorf("SensitiveValues() = %q", got)
	}
}
