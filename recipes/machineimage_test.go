package recipes

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

const amiDir = "../testdata/recipes/ami"

// TestMachineImageFixture loads the fixture that writes every argument
// and block of a machine_image and checks every evaluated field.
func TestMachineImageFixture(t *testing.T) {
	dir, err := filepath.Abs(amiDir)
	if err != nil {
		t.Fatal(err)
	}
	r := mustLoad(t, filepath.Join(amiDir, "ami.bake.hcl"), Options{})
	if r.Name != "web" || r.Version != "2.1.0" || len(r.Containers) != 0 || len(r.MachineImages) != 1 {
		t.Fatalf("recipe %q %q: %d containers, %d machine images", r.Name, r.Version, len(r.Containers), len(r.MachineImages))
	}
	got := *r.MachineImages[0]
	got.DeclRange, got.Ranges = hclRangeZero, nil
	var provisioners []Provisioner
	for _, p := range got.Provisioners {
		p := *p
		p.DeclRange, p.Ranges = hclRangeZero, nil
		provisioners = append(provisioners, p)
	}
	got.Provisioners = nil

	want := MachineImage{
		Name:   "web",
		Region: "us-east-1",
		SourceAMIFilter: &AMIFilter{
			Name:         "al2023-ami-*-x86_64",
			Owners:       []string{"amazon", "123456789012"},
			Architecture: "x86_64",
			MostRecent:   true,
			Filters:      map[string]string{"virtualization-type": "hvm"},
		},
		InstanceType:      "c7i.large",
		SubnetID:          "subnet-0123456789abcdef0",
		VPCID:             "vpc-0123abcd",
		SSHUsername:       "admin",
		SSHHost:           "127.0.0.1",
		SSHPort:           2222,
		SSHTimeout:        90 * time.Second,
		SSHPrivateKeyFile: filepath.Join(dir, "keys", "builder.key"),
		SSHSourceCIDRs:    []string{"203.0.113.7/32", "2001:db8::/64"},
		UserData:          "#cloud-config\npackage_update: true\n",
		RootVolumeSize:    16,
		RootVolumeType:    "io2",
		Encrypted:         true,
		KMSKeyID:          "alias/bakery",
		Regions:           []string{"eu-west-1", "us-gov-west-1"},
		RegionKMSKeyIDs:   map[string]string{"eu-west-1": "alias/bakery-eu", "us-gov-west-1": "alias/bakery-gov"},
		Timeouts:          Timeouts{Instance: 15 * time.Minute, Copy: 3 * time.Hour},
		ShareWith:         []string{"111122223333"},
		Tags:              map[string]string{"team": "web", "cost-center": "42"},
		AMIName:           "web-2.1.0",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("machine image =\n%+v\nwant\n%+v", got, want)
	}

	wantProvisioners := []Provisioner{
		{Type: "file", Source: "files/app.conf", SourcePath: filepath.Join(dir, "files", "app.conf"), Destination: "/tmp/app.conf"},
		{Type: "file", Source: "files/site/", SourcePath: filepath.Join(dir, "files", "site"), SourceIsDir: true, Destination: "/tmp/site", PauseBefore: 2 * time.Second},
		{Type: "shell", Inline: []string{"sudo mv /tmp/app.conf /etc/app.conf", "sudo reboot"},
			Env: map[string]string{"APP_ENV": "prod", "_LEVEL2": "2"}, ExpectDisconnect: true, PauseBefore: 10 * time.Second},
		{Type: "shell", Script: "scripts/setup.sh", ScriptPath: filepath.Join(dir, "scripts", "setup.sh")},
	}
	if len(provisioners) != len(wantProvisioners) {
		t.Fatalf("got %d provisioners, want %d", len(provisioners), len(wantProvisioners))
	}
	for i := range provisioners {
		if !reflect.DeepEqual(provisioners[i], wantProvisioners[i]) {
			t.Errorf("provisioner %d = %+v, want %+v", i, provisioners[i], wantProvisioners[i])
		}
	}
}

// TestMachineImageRanges: every written argument and block is recorded,
// so that a problem found later (by AWS) names its recipe line.
func TestMachineImageRanges(t *testing.T) {
	file := filepath.Join(amiDir, "ami.bake.hcl")
	r := mustLoad(t, file, Options{})
	m := r.MachineImages[0]
	for _, c := range []struct{ attr, want string }{
		{"regions", "37:26"},
		{"region", "15:12"},
		{"ssh_port", "28:26"},
		{"ami_name", "41:26"},
		{"source_ami_filter", "16:3"},
		{"source_ami_filter.owners", "18:20"},
		{"provision", "43:3"},
		{"source_ami", "14:1"}, // not written: the block
	} {
		if got := m.Pos(c.attr); got != file+":"+c.want {
			t.Errorf("Pos(%q) = %s, want %s:%s", c.attr, got, file, c.want)
		}
	}
	written := []string{"region", "source_ami_filter", "source_ami_filter.name", "source_ami_filter.owners",
		"source_ami_filter.architecture", "source_ami_filter.most_recent", "source_ami_filter.filters",
		"instance_type", "subnet_id", "vpc_id", "ssh_username", "ssh_host", "ssh_port", "ssh_timeout",
		"ssh_private_key_file", "ssh_source_cidrs", "user_data_file", "root_volume_size", "root_volume_type",
		"encrypted", "kms_key_id", "regions", "region_kms_key_ids", "share_with", "tags", "ami_name", "provision", "timeouts", "timeouts.instance", "timeouts.copy"}
	for _, k := range written {
		if _, ok := m.Ranges[k]; !ok {
			t.Errorf("Ranges lacks %q", k)
		}
	}
	if len(m.Ranges) != len(written) {
		t.Errorf("Ranges has %d entries, want %d: %v", len(m.Ranges), len(written), m.Ranges)
	}

	p := m.Provisioners[1]
	if got, want := p.Pos("pause_before"), file+":50:20"; got != want {
		t.Errorf("provisioner 1 Pos(pause_before) = %s, want %s", got, want)
	}
	if got, want := p.Pos("inline"), file+":47:3"; got != want {
		t.Errorf("provisioner 1 Pos(inline) = %s, want %s (the block)", got, want)
	}
	if len(p.Ranges) != 3 {
		t.Errorf("provisioner 1 Ranges = %v, want source, destination and pause_before", p.Ranges)
	}
}

// TestMachineImageDefaults: what Load fills in, and the other forms of
// the source AMI and user data.
func TestMachineImageDefaults(t *testing.T) {
	src := okRecipe + `machine_image "a" {
  source_ami = "ami-0123abcd"
  user_data  = "#!/bin/sh\necho hi\n"
}
machine_image "b" {
  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
  encrypted      = false
  instance_type  = "t4g.small"
}
container "c" {
  base = "scratch"
  layer {
    source      = "app/"
    destination = "/app/"
  }
}
machine_image "c" {
  source_ami_filter {
    owners = ["self"]
  }
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src, "app/x": ""})
	r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{})
	if len(r.Containers) != 1 || len(r.MachineImages) != 3 {
		t.Fatalf("got %d containers and %d machine images, want 1 and 3", len(r.Containers), len(r.MachineImages))
	}
	var names []string
	for _, m := range r.MachineImages {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Errorf("machine images in order %q, want file order", names)
	}
	a, b, c := r.MachineImages[0], r.MachineImages[1], r.MachineImages[2]
	want := MachineImage{
		Name:           "a",
		SourceAMI:      "ami-0123abcd",
		UserData:       "#!/bin/sh\necho hi\n",
		InstanceType:   "t3.micro",
		SSHUsername:    "ec2-user",
		SSHPort:        22,
		SSHTimeout:     5 * time.Minute,
		RootVolumeType: "gp3",
		Encrypted:      true,
	}
	got := *a
	got.DeclRange, got.Ranges = hclRangeZero, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("machine image a =\n%+v\nwant\n%+v", got, want)
	}
	if b.SourceAMISSM != "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64" || b.SourceAMI != "" || b.SourceAMIFilter != nil {
		t.Errorf("b source = %q %q %+v", b.SourceAMISSM, b.SourceAMI, b.SourceAMIFilter)
	}
	if b.Encrypted || b.InstanceType != "t4g.small" {
		t.Errorf("b encrypted, instance type = %v, %q", b.Encrypted, b.InstanceType)
	}
	if f := c.SourceAMIFilter; f == nil || !slices.Equal(f.Owners, []string{"self"}) || f.MostRecent || f.Name != "" || f.Architecture != "" || f.Filters != nil {
		t.Errorf("c filter = %+v, want owners self and nothing else", f)
	}
	if got := a.DeclRange.Start; got.Line != 5 || got.Column != 1 {
		t.Errorf("a DeclRange starts at %d:%d, want 5:1", got.Line, got.Column)
	}
}

// TestCanonicalMachineImage: the same recipe gives the same bytes
// whatever the working directory and wherever the checkout lives; none of
// it names an absolute path; ami_name and tags, the image's metadata, do
// not count, the rest does.
func TestCanonicalMachineImage(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join(amiDir, "web.canonical.json"))
	if err != nil {
		t.Fatal(err)
	}
	copies := []string{copyTree(t, amiDir, filepath.Join(t.TempDir(), "one")), copyTree(t, amiDir, filepath.Join(t.TempDir(), "deeper", "two"))}
	var first []byte
	for n, dir := range copies {
		for _, wd := range []string{dir, filepath.Dir(dir), t.TempDir()} {
			t.Chdir(wd)
			rel, err := filepath.Rel(wd, filepath.Join(dir, "ami.bake.hcl"))
			if err != nil {
				t.Fatal(err)
			}
			r := mustLoad(t, rel, Options{})
			got := CanonicalMachineImage(r, r.MachineImages[0])
			if bytes.Contains(got, []byte(dir)) || bytes.Contains(got, []byte(wd)) {
				t.Errorf("CanonicalMachineImage names an absolute path: %s", got)
			}
			if first == nil {
				first = got
				continue
			}
			if !bytes.Equal(got, first) {
				t.Errorf("copy %d loaded from %s: CanonicalMachineImage differs:\n%s\nvs\n%s", n, wd, got, first)
			}
		}
	}

	if !bytes.Equal(first, bytes.TrimSpace(golden)) {
		t.Errorf("CanonicalMachineImage differs from %s/web.canonical.json; got:\n%s", amiDir, first)
	}
	for _, absent := range []string{"ami_name", "web-2.1.0", "builder.key", "private_key", "tags", "cost-center"} {
		if bytes.Contains(first, []byte(absent)) {
			t.Errorf("CanonicalMachineImage holds %q: %s", absent, first)
		}
	}

	// ami_name does not count: not as written, not as set later.
	dir := copies[0]
	p := filepath.Join(dir, "ami.bake.hcl")
	src, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(string(src), `"web-${var.version}"`, `"web ${formatdate("YYYYMMDDhhmmss", timestamp())}"`, 1)
	if renamed == string(src) {
		t.Fatal("the fixture's ami_name changed; update this test")
	}
	if err := os.WriteFile(p, []byte(renamed), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustLoad(t, p, Options{})
	m := r.MachineImages[0]
	if !strings.HasPrefix(m.AMIName, "web 2") {
		t.Errorf("AMIName = %q", m.AMIName)
	}
	if got := CanonicalMachineImage(r, m); !bytes.Equal(got, first) {
		t.Errorf("CanonicalMachineImage depends on ami_name:\n%s\nvs\n%s", got, first)
	}
	m.AMIName = "something else"
	if got := CanonicalMachineImage(r, m); !bytes.Equal(got, first) {
		t.Error("CanonicalMachineImage depends on AMIName")
	}
	if m.SSHPrivateKeyFile == "" {
		t.Error("CanonicalMachineImage cleared SSHPrivateKeyFile of its argument")
	}

	// tags do not count either, as ami_name: not as written, not as set
	// later; and the argument keeps them.
	retagged := strings.Replace(renamed, `tags                 = { team = "web", "cost-center" = 42 }`, `tags                 = { team = "platform", owner = "ann" }`, 1)
	if retagged == renamed {
		t.Fatal("the fixture's tags changed; update this test")
	}
	if err := os.WriteFile(p, []byte(retagged), 0o644); err != nil {
		t.Fatal(err)
	}
	r = mustLoad(t, p, Options{})
	m = r.MachineImages[0]
	if m.Tags["owner"] != "ann" {
		t.Errorf("Tags = %v", m.Tags)
	}
	if got := CanonicalMachineImage(r, m); !bytes.Equal(got, first) {
		t.Errorf("CanonicalMachineImage depends on tags:\n%s\nvs\n%s", got, first)
	}
	if m.Tags["owner"] != "ann" {
		t.Error("CanonicalMachineImage cleared Tags of its argument")
	}
	m.Tags = nil
	if got := CanonicalMachineImage(r, m); !bytes.Equal(got, first) {
		t.Error("CanonicalMachineImage depends on Tags")
	}

	// Where the image goes does not: a region added later gets a copy of
	// the same AMI.
	for name, change := range map[string]func(m *MachineImage){
		"copy regions": func(m *MachineImage) { m.Regions = m.Regions[:1] },
		"copy keys":    func(m *MachineImage) { m.RegionKMSKeyIDs = map[string]string{"eu-west-1": "alias/other"} },
		"sharing":      func(m *MachineImage) { m.ShareWith = append(m.ShareWith, "444455556666") },
	} {
		r := mustLoad(t, p, Options{})
		m := r.MachineImages[0]
		change(m)
		if got := CanonicalMachineImage(r, m); !bytes.Equal(got, first) {
			t.Errorf("CanonicalMachineImage depends on the %s:\n%s\nvs\n%s", name, got, first)
		}
	}

	// What is baked counts.
	for name, change := range map[string]func(m *MachineImage){
		"instance type":   func(m *MachineImage) { m.InstanceType = "t3.small" },
		"provisioner":     func(m *MachineImage) { m.Provisioners[3].Script = "scripts/other.sh" },
		"source filter":   func(m *MachineImage) { m.SourceAMIFilter.Name = "al2023-ami-2023.5.*" },
		"user data":       func(m *MachineImage) { m.UserData += "\n" },
		"encryption":      func(m *MachineImage) { m.Encrypted = false },
		"root volume":     func(m *MachineImage) { m.RootVolumeSize = 32 },
		"provision order": func(m *MachineImage) { m.Provisioners[0], m.Provisioners[1] = m.Provisioners[1], m.Provisioners[0] },
	} {
		r := mustLoad(t, p, Options{})
		m := r.MachineImages[0]
		change(m)
		if bytes.Equal(CanonicalMachineImage(r, m), first) {
			t.Errorf("CanonicalMachineImage ignores a change of %s", name)
		}
	}
	r = mustLoad(t, p, Options{Vars: map[string]string{"version": "2.2.0"}})
	if bytes.Equal(CanonicalMachineImage(r, r.MachineImages[0]), first) {
		t.Error("CanonicalMachineImage ignores the recipe version")
	}
}

// TestWebAMIExample checks what the example AMI recipe evaluates to.
func TestWebAMIExample(t *testing.T) {
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	r := mustLoad(t, "web-ami.bake.hcl", Options{})
	if r.Name != "web" || len(r.Containers) != 0 || len(r.MachineImages) != 1 {
		t.Fatalf("recipe %q: %d containers, %d machine images", r.Name, len(r.Containers), len(r.MachineImages))
	}
	m := r.MachineImages[0]
	f := m.SourceAMIFilter
	if f == nil || f.Name != "al2023-ami-*-x86_64" || !slices.Equal(f.Owners, []string{"amazon"}) || !f.MostRecent {
		t.Errorf("source_ami_filter = %+v", f)
	}
	if m.InstanceType != "t3.micro" || !m.Encrypted || !slices.Equal(m.Regions, []string{"eu-west-1"}) || m.Tags["team"] != "web" {
		t.Errorf("machine image = %+v", m)
	}
	if len(m.Provisioners) != 2 {
		t.Fatalf("got %d provisioners, want 2", len(m.Provisioners))
	}
	file, shell := m.Provisioners[0], m.Provisioners[1]
	if file.Type != "file" || file.SourcePath != filepath.Join(dir, "ami", "nginx.conf") || file.SourceIsDir || file.Destination != "/tmp/nginx.conf" {
		t.Errorf("file provisioner = %+v", file)
	}
	if shell.Type != "shell" || shell.ScriptPath != filepath.Join(dir, "ami", "setup.sh") || shell.Env["APP_VERSION"] != r.Version {
		t.Errorf("shell provisioner = %+v", shell)
	}
	fi, err := os.Stat(shell.ScriptPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable (mode %v)", shell.ScriptPath, fi.Mode().Perm())
	}
	if b := CanonicalMachineImage(r, m); bytes.Contains(b, []byte(dir)) {
		t.Errorf("CanonicalMachineImage names an absolute path: %s", b)
	}
}

func TestSelfOwnedFilterMatchingOwnAMIsWarns(t *testing.T) {
	for _, c := range []struct {
		name, filter string
		warn         bool
	}{
		{"matches the default name", `name = "r-*"`, true},
		{"another family", `name = "golden-*"`, false},
		{"not owned by self", `name = "r-*"`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			owners := `["self"]`
			if c.name == "not owned by self" {
				owners = `["amazon"]`
			}
			src := okRecipe + `machine_image "m" {
  source_ami_filter {
    owners = ` + owners + `
    ` + c.filter + `
  }
}
`
			dir := writeTree(t, map[string]string{"r.bake.hcl": src})
			r, diags := NewLoader().Load(filepath.Join(dir, "r.bake.hcl"), Options{})
			if r == nil || diags.HasErrors() {
				t.Fatalf("load: %v", diags)
			}
			warned := len(diags) == 1 && diags[0].Severity == hcl.DiagWarning &&
				strings.Contains(diags[0].Summary, "matches the AMIs this recipe bakes") && diags[0].Subject.Start.Line == 8
			if warned != c.warn || (!c.warn && len(diags) != 0) {
				t.Errorf("diagnostics = %v, want a warning at line 8: %v", diags, c.warn)
			}
		})
	}
}
