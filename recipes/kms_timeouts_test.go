package recipes

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kmsRecipe is a shared, encrypted machine image copied to eu-west-1 and,
// through stage prod, to us-west-2; extra goes into the machine_image
// block, stageExtra into stage prod. Line 7 holds regions, line 13 the
// stage's regions.
func kmsRecipe(extra, stageExtra string) string {
	return `recipe "web" {
  version = "1.0.0"
  stages  = ["dev", "prod"]
}
machine_image "web" {
  source_ami = "ami-0123456789abcdef0"
  regions    = ["eu-west-1"]
  kms_key_id = "alias/web"
` + extra + `
}
stage "prod" {
  accounts = ["111122223333"]
  regions  = ["us-west-2"]
` + stageExtra + `
}
`
}

// TestSharedCopiesNeedARegionKey: an encrypted AMI shared with other
// accounts needs a customer-managed key in every region it is copied to,
// by the bake or by a stage; each region without one is named, offline.
func TestSharedCopiesNeedARegionKey(t *testing.T) {
	for _, c := range []struct {
		name, extra, stage string
		want               []string
	}{
		{name: "no keys", want: []string{
			`7:16: copy region "eu-west-1" has no KMS key`,
			`13:14: stage "prod" copies to "us-west-2" without a KMS key`,
		}},
		{name: "image keys only", extra: `  region_kms_key_ids = { "eu-west-1" = "alias/web-eu" }`, want: []string{
			`13:14: stage "prod" copies to "us-west-2" without a KMS key`,
		}},
		{name: "every key", extra: `  region_kms_key_ids = { "eu-west-1" = "alias/web-eu" }`, stage: `  region_kms_key_ids = { "us-west-2" = "alias/web-west" }`},
		{name: "not encrypted", extra: `  encrypted = false`},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := kmsRecipe(c.extra, c.stage)
			if c.extra == "  encrypted = false" {
				src = strings.Replace(src, `  kms_key_id = "alias/web"`+"\n", "", 1)
			}
			dir := writeTree(t, map[string]string{"r.bake.hcl": src})
			p := filepath.Join(dir, "r.bake.hcl")
			r, diags := NewLoader().Load(p, Options{})
			wantDiags(t, diags, p, c.want)
			for _, d := range diags {
				if !strings.Contains(d.Detail, "region_kms_key_ids") || !strings.Contains(d.Detail, "aws/ebs key cannot be shared") {
					t.Errorf("detail does not say why and what to do:\n%s", d.Detail)
				}
			}
			if len(c.want) == 0 && c.stage != "" {
				if got := r.Stage("prod").RegionKMSKeyIDs["us-west-2"]; got != "alias/web-west" {
					t.Errorf("stage prod's key for us-west-2 = %q", got)
				}
			}
		})
	}
}

// TestStageKeyForAnUnlistedRegion: a stage's region_kms_key_ids names only
// regions the stage copies to.
func TestStageKeyForAnUnlistedRegion(t *testing.T) {
	dir := writeTree(t, map[string]string{"r.bake.hcl": kmsRecipe(`  region_kms_key_ids = { "eu-west-1" = "alias/web-eu" }`,
		`  region_kms_key_ids = { "us-west-2" = "alias/w", "ap-south-1" = "alias/a" }`)})
	p := filepath.Join(dir, "r.bake.hcl")
	_, diags := NewLoader().Load(p, Options{})
	wantDiags(t, diags, p, []string{`14:51: region "ap-south-1" is not listed in the stage's regions`})
}

// TestTimeoutsBlock reads the waits' bounds and refuses bad ones.
func TestTimeoutsBlock(t *testing.T) {
	base := `recipe "web" {
  version = "1.0.0"
  stages  = ["dev"]
}
machine_image "web" {
  source_ami = "ami-0123456789abcdef0"
`
	dir := writeTree(t, map[string]string{
		"ok.bake.hcl": base + `  timeouts {
    instance = "20m"
    image    = "90m"
    copy     = "4h"
  }
}
`,
		"bad.bake.hcl": base + `  timeouts {
    instance = "soon"
    image    = "0s"
    later    = "1h"
  }
  timeouts {
    copy = "1h"
  }
}
`,
	})
	r := mustLoad(t, filepath.Join(dir, "ok.bake.hcl"), Options{})
	if got, want := r.MachineImages[0].Timeouts, (Timeouts{Instance: 20 * time.Minute, Image: 90 * time.Minute, Copy: 4 * time.Hour}); got != want {
		t.Errorf("Timeouts = %+v, want %+v", got, want)
	}
	bad := filepath.Join(dir, "bad.bake.hcl")
	_, diags := NewLoader().Load(bad, Options{})
	wantDiags(t, diags, bad, []string{
		`8:16: invalid duration "soon"`,
		`9:16: invalid duration "0s"`,
		`10:5: Unsupported argument`,
		`12:3: duplicate timeouts block`,
	})
}
