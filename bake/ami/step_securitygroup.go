package ami

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
)

// securityGroupStep creates a temporary security group that lets SSH in
// from ssh_source_cidrs, or else from this runner's address alone. Only
// bakes with provisioners have it.
type securityGroupStep struct{}

func (securityGroupStep) Name() string { return "create temporary security group" }

func (securityGroupStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	m, region := st.m, st.plan.BuildRegion
	cidrs := m.SSHSourceCIDRs
	if len(cidrs) == 0 {
		cidr, err := runnerCIDR(ctx, st.b.cfg, region)
		if err != nil {
			return fmt.Errorf("%s: finding this runner's address to allow SSH from: %w; set ssh_source_cidrs in the recipe", m.Pos("ssh_source_cidrs"), err)
		}
		cidrs = []string{cidr}
	}
	perm := ec2types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(int32(sshPort(m))), ToPort: aws.Int32(int32(sshPort(m)))}
	for _, c := range cidrs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("%s: %q is not a CIDR block such as 203.0.113.7/32: %w", m.Pos("ssh_source_cidrs"), c, err)
		}
		desc := aws.String("bakery bake " + st.bakeID + " SSH")
		if pfx.Addr().Is4() {
			perm.IpRanges = append(perm.IpRanges, ec2types.IpRange{CidrIp: aws.String(pfx.String()), Description: desc})
		} else {
			perm.Ipv6Ranges = append(perm.Ipv6Ranges, ec2types.Ipv6Range{CidrIpv6: aws.String(pfx.String()), Description: desc})
		}
	}
	c := st.b.clients.EC2(region)
	name := "bakery-" + st.bakeID
	out, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:         aws.String(name),
		Description:       aws.String("bakery: temporary SSH access to the builder of bake " + st.bakeID),
		VpcId:             aws.String(st.vpcID),
		TagSpecifications: tagSpecs(st.baseTags(), ec2types.ResourceTypeSecurityGroup),
	})
	if err != nil {
		return fmt.Errorf("creating security group %s in %s: %w", name, region, awsx.ExplainError(err))
	}
	st.sgID = aws.ToString(out.GroupId)
	if _, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
		GroupId: aws.String(st.sgID), IpPermissions: []ec2types.IpPermission{perm},
	}); err != nil {
		return fmt.Errorf("allowing SSH into security group %s in %s: %w", st.sgID, region, awsx.ExplainError(err))
	}
	return nil
}

// Cleanup deletes the group, also when its id was never returned (found
// by the bake's tag). It runs after the builder's cleanup, which waits
// for the instance to be terminated: a group in use cannot be deleted.
func (securityGroupStep) Cleanup(ctx context.Context, st *bakeState, failed bool) error {
	if st.keep(failed) {
		return nil
	}
	region := st.plan.BuildRegion
	ids := appendNew(nil, st.sgID)
	if failed {
		found, err := st.b.listSecurityGroups(ctx, region, tagFilter(catalog.TagBakeID, st.bakeID))
		if err != nil {
			return err
		}
		for _, g := range found {
			ids = appendNew(ids, g.ID)
		}
	}
	var errs []error
	for _, id := range ids {
		if err := st.b.deleteSecurityGroup(ctx, region, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runnerCIDR returns this machine's address, as a /32 (or /128), on the
// route to the EC2 endpoint of region: the local address the operating
// system picks to reach the endpoint's host. A UDP "connection" picks it
// without sending a packet. Behind NAT the builder sees another address;
// set ssh_source_cidrs then.
func runnerCIDR(ctx context.Context, cfg aws.Config, region string) (string, error) {
	ep, err := ec2.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, ec2.EndpointParameters{
		Region: aws.String(region), Endpoint: cfg.BaseEndpoint,
	})
	if err != nil {
		return "", fmt.Errorf("resolving the EC2 endpoint of %s: %w", region, err)
	}
	host := ep.URI.Hostname()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", net.JoinHostPort(host, "443"))
	if err != nil {
		return "", fmt.Errorf("finding the route to %s: %w", host, err)
	}
	defer conn.Close()
	addr, ok := netip.AddrFromSlice(conn.LocalAddr().(*net.UDPAddr).IP)
	if !ok {
		return "", fmt.Errorf("no local address on the route to %s", host)
	}
	addr = addr.Unmap()
	return netip.PrefixFrom(addr, addr.BitLen()).String(), nil
}
