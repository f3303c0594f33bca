package fleet

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// UseKind is what uses an AMI.
type UseKind string

// The things that use an AMI.
const (
	// UsedByInstance is an EC2 instance that is not terminated (pending,
	// running, shutting down, stopping or stopped: a stopped instance
	// starts again from its volumes, but it names its AMI).
	UsedByInstance UseKind = "instance"
	// UsedByLaunchTemplate is a version of a launch template, used by a
	// group or not: a template left pointing at a deleted AMI stops
	// whatever launches from it later.
	UsedByLaunchTemplate UseKind = "launch template"
	// UsedByLaunchConfiguration is an Auto Scaling launch configuration.
	UsedByLaunchConfiguration UseKind = "launch configuration"
	// UsedByGroup is an Auto Scaling group, through its launch template,
	// launch configuration or mixed instances policy.
	UsedByGroup UseKind = "auto scaling group"
)

// ImageUse is one thing that uses an AMI.
type ImageUse struct {
	// Kind is what it is.
	Kind UseKind `json:"kind"`
	// ID is the instance or launch template id, or the group or launch
	// configuration name.
	ID string `json:"id"`
	// Version is the launch template version number ("" for other
	// kinds).
	Version string `json:"version,omitempty"`
	// Region is where it is.
	Region string `json:"region"`
	// Image is the AMI id it uses.
	Image string `json:"image"`
}

// UsageEC2 is the part of the EC2 API ImagesInUse calls. *ec2.Client
// implements it.
type UsageEC2 interface {
	DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
	DescribeLaunchTemplates(context.Context, *ec2.DescribeLaunchTemplatesInput, ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error)
	DescribeLaunchTemplateVersions(context.Context, *ec2.DescribeLaunchTemplateVersionsInput, ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplateVersionsOutput, error)
}

// UsageAutoScaling is the part of the Auto Scaling API ImagesInUse
// calls. *autoscaling.Client implements it.
type UsageAutoScaling interface {
	DescribeAutoScalingGroups(context.Context, *autoscaling.DescribeAutoScalingGroupsInput, ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
	DescribeLaunchConfigurations(context.Context, *autoscaling.DescribeLaunchConfigurationsInput, ...func(*autoscaling.Options)) (*autoscaling.DescribeLaunchConfigurationsOutput, error)
}

// UsageClients hands out the clients ImagesInUse calls in a region.
type UsageClients struct {
	// EC2 returns region's EC2 client.
	EC2 func(region string) UsageEC2
	// AutoScaling returns region's Auto Scaling client.
	AutoScaling func(region string) UsageAutoScaling
}

// UsageClientsFromConfig returns UsageClients made from cfg
// (awsx.NewEC2, awsx.NewAutoScaling), one per service and region,
// created on first use.
func UsageClientsFromConfig(cfg aws.Config) UsageClients {
	as := awsx.NewRegional(func(r string) *autoscaling.Client { return awsx.NewAutoScaling(cfg, r) })
	ec := awsx.NewRegional(func(r string) *ec2.Client { return awsx.NewEC2(cfg, r) })
	return UsageClients{
		EC2:         func(r string) UsageEC2 { return ec.Get(r) },
		AutoScaling: func(r string) UsageAutoScaling { return as.Get(r) },
	}
}

// ImagesInUse returns, by AMI id, everything in regions that uses an
// AMI (bakery's or not): instances that are not terminated, every
// version of every launch template, launch configurations, and Auto
// Scaling groups (launch template, launch configuration and mixed
// instances policy, a template version named $Latest or $Default read as
// the number it stands for). Regions are read at once, up to four at a
// time.
//
// Its calls grow with pages, not items: per region one paginated
// DescribeInstances, DescribeAutoScalingGroups, DescribeLaunchTemplates
// and DescribeLaunchConfigurations; except that EC2 lists launch template
// versions one template at a time (DescribeLaunchTemplateVersions takes
// one template), so that is one paginated call per template.
func ImagesInUse(ctx context.Context, c UsageClients, regions []string) (map[string][]ImageUse, error) {
	found := make([][]ImageUse, len(regions))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, region := range regions {
		g.Go(func() error {
			uses, err := imagesInUse(gctx, c, region)
			if err != nil {
				return fmt.Errorf("finding what uses AMIs in %s: %w", region, err)
			}
			found[i] = uses
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := map[string][]ImageUse{}
	for _, uses := range found {
		for _, u := range uses {
			out[u.Image] = append(out[u.Image], u)
		}
	}
	return out, nil
}

// notTerminated are the instance states that still name their AMI.
var notTerminated = []string{"pending", "running", "shutting-down", "stopping", "stopped"}

func imagesInUse(ctx context.Context, c UsageClients, region string) ([]ImageUse, error) {
	var out []ImageUse
	ec, as := c.EC2(region), c.AutoScaling(region)

	ip := ec2.NewDescribeInstancesPaginator(ec, &ec2.DescribeInstancesInput{
		Filters:    []ec2types.Filter{{Name: aws.String("instance-state-name"), Values: notTerminated}},
		MaxResults: aws.Int32(1000),
	})
	for ip.HasMorePages() {
		page, err := ip.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing instances: %w", awsx.ExplainError(err))
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				// Filters narrow; they do not prove.
				if in.State != nil && in.State.Name == ec2types.InstanceStateNameTerminated {
					continue
				}
				if img := aws.ToString(in.ImageId); img != "" {
					out = append(out, ImageUse{Kind: UsedByInstance, ID: aws.ToString(in.InstanceId), Region: region, Image: img})
				}
			}
		}
	}

	// Every version of every launch template. moto 5.2.5 ignores the
	// image-id filter on launch template versions, and a filter would
	// not prove anything anyway: the versions are read whole and matched
	// here.
	type template struct{ latest, def string }
	templates := map[string]template{}       // by id
	names := map[string]string{}             // name → id
	images := map[string]map[string]string{} // id → version → AMI
	tp := ec2.NewDescribeLaunchTemplatesPaginator(ec, &ec2.DescribeLaunchTemplatesInput{MaxResults: aws.Int32(200)})
	for tp.HasMorePages() {
		page, err := tp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing launch templates: %w", awsx.ExplainError(err))
		}
		for _, lt := range page.LaunchTemplates {
			id := aws.ToString(lt.LaunchTemplateId)
			templates[id] = template{
				latest: strconv.FormatInt(aws.ToInt64(lt.LatestVersionNumber), 10),
				def:    strconv.FormatInt(aws.ToInt64(lt.DefaultVersionNumber), 10),
			}
			names[aws.ToString(lt.LaunchTemplateName)] = id
		}
	}
	for _, id := range sortedKeys(templates) {
		images[id] = map[string]string{}
		vp := ec2.NewDescribeLaunchTemplateVersionsPaginator(ec, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(id), MaxResults: aws.Int32(200)})
		for vp.HasMorePages() {
			page, err := vp.NextPage(ctx)
			if awsx.IsNotFound(err) {
				break // deleted since it was listed: it uses nothing
			}
			if err != nil {
				return nil, fmt.Errorf("listing the versions of launch template %s: %w", id, awsx.ExplainError(err))
			}
			for _, v := range page.LaunchTemplateVersions {
				if v.LaunchTemplateData == nil {
					continue
				}
				img := aws.ToString(v.LaunchTemplateData.ImageId)
				n := strconv.FormatInt(aws.ToInt64(v.VersionNumber), 10)
				images[id][n] = img
				if img != "" {
					out = append(out, ImageUse{Kind: UsedByLaunchTemplate, ID: id, Version: n, Region: region, Image: img})
				}
			}
		}
	}
	// templateImage is the AMI of a group's launch template
	// specification.
	templateImage := func(spec *astypes.LaunchTemplateSpecification) string {
		if spec == nil {
			return ""
		}
		id := aws.ToString(spec.LaunchTemplateId)
		if id == "" {
			id = names[aws.ToString(spec.LaunchTemplateName)]
		}
		v := aws.ToString(spec.Version)
		switch v {
		case "", "$Default":
			v = templates[id].def
		case "$Latest":
			v = templates[id].latest
		}
		return images[id][v]
	}

	lcImages := map[string]string{}
	lp := autoscaling.NewDescribeLaunchConfigurationsPaginator(as, &autoscaling.DescribeLaunchConfigurationsInput{MaxRecords: aws.Int32(100)})
	for lp.HasMorePages() {
		page, err := lp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing launch configurations: %w", awsx.ExplainError(err))
		}
		for _, lc := range page.LaunchConfigurations {
			name, img := aws.ToString(lc.LaunchConfigurationName), aws.ToString(lc.ImageId)
			lcImages[name] = img
			if img != "" {
				out = append(out, ImageUse{Kind: UsedByLaunchConfiguration, ID: name, Region: region, Image: img})
			}
		}
	}

	gp := autoscaling.NewDescribeAutoScalingGroupsPaginator(as, &autoscaling.DescribeAutoScalingGroupsInput{MaxRecords: aws.Int32(100)})
	for gp.HasMorePages() {
		page, err := gp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing Auto Scaling groups: %w", awsx.ExplainError(err))
		}
		for _, g := range page.AutoScalingGroups {
			name := aws.ToString(g.AutoScalingGroupName)
			var imgs []string
			imgs = append(imgs, templateImage(g.LaunchTemplate), lcImages[aws.ToString(g.LaunchConfigurationName)])
			// The AMI bakery launched the group with counts too: its
			// launch template may be gone (a launch killed while tearing
			// the group down) while the group still stands.
			for _, tag := range g.Tags {
				if aws.ToString(tag.Key) == TagImage {
					imgs = append(imgs, aws.ToString(tag.Value))
				}
			}
			if m := g.MixedInstancesPolicy; m != nil && m.LaunchTemplate != nil {
				imgs = append(imgs, templateImage(m.LaunchTemplate.LaunchTemplateSpecification))
				for _, o := range m.LaunchTemplate.Overrides {
					imgs = append(imgs, templateImage(o.LaunchTemplateSpecification))
				}
			}
			slices.Sort(imgs)
			for _, img := range slices.Compact(imgs) {
				if img != "" {
					out = append(out, ImageUse{Kind: UsedByGroup, ID: name, Region: region, Image: img})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b ImageUse) int {
		return strings.Compare(string(a.Kind)+" "+a.ID+" "+a.Version, string(b.Kind)+" "+b.ID+" "+b.Version)
	})
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
