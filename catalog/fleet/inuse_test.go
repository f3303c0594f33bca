package fleet_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/mototest"
)

// calls counts the API calls made through the clients it wraps.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) count(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[op]++
}

type countingEC2 struct {
	fleet.UsageEC2
	c *calls
}

func (e countingEC2) DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, o ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	e.c.count("DescribeInstances")
	return e.UsageEC2.DescribeInstances(ctx, in, o...)
}

func (e countingEC2) DescribeLaunchTemplates(ctx context.Context, in *ec2.DescribeLaunchTemplatesInput, o ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error) {
	e.c.count("DescribeLaunchTemplates")
	return e.UsageEC2.DescribeLaunchTemplates(ctx, in, o...)
}

func (e countingEC2) DescribeLaunchTemplateVersions(ctx context.Context, in *ec2.DescribeLaunchTemplateVersionsInput, o ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplateVersionsOutput, error) {
	e.c.count("DescribeLaunchTemplateVersions")
	return e.UsageEC2.DescribeLaunchTemplateVersions(ctx, in, o...)
}

type countingAS struct {
	fleet.UsageAutoScaling
	c *calls
}

func (a countingAS) DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, o ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	a.c.count("DescribeAutoScalingGroups")
	return a.UsageAutoScaling.DescribeAutoScalingGroups(ctx, in, o...)
}

func (a countingAS) DescribeLaunchConfigurations(ctx context.Context, in *autoscaling.DescribeLaunchConfigurationsInput, o ...func(*autoscaling.Options)) (*autoscaling.DescribeLaunchConfigurationsOutput, error) {
	a.c.count("DescribeLaunchConfigurations")
	return a.UsageAutoScaling.DescribeLaunchConfigurations(ctx, in, o...)
}

func TestImagesInUseFindsEveryKindOfUseInEveryRegion(t *testing.T) {
	moto := mototest.Shared(t)
	account := moto.NewAccount()
	cfg := moto.ConfigForAccount(t, region, account)
	euCfg := moto.ConfigForAccount(t, "eu-west-1", account)
	ctx := context.Background()
	ec, eu, as := ec2.NewFromConfig(cfg), ec2.NewFromConfig(euCfg), autoscaling.NewFromConfig(cfg)
	amis := func(c *ec2.Client) []string {
		out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
		if err != nil || len(out.Images) < 9 {
			t.Fatalf("moto has too few AMIs: %v", err)
		}
		var ids []string
		for _, img := range out.Images {
			ids = append(ids, aws.ToString(img.ImageId))
		}
		slices.Sort(ids)
		return ids
	}
	ids := amis(ec)
	running, stopped, terminated, ltOld, ltNew, viaLC, mixed, unused, tagged := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6], ids[7], ids[8]
	euRunning := amis(eu)[0]

	launch := func(c *ec2.Client, image string) string {
		t.Helper()
		out, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.Instances[0].InstanceId)
	}
	iRunning, iStopped, iTerminated := launch(ec, running), launch(ec, stopped), launch(ec, terminated)
	launch(ec, running) // a second instance: no second call
	iEU := launch(eu, euRunning)
	if _, err := ec.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{iStopped}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{iTerminated}}); err != nil {
		t.Fatal(err)
	}
	template := func(name string, images ...string) string {
		t.Helper()
		out, err := ec.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String(name),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(images[0]), InstanceType: ec2types.InstanceTypeT3Micro}})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.LaunchTemplate.LaunchTemplateId)
		for _, img := range images[1:] {
			if _, err := ec.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{LaunchTemplateId: aws.String(id),
				LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(img), InstanceType: ec2types.InstanceTypeT3Micro}}); err != nil {
				t.Fatal(err)
			}
		}
		return id
	}
	// No group uses version 1 (widdix#5); the group runs $Latest.
	ltGroup := template("web", ltOld, ltNew)
	ltMixed := template("mixed", mixed)
	subnets, err := fleet.New(fleet.ClientsFromConfig(cfg)).DefaultSubnets(ctx, region)
	if err != nil {
		t.Fatal(err)
	}
	group := func(in *autoscaling.CreateAutoScalingGroupInput) {
		t.Helper()
		in.MinSize, in.MaxSize, in.DesiredCapacity, in.VPCZoneIdentifier = aws.Int32(0), aws.Int32(1), aws.Int32(0), aws.String(subnets[0])
		if _, err := as.CreateAutoScalingGroup(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	group(&autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g-template"),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(ltGroup), Version: aws.String("$Latest")}})
	if _, err := as.CreateLaunchConfiguration(ctx, &autoscaling.CreateLaunchConfigurationInput{LaunchConfigurationName: aws.String("lc"),
		ImageId: aws.String(viaLC), InstanceType: aws.String("t3.micro")}); err != nil {
		t.Fatal(err)
	}
	group(&autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g-config"), LaunchConfigurationName: aws.String("lc")})
	group(&autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g-mixed"),
		MixedInstancesPolicy: &astypes.MixedInstancesPolicy{LaunchTemplate: &astypes.LaunchTemplate{
			LaunchTemplateSpecification: &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("mixed"), Version: aws.String("$Default")}}}})
	// A group bakery launched says which AMI it runs in its bakery:image
	// tag: that counts even when its launch template can no longer be
	// read (a launch killed while tearing the group down deleted it).
	group(&autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g-tagged"), LaunchConfigurationName: aws.String("lc"),
		Tags: []astypes.Tag{{Key: aws.String(fleet.TagImage), Value: aws.String(tagged), PropagateAtLaunch: aws.Bool(false)}}})

	n := &calls{n: map[string]int{}}
	base := fleet.UsageClientsFromConfig(cfg)
	clients := fleet.UsageClients{
		EC2:         func(r string) fleet.UsageEC2 { return countingEC2{base.EC2(r), n} },
		AutoScaling: func(r string) fleet.UsageAutoScaling { return countingAS{base.AutoScaling(r), n} },
	}
	uses, err := fleet.ImagesInUse(ctx, clients, []string{region, "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	has := func(image string, want fleet.ImageUse) {
		t.Helper()
		want.Image = image
		if want.Region == "" {
			want.Region = region
		}
		if !slices.Contains(uses[image], want) {
			t.Errorf("uses of %s = %+v, want among them %+v", image, uses[image], want)
		}
	}
	has(running, fleet.ImageUse{Kind: fleet.UsedByInstance, ID: iRunning})
	has(stopped, fleet.ImageUse{Kind: fleet.UsedByInstance, ID: iStopped})
	has(euRunning, fleet.ImageUse{Kind: fleet.UsedByInstance, ID: iEU, Region: "eu-west-1"})
	has(ltOld, fleet.ImageUse{Kind: fleet.UsedByLaunchTemplate, ID: ltGroup, Version: "1"})
	has(ltNew, fleet.ImageUse{Kind: fleet.UsedByLaunchTemplate, ID: ltGroup, Version: "2"})
	has(ltNew, fleet.ImageUse{Kind: fleet.UsedByGroup, ID: "g-template"})
	has(viaLC, fleet.ImageUse{Kind: fleet.UsedByLaunchConfiguration, ID: "lc"})
	has(viaLC, fleet.ImageUse{Kind: fleet.UsedByGroup, ID: "g-config"})
	has(mixed, fleet.ImageUse{Kind: fleet.UsedByLaunchTemplate, ID: ltMixed, Version: "1"})
	has(mixed, fleet.ImageUse{Kind: fleet.UsedByGroup, ID: "g-mixed"})
	has(tagged, fleet.ImageUse{Kind: fleet.UsedByGroup, ID: "g-tagged"})
	if len(uses[ltOld]) != 1 {
		t.Errorf("version 1 of the template, which no group runs, is used by %+v; want the template version alone", uses[ltOld])
	}
	for _, img := range []string{terminated, unused} {
		if len(uses[img]) > 0 {
			t.Errorf("%s is used by %+v, want nothing (a terminated instance uses no AMI)", img, uses[img])
		}
	}
	// One page each per region, and one version listing per template
	// (EC2 lists versions one template at a time).
	want := map[string]int{"DescribeInstances": 2, "DescribeLaunchTemplates": 2, "DescribeLaunchTemplateVersions": 2,
		"DescribeAutoScalingGroups": 2, "DescribeLaunchConfigurations": 2}
	for op, w := range want {
		if n.n[op] != w {
			t.Errorf("%s called %d times, want %d (calls: %v)", op, n.n[op], w, n.n)
		}
	}
}
