package recipes

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSSHInterface: ssh_interface takes "public_ip" or "private_ip" and
// is empty (the default: decided by the subnet at bake time) when not
// written; it stays out of the bake key.
func TestSSHInterface(t *testing.T) {
	for _, c := range []struct{ name, line, want string }{
		{"not written", ``, ""},
		{"public", `  ssh_interface = "public_ip"`, SSHInterfacePublicIP},
		{"private", `  ssh_interface = "private_ip"`, SSHInterfacePrivateIP},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"r.bake.hcl": image(c.line)})
			r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{})
			m := r.MachineImages[0]
			if m.SSHInterface != c.want {
				t.Errorf("SSHInterface = %q, want %q", m.SSHInterface, c.want)
			}
			if strings.Contains(string(CanonicalMachineImage(r, m)), "ssh_interface") {
				t.Errorf("canonical machine image names ssh_interface: %s", CanonicalMachineImage(r, m))
			}
		})
	}
}

// TestSSHInterfaceInvalid: a value other than "public_ip" or "private_ip"
// is reported offline at the value's position, with the allowed values
// and a suggestion.
func TestSSHInterfaceInvalid(t *testing.T) {
	for _, c := range []struct {
		line, summary, detail string
	}{
		{`  ssh_interface = "public-ip"`, `invalid ssh_interface "public-ip"`, `Did you mean "public_ip"? Use one of "public_ip", "private_ip".`},
		{`  ssh_interface = "eth0"`, `invalid ssh_interface "eth0"`, `Use one of "public_ip", "private_ip".`},
		{`  ssh_interface = ""`, `invalid ssh_interface ""`, `Use one of "public_ip", "private_ip".`},
	} {
		t.Run(c.line, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"r.bake.hcl": image(c.line)})
			file := filepath.Join(dir, "r.bake.hcl")
			_, diags := NewLoader().Load(file, Options{})
			wantDiags(t, diags, file, []string{"7:19: " + c.summary})
			if len(diags) == 1 && diags[0].Detail != c.detail {
				t.Errorf("detail = %q, want %q", diags[0].Detail, c.detail)
			}
		})
	}
}
