package ami

import (
	"context"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
)

// networkStep picks the builder's VPC and subnet: the recipe's subnet; or
// the subnet with the most free addresses in the recipe's VPC; or the
// default VPC's default subnet in the first availability zone.
type networkStep struct{}

func (networkStep) Name() string { return "resolve network" }

func (networkStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	m, region := st.m, st.plan.BuildRegion
	c := st.b.clients.EC2(region)
	if m.SubnetID != "" {
		out, err := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{m.SubnetID}})
		if awsx.IsNotFound(err) || err == nil && len(out.Subnets) == 0 {
			return fmt.Errorf("%s: subnet %s does not exist in %s: check subnet_id (subnet ids differ per region)", m.Pos("subnet_id"), m.SubnetID, region)
		}
		if err != nil {
			return fmt.Errorf("%s: looking up subnet %s in %s: %w", m.Pos("subnet_id"), m.SubnetID, region, awsx.ExplainError(err))
		}
		vpc := aws.ToString(out.Subnets[0].VpcId)
		if m.VPCID != "" && m.VPCID != vpc {
			return fmt.Errorf("%s: subnet %s is in VPC %s, not %s: fix vpc_id or subnet_id", m.Pos("vpc_id"), m.SubnetID, vpc, m.VPCID)
		}
		st.vpcID, st.subnetID = vpc, m.SubnetID
		st.subnetPublic = aws.ToBool(out.Subnets[0].MapPublicIpOnLaunch)
		return nil
	}

	vpc := m.VPCID
	if vpc == "" {
		out, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []ec2types.Filter{filter("is-default", "true")}})
		if err != nil {
			return fmt.Errorf("finding the default VPC in %s: %w", region, awsx.ExplainError(err))
		}
		if len(out.Vpcs) == 0 {
			return fmt.Errorf("%s: %s has no default VPC: set subnet_id (and vpc_id) in machine image %s to place the builder", m.Pos(""), region, m.Name)
		}
		vpc = aws.ToString(out.Vpcs[0].VpcId)
	}
	filters := []ec2types.Filter{filter("vpc-id", vpc), filter("state", "available")}
	if m.VPCID == "" {
		filters = append(filters, filter("default-for-az", "true"))
	}
	var subnets []ec2types.Subnet
	pages := ec2.NewDescribeSubnetsPaginator(c, &ec2.DescribeSubnetsInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing the subnets of %s in %s: %w", vpc, region, awsx.ExplainError(err))
		}
		subnets = append(subnets, page.Subnets...)
	}
	if len(subnets) == 0 {
		return fmt.Errorf("%s: VPC %s in %s has no available subnet to place the builder in: set subnet_id in machine image %s", m.Pos("vpc_id"), vpc, region, m.Name)
	}
	sort.Slice(subnets, func(i, j int) bool {
		a, b := subnets[i], subnets[j]
		if m.VPCID != "" && aws.ToInt32(a.AvailableIpAddressCount) != aws.ToInt32(b.AvailableIpAddressCount) {
			return aws.ToInt32(a.AvailableIpAddressCount) > aws.ToInt32(b.AvailableIpAddressCount)
		}
		if aws.ToString(a.AvailabilityZone) != aws.ToString(b.AvailabilityZone) {
			return aws.ToString(a.AvailabilityZone) < aws.ToString(b.AvailabilityZone)
		}
		return aws.ToString(a.SubnetId) < aws.ToString(b.SubnetId)
	})
	st.vpcID, st.subnetID = vpc, aws.ToString(subnets[0].SubnetId)
	st.subnetPublic = aws.ToBool(subnets[0].MapPublicIpOnLaunch)
	return nil
}

func (networkStep) Cleanup(context.Context, *bakeState, bool) error { return nil }
