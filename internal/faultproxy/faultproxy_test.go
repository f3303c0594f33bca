package faultproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/crypto/ssh"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/faultproxy"
	"github.com/bakery-sh/bakery/internal/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Run(m)) }

// al2023 is a default AMI moto ships in us-east-1.
const al2023 = "ami-03c3da4cfa8e8943a"

var start = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// env is one test's moto account, seen directly and through a proxy.
type env struct {
	t       *testing.T
	srv     *mototest.Server
	account string
	proxy   *faultproxy.Proxy
}

func newEnv(t *testing.T, opts ...faultproxy.Option) *env {
	t.Helper()
	srv := mototest.Shared(t)
	return &env{t: t, srv: srv, account: srv.NewAccount(), proxy: faultproxy.Start(t, srv.URL, opts...)}
}

// direct is an EC2 client that talks to moto without the proxy.
func (e *env) direct() *ec2.Client {
	return ec2.NewFromConfig(e.srv.ConfigForAccount(e.t, "us-east-1", e.account))
}

// proxied is an EC2 client through the proxy, trying each call at most
// attempts times (0: the SDK's default retryer).
func (e *env) proxied(attempts int) *ec2.Client {
	cfg := e.proxy.Config(e.srv.ConfigForAccount(e.t, "us-east-1", e.account))
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		if attempts > 0 {
			o.RetryMaxAttempts = attempts
		}
	})
}

func (e *env) runInstance(c *ec2.Client) string {
	e.t.Helper()
	out, err := c.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String(al2023), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		InstanceType: ec2types.InstanceTypeT3Micro,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance,
			Tags: []ec2types.Tag{{Key: aws.String("test"), Value: aws.String("faultproxy")}}}}})
	if err != nil {
		e.t.Fatalf("RunInstances: %v", err)
	}
	return aws.ToString(out.Instances[0].InstanceId)
}

// listed returns the ids of the instances tagged test=faultproxy that c lists.
func listed(t *testing.T, c *ec2.Client) []string {
	t.Helper()
	out, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:test"), Values: []string{"faultproxy"}},
	}})
	if err != nil {
		t.Fatalf("listing instances: %v", err)
	}
	var ids []string
	for _, r := range out.Reservations {
		if len(r.Instances) == 0 {
			t.Errorf("reservation %s listed without instances", aws.ToString(r.ReservationId))
		}
		for _, i := range r.Instances {
			ids = append(ids, aws.ToString(i.InstanceId))
		}
	}
	return ids
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := awsx.ErrorCode(err); got != code {
		t.Errorf("%s: error %v (code %q), want code %s", what, err, got, code)
	}
}

func TestFreshNotFoundHidesNewResourcesUntilTheClockPassesD(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := faultproxy.NewClock(start, 0)
	const d = 30 * time.Second
	e := newEnv(t, faultproxy.WithClock(clock.Now), faultproxy.FreshNotFound(d))
	c, moto := e.proxied(1), e.direct()

	old := e.runInstance(moto) // made behind the proxy's back: not fresh
	id := e.runInstance(c)

	// Named by id: NotFound, and not forwarded.
	_, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	wantCode(t, "DescribeInstances of the new instance", err, "InvalidInstanceID.NotFound")
	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{old, id}})
	wantCode(t, "DescribeInstances of an old and the new instance", err, "InvalidInstanceID.NotFound")
	_, err = c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
	wantCode(t, "CreateTags on the new instance", err, "InvalidInstanceID.NotFound")
	if tags := tagsOf(t, moto, id); tags["k"] != "" {
		t.Errorf("the refused CreateTags reached moto: tags %v", tags)
	}
	// The source AMI RunInstances names in its answer is not fresh.
	if _, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{al2023}}); err != nil {
		t.Errorf("DescribeImages of the source AMI: %v", err)
	}
	// Listed: left out of the answer, while moto has it.
	if got := listed(t, c); !slices.Equal(got, []string{old}) {
		t.Errorf("listed through the proxy = %v, want only %s", got, old)
	}
	if got := listed(t, moto); len(got) != 2 {
		t.Errorf("moto lists %v, want both instances", got)
	}

	// An AMI, a security group and a key pair are fresh the same way.
	img, err := c.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(old), Name: aws.String("fresh")})
	if err != nil {
		t.Fatal(err)
	}
	ami := aws.ToString(img.ImageId)
	_, err = c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ami}})
	wantCode(t, "DescribeImages of the new AMI", err, "InvalidAMIID.NotFound")
	own, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil || len(own.Images) != 0 {
		t.Errorf("own AMIs through the proxy = %v, %v; want none yet", own, err)
	}
	sg, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("fresh"), Description: aws.String("fresh")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId})
	wantCode(t, "DeleteSecurityGroup of the new group", err, "InvalidGroup.NotFound")
	if _, err := c.ImportKeyPair(ctx, &ec2.ImportKeyPairInput{KeyName: aws.String("fresh"), PublicKeyMaterial: publicKey(t)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{KeyNames: []string{"fresh"}})
	wantCode(t, "DescribeKeyPairs of the new key", err, "InvalidKeyPair.NotFound")
	kps, err := c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{})
	if err != nil || len(kps.KeyPairs) != 0 {
		t.Errorf("key pairs through the proxy = %+v, %v; want none yet", kps, err)
	}

	// Not yet at d, then past it: found, listed, usable.
	clock.Advance(d - time.Second)
	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	wantCode(t, "DescribeInstances just before d", err, "InvalidInstanceID.NotFound")
	clock.Advance(time.Second)
	if _, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Errorf("DescribeInstances after d: %v", err)
	}
	if got := listed(t, c); len(got) != 2 {
		t.Errorf("listed after d = %v, want both", got)
	}
	if _, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ami}}); err != nil {
		t.Errorf("DescribeImages after d: %v", err)
	}
	if _, err := c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId}); err != nil {
		t.Errorf("DeleteSecurityGroup after d: %v", err)
	}

	if n := e.proxy.Faults("DescribeInstances", faultproxy.FaultNotFound); n != 3 {
		t.Errorf("NotFound faults of DescribeInstances = %d, want 3\n%s", n, e.proxy.Summary())
	}
	if !e.proxy.RetriedAfter("DescribeInstances", faultproxy.FaultNotFound) {
		t.Errorf("the log shows no DescribeInstances forwarded after a NotFound:\n%s", e.proxy.Summary())
	}
	if n := e.proxy.Faults("", faultproxy.FaultHidden); n < 3 {
		t.Errorf("%d answers had fresh resources cut out, want at least 3\n%s", n, e.proxy.Summary())
	}
}

func tagsOf(t *testing.T, c *ec2.Client, id string) map[string]string {
	t.Helper()
	out, err := c.DescribeTags(context.Background(), &ec2.DescribeTagsInput{Filters: []ec2types.Filter{
		{Name: aws.String("resource-id"), Values: []string{id}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, tg := range out.Tags {
		m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return m
}

// publicKey returns a new ed25519 public key in authorized_keys form.
func publicKey(t *testing.T) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(sshPub)
}

func TestThrottleAnswersRequestLimitExceededWithoutForwarding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.Throttle(1, "RunInstances", "GetParameter"))
	c := e.proxied(1)

	_, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(al2023), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	wantCode(t, "RunInstances", err, "RequestLimitExceeded")
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != 400 {
		t.Errorf("RunInstances error %v, want HTTP 400", err)
	}
	if got := listed(t, e.direct()); len(got) != 0 {
		t.Errorf("a throttled RunInstances reached moto: instances %v", got)
	}
	// Other actions pass.
	if _, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{al2023}}); err != nil {
		t.Errorf("DescribeImages: %v", err)
	}
	// A JSON-protocol service gets its own throttling error.
	s := ssm.NewFromConfig(e.proxy.Config(e.srv.ConfigForAccount(t, "us-east-1", e.account)), func(o *ssm.Options) { o.RetryMaxAttempts = 1 })
	_, err = s.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64")})
	wantCode(t, "GetParameter", err, "ThrottlingException")

	if got := e.proxy.Faults("RunInstances", faultproxy.FaultThrottled); got != 1 {
		t.Errorf("throttled RunInstances = %d, want 1", got)
	}
	if got := e.proxy.Faults("DescribeImages", faultproxy.FaultNone); got != 1 || e.proxy.Count("DescribeImages") != 1 {
		t.Errorf("DescribeImages calls = %d, plain %d; want 1 plain\n%s", e.proxy.Count("DescribeImages"), got, e.proxy.Summary())
	}
}

func TestThrottledCallsSucceedThroughTheSDKRetryer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.WithSeed(7), faultproxy.Throttle(0.5))
	c := e.proxied(0) // the SDK's default retryer: 3 attempts
	const calls = 6
	for i := range calls {
		if _, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{al2023}}); err != nil {
			t.Fatalf("call %d: %v\n%s", i, err, e.proxy.Summary())
		}
	}
	throttled := e.proxy.Faults("DescribeImages", faultproxy.FaultThrottled)
	if throttled == 0 || e.proxy.Count("DescribeImages") != calls+throttled {
		t.Errorf("%d calls, %d throttled; want some throttled and every one retried\n%s", e.proxy.Count("DescribeImages"), throttled, e.proxy.Summary())
	}
	if !e.proxy.RetriedAfter("DescribeImages", faultproxy.FaultThrottled) {
		t.Errorf("no DescribeImages got through after a throttle:\n%s", e.proxy.Summary())
	}
}

func TestUnavailableAnswers503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, faultproxy.Unavailable(1))
	_, err := e.proxied(1).DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{al2023}})
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != 503 {
		t.Errorf("DescribeImages error %v, want HTTP 503", err)
	}
	wantCode(t, "DescribeImages", err, "Unavailable")
	if n := e.proxy.Faults("DescribeImages", faultproxy.FaultUnavailable); n != 1 {
		t.Errorf("unavailable faults = %d, want 1", n)
	}
}

// retrying lets the SDK try a call as often as bakery does
// (awsx.DefaultMaxAttempts), without waiting long in between.
func retrying(o *ec2.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = awsx.DefaultMaxAttempts
		so.Backoff = retry.NewExponentialJitterBackoff(10 * time.Millisecond)
	})
}

func TestStaleReadsReplayTaggedListsUntilTheyAgePastD(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := faultproxy.NewClock(start, 0)
	const d = 10 * time.Second
	e := newEnv(t, faultproxy.WithClock(clock.Now), faultproxy.StaleReads(d))
	c, moto := e.proxied(1), e.direct()
	tag := func(id, v string) {
		t.Helper()
		if _, err := moto.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("stage"), Value: aws.String(v)}}}); err != nil {
			t.Fatal(err)
		}
	}
	image := func() string {
		t.Helper()
		out, err := moto.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: aws.String(e.runInstance(moto)), Name: aws.String("img-" + e.srv.NewAccount())})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.ImageId)
	}
	inStage := func(v string) []string {
		t.Helper()
		out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []ec2types.Filter{
			{Name: aws.String("tag:stage"), Values: []string{v}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, img := range out.Images {
			ids = append(ids, aws.ToString(img.ImageId))
		}
		slices.Sort(ids)
		return ids
	}
	a, b := image(), image()
	tag(a, "prod")
	if got := inStage("prod"); !slices.Equal(got, []string{a}) {
		t.Fatalf("prod = %v, want [%s]", got, a)
	}
	tag(b, "prod")
	clock.Advance(d - time.Second)
	if got := inStage("prod"); !slices.Equal(got, []string{a}) {
		t.Errorf("prod just before d = %v, want the stale [%s]", got, a)
	}
	// Another request is not answered from that one's answer.
	if got := inStage("dev"); len(got) != 0 {
		t.Errorf("dev = %v, want none", got)
	}
	// Untagged lists are never stale.
	own, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil || len(own.Images) != 2 {
		t.Errorf("own AMIs = %v, %v; want both", own, err)
	}
	clock.Advance(time.Second)
	want := []string{a, b}
	slices.Sort(want)
	if got := inStage("prod"); !slices.Equal(got, want) {
		t.Errorf("prod after d = %v, want %v", got, want)
	}
	if n := e.proxy.Faults("DescribeImages", faultproxy.FaultStale); n != 1 {
		t.Errorf("stale answers = %d, want 1\n%s", n, e.proxy.Summary())
	}
}

func TestLoseAnswerLetsTheCallTakeEffect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.LoseAnswer("CreateSecurityGroup", 1))
	c := e.proxied(1)
	_, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("lost"), Description: aws.String("lost")})
	if err == nil {
		t.Fatal("CreateSecurityGroup with a lost answer succeeded")
	}
	out, err2 := e.direct().DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-name"), Values: []string{"lost"}},
	}})
	if err2 != nil || len(out.SecurityGroups) != 1 {
		t.Errorf("moto has groups %+v (%v) after the lost answer (%v), want the group", out, err2, err)
	}
	// Only the first answer is lost.
	if _, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("kept"), Description: aws.String("kept")}); err != nil {
		t.Errorf("second CreateSecurityGroup: %v", err)
	}
	if n := e.proxy.Faults("CreateSecurityGroup", faultproxy.FaultLost); n != 1 {
		t.Errorf("lost answers = %d, want 1", n)
	}
}

func TestUnavailableIsRetriedByTheSDK(t *testing.T) {
	t.Parallel()
	e := newEnv(t, faultproxy.WithSeed(3), faultproxy.Unavailable(0.5, "DescribeImages"))
	cfg := e.proxy.Config(e.srv.ConfigForAccount(t, "us-east-1", e.account))
	c := ec2.NewFromConfig(cfg, retrying)
	for i := range 6 {
		if _, err := c.DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{al2023}}); err != nil {
			t.Fatalf("call %d: %v\n%s", i, err, e.proxy.Summary())
		}
	}
	if !e.proxy.RetriedAfter("DescribeImages", faultproxy.FaultUnavailable) {
		t.Errorf("no DescribeImages retried after a 503:\n%s", e.proxy.Summary())
	}
}

func TestInternalErrorInFailsOneRegionOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.InternalErrorIn("eu-west-1", 1, "DescribeImages"))
	cfg := e.proxy.Config(e.srv.ConfigForAccount(t, "us-east-1", e.account))
	for region, want := range map[string]string{"us-east-1": "", "eu-west-1": "InternalError"} {
		c := ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.Region = region; o.RetryMaxAttempts = 1 })
		_, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
		wantCode(t, "DescribeImages in "+region, err, want)
	}
	if n := e.proxy.Faults("DescribeImages", faultproxy.FaultInternal); n != 1 {
		t.Errorf("internal errors = %d, want 1 (eu-west-1's call)\n%s", n, e.proxy.Summary())
	}
}
