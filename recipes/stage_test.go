package recipes

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// TestStages loads stage blocks written before and after the recipe
// block, with every argument, and checks what they evaluate to and the
// lookups of the stages with and without a block.
func TestStages(t *testing.T) {
	src := `variable "soak" {
  default = "2d"
}
stage "staging" {
  accounts           = ["111122223333", "444455556666"]
  regions            = ["eu-west-1"]
  region_kms_key_ids = { "eu-west-1" = "alias/web-eu" }
  repository         = "127.0.0.1:5000/team/web"
  gate {
    min_soak         = var.soak
    require_approval = false
  }
}
recipe "web" {
  version = "1.0.0"
  stages  = ["dev", "qa", "staging", "prod"]
}
stage "dev" {
  gate {
    min_soak         = "0s"
    require_approval = true
  }
}
machine_image "m" {
  source_ami = "ami-0123456789abcdef0"
  kms_key_id = "alias/web"
}
stage "prod" {
  regions            = ["eu-west-1", "us-west-2"]
  region_kms_key_ids = { "eu-west-1" = "alias/web-eu", "us-west-2" = "alias/web-us" }
  gate {
    min_soak           = "1d12h"
    require_approval   = true
    approvers          = ["arn:aws:iam::123456789012:role/release-managers", "arn:aws:sts::*:assumed-role/release/*"]
    approval_valid_for = "2d"
  }
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src})
	p := filepath.Join(dir, "r.bake.hcl")
	r := mustLoad(t, p, Options{})

	want := map[string]Stage{
		"dev": {Name: "dev", Gate: Gate{RequireApproval: true}},
		"staging": {Name: "staging", Accounts: []string{"111122223333", "444455556666"}, Regions: []string{"eu-west-1"},
			RegionKMSKeyIDs: map[string]string{"eu-west-1": "alias/web-eu"},
			Repository:      "127.0.0.1:5000/team/web", Gate: Gate{MinSoak: 48 * time.Hour}},
		"prod": {Name: "prod", Regions: []string{"eu-west-1", "us-west-2"}, Gate: Gate{MinSoak: 36 * time.Hour, RequireApproval: true,
			Approvers:        []string{"arn:aws:iam::123456789012:role/release-managers", "arn:aws:sts::*:assumed-role/release/*"},
			ApprovalValidFor: 48 * time.Hour},
			RegionKMSKeyIDs: map[string]string{"eu-west-1": "alias/web-eu", "us-west-2": "alias/web-us"}},
	}
	if len(r.StageSpecs) != len(want) {
		t.Errorf("StageSpecs has %d stages, want %d: %v", len(r.StageSpecs), len(want), r.StageSpecs)
	}
	for name, w := range want {
		st := r.StageSpecs[name]
		if st == nil {
			t.Errorf("StageSpecs lacks %q", name)
			continue
		}
		if r.Stage(name) != st {
			t.Errorf("Stage(%q) is not StageSpecs[%q]", name, name)
		}
		got := *st
		got.DeclRange, got.Ranges = hclRangeZero, nil
		if !reflect.DeepEqual(got, w) {
			t.Errorf("stage %s =\n%+v\nwant\n%+v", name, got, w)
		}
	}

	// Positions, for errors found later (by AWS or the registry).
	staging := r.StageSpecs["staging"]
	for attr, want := range map[string]string{
		"":                      "4:1",
		"accounts":              "5:24",
		"regions":               "6:24",
		"region_kms_key_ids":    "7:24",
		"repository":            "8:24",
		"gate":                  "9:3",
		"gate.min_soak":         "10:24",
		"gate.require_approval": "11:24",
		"not_written":           "4:1",
	} {
		if got := staging.Pos(attr); got != p+":"+want {
			t.Errorf("Pos(%q) = %s, want %s:%s", attr, got, p, want)
		}
	}

	// Lookups.
	for name, want := range map[string]int{"dev": 0, "qa": 1, "staging": 2, "prod": 3, "test": -1, "": -1, "Prod": -1} {
		if got := r.StageIndex(name); got != want {
			t.Errorf("StageIndex(%q) = %d, want %d", name, got, want)
		}
	}
	qa := r.Stage("qa")
	if qa == nil {
		t.Fatal(`Stage("qa") = nil; want the default spec of a stage without a block`)
	}
	if qa.Name != "qa" || qa.Accounts != nil || qa.Regions != nil || qa.Repository != "" || !reflect.DeepEqual(qa.Gate, Gate{}) {
		t.Errorf(`Stage("qa") = %+v, want only the name set`, *qa)
	}
	if got, want := qa.Pos("regions"), p+":16:21"; got != want {
		t.Errorf(`Stage("qa").Pos = %s, want %s (where "qa" is listed in stages)`, got, want)
	}
	if _, ok := r.StageSpecs["qa"]; ok {
		t.Error(`Stage("qa") added "qa" to StageSpecs`)
	}
	if st := r.Stage("test"); st != nil {
		t.Errorf(`Stage("test") = %+v, want nil: "test" is not a stage`, *st)
	}
}

// TestStageLookupsWithoutBlocks: a recipe without stage blocks has a
// default spec for every stage, and a Recipe built in code (no ranges)
// points its defaults at the recipe block.
func TestStageLookupsWithoutBlocks(t *testing.T) {
	r := mustLoad(t, "hello.bake.hcl", Options{})
	if r.StageSpecs != nil {
		t.Errorf("hello StageSpecs = %v, want nil", r.StageSpecs)
	}
	for i, name := range r.Stages {
		if got := r.StageIndex(name); got != i {
			t.Errorf("StageIndex(%q) = %d, want %d", name, got, i)
		}
		st := r.Stage(name)
		if st == nil || st.Name != name || st.Repository != "" || !reflect.DeepEqual(st.Gate, Gate{}) {
			t.Errorf("Stage(%q) = %+v", name, st)
		}
	}

	built := &Recipe{Name: "x", Stages: []string{"dev"}, DeclRange: hcl.Range{Filename: "x.bake.hcl", Start: hcl.Pos{Line: 3, Column: 1}}}
	if got := built.Stage("dev").Pos("gate"); got != "x.bake.hcl:3:1" {
		t.Errorf("Pos = %s, want x.bake.hcl:3:1", got)
	}
	if built.Stage("prod") != nil || built.StageIndex("prod") != -1 {
		t.Error("a stage that is not listed has a spec")
	}
}

func TestParseDays(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "0s"},
		{in: "0"},
		{in: "0d"},
		{in: "90m", want: 90 * time.Minute},
		{in: "24h", want: 24 * time.Hour},
		{in: "1d", want: 24 * time.Hour},
		{in: "2d", want: 48 * time.Hour},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: ".5d", want: 12 * time.Hour},
		{in: "0.1d", want: 144 * time.Minute},
		{in: "1h1d", want: 25 * time.Hour},
		{in: "-1d", want: -24 * time.Hour},
		{in: "+2d", want: 48 * time.Hour},
		{in: "", bad: true},
		{in: "d", bad: true},
		{in: "1 d", bad: true},
		{in: "1dd", bad: true},
		{in: "1day", bad: true},
		{in: "2w", bad: true},
		{in: "1d-1h", bad: true},
		{in: "200000d", bad: true}, // more than time.Duration holds
	} {
		got, err := parseDays(c.in)
		switch {
		case c.bad && err == nil:
			t.Errorf("parseDays(%q) = %v, want an error", c.in, got)
		case !c.bad && err != nil:
			t.Errorf("parseDays(%q): %v", c.in, err)
		case !c.bad && got != c.want:
			t.Errorf("parseDays(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestStagesAreNotInTheBakeKey: adding stage blocks to the fixtures
// changes neither Canonical nor CanonicalMachineImage (their golden files
// still match): promotion rules are not what is baked.
func TestStagesAreNotInTheBakeKey(t *testing.T) {
	const stages = `
stage "prod" {
  accounts           = ["111122223333"]
  regions            = ["eu-west-1", "us-west-2"]
  region_kms_key_ids = { "eu-west-1" = "alias/web-eu", "us-west-2" = "alias/web-us" }
  repository         = "127.0.0.1:5000/team/web-prod"
  gate {
    min_soak         = "1d"
    require_approval = true
  }
}
stage "dev" {
  repository = "127.0.0.1:5000/team/web-dev"
}
`
	for _, c := range []struct {
		name, dir, file, golden string
		varFiles                []string
		canonical               func(r *Recipe) []byte
	}{
		{name: "container", dir: fullDir, file: "full.bake.hcl", golden: "web.canonical.json", varFiles: []string{"prod.vars.hcl", "port.vars.json"},
			canonical: func(r *Recipe) []byte { return Canonical(r, r.Containers[0]) }},
		{name: "machine image", dir: amiDir, file: "ami.bake.hcl", golden: "web.canonical.json",
			canonical: func(r *Recipe) []byte { return CanonicalMachineImage(r, r.MachineImages[0]) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyTree(t, c.dir, filepath.Join(t.TempDir(), "copy"))
			p := filepath.Join(dir, c.file)
			golden, err := os.ReadFile(filepath.Join(dir, c.golden))
			if err != nil {
				t.Fatal(err)
			}
			var opts Options
			for _, f := range c.varFiles {
				opts.VarFiles = append(opts.VarFiles, filepath.Join(dir, f))
			}
			before := mustLoad(t, p, opts)
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, append(src, stages...), 0o644); err != nil {
				t.Fatal(err)
			}
			after := mustLoad(t, p, opts)
			if len(after.StageSpecs) != 2 || after.StageSpecs["prod"].Gate.MinSoak != 24*time.Hour {
				t.Fatalf("stage blocks not loaded: %v", after.StageSpecs)
			}
			got := c.canonical(after)
			if !bytes.Equal(got, c.canonical(before)) {
				t.Errorf("stage blocks change the canonical bytes:\n%s\nvs\n%s", got, c.canonical(before))
			}
			if !bytes.Equal(got, bytes.TrimSpace(golden)) {
				t.Errorf("canonical bytes differ from %s; got:\n%s", c.golden, got)
			}
			for _, absent := range []string{"web-prod", "web-dev", "min_soak", "require_approval", "us-west-2"} {
				if bytes.Contains(got, []byte(absent)) {
					t.Errorf("canonical bytes hold %q: %s", absent, got)
				}
			}
			if got := string(Canonical(after, nil)); strings.Contains(got, "stage_specs") {
				t.Errorf("Canonical(r, nil) = %s", got)
			}
		})
	}
}

// TestExampleStages checks the stage blocks of the example recipes.
func TestExampleStages(t *testing.T) {
	web := mustLoad(t, "web-ami.bake.hcl", Options{})
	if st := web.Stage("dev"); st == nil || !reflect.DeepEqual(st.Gate, Gate{}) || st.Regions != nil {
		t.Errorf("web dev = %+v, want the default spec", st)
	}
	if st := web.Stage("staging"); st == nil || !reflect.DeepEqual(st.Gate, Gate{MinSoak: time.Hour}) {
		t.Errorf("web staging = %+v", st)
	}
	if st := web.Stage("prod"); st == nil || !reflect.DeepEqual(st.Gate, Gate{RequireApproval: true}) ||
		!reflect.DeepEqual(st.Regions, []string{"eu-west-1", "us-west-2"}) || st.Accounts != nil {
		t.Errorf("web prod = %+v", st)
	}

	base := mustLoad(t, "base-ami.bake.hcl", Options{})
	if len(base.StageSpecs) != 1 {
		t.Errorf("base StageSpecs = %v, want prod only", base.StageSpecs)
	}
	if st := base.Stage("prod"); st == nil || !reflect.DeepEqual(st.Gate, Gate{RequireApproval: true}) ||
		!reflect.DeepEqual(st.Accounts, []string{"111122223333", "444455556666"}) {
		t.Errorf("base prod = %+v", st)
	}

	hello := mustLoad(t, "hello.bake.hcl", Options{})
	for _, name := range hello.Stages {
		if st := hello.Stage(name); st.Repository != "" {
			t.Errorf("hello %s has repository %q; hello bakes into the local OCI layout", name, st.Repository)
		}
	}
}

// TestStageCollectsIndependentErrors: one pass reports every independent
// problem of the stage blocks, those of a block with an unknown or
// duplicate label included, and nothing twice.
func TestStageCollectsIndependentErrors(t *testing.T) {
	src := `stage "dev" {
  gate {
    min_soak = "1h"
  }
}
recipe "r" {
  version = "1.0.0"
  stages  = ["dev", "prod"]
}
machine_image "m" {
  source_ami = "ami-0123456789abcdef0"
}
stage "prd" {
  regions = ["us-east"]
}
stage "prod" {
  accounts   = ["1234"]
  repository = "Bad Repo"
  gate {
    min_soak = "soon"
  }
}
stage "prod" {
  regions = ["eu-west-1", "eu-west-1"]
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src})
	_, diags := NewLoader().Load(filepath.Join(dir, "r.bake.hcl"), Options{})
	want := []string{
		`3:16: min_soak on the first stage "dev"`,
		`13:7: unknown stage "prd"`,
		`14:14: invalid region "us-east"`,
		`17:17: invalid account id "1234"`,
		`17:16: sharing an encrypted AMI needs a customer-managed KMS key`,
		`18:16: invalid repository "Bad Repo"`,
		`20:16: invalid duration "soon"`,
		`23:1: duplicate stage block "prod"`,
		`24:27: duplicate region "eu-west-1"`,
	}
	wantDiags(t, diags, filepath.Join(dir, "r.bake.hcl"), want)
}
