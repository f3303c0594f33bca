package ami

import (
	"context"
	"fmt"

	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// provisionStep connects to the builder over SSH and runs every
// provisioner in order, streaming their output to the Baker's output.
type provisionStep struct{}

func (provisionStep) Name() string { return "provision" }

func (provisionStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	m := st.m
	host, err := sshAddress(st)
	if err != nil {
		return err
	}
	timeout := m.SSHTimeout
	if timeout <= 0 {
		timeout = defaultSSHTimeout
	}
	user := m.SSHUsername
	if user == "" {
		user = defaultSSHUsername
	}
	comm, err := ConnectSSH(ctx, SSHTarget{Host: host, Port: sshPort(m), User: user, Key: st.key, Timeout: timeout}, st.b.out)
	if err != nil {
		at := "ssh_interface"
		if m.SSHHost != "" {
			at = "ssh_host"
		}
		return fmt.Errorf("%s: connecting to the builder %s at %s:%d as %s: %w", m.Pos(at), st.instanceID, host, sshPort(m), user, err)
	}
	st.comm = comm
	for i, p := range m.Provisioners {
		ps := st.rep.Step(fmt.Sprintf("provision %d/%d %s", i+1, len(m.Provisioners), describeProvisioner(p)))
		err := Provision(ctx, comm, p, st.b.out)
		ps.Done(err)
		if err != nil {
			return fmt.Errorf("provisioner %d (%s): %w", i+1, p.Pos(""), err)
		}
	}
	return nil
}

func (provisionStep) Cleanup(_ context.Context, st *bakeState, _ bool) error {
	if st.comm == nil {
		return nil
	}
	err := closeComm(st.comm)
	st.comm = nil
	return err
}

// sshAddress is where the provision step connects: ssh_host, or the
// builder's address that ssh_interface chooses (by default its public IP
// when it has one, else its private IP).
func sshAddress(st *bakeState) (string, error) {
	m := st.m
	switch {
	case m.SSHHost != "":
		return m.SSHHost, nil
	case m.SSHInterface == recipes.SSHInterfacePublicIP:
		if st.publicIP == "" {
			return "", fmt.Errorf("%s: builder %s has no public IP address: set ssh_interface = %q to connect to its private address %s, or use a subnet whose VPC has an internet gateway",
				m.Pos("ssh_interface"), st.instanceID, recipes.SSHInterfacePrivateIP, st.privateIP)
		}
		return st.publicIP, nil
	case m.SSHInterface == recipes.SSHInterfacePrivateIP:
		if st.privateIP == "" {
			return "", fmt.Errorf("%s: builder %s has no private IP address to connect to: set ssh_interface = %q or ssh_host", m.Pos("ssh_interface"), st.instanceID, recipes.SSHInterfacePublicIP)
		}
		return st.privateIP, nil
	case st.publicIP != "":
		return st.publicIP, nil
	case st.privateIP != "":
		return st.privateIP, nil
	}
	return "", fmt.Errorf("%s: builder %s has no IP address to connect to: set ssh_host, or use a subnet that assigns addresses", m.Pos("ssh_host"), st.instanceID)
}

// describeProvisioner names p in a step line.
func describeProvisioner(p *recipes.Provisioner) string {
	switch {
	case p.Type == "file":
		return "file " + p.Source + " → " + p.Destination
	case p.Script != "":
		return "shell " + p.Script
	}
	return "shell"
}

// sshPort is the SSH port of the builder.
func sshPort(m *recipes.MachineImage) int {
	if m.SSHPort == 0 {
		return defaultSSHPort
	}
	return m.SSHPort
}
