package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	bakeami "github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/sbom/intoto"
	"github.com/bakery-sh/bakery/internal/sbom/sbomtest"
	"github.com/bakery-sh/bakery/internal/sbom/spdx"
)

// docsAMIRecipe bakes an AMI in us-east-1 copied to us-west-2, promoted
// into prod with a copy in eu-west-1.
const docsAMIRecipe = `variable "version" {
  type    = string
  default = "1.0.0"
}

recipe "base" {
  version = var.version
  stages  = ["dev", "prod"]
}

machine_image "base" {
  region         = "us-east-1"
  regions        = ["us-west-2"]
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

stage "prod" {
  regions = ["eu-west-1"]
}
`

// documentsTags returns the documents tag of each of the account's AMIs
// of version in regions.
func documentsTags(t *testing.T, moto *mototest.Server, version string, regions ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, region := range regions {
		for id, img := range ownAMIs(t, moto, region) {
			tags := map[string]string{}
			for _, tg := range img.Tags {
				tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
			}
			if tags[catalog.TagVersion] == version {
				out[region+"/"+id] = tags[catalog.TagDocuments]
			}
		}
	}
	return out
}

func TestAMIBakeWithLedgerStoresSBOMAndProvenance(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	bucket, _ := ledgerBucket(t, moto)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.bake.hcl": docsAMIRecipe})
	recipe := filepath.Join(dir, "base.bake.hcl")

	// Baked without a ledger: nothing to print, and it says why.
	bakeJSON(t, env, "-var", "version=0.9.0", recipe)
	if r := run(t, env, "sbom", "base@0.9.0", "-f", recipe); r.code != 1 || !strings.Contains(r.stderr, "BAKERY_LEDGER") {
		t.Errorf("sbom without a ledger: exit %d, %q", r.code, r.stderr)
	}
	withLedger := append(env[:len(env):len(env)], "BAKERY_LEDGER=s3://"+bucket+"/team")
	if r := run(t, withLedger, "sbom", "base@0.9.0", "-f", recipe); r.code != 1 || !strings.Contains(r.stderr, "name no SBOM") || !strings.Contains(r.stderr, "bake a new version") {
		t.Errorf("sbom of an AMI baked without a ledger: exit %d, %q", r.code, r.stderr)
	}

	res := bakeJSON(t, withLedger, recipe)
	tags := documentsTags(t, moto, "1.0.0", "us-east-1", "us-west-2")
	if len(tags) != 2 {
		t.Fatalf("AMIs of 1.0.0: %v, want one in each region", tags)
	}
	var value string
	for ami, v := range tags {
		if v == "" || (value != "" && v != value) {
			t.Errorf("%s: documents tag %q (others: %q)", ami, v, value)
		}
		value = v
	}
	keys := objects(t, moto, bucket, "team/base/documents/")
	for _, kind := range []string{"sbom", "provenance"} {
		d := bakeami.ParseDocumentsTag(value, kind)
		if want := "team/base/documents/sha256-" + strings.TrimPrefix(d, "sha256:") + ".json"; !strings.Contains(strings.Join(keys, " "), want) {
			t.Errorf("the ledger has no %s (%s): %v", kind, want, keys)
		}
	}

	sbomOut := mustRun(t, withLedger, "sbom", "base@1.0.0", "-f", recipe).stdout
	if msg := sbomtest.SPDX(t, []byte(sbomOut)); msg != "" {
		t.Fatalf("pyspdxtools rejects the AMI's SBOM: %s\n%s", msg, sbomOut)
	}
	var doc spdx.Document
	if err := json.Unmarshal([]byte(sbomOut), &doc); err != nil {
		t.Fatal(err)
	}
	recipeBytes, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	if f := fileOf(doc, "./base.bake.hcl"); f == nil || checksum(f, "SHA256") != hexSHA256(recipeBytes) {
		t.Errorf("the SBOM does not list the recipe with its digest: %+v", doc.Files)
	}
	if !strings.Contains(doc.Comment, "not listed") {
		t.Errorf("the SBOM does not say what it cannot list: %q", doc.Comment)
	}

	provOut := mustRun(t, withLedger, "provenance", "base@1.0.0", "-f", recipe).stdout
	if msg := sbomtest.InToto(t, []byte(provOut)); msg != "" {
		t.Fatalf("the in-toto bindings reject the AMI's provenance: %s", msg)
	}
	var st intoto.Statement
	if err := json.Unmarshal([]byte(provOut), &st); err != nil {
		t.Fatal(err)
	}
	subjects := map[string]bool{}
	for _, s := range st.Subject {
		subjects[s.Digest[bakeami.AMIDigestAlgorithm]] = true
	}
	for ami := range tags {
		if !subjects[ami[strings.IndexByte(ami, '/')+1:]] {
			t.Errorf("the provenance's subjects %v lack %s", st.Subject, ami)
		}
	}
	if st.Predicate.BuildDefinition.InternalParameters["bakeKey"] != res.BakeKey {
		t.Errorf("bake key %v, want %s", st.Predicate.BuildDefinition.InternalParameters["bakeKey"], res.BakeKey)
	}
	mats := map[string]string{}
	for _, d := range st.Predicate.BuildDefinition.ResolvedDependencies {
		mats[d.Name] = d.URI + " " + d.Digest["sha256"] + d.Digest[bakeami.AMIDigestAlgorithm]
	}
	if !strings.HasPrefix(mats["source AMI"], "ec2:us-east-1:ami-") || mats["input"] != "file:base.bake.hcl "+hexSHA256(recipeBytes) {
		t.Errorf("materials %v", mats)
	}

	// A promotion's copy to another region keeps the reference.
	mustRun(t, withLedger, "promote", "base@1.0.0", "--to", "dev", "-f", recipe)
	mustRun(t, withLedger, "promote", "base@1.0.0", "--to", "prod", "-f", recipe)
	copies := documentsTags(t, moto, "1.0.0", "eu-west-1")
	if len(copies) != 1 {
		t.Fatalf("prod's copy in eu-west-1: %v", copies)
	}
	for ami, v := range copies {
		if v != value {
			t.Errorf("the promoted copy %s has documents tag %q, want %q", ami, v, value)
		}
	}
}
