package faultproxy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/bakery-sh/bakery/internal/faultproxy"
)

func TestInternalErrorAnswers500WithoutForwarding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.InternalError(1, "CreateSecurityGroup", "DescribeAutoScalingGroups"))
	_, err := e.proxied(1).CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("five-hundred"), Description: aws.String("x")})
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != 500 {
		t.Errorf("CreateSecurityGroup error %v, want HTTP 500", err)
	}
	wantCode(t, "CreateSecurityGroup", err, "InternalError")
	out, err := e.direct().DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-name"), Values: []string{"five-hundred"}}}})
	if err != nil || len(out.SecurityGroups) != 0 {
		t.Errorf("a CreateSecurityGroup answered 500 reached moto: %+v (%v)", out.SecurityGroups, err)
	}
	as := autoscaling.NewFromConfig(e.proxy.Config(e.srv.ConfigForAccount(t, "us-east-1", e.account)), func(o *autoscaling.Options) { o.RetryMaxAttempts = 1 })
	_, err = as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
	wantCode(t, "DescribeAutoScalingGroups", err, "InternalFailure")
	if got := e.proxy.FaultCounts()[faultproxy.FaultInternal]; got != 2 {
		t.Errorf("internal errors = %d, want 2\n%s", got, e.proxy.Summary())
	}
}

func TestAutoScalingIsThrottledWithThrottling(t *testing.T) {
	t.Parallel()
	e := newEnv(t, faultproxy.Throttle(1, "DescribeAutoScalingGroups"))
	as := autoscaling.NewFromConfig(e.proxy.Config(e.srv.ConfigForAccount(t, "us-east-1", e.account)), func(o *autoscaling.Options) { o.RetryMaxAttempts = 1 })
	_, err := as.DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{})
	wantCode(t, "DescribeAutoScalingGroups", err, "Throttling")
}

func TestResetBeforeNeverReachesMoto(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.ResetBefore(1, "CreateSecurityGroup"))
	_, err := e.proxied(1).CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("reset"), Description: aws.String("x")})
	if err == nil {
		t.Fatal("CreateSecurityGroup over a reset connection succeeded")
	}
	out, err2 := e.direct().DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-name"), Values: []string{"reset"}}}})
	if err2 != nil || len(out.SecurityGroups) != 0 {
		t.Errorf("a reset CreateSecurityGroup (%v) reached moto: %+v (%v)", err, out.SecurityGroups, err2)
	}
	if n := e.proxy.Faults("CreateSecurityGroup", faultproxy.FaultReset); n != 1 {
		t.Errorf("resets = %d, want 1\n%s", n, e.proxy.Summary())
	}
}

func TestResetAfterLetsEveryCallTakeEffect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.ResetAfter(1, "CreateSecurityGroup"))
	c := e.proxied(1)
	for _, name := range []string{"after-1", "after-2"} {
		if _, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String("x")}); err == nil {
			t.Errorf("CreateSecurityGroup %s with its answer lost succeeded", name)
		}
	}
	out, err := e.direct().DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-name"), Values: []string{"after-1", "after-2"}}}})
	if err != nil || len(out.SecurityGroups) != 2 {
		t.Errorf("moto has %+v (%v), want both groups created", out.SecurityGroups, err)
	}
	if n := e.proxy.Faults("CreateSecurityGroup", faultproxy.FaultLost); n != 2 {
		t.Errorf("lost answers = %d, want 2", n)
	}
}

func TestLatencyHoldsTheCallThenAnswers(t *testing.T) {
	t.Parallel()
	const d = 300 * time.Millisecond
	e := newEnv(t, faultproxy.Latency(1, d, "DescribeImages"))
	began := time.Now()
	if _, err := e.proxied(1).DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{al2023}}); err != nil {
		t.Fatalf("DescribeImages: %v", err)
	}
	if took := time.Since(began); took < d {
		t.Errorf("DescribeImages took %v, want at least the latency %v", took, d)
	}
	if n := e.proxy.Faults("DescribeImages", faultproxy.FaultDelayed); n != 1 {
		t.Errorf("delayed calls = %d, want 1\n%s", n, e.proxy.Summary())
	}
}

func TestStaleDescribesReplaysAnyDescribeWithinD(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := faultproxy.NewClock(start, 0)
	e := newEnv(t, faultproxy.WithClock(clock.Now), faultproxy.StaleDescribes(1, 5*time.Second, "DescribeSecurityGroups"))
	c := e.proxied(1)
	names := func() []string {
		t.Helper()
		out, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{})
		if err != nil {
			t.Fatal(err)
		}
		var ns []string
		for _, g := range out.SecurityGroups {
			ns = append(ns, aws.ToString(g.GroupName))
		}
		return ns
	}
	names() // fills the cache
	if _, err := e.direct().CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("new"), Description: aws.String("x")}); err != nil {
		t.Fatal(err)
	}
	if got := names(); slices.Contains(got, "new") {
		t.Errorf("within 5s the list already shows the new group: %v", got)
	}
	clock.Advance(6 * time.Second)
	if got := names(); !slices.Contains(got, "new") {
		t.Errorf("after 6s the list still misses the new group: %v", got)
	}
	if n := e.proxy.Faults("DescribeSecurityGroups", faultproxy.FaultStale); n != 1 {
		t.Errorf("stale answers = %d, want 1\n%s", n, e.proxy.Summary())
	}
}

// faultsOf runs the same calls through a new proxy with seed and returns
// the fault each call got.
func faultsOf(t *testing.T, seed uint64) []string {
	e := newEnv(t, faultproxy.WithSeed(seed), faultproxy.Throttle(0.3), faultproxy.InternalError(0.2))
	c := e.proxied(1)
	for range 20 {
		_, _ = c.DescribeImages(context.Background(), &ec2.DescribeImagesInput{ImageIds: []string{al2023}})
	}
	var out []string
	for _, call := range e.proxy.Calls() {
		out = append(out, string(call.Fault))
	}
	return out
}

func TestTheSameSeedGivesTheSameFaults(t *testing.T) {
	t.Parallel()
	a, b, other := faultsOf(t, 42), faultsOf(t, 42), faultsOf(t, 43)
	if !slices.Equal(a, b) {
		t.Errorf("seed 42 gave %v, then %v", a, b)
	}
	if slices.Equal(a, other) {
		t.Errorf("seeds 42 and 43 gave the same faults %v", a)
	}
	if !slices.Contains(a, string(faultproxy.FaultThrottled)) || !slices.Contains(a, string(faultproxy.FaultInternal)) || !slices.Contains(a, "") {
		t.Errorf("20 calls at 30%% throttling and 20%% 500s gave %v, want some of each and some clean", a)
	}
}

func TestDrawsDoNotDependOnHowActionsInterleave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	run := func(interleave bool) string {
		e := newEnv(t, faultproxy.WithSeed(9), faultproxy.Throttle(0.5))
		c := e.proxied(1)
		for range 10 {
			if interleave {
				_, _ = c.DescribeRegions(ctx, &ec2.DescribeRegionsInput{})
			}
			_, _ = c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{al2023}})
		}
		var s string
		for _, call := range e.proxy.Calls() {
			if call.Action == "DescribeImages" {
				s += fmt.Sprint(call.Fault == faultproxy.FaultThrottled, " ")
			}
		}
		return s
	}
	if a, b := run(false), run(true); a != b {
		t.Errorf("DescribeImages faults alone %s, interleaved with DescribeRegions %s", a, b)
	}
}

func TestCountsAndFaultCountsTallyEveryCall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.Throttle(1, "DescribeRegions"))
	c := e.proxied(1)
	for range 3 {
		_, _ = c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{al2023}})
	}
	_, _ = c.DescribeRegions(ctx, &ec2.DescribeRegionsInput{})
	if got := e.proxy.Counts(); got["DescribeImages"] != 3 || got["DescribeRegions"] != 1 || len(got) != 2 {
		t.Errorf("Counts() = %v, want DescribeImages 3 and DescribeRegions 1", got)
	}
	if got := e.proxy.FaultCounts(); got[faultproxy.FaultThrottled] != 1 || len(got) != 1 {
		t.Errorf("FaultCounts() = %v, want throttled 1", got)
	}
}

func TestWithAccountPutsUnnamedCallsInTheAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	p := faultproxy.Start(t, e.srv.URL, faultproxy.WithAccount(e.account))
	// Config, not ConfigForAccount: the call names no account.
	c := ec2.NewFromConfig(p.Config(e.srv.Config(t, "us-east-1")))
	if _, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("in-account"), Description: aws.String("x")}); err != nil {
		t.Fatal(err)
	}
	out, err := e.direct().DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-name"), Values: []string{"in-account"}}}})
	if err != nil || len(out.SecurityGroups) != 1 {
		t.Errorf("account %s has %+v (%v), want the group created through the proxy", e.account, out.SecurityGroups, err)
	}
}

func TestARetriedClientTokenGetsTheFirstAnswerAsEC2Does(t *testing.T) {
	t.Parallel()
	e := newEnv(t, faultproxy.LoseAnswer("RunInstances", 1))
	// The SDK fills ClientToken once and keeps it across retries.
	c := ec2.NewFromConfig(e.proxy.Config(e.srv.ConfigForAccount(t, "us-east-1", e.account)), retrying)
	id := e.runInstance(c)
	if got := listed(t, e.direct()); !slices.Equal(got, []string{id}) {
		t.Errorf("after a lost RunInstances answer and its retry moto has instances %v, want only %s", got, id)
	}
	if n := e.proxy.Faults("RunInstances", faultproxy.FaultLost); n != 1 || e.proxy.Count("RunInstances") != 2 {
		t.Errorf("RunInstances: %d calls, %d lost; want 2 calls, the first lost\n%s", e.proxy.Count("RunInstances"), n, e.proxy.Summary())
	}
	// Another token is another call.
	if id2 := e.runInstance(c); id2 == id {
		t.Errorf("a second RunInstances returned the first instance %s", id)
	}
}

func TestCreateAutoScalingGroupOfAnExistingNameIsRefusedAsAWSDoes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.LoseAnswer("CreateAutoScalingGroup", 1))
	as := autoscaling.NewFromConfig(e.proxy.Config(e.srv.ConfigForAccount(t, "us-east-1", e.account)), func(o *autoscaling.Options) { o.RetryMaxAttempts = 1 })
	lt, err := e.direct().CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("asg"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(al2023), InstanceType: ec2types.InstanceTypeT3Micro}})
	if err != nil {
		t.Fatal(err)
	}
	create := func() error {
		_, err := as.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("dup"),
			MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: []string{"us-east-1a"},
			LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId}})
		return err
	}
	if err := create(); err == nil {
		t.Fatal("CreateAutoScalingGroup with its answer lost succeeded")
	}
	wantCode(t, "CreateAutoScalingGroup again", create(), "AlreadyExists")
	out, err := autoscaling.NewFromConfig(e.srv.ConfigForAccount(t, "us-east-1", e.account)).DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		t.Errorf("moto has %d groups (%v), want the one", len(out.AutoScalingGroups), err)
	}
	// Deleted, the name is free again.
	if _, err := as.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: aws.String("dup")}); err != nil {
		t.Fatal(err)
	}
	if err := create(); err != nil {
		t.Errorf("CreateAutoScalingGroup after the delete: %v", err)
	}
}
