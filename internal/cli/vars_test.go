package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// varsRecipe declares a string and a list variable whose validation
// rules accept only the values TestVarValuesKeepTheirCommas passes, so a
// value split at its commas fails every verb that loads the recipe.
const varsRecipe = `variable "d" {
  type = string
  validation {
    condition     = var.d == " hello, world"
    error_message = "d must be \" hello, world\"."
  }
}
variable "regions" {
  type = list(string)
  validation {
    condition     = length(var.regions) == 2 && var.regions[1] == "ap-southeast-2"
    error_message = "regions must be two regions."
  }
}
variable "tags" {
  type = map(string)
  validation {
    condition     = lookup(var.tags, "team", "") == "web, ops"
    error_message = "tags.team must be \"web, ops\"."
  }
}
recipe "hello" {
  version = "1.0.0"
  stages  = ["dev"]
}
container "hello" {
  base = "scratch"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`

// TestVarValuesKeepTheirCommas: each -var is one name=value, taken as
// written, in every verb that loads recipes; list and map values are HCL.
func TestVarValuesKeepTheirCommas(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"hello.bake.hcl": varsRecipe,
		"app/hello":      "#!/bin/sh\necho hello\n",
		// A var file whose name holds a comma.
		"a,b.vars.hcl": "d = \"from the file\"\n",
	})
	recipe := filepath.Join(dir, "hello.bake.hcl")
	env := []string{"BAKERY_HOME=" + filepath.Join(t.TempDir(), "home")}
	vars := []string{
		"-var-file", filepath.Join(dir, "a,b.vars.hcl"),
		"-var", "d= hello, world",
		"-var", `regions=["eu-west-1","ap-southeast-2"]`,
		"-var", `tags={ team = "web, ops" }`,
	}
	for _, tc := range []struct {
		verb []string
		args []string
		code int
	}{
		{[]string{"validate"}, []string{recipe}, 0},
		{[]string{"bake"}, []string{recipe}, 0},
		{[]string{"status"}, []string{"-f", recipe}, 0},
		{[]string{"history"}, []string{"-f", recipe, "hello"}, 0},
		{[]string{"outdated"}, []string{recipe}, 0},
		{[]string{"promote"}, []string{"-f", recipe, "--to", "dev", "hello@1.0.0"}, 0},
		{[]string{"revoke"}, []string{"-f", recipe, "--reason", "a, b", "hello@1.0.0"}, 0},
		{[]string{"unrevoke"}, []string{"-f", recipe, "--reason", "c, d", "hello@1.0.0"}, 0},
	} {
		args := append(append(append([]string{}, tc.verb...), vars...), tc.args...)
		r := run(t, env, args...)
		if r.code != tc.code {
			t.Errorf("bakery %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, tc.code, r.stdout, r.stderr)
		}
	}
}

// TestBadHCLVarValueNamesTheVariable: a list value that is not HCL is a
// recipe error naming the variable and how to write the value.
func TestBadHCLVarValueNamesTheVariable(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"hello.bake.hcl": varsRecipe, "app/hello": "x"})
	r := run(t, nil, "validate", "-var", "d= hello, world", "-var", "regions=[eu-west-1, ap-southeast-2]",
		"-var", `tags={ team = "web, ops" }`, filepath.Join(dir, "hello.bake.hcl"))
	if r.code != exitFailure {
		t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, exitFailure, r.stderr)
	}
	for _, want := range []string{`invalid value for variable "regions"`, `<-var regions>:1:2`, `-var 'regions=["a", "b"]'`} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

// TestSweepRegionListsStillSplit: --region takes repeated flags or a
// comma-separated list, though the app splits no slice flag itself.
func TestSweepRegionListsStillSplit(t *testing.T) {
	if got := splitList([]string{"us-east-1,eu-west-1", " ap-southeast-2 ", ""}); strings.Join(got, " ") != "us-east-1 eu-west-1 ap-southeast-2" {
		t.Errorf("splitList = %q", got)
	}
}
