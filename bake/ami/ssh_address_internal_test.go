package ami

import (
	"strings"
	"testing"

	"github.com/bakery-sh/bakery/recipes"
)

// TestSSHAddress: the provision step connects to ssh_host when set, else
// to the builder address ssh_interface names, else to the public IP when
// the builder has one and the private IP otherwise; a missing address is
// an error naming what to change. (The moto tests stop before the
// provision step: moto's made-up addresses must not be dialled.)
func TestSSHAddress(t *testing.T) {
	const public, private = "198.51.100.9", "10.0.0.9"
	for _, c := range []struct {
		name               string
		host, iface        string
		publicIP, privIP   string
		want, wantErrParts string
	}{
		{name: "ssh_host wins", host: "127.0.0.1", iface: recipes.SSHInterfacePrivateIP, publicIP: public, privIP: private, want: "127.0.0.1"},
		{name: "default with public IP", publicIP: public, privIP: private, want: public},
		{name: "default without public IP", privIP: private, want: private},
		{name: "default without any", wantErrParts: "no IP address to connect to|set ssh_host"},
		{name: "public_ip", iface: recipes.SSHInterfacePublicIP, publicIP: public, privIP: private, want: public},
		{name: "private_ip with a public IP too", iface: recipes.SSHInterfacePrivateIP, publicIP: public, privIP: private, want: private},
		{name: "public_ip missing", iface: recipes.SSHInterfacePublicIP, privIP: private, wantErrParts: "has no public IP address|" + `ssh_interface = "private_ip"|` + private},
		{name: "private_ip missing", iface: recipes.SSHInterfacePrivateIP, publicIP: public, wantErrParts: "has no private IP address|" + `ssh_interface = "public_ip"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &bakeState{
				m:          &recipes.MachineImage{SSHHost: c.host, SSHInterface: c.iface},
				instanceID: "i-0123456789abcdef0",
				publicIP:   c.publicIP,
				privateIP:  c.privIP,
			}
			got, err := sshAddress(st)
			if c.wantErrParts != "" {
				if err == nil {
					t.Fatalf("sshAddress = %q, want an error", got)
				}
				for _, part := range append(strings.Split(c.wantErrParts, "|"), "i-0123456789abcdef0") {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error %q does not contain %q", err, part)
					}
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("sshAddress = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
