package awsx

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwschemas "github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
)

// NewEC2 returns an EC2 client for region, with cfg's credentials, retryer and
// endpoint override. An empty region keeps cfg.Region.
func NewEC2(cfg aws.Config, region string, optFns ...func(*ec2.Options)) *ec2.Client {
	return ec2.NewFromConfig(cfg, append([]func(*ec2.Options){func(o *ec2.Options) {
		o.Region = pick(region, o.Region)
	}}, optFns...)...)
}

// NewAutoScaling returns an Auto Scaling client for region, with cfg's
// credentials, retryer and endpoint override. An empty region keeps
// cfg.Region.
func NewAutoScaling(cfg aws.Config, region string, optFns ...func(*autoscaling.Options)) *autoscaling.Client {
	return autoscaling.NewFromConfig(cfg, append([]func(*autoscaling.Options){func(o *autoscaling.Options) {
		o.Region = pick(region, o.Region)
	}}, optFns...)...)
}

// NewCloudWatch returns a CloudWatch client for region (launch reads the
// alarms of its health gate through it), with cfg's credentials, retryer
// and endpoint override. An empty region keeps cfg.Region. It speaks the
// awsQuery protocol, which CloudWatch accepts besides the SDK's default RPC
// v2 CBOR, and which moto 5.2.5, the emulator of the tests, answers.
func NewCloudWatch(cfg aws.Config, region string, optFns ...func(*cloudwatch.Options)) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(cfg, append([]func(*cloudwatch.Options){func(o *cloudwatch.Options) {
		o.Region = pick(region, o.Region)
		o.Protocol = awsquery.New(cwschemas.GraniteServiceVersion20100801)
	}}, optFns...)...)
}

// NewSSM returns an SSM client for region (bakery reads public parameters
// such as the latest Amazon Linux AMI id through it), with cfg's credentials,
// retryer and endpoint override. An empty region keeps cfg.Region.
func NewSSM(cfg aws.Config, region string, optFns ...func(*ssm.Options)) *ssm.Client {
	return ssm.NewFromConfig(cfg, append([]func(*ssm.Options){func(o *ssm.Options) {
		o.Region = pick(region, o.Region)
	}}, optFns...)...)
}

// NewSTS returns an STS client for region (for GetCallerIdentity: which
// account the credentials belong to), with cfg's credentials, retryer and
// endpoint override. An empty region keeps cfg.Region.
func NewSTS(cfg aws.Config, region string, optFns ...func(*sts.Options)) *sts.Client {
	return sts.NewFromConfig(cfg, append([]func(*sts.Options){func(o *sts.Options) {
		o.Region = pick(region, o.Region)
	}}, optFns...)...)
}

// NewS3 returns an S3 client for region (the ledger's bucket), with cfg's
// credentials, retryer and endpoint override. An empty region keeps
// cfg.Region. With an endpoint override (cfg.BaseEndpoint set) it
// addresses buckets by path (http://HOST/BUCKET/KEY) rather than by
// virtual host: an emulator on 127.0.0.1 has no DNS for BUCKET.HOST.
func NewS3(cfg aws.Config, region string, optFns ...func(*s3.Options)) *s3.Client {
	return s3.NewFromConfig(cfg, append([]func(*s3.Options){func(o *s3.Options) {
		o.Region = pick(region, o.Region)
		if cfg.BaseEndpoint != nil {
			o.UsePathStyle = true
		}
	}}, optFns...)...)
}

func pick(region, fallback string) string {
	if region != "" {
		return region
	}
	return fallback
}

// Regional hands out one client per region, created on first use by the
// function given to NewRegional. It is safe for concurrent use.
type Regional[T any] struct {
	newClient func(region string) T
	mu        sync.Mutex
	clients   map[string]T
}

// NewRegional returns a cache of the clients newClient makes.
func NewRegional[T any](newClient func(region string) T) *Regional[T] {
	return &Regional[T]{newClient: newClient, clients: map[string]T{}}
}

// Get returns region's client, creating it on first use.
func (r *Regional[T]) Get(region string) T {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.clients[region]
	if !ok {
		c = r.newClient(region)
		r.clients[region] = c
	}
	return c
}

// RegionsAPI is the EC2 call EnabledRegions makes. *ec2.Client
// implements it.
type RegionsAPI interface {
	DescribeRegions(context.Context, *ec2.DescribeRegionsInput, ...func(*ec2.Options)) (*ec2.DescribeRegionsOutput, error)
}

// EnabledRegions returns, sorted, the regions enabled for the account
// (those that need no opt-in and those opted in): where an image of it
// can be. One DescribeRegions call.
func EnabledRegions(ctx context.Context, c RegionsAPI) ([]string, error) {
	out, err := c.DescribeRegions(ctx, &ec2.DescribeRegionsInput{})
	if err != nil {
		return nil, fmt.Errorf("listing the account's regions: %w", ExplainError(err))
	}
	// Credentials are good in one partition only (aws, aws-cn,
	// aws-us-gov): keep the regions of the one asked (an emulator lists
	// them all).
	home := ""
	if rc, ok := c.(interface{ Options() ec2.Options }); ok {
		home = rc.Options().Region
	}
	regions := make([]string, 0, len(out.Regions))
	for _, r := range out.Regions {
		name := aws.ToString(r.RegionName)
		if home == "" || Partition(name) == Partition(home) {
			regions = append(regions, name)
		}
	}
	slices.Sort(regions)
	return regions, nil
}

// Partition returns the AWS partition of region: aws-cn for the China
// regions, aws-us-gov for GovCloud, aws-iso* for the isolated regions,
// else aws.
func Partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso"
	case strings.HasPrefix(region, "eu-isoe-"):
		return "aws-iso-e"
	case strings.HasPrefix(region, "us-isof-"):
		return "aws-iso-f"
	}
	return "aws"
}
