package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// decodeVerify reads the document of history --verify --output json.
func decodeVerify(t *testing.T, out string) verifyDoc {
	t.Helper()
	var doc verifyDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("decoding history --verify %q: %v", out, err)
	}
	return doc
}

// TestHistoryVerify bakes an AMI and promotes it twice with a ledger:
// history --verify finds the chain of the two promotions intact and
// lists the bake, which is on the AMI's tags alone, as unverifiable.
// Once the first promotion's object is rewritten in the bucket, it
// reports that event (time, action, version, object) and exits 3, in
// text and in JSON. Without a ledger it fails saying how to configure
// one.
func TestHistoryVerify(t *testing.T) {
	moto := mototest.Start(t)
	env := awsEnv(t, moto)
	bucket, _ := ledgerBucket(t, moto)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.bake.hcl": ledgerAMIRecipe("")})
	recipe := filepath.Join(dir, "base.bake.hcl")
	bakeJSON(t, env, recipe)
	withLedger := append(env[:len(env):len(env)], "BAKERY_LEDGER=s3://"+bucket+"/team")
	mustRun(t, withLedger, "promote", "-f", recipe, "base@1.0.0", "--to", "dev")
	mustRun(t, withLedger, "promote", "-f", recipe, "base@1.0.0", "--to", "staging")

	r := mustRun(t, withLedger, "history", "--verify", "-f", recipe, "base")
	for _, want := range []string{"base: s3://" + bucket + "/team: 2 event(s) chained, newest #2 sha256:", ": intact; 1 unverifiable",
		"base: UNVERIFIABLE ", " bake 1.0.0 tags of the AMIs of base@1.0.0 (base): not in the ledger, only on the AMI's tags, which anyone allowed ec2:CreateTags can change"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("history --verify of an intact chain: stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "BROKEN") {
		t.Errorf("an intact chain is reported broken:\n%s", r.stdout)
	}
	doc := decodeVerify(t, mustRun(t, withLedger, "--output", "json", "history", "--verify", "-f", recipe).stdout)
	if doc.Verdict != "intact" || len(doc.Recipes) != 1 || doc.Recipes[0].Chained != 2 || len(doc.Recipes[0].Problems) != 0 ||
		len(doc.Recipes[0].ImagesOnly) != 1 || doc.Recipes[0].ImagesOnly[0].Action != catalog.ActionBake {
		t.Errorf("history --verify --output json (every recipe of the file) = %+v; want intact, 2 chained, the bake on the images only", doc)
	}

	// Every recipe of ./recipes: base's catalog block names the ledger,
	// plain has none: base's verdict, and a failure naming plain.
	project := t.TempDir()
	writeFiles(t, project, map[string]string{
		"recipes/base.bake.hcl":  ledgerAMIRecipe(fmt.Sprintf("catalog {\n  bucket = %q\n  prefix = \"team\"\n}\n", bucket)),
		"recipes/plain.bake.hcl": strings.Replace(ledgerAMIRecipe(""), `recipe "base"`, `recipe "plain"`, 1),
	})
	t.Chdir(project)
	r = run(t, env, "history", "--verify")
	if r.code != exitFailure || !strings.Contains(r.stdout, "base: s3://"+bucket+"/team: 2 event(s) chained") || strings.Contains(r.stdout, "plain") ||
		!strings.Contains(r.stderr, "plain has no ledger") || strings.Contains(r.stderr, "base has") {
		t.Errorf("history --verify of every recipe, one without a ledger: exit %d, want 1 with base's verdict and a failure naming plain\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}

	// Someone with s3:PutObject rewrites the promotion to dev.
	s3c := awsx.NewS3(moto.Config(t, "us-east-1"), "")
	ctx := context.Background()
	key := "team/base/events/00000000001.json"
	out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Body.Close()
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	ev["actor"] = "arn:aws:iam::123456789012:user/mallory"
	edited, _ := json.Marshal(ev)
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(string(edited))}); err != nil {
		t.Fatal(err)
	}
	when, err := time.Parse(time.RFC3339Nano, ev["time"].(string))
	if err != nil {
		t.Fatal(err)
	}

	r = run(t, withLedger, "history", "--verify", "-f", recipe, "base")
	wantLine := fmt.Sprintf("base: BROKEN %s promote 1.0.0 s3://%s/%s: edited: ", when.UTC().Format(time.RFC3339Nano), bucket, key)
	if r.code != 3 || !strings.Contains(r.stdout, wantLine) || !strings.Contains(r.stdout, "BROKEN (1 problem(s))") ||
		!strings.Contains(r.stderr, "the history of base (1 problem(s) in s3://"+bucket+"/team) was changed after it was written") {
		t.Errorf("history --verify after an edit: exit %d, want 3, with %q\nstdout:\n%s\nstderr:\n%s", r.code, wantLine, r.stdout, r.stderr)
	}
	r = run(t, withLedger, "--output", "json", "history", "--verify", "-f", recipe, "base")
	doc = decodeVerify(t, r.stdout)
	if r.code != 3 || doc.Verdict != "broken" || len(doc.Recipes) != 1 || len(doc.Recipes[0].Problems) != 1 {
		t.Fatalf("history --verify --output json after an edit: exit %d, %+v; want 3, broken, one problem", r.code, doc)
	}
	if p := doc.Recipes[0].Problems[0]; p.Key != "s3://"+bucket+"/"+key || p.Kind != "edited" || p.Seq != 1 || p.Event == nil ||
		p.Event.Actor != "arn:aws:iam::123456789012:user/mallory" || p.Event.Stage != "dev" {
		t.Errorf("the problem is %+v, want the edited promotion to dev at %s", p, key)
	}

	// Without a ledger: an error that says how to configure one.
	r = run(t, env, "history", "--verify", "-f", recipe, "base")
	if r.code != exitFailure || !strings.Contains(r.stderr, "base has no ledger") || !strings.Contains(r.stderr, "BAKERY_LEDGER=s3://BUCKET/PREFIX") ||
		!strings.Contains(r.stderr, "catalog { bucket") || r.stdout != "" {
		t.Errorf("history --verify without a ledger: exit %d, want 1 saying how to configure one\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, withLedger, "history", "--verify", "-f", recipe, "base", "other"); r.code != exitUsage {
		t.Errorf("history --verify with two recipes: exit %d, want 2\n%s", r.code, r.stderr)
	}
}
