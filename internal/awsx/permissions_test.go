package awsx_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// fakeEC2 answers every request with status and body, counting them.
func fakeEC2(t *testing.T, status int, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// A call the running verb's policy does not list is refused before it is
// sent in strict mode: a test that makes it fails instead of a user.
func TestStrictModeRefusesACallTheVerbsPolicyLacks(t *testing.T) {
	isolate(t)
	srv, sent := fakeEC2(t, 200, `<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><imagesSet/></DescribeImagesResponse>`)
	cfg, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds(),
		env(map[string]string{awsx.EndpointEnv: srv.URL, awsx.StrictEnv: "1"}))
	if err != nil {
		t.Fatal(err)
	}
	c := awsx.NewEC2(cfg, "")
	ctx := awsx.WithVerb(context.Background(), awsx.VerbStatus)
	_, err = c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-1"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	var pe *awsx.PermissionError
	if !errors.As(err, &pe) || !pe.Unlisted || pe.Action != "ec2:RunInstances" || pe.Resource != "image/ami-1" || sent.Load() != 0 {
		t.Fatalf("status calling ec2:RunInstances: err = %v (%+v), %d requests sent; want an unlisted-call error and nothing sent", err, pe, sent.Load())
	}
	if !strings.Contains(err.Error(), "`bakery iam-policy status` does not grant") {
		t.Errorf("message: %v", err)
	}
	// What the policy lists goes through; so does any call without a verb.
	if _, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{}); err != nil {
		t.Errorf("status calling ec2:DescribeImages: %v", err)
	}
	if _, err := c.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String("ami-1"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}); err != nil && errors.As(err, &pe) {
		t.Errorf("a call without a verb was refused: %v", err)
	}
}

// A call AWS denies names the action, what it acted on, the verb and
// where to get the policy; the SDK's error is still there to inspect.
func TestADeniedCallNamesTheActionAndThePolicy(t *testing.T) {
	isolate(t)
	srv, _ := fakeEC2(t, 403, `<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>r</RequestID></Response>`)
	cfg, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds(), env(map[string]string{awsx.EndpointEnv: srv.URL}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := awsx.WithVerb(context.Background(), awsx.VerbPromote)
	_, err = awsx.NewEC2(cfg, "").CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"ami-0abc"}, Tags: []ec2types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
	var pe *awsx.PermissionError
	if !errors.As(err, &pe) || pe.Unlisted || pe.Action != "ec2:CreateTags" || pe.Resource != "image/ami-0abc" || pe.Verb != awsx.VerbPromote {
		t.Fatalf("err = %v (%+v)", err, pe)
	}
	for _, want := range []string{"AWS denied ec2:CreateTags on image/ami-0abc to bakery promote", `add "ec2:CreateTags"`, "bakery iam-policy promote"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	if awsx.ErrorCode(err) != "UnauthorizedOperation" {
		t.Errorf("ErrorCode = %q: the SDK's error is lost", awsx.ErrorCode(err))
	}
	if !strings.Contains(awsx.ExplainError(err).Error(), "AWS denied ec2:CreateTags") || strings.Contains(awsx.ExplainError(err).Error(), "not allowed to call") {
		t.Errorf("ExplainError explains it twice or not at all: %v", awsx.ExplainError(err))
	}
}

// RecordEnv writes each call's action under its verb.
func TestRecordEnvWritesEveryCallsAction(t *testing.T) {
	isolate(t)
	srv, _ := fakeEC2(t, 200, `<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><regionInfo/></DescribeRegionsResponse>`)
	rec := filepath.Join(t.TempDir(), "calls")
	cfg, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds(), env(map[string]string{awsx.EndpointEnv: srv.URL, awsx.RecordEnv: rec}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := awsx.NewEC2(cfg, "").DescribeRegions(awsx.WithVerb(context.Background(), awsx.VerbSweep), &ec2.DescribeRegionsInput{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rec)
	if err != nil || string(b) != "sweep ec2:DescribeRegions\n" {
		t.Errorf("record = %q, %v", b, err)
	}
}

func TestEveryVerbsPermissionsAreWellFormed(t *testing.T) {
	for _, v := range awsx.Verbs {
		seen := map[string]bool{}
		for _, p := range awsx.Permissions[v] {
			prefix, op, ok := strings.Cut(p.Action, ":")
			if !ok || prefix == "" || op == "" || strings.ToLower(prefix) != prefix || strings.ContainsAny(p.Action, " *") {
				t.Errorf("%s: action %q is not SERVICE:Operation", v, p.Action)
			}
			if seen[p.Action] {
				t.Errorf("%s lists %s twice", v, p.Action)
			}
			seen[p.Action] = true
		}
		if len(seen) == 0 {
			t.Errorf("verb %s has no permissions", v)
		}
	}
}

// The policy narrows what AWS lets it narrow: changes to resources
// carrying the recipe's tag, the recipe's regions, its roles, keys and
// ledger prefix.
func TestPolicyIsNarrowedToTheRecipe(t *testing.T) {
	doc, err := awsx.Policy([]awsx.Verb{awsx.VerbBake, awsx.VerbLaunch}, awsx.PolicyScope{
		Recipe: "web", Regions: []string{"us-east-1", "eu-west-1", "us-east-1"}, Roles: []string{"builder", "arn:aws:iam::123456789012:role/fleet"},
		KMSKeys:      []string{"arn:aws:kms:us-east-1:123456789012:key/k1", "k2", "alias/copies"},
		LedgerBucket: "ledger", LedgerPrefix: "team/", Account: "123456789012",
	})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]awsx.Statement{}
	for _, st := range doc.Statement {
		if st.Effect != "Allow" || len(st.Action) == 0 || len(st.Resource) == 0 {
			t.Errorf("statement %+v", st)
		}
		by[st.Sid] = st
	}
	regions := map[string][]string{"aws:RequestedRegion": {"eu-west-1", "us-east-1"}}
	own := by["BakeryChangeOwn"]
	if !slices.Contains(own.Action, "ec2:TerminateInstances") || !slices.Contains(own.Action, "autoscaling:DeleteAutoScalingGroup") ||
		!reflect.DeepEqual(own.Condition["StringEquals"], map[string][]string{"aws:RequestedRegion": {"eu-west-1", "us-east-1"}, "aws:ResourceTag/bakery:recipe": {"web"}}) {
		t.Errorf("BakeryChangeOwn = %+v", own)
	}
	if c := by["BakeryCreate"]; !slices.Contains(c.Action, "ec2:RunInstances") || !reflect.DeepEqual(c.Condition["StringEquals"], regions) {
		t.Errorf("BakeryCreate = %+v", c)
	}
	if c := by["BakeryTagOnCreate"]; !reflect.DeepEqual(c.Action, []string{"ec2:CreateTags"}) || !slices.Contains(c.Condition["StringEquals"]["ec2:CreateAction"], "RunInstances") ||
		!slices.Contains(c.Condition["StringEquals"]["ec2:CreateAction"], "CreateLaunchTemplate") {
		t.Errorf("BakeryTagOnCreate = %+v", c)
	}
	if r := by["BakeryPassRole"]; !reflect.DeepEqual(r.Resource, []string{"arn:aws:iam::123456789012:role/builder", "arn:aws:iam::123456789012:role/fleet"}) ||
		!reflect.DeepEqual(r.Condition["StringEquals"]["iam:PassedToService"], []string{"ec2.amazonaws.com"}) {
		t.Errorf("BakeryPassRole = %+v", r)
	}
	if k := by["BakeryKMS"]; !reflect.DeepEqual(k.Resource, []string{"arn:aws:kms:us-east-1:123456789012:key/k1", "arn:aws:kms:*:123456789012:key/k2"}) {
		t.Errorf("BakeryKMS = %+v", k)
	}
	if k := by["BakeryKMSByAlias"]; !reflect.DeepEqual(k.Condition["ForAnyValue:StringEquals"]["kms:ResourceAliases"], []string{"alias/copies"}) {
		t.Errorf("BakeryKMSByAlias = %+v", k)
	}
	if o := by["BakeryLedgerObjects"]; !reflect.DeepEqual(o.Resource, []string{"arn:aws:s3:::ledger/team/*"}) || !slices.Contains(o.Action, "s3:PutObject") {
		t.Errorf("BakeryLedgerObjects = %+v", o)
	}
	if l := by["BakeryLedgerList"]; !reflect.DeepEqual(l.Resource, []string{"arn:aws:s3:::ledger"}) || !reflect.DeepEqual(l.Condition["StringLike"]["s3:prefix"], []string{"team/*"}) {
		t.Errorf("BakeryLedgerList = %+v", l)
	}
	// Every action of the verbs is in some statement.
	var granted []string
	for _, st := range doc.Statement {
		granted = append(granted, st.Action...)
	}
	for _, a := range awsx.Actions(awsx.VerbBake, awsx.VerbLaunch) {
		if !slices.Contains(granted, a) {
			t.Errorf("%s is in no statement", a)
		}
	}
	if _, err := awsx.Policy([]awsx.Verb{"bakee"}, awsx.PolicyScope{}); err == nil || !strings.Contains(err.Error(), "the verbs are bake, promote") {
		t.Errorf("an unknown verb: %v", err)
	}
}

// Credentials work in one partition: the account's regions are those of
// the partition of the region asked, whatever an emulator lists.
func TestEnabledRegionsKeepsThePartitionAsked(t *testing.T) {
	isolate(t)
	srv, _ := fakeEC2(t, 200, `<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><regionInfo>
<item><regionName>us-east-1</regionName></item><item><regionName>cn-north-1</regionName></item>
<item><regionName>us-gov-west-1</regionName></item><item><regionName>eu-west-1</regionName></item></regionInfo></DescribeRegionsResponse>`)
	cfg, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds(), env(map[string]string{awsx.EndpointEnv: srv.URL}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := awsx.EnabledRegions(context.Background(), awsx.NewEC2(cfg, "us-east-1"))
	if err != nil || !slices.Equal(got, []string{"eu-west-1", "us-east-1"}) {
		t.Errorf("EnabledRegions = %v, %v; want the aws partition's", got, err)
	}
}
