package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// The README shows each verb's policy as the command prints it; a change
// to the table must show there too.
func TestREADMEPermissionsAreWhatIAMPolicyPrints(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, v := range awsx.Verbs {
		marker := "<!-- iam-policy " + string(v) + " -->\n```json\n"
		i := strings.Index(readme, marker)
		if i < 0 {
			t.Errorf("README has no policy block for %s (%q)", v, marker)
			continue
		}
		block := readme[i+len(marker):]
		block = block[:strings.Index(block, "```")]
		r := mustRun(t, []string{"BAKERY_LEDGER=s3://my-ledger/team"}, "iam-policy", string(v), "--account", "123456789012")
		if r.stdout != block {
			t.Errorf("README's policy of %s differs from bakery iam-policy %s:\nREADME:\n%s\nprinted:\n%s", v, v, block, r.stdout)
		}
	}
}

// With a recipe the policy names its tag, its regions, keys and roles.
func TestIAMPolicyOfARecipe(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.bake.hcl": promoteAMIRecipe + `
fleet "prod" {
  instance_type    = "t3.small"
  min_size         = 1
  max_size         = 1
  desired_capacity = 1
  instance_profile = "web-fleet"
}
`})
	r := mustRun(t, nil, "iam-policy", "bake", "launch", "-f", filepath.Join(dir, "base.bake.hcl"), "--account", "123456789012")
	var doc awsx.PolicyDocument
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("not a policy document: %v\n%s", err, r.stdout)
	}
	want := map[string]awsx.Statement{}
	for _, st := range doc.Statement {
		want[st.Sid] = st
	}
	own := want["BakeryChangeOwn"].Condition["StringEquals"]
	if !reflect.DeepEqual(own["aws:ResourceTag/bakery:recipe"], []string{"base"}) ||
		!reflect.DeepEqual(own["aws:RequestedRegion"], []string{"eu-west-1", "us-east-1", "us-west-2"}) {
		t.Errorf("BakeryChangeOwn condition = %v", own)
	}
	if got := want["BakeryPassRole"].Resource; !reflect.DeepEqual(got, []string{"arn:aws:iam::123456789012:role/web-fleet"}) {
		t.Errorf("PassRole resources = %v", got)
	}
	if got := want["BakeryKMSByAlias"].Condition["ForAnyValue:StringEquals"]["kms:ResourceAliases"]; !reflect.DeepEqual(got, []string{"alias/x", "alias/x-eu", "alias/x-us"}) {
		t.Errorf("KMS aliases = %v", got)
	}
	// A profile whose role has another name: --role names it.
	r = mustRun(t, nil, "iam-policy", "launch", "-f", filepath.Join(dir, "base.bake.hcl"), "--account", "123456789012", "--role", "web-role", "--role", "arn:aws:iam::123456789012:role/ops/builder")
	var withRole awsx.PolicyDocument
	if err := json.Unmarshal([]byte(r.stdout), &withRole); err != nil {
		t.Fatalf("not a policy document: %v\n%s", err, r.stdout)
	}
	i := slices.IndexFunc(withRole.Statement, func(s awsx.Statement) bool { return s.Sid == "BakeryPassRole" })
	if i < 0 || !reflect.DeepEqual(withRole.Statement[i].Resource, []string{"arn:aws:iam::123456789012:role/ops/builder", "arn:aws:iam::123456789012:role/web-role"}) {
		t.Errorf("PassRole with --role: %s", r.stdout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"iam-policy", "status", "--role", "web-role"}, "status pass none"},
		{[]string{"iam-policy", "launch", "--role", "web role"}, `--role "web role" is no IAM role name or ARN`},
		{[]string{"iam-policy", "launch", "--role", "arn:aws:iam::123:role/x"}, "is no IAM role name or ARN"},
	} {
		if r := run(t, nil, tc.args...); r.code != 2 || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want usage error %q", tc.args, r.code, r.stdout, r.stderr, tc.want)
		}
	}
	if slices.ContainsFunc(doc.Statement, func(s awsx.Statement) bool { return strings.HasPrefix(s.Sid, "BakeryLedger") }) {
		t.Errorf("a recipe without a ledger got S3 statements: %s", r.stdout)
	}
	writeFiles(t, dir, map[string]string{"hello.bake.hcl": "recipe \"hello\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\"]\n}\n\ncontainer \"hello\" {\n  base = \"scratch\"\n  layer {\n    source      = \"app/\"\n    destination = \"/app/\"\n  }\n}\n", "app/a": "a"})
	if r := run(t, nil, "iam-policy", "-f", filepath.Join(dir, "hello.bake.hcl")); r.code != 1 || !strings.Contains(r.stderr, "needs no IAM policy") {
		t.Errorf("a recipe that calls no AWS: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, nil, "iam-policy", "bakee"); r.code != 1 || !strings.Contains(r.stderr, `"bakee" is no verb (bake, promote, launch`) {
		t.Errorf("an unknown verb or recipe: exit %d\n%s", r.code, r.stderr)
	}
}
