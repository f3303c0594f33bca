package iamproof_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/lifecycletest"
	"github.com/bakery-sh/bakery/internal/mototest"
	"github.com/bakery-sh/bakery/internal/sshtest"
)

const (
	account = mototest.DefaultAccountID
	bucket  = "bakery-ledger"
)

// proof is the project, the users and the moto_server of the test.
type proof struct {
	t       *testing.T
	ctx     context.Context
	bin     string
	dir     string
	moto    *mototest.Server
	iam     *iam.Client
	keys    map[string][2]string // user → access key id, secret
	base    []string             // environment without credentials
	version int                  // the last version number baked
}

func newProof(t *testing.T) *proof {
	p := &proof{t: t, ctx: context.Background(), dir: t.TempDir(), keys: map[string][2]string{}}
	p.bin = filepath.Join(t.TempDir(), "bakery")
	if out, err := exec.Command("go", "build", "-o", p.bin, "github.com/bakery-sh/bakery/cmd/bakery").CombinedOutput(); err != nil {
		t.Fatalf("building bakery: %v\n%s", err, out)
	}
	// Its own server: IAM enforcement is the whole server's.
	p.moto = mototest.Start(t)
	sshd := sshtest.Start(t)
	cfg := p.moto.Config(t, "us-east-1")
	p.iam = iam.NewFromConfig(cfg)

	vpcs, err := ec2.NewFromConfig(cfg).DescribeVpcs(p.ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) == 0 {
		t.Fatalf("moto has no VPC: %v", err)
	}
	tg, err := elb.NewFromConfig(cfg).CreateTargetGroup(p.ctx, &elb.CreateTargetGroupInput{Name: aws.String("web"), Protocol: elbtypes.ProtocolEnumHttp,
		Port: aws.Int32(80), VpcId: vpcs.Vpcs[0].VpcId, TargetType: elbtypes.TargetTypeEnumInstance})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).CreateBucket(p.ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}

	lifecycletest.WriteProject(t, p.dir, sshd, t.TempDir(), aws.ToString(tg.TargetGroups[0].TargetGroupArn), account)
	p.base = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"BAKERY_HOME=" + t.TempDir(),
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none"),
		"BAKERY_AWS_ENDPOINT=" + p.moto.URL,
		"BAKERY_POLL_INTERVAL=50ms",
		"BAKERY_LEDGER=s3://" + bucket + "/team",
		"NO_COLOR=1",
		awsx.StrictEnv + "=1",
	}
	// The users, while moto does not check yet: an administrator for
	// setting the scene, and one per verb holding only its policy.
	p.user("admin", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)
	for _, v := range awsx.Verbs {
		p.user(string(v), p.motoPolicy(v, ""))
	}
	// From here on moto checks every call against the caller's policies.
	resp, err := http.Post(p.moto.URL+"/moto-api/reset-auth", "text/plain", strings.NewReader("0"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("turning on moto's IAM checks: %v %v", err, resp)
	}
	resp.Body.Close()
	return p
}

// user creates an IAM user with an access key and an inline policy.
func (p *proof) user(name, policy string) {
	p.t.Helper()
	if _, err := p.iam.CreateUser(p.ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		p.t.Fatal(err)
	}
	key, err := p.iam.CreateAccessKey(p.ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		p.t.Fatal(err)
	}
	p.keys[name] = [2]string{aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey)}
	p.setPolicy(p.iam, name, policy)
}

// setPolicy replaces the user's inline policy.
func (p *proof) setPolicy(c *iam.Client, name, policy string) {
	p.t.Helper()
	if _, err := c.PutUserPolicy(p.ctx, &iam.PutUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String("bakery"), PolicyDocument: aws.String(policy)}); err != nil {
		p.t.Fatal(err)
	}
}

// admin is an IAM client acting as the administrator (once moto checks).
func (p *proof) admin() *iam.Client { return iam.NewFromConfig(p.adminConfig()) }

// generated is the policy bakery iam-policy prints for verb and the
// recipe.
func (p *proof) generated(v awsx.Verb) awsx.PolicyDocument {
	p.t.Helper()
	cmd := exec.Command(p.bin, "iam-policy", string(v), "web", "--account", account)
	cmd.Dir, cmd.Env = p.dir, p.base
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("bakery iam-policy %s: %v", v, err)
	}
	var doc awsx.PolicyDocument
	if err := json.Unmarshal(out, &doc); err != nil {
		p.t.Fatalf("bakery iam-policy %s printed no policy document: %v\n%s", v, err, out)
	}
	return doc
}

// motoPolicy is verb's generated policy as moto can check it, without
// action: moto matches actions, and resources only for S3 (an EC2 or
// Auto Scaling request is the resource "*" to it), and reads a condition
// it cannot evaluate as a denial. So S3 statements keep their ARNs, the
// others name "*", and conditions go; the conditions and ARNs themselves
// are checked by the awsx policy tests.
func (p *proof) motoPolicy(v awsx.Verb, without string) string {
	doc := p.generated(v)
	var out []awsx.Statement
	for _, st := range doc.Statement {
		st.Condition = nil
		if !slices.ContainsFunc(st.Resource, func(r string) bool { return strings.HasPrefix(r, "arn:aws:s3:::") }) {
			st.Resource = []string{"*"}
		}
		st.Action = slices.DeleteFunc(slices.Clone(st.Action), func(a string) bool { return a == without })
		if len(st.Action) > 0 {
			out = append(out, st)
		}
	}
	doc.Statement = out
	b, err := json.Marshal(doc)
	if err != nil {
		p.t.Fatal(err)
	}
	return string(b)
}

// result is one run of bakery.
type result struct {
	code           int
	stdout, stderr string
	actions        []string // the IAM actions its calls needed
}

// as runs bakery as user.
func (p *proof) as(user string, args ...string) result {
	p.t.Helper()
	rec := filepath.Join(p.t.TempDir(), "calls")
	cmd := exec.Command(p.bin, args...)
	k := p.keys[user]
	cmd.Dir = p.dir
	cmd.Env = append(slices.Clone(p.base), "AWS_ACCESS_KEY_ID="+k[0], "AWS_SECRET_ACCESS_KEY="+k[1], awsx.RecordEnv+"="+rec)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		p.t.Fatalf("running bakery %v: %v", args, err)
	}
	r := result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
	if f, err := os.Open(rec); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if _, a, ok := strings.Cut(sc.Text(), " "); ok && !slices.Contains(r.actions, a) {
				r.actions = append(r.actions, a)
			}
		}
		f.Close()
	}
	return r
}

// must runs bakery as user and fails the test unless it exits 0.
func (p *proof) must(user string, args ...string) result {
	p.t.Helper()
	r := p.as(user, args...)
	if r.code != 0 {
		p.t.Fatalf("bakery %s as %s: exit %d\n%s%s", strings.Join(args, " "), user, r.code, r.stdout, r.stderr)
	}
	return r
}

// bake bakes the next version as user and returns it.
func (p *proof) bake(user string) (string, result) {
	p.version++
	v := fmt.Sprintf("1.%d.0", p.version)
	return v, p.as(user, "-q", "bake", "-var", "version="+v, "recipes/web.bake.hcl")
}

// promoteAll promotes version through every stage as user and returns
// the first failure.
func (p *proof) promoteAll(user, version string) result {
	var all result
	for _, stage := range []string{"dev", "staging", "prod"} {
		r := p.as(user, "-q", "promote", "web@"+version, "--to", stage)
		all.actions = append(all.actions, r.actions...)
		if r.code != 0 {
			r.actions = all.actions
			return r
		}
	}
	return all
}

// breakLocks deletes the ledger's stage locks.
func (p *proof) breakLocks() {
	p.t.Helper()
	c := s3.NewFromConfig(p.adminConfig(), func(o *s3.Options) { o.UsePathStyle = true })
	out, err := c.ListObjectsV2(p.ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("team/web/locks/")})
	if err != nil {
		p.t.Fatal(err)
	}
	for _, o := range out.Contents {
		if _, err := c.DeleteObject(p.ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key}); err != nil {
			p.t.Fatal(err)
		}
	}
}

// adminConfig is an AWS config acting as the administrator.
func (p *proof) adminConfig() aws.Config {
	cfg := p.moto.Config(p.t, "us-east-1")
	k := p.keys["admin"]
	cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: k[0], SecretAccessKey: k[1]}, nil
	})
	return cfg
}

// orphans leaves what killed bakes and launches leave, for sweep.
func (p *proof) orphans() {
	p.t.Helper()
	c := ec2.NewFromConfig(p.adminConfig())
	p.version++
	id := fmt.Sprintf("bk-killed-%d", p.version)
	tags := func(rt ec2types.ResourceType, extra ...ec2types.Tag) []ec2types.TagSpecification {
		return []ec2types.TagSpecification{{ResourceType: rt, Tags: append([]ec2types.Tag{
			{Key: aws.String("bakery:bake-id"), Value: aws.String(id)}, {Key: aws.String("bakery:recipe"), Value: aws.String("web")},
			{Key: aws.String("bakery:created"), Value: aws.String("2020-01-01T00:00:00Z")}}, extra...)}}
	}
	imgs, err := c.DescribeImages(p.ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(imgs.Images) == 0 {
		p.t.Fatalf("moto has no AMIs: %v", err)
	}
	src := imgs.Images[0].ImageId
	inst, err := c.RunInstances(p.ctx, &ec2.RunInstancesInput{ImageId: src, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: tags(ec2types.ResourceTypeInstance)})
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := c.CreateImage(p.ctx, &ec2.CreateImageInput{InstanceId: inst.Instances[0].InstanceId, Name: aws.String("web-" + id),
		TagSpecifications: tags(ec2types.ResourceTypeImage)}); err != nil {
		p.t.Fatal(err)
	}
	if _, err := c.CreateSecurityGroup(p.ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("bakery-" + id), Description: aws.String("x"),
		TagSpecifications: tags(ec2types.ResourceTypeSecurityGroup)}); err != nil {
		p.t.Fatal(err)
	}
	if _, err := c.CreateKeyPair(p.ctx, &ec2.CreateKeyPairInput{KeyName: aws.String("bakery-" + id), TagSpecifications: tags(ec2types.ResourceTypeKeyPair)}); err != nil {
		p.t.Fatal(err)
	}
	if _, err := c.CreateLaunchTemplate(p.ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("web-prod-v9" + fmt.Sprint(p.version)),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: src},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{
			{Key: aws.String("bakery:recipe"), Value: aws.String("web")}, {Key: aws.String("bakery:launch-id"), Value: aws.String("ln-" + id)}}}}}); err != nil {
		p.t.Fatal(err)
	}
}

// unexercised are actions of a verb's policy a run of its scenario may
// not call, and why that is fine.
var unexercised = map[string]string{
	"sts:GetCallerIdentity": "moto, like AWS, answers it whatever the policy says",
}

// TestGeneratedPoliciesAreSufficientAndEachActionIsNeeded runs the whole
// lifecycle with each verb as an IAM user holding only the policy
// bakery iam-policy prints for it, against a moto_server that checks
// IAM; then, verb by verb, removes each action the verb's run called and
// checks that the verb then fails, with bakery's message naming the
// missing action and how to get the policy.
func TestGeneratedPoliciesAreSufficientAndEachActionIsNeeded(t *testing.T) {
	p := newProof(t)

	// Sufficient: the lifecycle, each verb as its own user.
	used := map[awsx.Verb][]string{}
	note := func(v awsx.Verb, r result) {
		for _, a := range r.actions {
			if !slices.Contains(used[v], a) {
				used[v] = append(used[v], a)
			}
		}
	}
	mustDo := func(v awsx.Verb, r result, what string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s as %s, holding only its generated policy: exit %d\n%s%s", what, v, r.code, r.stdout, r.stderr)
		}
		note(v, r)
	}
	old, r := p.bake(string(awsx.VerbBake))
	mustDo(awsx.VerbBake, r, "bake "+old)
	v1, r := p.bake(string(awsx.VerbBake))
	mustDo(awsx.VerbBake, r, "bake "+v1)
	mustDo(awsx.VerbPromote, p.promoteAll(string(awsx.VerbPromote), v1), "promote "+v1)
	mustDo(awsx.VerbLaunch, p.as(string(awsx.VerbLaunch), "-q", "launch", "web", "--stage", "prod"), "launch "+v1)
	v2, r := p.bake(string(awsx.VerbBake))
	mustDo(awsx.VerbBake, r, "bake "+v2)
	mustDo(awsx.VerbPromote, p.promoteAll(string(awsx.VerbPromote), v2), "promote "+v2)
	mustDo(awsx.VerbLaunch, p.as(string(awsx.VerbLaunch), "-q", "launch", "web", "--stage", "prod"), "launch "+v2)
	mustDo(awsx.VerbLaunch, p.as(string(awsx.VerbLaunch), "-q", "rollback", "web", "--stage", "prod"), "rollback")
	for _, args := range [][]string{{"status"}, {"history", "web"}, {"fleets"}, {"outdated"}} {
		mustDo(awsx.VerbStatus, p.as(string(awsx.VerbStatus), args...), strings.Join(args, " "))
	}
	mustDo(awsx.VerbPromote, p.as(string(awsx.VerbPromote), "-q", "revoke", "web@"+v2, "--reason", "iam proof"), "revoke")
	mustDo(awsx.VerbRetire, p.as(string(awsx.VerbRetire), "-q", "retire", "--yes"), "retire")
	p.orphans()
	mustDo(awsx.VerbSweep, p.as(string(awsx.VerbSweep), "-q", "sweep", "--yes", "--older-than", "0s"), "sweep")
	for _, v := range []awsx.Verb{awsx.VerbBake, awsx.VerbPromote, awsx.VerbLaunch, awsx.VerbRetire, awsx.VerbSweep, awsx.VerbStatus} {
		slices.Sort(used[v])
		t.Logf("%s: %d actions in its policy, %d called: %s", v, len(awsx.Actions(v)), len(used[v]), strings.Join(used[v], " "))
	}

	// Needed: each action a verb called, removed in turn, fails the verb
	// clearly. probe runs the verb once more on a fresh subject.
	probes := map[awsx.Verb]func(user string) result{
		awsx.VerbBake: func(user string) result { _, r := p.bake(user); return r },
		awsx.VerbPromote: func(user string) result {
			v, r := p.bake("admin")
			if r.code != 0 {
				p.t.Fatalf("baking %s as admin: %s", v, r.stderr)
			}
			all := p.promoteAll(user, v)
			if all.code != 0 {
				return all
			}
			for _, verb := range []string{"revoke", "unrevoke"} {
				r := p.as(user, "-q", verb, "web@"+v, "--reason", "iam proof")
				all.actions = append(all.actions, r.actions...)
				if r.code != 0 {
					r.actions = all.actions
					return r
				}
			}
			return all
		},
		awsx.VerbLaunch: func(user string) result {
			v, r := p.bake("admin")
			if r.code != 0 {
				p.t.Fatalf("baking %s as admin: %s", v, r.stderr)
			}
			if r := p.promoteAll("admin", v); r.code != 0 {
				p.t.Fatalf("promoting %s as admin: %s", v, r.stderr)
			}
			if r := p.as(user, "-q", "launch", "web", "--stage", "prod"); r.code != 0 {
				return r
			}
			return p.as(user, "-q", "rollback", "web", "--stage", "prod")
		},
		awsx.VerbStatus: func(user string) result {
			var all result
			for _, args := range [][]string{{"status"}, {"history", "web"}, {"fleets"}, {"outdated"}} {
				r := p.as(user, args...)
				all.actions = append(all.actions, r.actions...)
				if r.code != 0 {
					r.actions = all.actions
					return r
				}
			}
			return all
		},
		awsx.VerbRetire: func(user string) result {
			for range 2 {
				if v, r := p.bake("admin"); r.code != 0 {
					p.t.Fatalf("baking %s as admin: %s", v, r.stderr)
				}
			}
			return p.as(user, "-q", "retire", "--yes")
		},
		awsx.VerbSweep: func(user string) result {
			p.orphans()
			return p.as(user, "-q", "sweep", "--yes", "--older-than", "0s")
		},
	}
	admin := p.admin()
	for _, v := range []awsx.Verb{awsx.VerbBake, awsx.VerbPromote, awsx.VerbLaunch, awsx.VerbRetire, awsx.VerbSweep, awsx.VerbStatus} {
		if only := os.Getenv("IAMPROOF_VERBS"); only != "" && !slices.Contains(strings.Split(only, ","), string(v)) {
			continue // a developer narrowing a run; CI runs every verb
		}
		for _, action := range used[v] {
			if _, ok := unexercised[action]; ok {
				continue
			}
			t.Run(string(v)+"/without "+action, func(t *testing.T) {
				parent := p.t
				p.t = t // the helpers fail this subtest, not its parent
				defer func() { p.t = parent }()
				p.setPolicy(admin, string(v), p.motoPolicy(v, action))
				defer p.setPolicy(admin, string(v), p.motoPolicy(v, ""))
				// A run that could not release its stage lock (say, without
				// s3:GetObject) leaves it to its lease's end: break it, as
				// --break-lock would, so the next probe is not refused for it.
				defer p.breakLocks()
				r := probes[v](string(v))
				if strings.Contains(r.stderr, "StatusCode: 500") {
					t.Logf("moto answered 500; its log ends:\n%s", p.moto.Log())
				}
				if !slices.Contains(r.actions, action) {
					t.Fatalf("the probe of %s never called %s, so it proves nothing about it:\n%s", v, action, r.stderr)
				}
				// A failure, or (where the verb's job is done and only its
				// history could not be written) a warning, that names the
				// action and the policy.
				msg := "AWS denied " + action
				failed := r.code != 0 || strings.Contains(r.stderr, "warning")
				if !failed || !strings.Contains(r.stderr, msg) || !strings.Contains(r.stderr, "bakery iam-policy "+string(v)) {
					t.Errorf("without %s, bakery %s: exit %d; want a failure saying %q and naming bakery iam-policy %s\n%s", action, v, r.code, msg, v, r.stderr)
				}
			})
		}
	}
}
