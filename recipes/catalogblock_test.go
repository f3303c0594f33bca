package recipes

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/catalog"
)

// amiRecipe is a recipe with one machine_image whose tags attribute
// (written on line 7, its value at column 10) holds nTags tags, in
// nStages stages, followed by extra.
func amiRecipe(nTags, nStages int, extra string) string {
	stages := make([]string, nStages)
	for i := range stages {
		stages[i] = fmt.Sprintf("%q", fmt.Sprintf("s%d", i+1))
	}
	var tags []string
	for i := range nTags {
		tags = append(tags, fmt.Sprintf("t%d = \"v\"", i))
	}
	return fmt.Sprintf(`recipe "web" {
  version = "1.0.0"
  stages  = [%s]
}
machine_image "web" {
  source_ami = "ami-0123456789abcdef0"
  tags = { %s }
}
%s`, strings.Join(stages, ", "), strings.Join(tags, ", "), extra)
}

// TestTagBudgetBoundary loads recipes whose machine image's tags and
// stages just fit catalog.MaxAMITags with room for catalog.MinAMIEvents
// events, and one tag more, which is refused at the tags attribute.
func TestTagBudgetBoundary(t *testing.T) {
	const stages = 3
	fit := catalog.MaxAMITags - catalog.AMIBaseTags - stages - catalog.AMIRevokedTags - catalog.AMIReservedTags - catalog.MinAMIEvents
	if fit != 28 {
		t.Fatalf("the budget leaves room for %d recipe tags with 3 stages, want 28 (50 - 11 - 3 - 2 - 2 - 4)", fit)
	}
	dir := writeTree(t, map[string]string{
		"fits.bake.hcl": amiRecipe(fit, stages, ""),
		"over.bake.hcl": amiRecipe(fit+1, stages, ""),
	})
	r := mustLoad(t, filepath.Join(dir, "fits.bake.hcl"), Options{})
	if got := len(r.MachineImages[0].Tags); got != fit {
		t.Fatalf("loaded %d tags, want %d", got, fit)
	}

	over := filepath.Join(dir, "over.bake.hcl")
	_, diags := NewLoader().Load(over, Options{})
	wantDiags(t, diags, over, []string{`7:10: machine_image "web" has too many tags for its history`})
	if len(diags) == 1 {
		d := diags[0].Detail
		for _, want := range []string{"29 recipe tags", "3 stages", "room for 3 history events", "fewer than the 4", "remove 1 of its 29 tags"} {
			if !strings.Contains(d, want) {
				t.Errorf("detail lacks %q:\n%s", want, d)
			}
		}
	}
}

// TestTagBudgetStagesAlone refuses a recipe whose stages alone leave too
// little room, pointing at the machine_image block since it has no tags
// attribute, and says to drop stages.
func TestTagBudgetStagesAlone(t *testing.T) {
	stages := catalog.MaxAMITags - catalog.AMIBaseTags - catalog.AMIRevokedTags - catalog.AMIReservedTags - catalog.MinAMIEvents + 1
	src := strings.Replace(amiRecipe(0, stages, ""), "  tags = {  }\n", "", 1)
	dir := writeTree(t, map[string]string{"r.bake.hcl": src})
	p := filepath.Join(dir, "r.bake.hcl")
	_, diags := NewLoader().Load(p, Options{})
	wantDiags(t, diags, p, []string{`5:1: machine_image "web" has too many tags for its history`})
	if len(diags) == 1 && !strings.Contains(diags[0].Detail, fmt.Sprintf("remove 0 of its 0 tags and 1 of the recipe's %d stages", stages)) {
		t.Errorf("detail does not say to drop a stage:\n%s", diags[0].Detail)
	}
}

// TestCatalogBlock reads a catalog block with every argument (the prefix
// trimmed of slashes), one with the bucket alone (the default prefix, no
// region), and a recipe without one (no ledger).
func TestCatalogBlock(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"full.bake.hcl": amiRecipe(1, 2, `catalog {
  bucket = "acme-bakery-ledger"
  prefix = "/teams/web/"
  region = "eu-west-1"
}
`),
		"bare.bake.hcl": amiRecipe(1, 2, `catalog {
  bucket = "acme.ledger"
}
`),
		"root.bake.hcl": amiRecipe(1, 2, `catalog {
  bucket = "acme-ledger"
  prefix = ""
}
`),
		"none.bake.hcl": amiRecipe(1, 2, ""),
	})
	for file, want := range map[string]*Catalog{
		"full.bake.hcl": {Bucket: "acme-bakery-ledger", Prefix: "teams/web", Region: "eu-west-1"},
		"bare.bake.hcl": {Bucket: "acme.ledger", Prefix: DefaultLedgerPrefix},
		"root.bake.hcl": {Bucket: "acme-ledger", Prefix: ""},
		"none.bake.hcl": nil,
	} {
		r := mustLoad(t, filepath.Join(dir, file), Options{})
		got := r.Catalog
		if got != nil {
			c := *got
			c.DeclRange, c.Ranges = hclRangeZero, nil
			got = &c
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Catalog = %+v, want %+v", file, got, want)
		}
	}
}

// TestCatalogBlockErrors reports every mistake in catalog blocks at the
// argument or block it is about.
func TestCatalogBlockErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		block string
		want  []string
	}{
		"no bucket": {`catalog {
  prefix = "x"
}
`, []string{`9:1: missing required argument "bucket"`}},
		"bad bucket": {`catalog {
  bucket = "s3://Acme/ledger"
}
`, []string{`10:12: invalid bucket name "s3://Acme/ledger"`}},
		"bad region and prefix": {`catalog {
  bucket = "acme-ledger"
  prefix = "a//b"
  region = "europe"
}
`, []string{`11:12: invalid prefix "a//b"`, `12:12: invalid region "europe"`}},
		"bucket not a string": {`catalog {
  bucket = ["acme-ledger"]
}
`, []string{`10:12: invalid type for "bucket"`}},
		"two blocks": {`catalog {
  bucket = "acme-ledger"
}
catalog {
  bucket = "other-ledger"
}
`, []string{`12:1: duplicate catalog block`}},
		"unknown argument": {`catalog {
  bucket = "acme-ledger"
  table  = "locks"
}
`, []string{`11:3: Unsupported argument`}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"r.bake.hcl": amiRecipe(1, 2, tc.block)})
			p := filepath.Join(dir, "r.bake.hcl")
			r, diags := NewLoader().Load(p, Options{})
			if r != nil {
				t.Errorf("Load returned a recipe despite the errors")
			}
			wantDiags(t, diags, p, tc.want)
		})
	}
}
