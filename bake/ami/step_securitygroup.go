package ami

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// DefaultCheckIPURL answers this runner's public address, as one IP and
// a newline, when BAKERY_CHECKIP_URL is not set (see WithGetenv).
const DefaultCheckIPURL = "https://checkip.amazonaws.com"

// checkIPTimeout bounds asking the check-IP URL.
const checkIPTimeout = 10 * time.Second

// securityGroupStep creates a temporary security group that lets SSH in
// from ssh_source_cidrs, or else from this runner's address alone as the
// builder will see it: its public address when SSH goes to the builder's
// public IP, its interface address otherwise. It runs before anything is
// launched, so a runner whose public address cannot be found fails
// without a builder. Only bakes with provisioners have it.
type securityGroupStep struct{}

func (securityGroupStep) Name() string { return "create temporary security group" }

func (securityGroupStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	m, region := st.m, st.plan.BuildRegion
	cidrs := m.SSHSourceCIDRs
	if len(cidrs) == 0 {
		cidr, err := sshSourceCIDR(ctx, st)
		if err != nil {
			return err
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
		TagSpecifications: catalogami.TagSpecs(st.baseTags(), ec2types.ResourceTypeSecurityGroup),
	})
	switch {
	case awsx.ErrorCode(err) == "InvalidGroup.Duplicate":
		// The name is this bake's alone: an earlier try took effect and
		// its answer was lost. Find the group by the bake's tag.
		found, lerr := st.b.listSecurityGroups(ctx, region, tagFilter(catalog.TagBakeID, st.bakeID))
		if lerr != nil || len(found) != 1 {
			return fmt.Errorf("creating security group %s in %s: %w (and finding it by its tag: %d found, %v)", name, region, awsx.ExplainError(err), len(found), lerr)
		}
		st.sgID = found[0].ID
	case err != nil:
		return fmt.Errorf("creating security group %s in %s: %w", name, region, awsx.ExplainError(err))
	default:
		st.sgID = aws.ToString(out.GroupId)
	}
	// The group was created a moment ago: EC2 may not know it yet.
	err = awsx.Fresh("EC2 to know security group "+st.sgID, st.b.pollInterval, st.b.clock).Retry(ctx, awsx.IsNotFound, func(ctx context.Context) error {
		_, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId: aws.String(st.sgID), IpPermissions: []ec2types.IpPermission{perm},
		})
		if awsx.ErrorCode(err) == "InvalidPermission.Duplicate" {
			// An earlier try took effect and its answer was lost: the
			// rule is there, as wanted.
			return nil
		}
		return err
	})
	if err != nil {
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

// sshSourceCIDR is the one address, as a /32 or /128, that SSH to the
// builder comes from when the recipe names none. Connecting to the
// builder's public IP (ssh_interface = "public_ip", or by default when
// the subnet assigns public addresses) the packets come from this
// runner's public address, which behind NAT is not on any of its
// interfaces: it is asked of the check-IP URL. Connecting to the private
// IP or to ssh_host, they come from the interface address on the route
// (runnerCIDR).
func sshSourceCIDR(ctx context.Context, st *bakeState) (string, error) {
	m, region := st.m, st.plan.BuildRegion
	public := false
	switch {
	case m.SSHHost != "":
	case m.SSHInterface == recipes.SSHInterfacePublicIP:
		public = true
	case m.SSHInterface == "":
		public = st.subnetPublic
	}
	if !public {
		cidr, err := runnerCIDR(ctx, st.b.cfg, region)
		if err != nil {
			return "", fmt.Errorf("%s: finding this runner's address to allow SSH from: %w; set ssh_source_cidrs in the recipe", m.Pos("ssh_source_cidrs"), err)
		}
		return cidr, nil
	}
	checkURL := st.b.getenv("BAKERY_CHECKIP_URL")
	if checkURL == "" {
		checkURL = DefaultCheckIPURL
	}
	addr, err := publicAddress(ctx, checkURL)
	if err != nil && ctx.Err() != nil {
		return "", fmt.Errorf("finding this runner's public address: %w", err)
	}
	if err != nil {
		return "", fmt.Errorf("%s: finding this runner's public address, to allow SSH to the builder's public IP from it: %w; "+
			"set ssh_source_cidrs to the addresses this runner's connections come from, "+
			"or ssh_interface = %q if it reaches the builder's private address (same VPC, VPN or peering), "+
			"or ssh_host to connect elsewhere; or point BAKERY_CHECKIP_URL at a service that answers the public address",
			m.Pos("ssh_interface"), err, recipes.SSHInterfacePrivateIP)
	}
	cidr := netip.PrefixFrom(addr, addr.BitLen()).String()
	st.rep.Info(fmt.Sprintf("allowing SSH from %s, this runner's public address according to %s", cidr, checkURL))
	return cidr, nil
}

// publicAddress asks checkURL for this runner's public address: the
// answer is one IP address and a newline, as https://checkip.amazonaws.com
// gives. It waits at most checkIPTimeout.
func publicAddress(ctx context.Context, checkURL string) (netip.Addr, error) {
	tctx, cancel := context.WithTimeout(ctx, checkIPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, http.MethodGet, checkURL, nil)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("asking %s: %w", checkURL, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it names the URL again
		}
		if ctx.Err() == nil && tctx.Err() != nil {
			return netip.Addr{}, fmt.Errorf("asking %s: no answer within %s", checkURL, checkIPTimeout)
		}
		return netip.Addr{}, fmt.Errorf("asking %s: %w", checkURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading the answer of %s: %w", checkURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return netip.Addr{}, fmt.Errorf("asking %s: %s", checkURL, resp.Status)
	}
	text := strings.TrimSpace(string(body))
	addr, err := netip.ParseAddr(text)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s answered %.64q, not an IP address", checkURL, text)
	}
	addr = addr.Unmap()
	if addr.Zone() != "" || addr.IsUnspecified() || addr.IsLinkLocalUnicast() || addr.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("%s answered %s, not an address the builder can see", checkURL, addr)
	}
	return addr, nil
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
