package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/internal/mototest"
)

// lenientWebRecipe needs a version and a team (a label) to be baked, and
// its app/ folder.
const lenientWebRecipe = `variable "version" {
  type = string
}
variable "team" {
  type = string
}
recipe "web" {
  version = var.version
  stages  = ["dev", "staging"]
}
container "web" {
  base   = "scratch"
  labels = { team = var.team }
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`

// freshCheckout writes only the recipe files (no app/ folder, no var
// file) into a new folder's recipes/ and makes it the working directory.
func freshCheckout(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFiles(t, dir, map[string]string{filepath.Join("recipes", name): content})
	}
	t.Chdir(dir)
	return dir
}

func TestLifecycleVerbsWorkFromAFreshCheckout(t *testing.T) {
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home, "BAKERY_ACTOR=ann"}
	// The bake runs where the sources and the variables are.
	baked := t.TempDir()
	writeFiles(t, baked, map[string]string{"web.bake.hcl": lenientWebRecipe, "app/index.html": "hi\n"})
	bakeJSON(t, env, "-var", "version=1.0.0", "-var", "team=web", filepath.Join(baked, "web.bake.hcl"))

	// A laptop with a fresh checkout: no app/, no variables.
	freshCheckout(t, map[string]string{"web.bake.hcl": lenientWebRecipe})
	if r := run(t, env, "bake", "recipes/web.bake.hcl"); r.code == 0 || !strings.Contains(r.stderr, `no value for required variable "version"`) {
		t.Fatalf("bake without the variables: exit %d\n%s", r.code, r.stderr)
	}
	mustRun(t, env, "promote", "web@1.0.0", "--to", "dev")
	mustRun(t, env, "promote", "web@1.0.0", "--to", "staging")
	mustRun(t, env, "revoke", "web@1.0.0", "--reason", "CVE-2026-1")

	r := mustRun(t, env, "--output", "json", "status")
	var st struct {
		Versions []struct {
			Version string         `json:"version"`
			Revoked bool           `json:"revoked"`
			Stages  map[string]any `json:"stages"`
		} `json:"versions"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status %q: %v", r.stdout, err)
	}
	if len(st.Versions) != 1 || st.Versions[0].Version != "1.0.0" || !st.Versions[0].Revoked || len(st.Versions[0].Stages) != 0 {
		t.Errorf("status after revoke: %s", r.stdout)
	}
	mustRun(t, env, "unrevoke", "web@1.0.0", "--reason", "false alarm")

	r = mustRun(t, env, "--output", "json", "history", "web")
	var h historyDoc
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil {
		t.Fatalf("history %q: %v", r.stdout, err)
	}
	var actions []string
	for _, ev := range h.Events {
		actions = append(actions, string(ev.Action))
	}
	for _, want := range []string{"promote", "revoke", "unrevoke"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("history has no %s: %v", want, actions)
		}
	}
	if r := run(t, env, "outdated"); r.code != 0 || !strings.Contains(r.stdout, "up to date") {
		t.Errorf("outdated: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "outdated", "recipes/web.bake.hcl"); r.code != 0 {
		t.Errorf("outdated FILE: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestLifecycleVerbsSayWhichVariableFindsTheImages(t *testing.T) {
	src := strings.Replace(lenientWebRecipe, `  base   = "scratch"`, "  base       = \"scratch\"\n  repository = \"${var.registry}/web\"", 1) +
		"variable \"registry\" {\n  type = string\n}\n"
	freshCheckout(t, map[string]string{"web.bake.hcl": src})
	env := []string{"BAKERY_HOME=" + t.TempDir()}
	want := `recipes/web.bake.hcl:13:16: Error: variable "registry" is needed to find where web's images live (repository at recipes/web.bake.hcl:13:16)`
	for _, args := range [][]string{
		{"status"}, {"status", "web"}, {"history", "web"}, {"promote", "web@1.0.0", "--to", "dev"},
		{"revoke", "web@1.0.0", "--reason", "x"}, {"unrevoke", "web@1.0.0", "--reason", "x"}, {"outdated"},
	} {
		r := run(t, env, args...)
		if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "Set it with -var registry=... or BAKERY_VAR_registry=...") {
			t.Errorf("%v: exit %d, want 1 and %q in:\n%s", args, r.code, want, r.stderr)
		}
		if strings.Contains(r.stderr, `"version"`) || strings.Contains(r.stderr, `"team"`) {
			t.Errorf("%v: complains about a variable it does not need:\n%s", args, r.stderr)
		}
	}
	// Given the variable, the reading verbs work.
	r := run(t, append(env, "BAKERY_VAR_registry=127.0.0.1:1"), "history", "web")
	if strings.Contains(r.stderr, "is needed") {
		t.Errorf("with BAKERY_VAR_registry: %s", r.stderr)
	}
}

func TestVarsApplyToTheRecipesThatDeclareThem(t *testing.T) {
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	api := strings.NewReplacer(`"web"`, `"api"`, `variable "team"`, `variable "owner"`, "var.team", "var.owner").Replace(lenientWebRecipe)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"web.bake.hcl":   lenientWebRecipe,
		"api.bake.hcl":   api,
		"app/index.html": "hi\n",
		"vars.hcl":       "team = \"web\"\nowner = \"api\"\n",
	})
	// team is declared by web only and owner by api only: both bake.
	r := mustRun(t, env, "-q", "bake", "-var", "version=1.0.0", "-var-file", filepath.Join(dir, "vars.hcl"), dir)
	if strings.Contains(r.stderr, "undeclared") {
		t.Errorf("bake of the folder: %s", r.stderr)
	}
	// A name no recipe declares is still an error.
	r = run(t, env, "-q", "bake", "-var", "version=1.0.0", "-var", "tema=web", "-var-file", filepath.Join(dir, "vars.hcl"), dir)
	if r.code != 1 || !strings.Contains(r.stderr, `undeclared variable "tema"`) || !strings.Contains(r.stderr, `none of the recipes (api, web) declares (did you mean "team"?)`) {
		t.Errorf("a -var no recipe declares: exit %d\n%s", r.code, r.stderr)
	}
}

func TestStatusShowsTheRecipesThatLoad(t *testing.T) {
	home := t.TempDir()
	env := []string{"BAKERY_HOME=" + home}
	freshCheckout(t, map[string]string{
		"web.bake.hcl":    lenientWebRecipe,
		"broken.bake.hcl": "recipe \"broken\" {\n  version = \"1\"\n  stages = [\"dev\"]\n  colour = 1\n}\n",
	})
	writeFiles(t, ".", map[string]string{"recipes/app/index.html": "hi\n"})
	bakeJSON(t, env, "-var", "version=1.0.0", "-var", "team=web", "recipes/web.bake.hcl")

	r := run(t, env, "status")
	if r.code != 1 {
		t.Errorf("status with a broken recipe: exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stdout, "web  (dev → staging)") || !strings.Contains(r.stdout, "1.0.0") {
		t.Errorf("status does not show web:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, `recipes/broken.bake.hcl:4:3: Error: Unsupported argument`) || !strings.Contains(r.stderr, "could not read 1 of 2 recipes (broken)") {
		t.Errorf("status does not report the broken recipe:\n%s", r.stderr)
	}

	r = run(t, env, "status", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, `unknown recipe "nope"; ./recipes has: broken (has errors), web`) {
		t.Errorf("unknown recipe: exit %d\n%s", r.code, r.stderr)
	}
	// The broken one, asked for, is reported.
	if r := run(t, env, "status", "broken"); r.code != 1 || !strings.Contains(r.stderr, "Unsupported argument") {
		t.Errorf("status broken: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat("recipes/web.bake.hcl"); err != nil {
		t.Fatal(err)
	}
}

// lenientAMIRecipe needs its user data file and a team (a tag) to be
// baked; neither says where its AMIs live.
const lenientAMIRecipe = `variable "team" {
  type = string
}
recipe "base" {
  version = "1.0.0"
  stages  = ["dev", "prod"]
}
machine_image "base" {
  region         = "us-east-1"
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
  user_data_file = "boot.sh"
  tags           = { team = var.team }
}
`

func TestEmergencyAMIRevokeFromAFreshCheckout(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	baked := t.TempDir()
	writeFiles(t, baked, map[string]string{"base.bake.hcl": lenientAMIRecipe, "boot.sh": "#!/bin/sh\necho boot\n"})
	bakeJSON(t, env, "-var", "team=platform", filepath.Join(baked, "base.bake.hcl"))

	freshCheckout(t, map[string]string{"base.bake.hcl": lenientAMIRecipe})
	mustRun(t, env, "promote", "base@1.0.0", "--to", "dev")
	mustRun(t, env, "revoke", "base@1.0.0", "--reason", "CVE-2026-2")
	all := readAMIs(t, moto)
	requireNoStage(t, all, "1.0.0")
	st := statusOf(t, env, "recipes/base.bake.hcl")
	if len(st.Versions) != 1 || !st.Versions[0].Revoked || st.Versions[0].RevokeReason != "CVE-2026-2" {
		t.Errorf("status after the revoke: %+v", st)
	}
}
