package recipes

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestIAMInstanceProfile: iam_instance_profile names the builder's
// instance profile; it is empty when not written and stays out of the
// bake key (builder configuration, as in Packer), so adding it to a
// recipe causes no rebake.
func TestIAMInstanceProfile(t *testing.T) {
	for _, c := range []struct{ name, line, want string }{
		{"not written", ``, ""},
		{"plain", `  iam_instance_profile = "bakery-builder"`, "bakery-builder"},
		{"every allowed character", `  iam_instance_profile = "Builder_1+=,.@-x"`, "Builder_1+=,.@-x"},
		{"128 characters", `  iam_instance_profile = "` + strings.Repeat("p", 128) + `"`, strings.Repeat("p", 128)},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"r.bake.hcl": image(c.line)})
			r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{})
			m := r.MachineImages[0]
			if m.IAMInstanceProfile != c.want {
				t.Errorf("IAMInstanceProfile = %q, want %q", m.IAMInstanceProfile, c.want)
			}
			canon := CanonicalMachineImage(r, m)
			if bytes.Contains(canon, []byte("iam_instance_profile")) || (c.want != "" && bytes.Contains(canon, []byte(c.want))) {
				t.Errorf("canonical machine image holds the instance profile: %s", canon)
			}
			plain := writeTree(t, map[string]string{"r.bake.hcl": image()})
			without := mustLoad(t, filepath.Join(plain, "r.bake.hcl"), Options{})
			if !bytes.Equal(canon, CanonicalMachineImage(without, without.MachineImages[0])) {
				t.Errorf("iam_instance_profile changed the canonical recipe:\n%s\nwithout it:\n%s", canon, CanonicalMachineImage(without, without.MachineImages[0]))
			}
		})
	}
}

// TestIAMInstanceProfileInvalid: an empty name, an ARN, characters IAM
// refuses and names over 128 characters are reported offline at the
// value's file:line:col, saying what a name looks like.
func TestIAMInstanceProfileInvalid(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"empty", ``},
		{"ARN", `arn:aws:iam::123456789012:instance-profile/bakery-builder`},
		{"space", `bakery builder`},
		{"slash", `team/builder`},
		{"too long", strings.Repeat("p", 129)},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"r.bake.hcl": image(`  iam_instance_profile = "` + c.value + `"`)})
			file := filepath.Join(dir, "r.bake.hcl")
			_, diags := NewLoader().Load(file, Options{})
			wantDiags(t, diags, file, []string{`7:26: invalid IAM instance profile name "` + c.value + `"`})
			if len(diags) == 1 && !strings.Contains(diags[0].Detail, "not its ARN") {
				t.Errorf("detail = %q, want it to say what a name looks like", diags[0].Detail)
			}
		})
	}
}
