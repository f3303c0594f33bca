package ami_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/bakery-sh/bakery/bake/ami"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/progress"
)

// checkIP is a local stand-in for https://checkip.amazonaws.com: it
// answers every GET with status and body, and counts the calls.
type checkIP struct {
	url   string
	calls atomic.Int32
}

func newCheckIP(t *testing.T, status int, body string) *checkIP {
	t.Helper()
	c := &checkIP{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c.calls.Add(1)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

// env is the Baker's environment: BAKERY_CHECKIP_URL points at c.
func (c *checkIP) env() ami.Option {
	return ami.WithGetenv(func(k string) string {
		if k == "BAKERY_CHECKIP_URL" {
			return c.url
		}
		return ""
	})
}

// runInstancesLog records the RunInstances requests bakery sends.
type runInstancesLog struct {
	mu   sync.Mutex
	reqs []ec2.RunInstancesInput
}

func (l *runInstancesLog) all() []ec2.RunInstancesInput {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

// capture is an SDK API option that records every RunInstances request.
func (l *runInstancesLog) capture(s *middleware.Stack) error {
	return s.Initialize.Add(middleware.InitializeMiddlewareFunc("bakery-test-capture-run-instances",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if ri, ok := in.Parameters.(*ec2.RunInstancesInput); ok {
				l.mu.Lock()
				l.reqs = append(l.reqs, *ri)
				l.mu.Unlock()
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// sshBake is what an SSH bake looked like once its builder was running
// (then the test interrupted it).
type sshBake struct {
	// ingress are the CIDRs the temporary security group let SSH in from.
	ingress []string
	// publicIP and privateIP are the builder's addresses.
	publicIP, privateIP string
	// runs are the RunInstances requests.
	runs []ec2.RunInstancesInput
}

// bakeUntilLaunched bakes a machine image with a provisioner, its recipe
// ending in extra, and interrupts it once the builder runs, after
// looking at the temporary security group and the builder. The
// provision step never starts: nothing answers SSH at moto's made-up
// addresses, and a test must not send packets to them. Everything the
// bake made must be gone afterwards.
func bakeUntilLaunched(t *testing.T, e *bakeEnv, id, extra string, opts ...ami.Option) sshBake {
	t.Helper()
	var res sshBake
	var runs runInstancesLog
	e.cfg.APIOptions = append(e.cfg.APIOptions, runs.capture)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	look := func() {
		defer cancel()
		c := e.ec2("us-east-1")
		byBake := []ec2types.Filter{{Name: aws.String("tag:" + catalog.TagBakeID), Values: []string{id}}}
		sgs, err := c.DescribeSecurityGroups(context.Background(), &ec2.DescribeSecurityGroupsInput{Filters: byBake})
		if err != nil || len(sgs.SecurityGroups) != 1 {
			t.Errorf("describing the temporary security group: %v, %+v", err, sgs)
			return
		}
		for _, p := range sgs.SecurityGroups[0].IpPermissions {
			for _, r := range p.IpRanges {
				res.ingress = append(res.ingress, aws.ToString(r.CidrIp))
			}
			for _, r := range p.Ipv6Ranges {
				res.ingress = append(res.ingress, aws.ToString(r.CidrIpv6))
			}
		}
		insts, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{Filters: byBake})
		if err != nil || len(insts.Reservations) != 1 || len(insts.Reservations[0].Instances) != 1 {
			t.Errorf("describing the builder: %v, %+v", err, insts)
			return
		}
		i := insts.Reservations[0].Instances[0]
		res.publicIP, res.privateIP = aws.ToString(i.PublicIpAddress), aws.ToString(i.PrivateIpAddress)
	}
	var lines strings.Builder
	at := &cancelAt{name: "launch builder", cancel: look}
	b := e.baker(append([]ami.Option{fixedID(id), ami.WithProgress(teeReporter{progress.NewLines(&lines), at})}, opts...)...)
	r, m := bakeRecipe(t, `
  region     = "us-east-1"
  source_ami = "`+bakeAL2023+`"
  provision "shell" {
    inline = ["true"]
  }`+extra)
	p, err := b.Prepare(context.Background(), r, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ctx, p)
	if !at.fired() || !errors.Is(err, context.Canceled) {
		t.Fatalf("Build = %v, want it interrupted after the builder was launched:\n%s", err, lines.String())
	}
	if strings.Contains(lines.String(), `step="server: provision"`) {
		t.Errorf("the provision step started:\n%s", lines.String())
	}
	res.runs = runs.all()
	e.assertNoLeftovers("us-east-1")
	return res
}

// TestSSHDefaultPublicIPAllowsRunnerPublicAddress: in the default VPC's
// default subnet, which assigns public addresses, SSH goes to the
// builder's public IP, so the security group lets in this runner's
// public address as the check-IP service answers it, not its interface
// address (which behind NAT the builder never sees).
func TestSSHDefaultPublicIPAllowsRunnerPublicAddress(t *testing.T) {
	t.Parallel()
	e := newBakeEnv(t)
	ip := newCheckIP(t, http.StatusOK, "198.51.100.23\n")
	got := bakeUntilLaunched(t, e, "bk-ssh-public", "", ip.env())
	if !slices.Equal(got.ingress, []string{"198.51.100.23/32"}) {
		t.Errorf("SSH allowed from %v, want [198.51.100.23/32] (the check-IP answer)", got.ingress)
	}
	if n := ip.calls.Load(); n != 1 {
		t.Errorf("check-IP URL asked %d times, want once", n)
	}
	if got.publicIP == "" {
		t.Errorf("the builder has no public IP in the default subnet")
	}
	// The subnet assigns the address: bakery does not ask for one.
	if len(got.runs) != 1 || got.runs[0].NetworkInterfaces != nil || aws.ToString(got.runs[0].SubnetId) == "" {
		t.Errorf("RunInstances requests = %+v, want one with SubnetId and no NetworkInterfaces", got.runs)
	}
}

// TestSSHPrivateIPAllowsInterfaceAddress: with ssh_interface =
// "private_ip" the security group lets in the runner's interface
// address, even though the builder also has a public one; the check-IP
// URL is never asked.
func TestSSHPrivateIPAllowsInterfaceAddress(t *testing.T) {
	t.Parallel()
	e := newBakeEnv(t)
	ip := newCheckIP(t, http.StatusOK, "198.51.100.23\n")
	got := bakeUntilLaunched(t, e, "bk-ssh-private", `
  ssh_interface = "private_ip"`, ip.env())
	// moto_server listens on 127.0.0.1, so this runner's address on the
	// route to the EC2 endpoint is 127.0.0.1.
	if !slices.Equal(got.ingress, []string{"127.0.0.1/32"}) {
		t.Errorf("SSH allowed from %v, want [127.0.0.1/32] (the interface address)", got.ingress)
	}
	if n := ip.calls.Load(); n != 0 {
		t.Errorf("check-IP URL asked %d times, want never", n)
	}
	if got.publicIP == "" || got.privateIP == "" {
		t.Errorf("builder addresses: public %q, private %q; want both", got.publicIP, got.privateIP)
	}
}

// TestSSHSourceCIDRsWinOverCheckIP: the recipe's ssh_source_cidrs are
// what the security group lets in, and the check-IP URL is not asked.
func TestSSHSourceCIDRsWinOverCheckIP(t *testing.T) {
	t.Parallel()
	e := newBakeEnv(t)
	ip := newCheckIP(t, http.StatusOK, "198.51.100.23\n")
	got := bakeUntilLaunched(t, e, "bk-ssh-cidrs", `
  ssh_source_cidrs = ["192.0.2.0/24"]`, ip.env())
	if !slices.Equal(got.ingress, []string{"192.0.2.0/24"}) {
		t.Errorf("SSH allowed from %v, want [192.0.2.0/24] (ssh_source_cidrs)", got.ingress)
	}
	if n := ip.calls.Load(); n != 0 {
		t.Errorf("check-IP URL asked %d times, want never", n)
	}
}

// TestSSHExplicitPublicIPRequestsAddress: ssh_interface = "public_ip" in a
// subnet that does not assign public addresses asks RunInstances for one
// on the primary network interface, which then carries the subnet and
// the security group. moto's answer does not prove EC2 honours it, so
// the request itself is checked.
func TestSSHExplicitPublicIPRequestsAddress(t *testing.T) {
	t.Parallel()
	e := newBakeEnv(t)
	ctx := context.Background()
	c := e.ec2("us-east-1")
	vpc, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.9.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.9.1.0/24"), AvailabilityZone: aws.String("us-east-1a")})
	if err != nil {
		t.Fatal(err)
	}
	subnet := aws.ToString(sub.Subnet.SubnetId)
	if aws.ToBool(sub.Subnet.MapPublicIpOnLaunch) {
		t.Fatalf("new subnet %s maps public IPs; the test needs one that does not", subnet)
	}
	t.Cleanup(func() {
		_, _ = c.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(subnet)})
		_, _ = c.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: vpc.Vpc.VpcId})
	})
	ip := newCheckIP(t, http.StatusOK, "2001:db8::7\n")
	got := bakeUntilLaunched(t, e, "bk-ssh-explicit", `
  subnet_id     = "`+subnet+`"
  ssh_interface = "public_ip"`, ip.env())
	if !slices.Equal(got.ingress, []string{"2001:db8::7/128"}) {
		t.Errorf("SSH allowed from %v, want [2001:db8::7/128] (the check-IP answer)", got.ingress)
	}
	if len(got.runs) != 1 {
		t.Fatalf("RunInstances requests = %d, want 1", len(got.runs))
	}
	run := got.runs[0]
	if run.SubnetId != nil || len(run.SecurityGroupIds) != 0 || len(run.NetworkInterfaces) != 1 {
		t.Fatalf("RunInstances SubnetId %v, SecurityGroupIds %v, NetworkInterfaces %+v; want only one network interface",
			aws.ToString(run.SubnetId), run.SecurityGroupIds, run.NetworkInterfaces)
	}
	ni := run.NetworkInterfaces[0]
	if aws.ToInt32(ni.DeviceIndex) != 0 || !aws.ToBool(ni.AssociatePublicIpAddress) || aws.ToString(ni.SubnetId) != subnet ||
		len(ni.Groups) != 1 || !strings.HasPrefix(ni.Groups[0], "sg-") || !aws.ToBool(ni.DeleteOnTermination) {
		t.Errorf("network interface = device %d, public %v, subnet %s, groups %v, delete on termination %v; want 0, true, %s, the temporary group, true",
			aws.ToInt32(ni.DeviceIndex), aws.ToBool(ni.AssociatePublicIpAddress), aws.ToString(ni.SubnetId), ni.Groups, aws.ToBool(ni.DeleteOnTermination), subnet)
	}
}

// TestSSHCheckIPFailureLaunchesNothing: when this runner's public address
// cannot be found, the bake fails before the builder is launched, says
// which recipe settings avoid the lookup, and leaves nothing behind (the
// key pair made before is removed).
func TestSSHCheckIPFailureLaunchesNothing(t *testing.T) {
	t.Parallel()
	down := &checkIP{url: "http://127.0.0.1:1"} // nothing listens there
	for _, c := range []struct {
		name string
		ip   *checkIP
		want string
	}{
		{"server error", newCheckIP(t, http.StatusInternalServerError, "198.51.100.23\n"), "500 Internal Server Error"},
		{"garbage", newCheckIP(t, http.StatusOK, "<html>your IP is 198.51.100.23</html>\n"), "not an IP address"},
		{"unspecified", newCheckIP(t, http.StatusOK, "0.0.0.0\n"), "answered 0.0.0.0, not an address the builder can see"},
		{"unreachable", down, "127.0.0.1:1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newBakeEnv(t)
			var runs runInstancesLog
			e.cfg.APIOptions = append(e.cfg.APIOptions, runs.capture)
			var lines strings.Builder
			id := "bk-checkip-" + strings.ReplaceAll(c.name, " ", "-")
			// Should the bake get as far as launching, it is stopped there
			// rather than left to dial moto's made-up addresses.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			launch := &cancelAt{name: "launch builder", onStart: true, cancel: cancel}
			b := e.baker(fixedID(id), c.ip.env(), ami.WithProgress(teeReporter{progress.NewLines(&lines), launch}))
			r, m := bakeRecipe(t, `
  region     = "us-east-1"
  source_ami = "`+bakeAL2023+`"
  provision "shell" {
    inline = ["true"]
  }`)
			p, err := b.Prepare(context.Background(), r, m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.Build(ctx, p)
			t.Logf("bake error: %v", err)
			if launch.fired() {
				t.Errorf("the launch step started")
			}
			wantErrContains(t, err, "web.bake.hcl:6:", "finding this runner's public address", c.ip.url, c.want,
				"set ssh_source_cidrs", `ssh_interface = "private_ip"`, "ssh_host")
			if c.ip != down && c.ip.calls.Load() != 1 {
				t.Errorf("check-IP URL asked %d times, want once", c.ip.calls.Load())
			}
			if !strings.Contains(lines.String(), `step="server: create temporary key pair" status=done`) {
				t.Errorf("the key pair step did not run before the failure:\n%s", lines.String())
			}
			if runs := runs.all(); len(runs) != 0 {
				t.Errorf("RunInstances was called %d times, want never", len(runs))
			}
			if insts := e.instancesOf("us-east-1", id); len(insts) != 0 {
				t.Errorf("instances of the bake: %v, want none", insts)
			}
			e.assertNoLeftovers("us-east-1")
		})
	}
}
