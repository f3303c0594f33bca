package recipes

import (
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Defaults of a machine_image block, applied by Load.
const (
	defaultInstanceType   = "t3.micro"
	defaultSSHUsername    = "ec2-user"
	defaultSSHPort        = 22
	defaultSSHTimeout     = 5 * time.Minute
	defaultRootVolumeType = "gp3"
	// maxUserData is EC2's limit on user data, before base64 encoding.
	maxUserData = 16 << 10
)

var (
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-gov)?-[a-z]+-[0-9]$`)
	amiIDRE        = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	instanceTypeRE = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9-]+$`)
	subnetIDRE     = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	vpcIDRE        = regexp.MustCompile(`^vpc-[0-9a-f]{8,17}$`)
	accountIDRE    = regexp.MustCompile(`^[0-9]{12}$`)
	envNameRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// amiNameRE is what EC2 accepts in an AMI name.
	amiNameRE = regexp.MustCompile(`^[A-Za-z0-9 ()\[\]./\-'@_]{3,128}$`)
	// instanceProfileRE is what IAM accepts in an instance profile name.
	instanceProfileRE = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]{1,128}$`)

	architectures = []string{"x86_64", "arm64", "i386", "x86_64_mac", "arm64_mac"}
	volumeTypes   = []string{"gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"}
	sshInterfaces = []string{SSHInterfacePublicIP, SSHInterfacePrivateIP}
)

// The values of ssh_interface: which address of the builder bakery
// connects to over SSH.
const (
	// SSHInterfacePublicIP connects to the builder's public IP address,
	// asking EC2 for one when the subnet does not assign it.
	SSHInterfacePublicIP = "public_ip"
	// SSHInterfacePrivateIP connects to the builder's private IP address
	// (a runner in the same VPC, or reaching it over VPN or peering).
	SSHInterfacePrivateIP = "private_ip"
)

var machineImageSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "region"},
		{Name: "source_ami"},
		{Name: "source_ami_ssm"},
		{Name: "instance_type"},
		{Name: "subnet_id"},
		{Name: "vpc_id"},
		{Name: "ssh_username"},
		{Name: "ssh_host"},
		{Name: "ssh_port"},
		{Name: "ssh_timeout"},
		{Name: "ssh_private_key_file"},
		{Name: "ssh_source_cidrs"},
		{Name: "ssh_interface"},
		{Name: "user_data"},
		{Name: "user_data_file"},
		{Name: "root_volume_size"},
		{Name: "root_volume_type"},
		{Name: "encrypted"},
		{Name: "kms_key_id"},
		{Name: "regions"},
		{Name: "region_kms_key_ids"},
		{Name: "share_with"},
		{Name: "tags"},
		{Name: "ami_name"},
		{Name: "iam_instance_profile"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "source_ami_filter"},
		{Type: "provision", LabelNames: []string{"type"}},
		{Type: "timeouts"},
	},
}

var timeoutsSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "instance"},
		{Name: "image"},
		{Name: "copy"},
	},
}

var amiFilterSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "name"},
		{Name: "owners"},
		{Name: "architecture"},
		{Name: "most_recent"},
		{Name: "filters"},
	},
}

// provisionerSchemas are the bodies of provision "file" and provision "shell".
var provisionerSchemas = map[string]*hcl.BodySchema{
	"file": {
		Attributes: []hcl.AttributeSchema{
			{Name: "source"},
			{Name: "destination"},
			{Name: "pause_before"},
		},
	},
	"shell": {
		Attributes: []hcl.AttributeSchema{
			{Name: "inline"},
			{Name: "script"},
			{Name: "env"},
			{Name: "expect_disconnect"},
			{Name: "pause_before"},
		},
	},
}

// written is an argument or nested block as written in a block body.
type written struct {
	name string
	rng  hcl.Range
}

func (s *state) decodeMachineImage(b *hcl.Block) *MachineImage {
	m := &MachineImage{
		Name:           b.Labels[0],
		InstanceType:   defaultInstanceType,
		SSHUsername:    defaultSSHUsername,
		SSHPort:        defaultSSHPort,
		SSHTimeout:     defaultSSHTimeout,
		RootVolumeType: defaultRootVolumeType,
		Encrypted:      true,
		DeclRange:      b.DefRange,
		Ranges:         make(map[string]hcl.Range),
	}
	if !componentRE.MatchString(m.Name) {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("invalid machine_image name %q", m.Name),
			Detail:   "A machine_image name holds lowercase letters and digits, optionally separated by '.', '_', '__' or dashes, such as \"web\" or \"web-api\".",
			Subject:  b.LabelRanges[0].Ptr(),
		})
	}
	content, diags := b.Body.Content(machineImageSchema)
	s.addAll(diags)
	attrs := content.Attributes
	for name, attr := range attrs {
		m.Ranges[name] = attr.Expr.Range()
	}
	for _, nb := range content.Blocks {
		if _, ok := m.Ranges[nb.Type]; !ok {
			m.Ranges[nb.Type] = nb.DefRange
		}
	}

	if attr := attrs["region"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok && v != "" && s.checkRegion(attr, attr.Expr.Range(), v) {
			m.Region = v
		}
	}
	s.decodeSourceAMI(b, m, content)
	if attr := attrs["instance_type"]; attr != nil {
		if v, ok := s.matching(attr, instanceTypeRE, "instance type",
			`An instance type is FAMILY.SIZE in lowercase, such as "t3.micro" or "m7g.large".`); ok {
			m.InstanceType = v
		}
	}
	if attr := attrs["subnet_id"]; attr != nil {
		if v, ok := s.optionalMatching(attr, subnetIDRE, "subnet id",
			`A subnet id is "subnet-" followed by 8 or 17 hexadecimal digits, such as "subnet-0123456789abcdef0"; leave subnet_id out to use the default VPC's default subnet.`); ok {
			m.SubnetID = v
		}
	}
	if attr := attrs["vpc_id"]; attr != nil {
		if v, ok := s.optionalMatching(attr, vpcIDRE, "VPC id",
			`A VPC id is "vpc-" followed by 8 or 17 hexadecimal digits, such as "vpc-0123456789abcdef0"; leave vpc_id out to use the default VPC.`); ok {
			m.VPCID = v
		}
	}
	if attr := attrs["iam_instance_profile"]; attr != nil {
		if v, ok := s.matching(attr, instanceProfileRE, "IAM instance profile name",
			`An instance profile name is 1 to 128 letters, digits and + = , . @ _ -, such as "bakery-builder": write its name, not its ARN. Leave iam_instance_profile out to run the builder without one.`); ok {
			m.IAMInstanceProfile = v
		}
	}
	s.decodeSSH(m, attrs)
	s.decodeUserData(m, attrs)
	s.decodeVolume(m, attrs)
	s.decodeDistribution(m, attrs)
	if attr := attrs["ami_name"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok && v != "" {
			if amiNameRE.MatchString(v) {
				m.AMIName = v
			} else {
				s.attrError(attr, fmt.Sprintf("invalid ami_name %q", v),
					`An AMI name is 3 to 128 letters, digits, spaces and ( ) [ ] . / - ' @ _, such as "web-1.4.2"; for a time in it use formatdate("YYYYMMDDhhmmss", timestamp()), as ':' is not allowed. Leave ami_name out for "RECIPE-VERSION-TIMESTAMP".`)
			}
		}
	}
	var timeouts []written
	for _, tb := range content.Blocks {
		if tb.Type == "timeouts" {
			timeouts = append(timeouts, written{tb.Type, tb.DefRange})
			if len(timeouts) == 1 {
				m.Timeouts = s.decodeTimeouts(tb, m)
			}
		}
	}
	s.conflicts(timeouts, "A machine_image block holds at most one timeouts block")
	for _, pb := range content.Blocks {
		if pb.Type != "provision" {
			continue
		}
		if p := s.decodeProvisioner(pb); p != nil {
			m.Provisioners = append(m.Provisioners, p)
		}
	}
	return m
}

// decodeTimeouts reads a timeouts block: positive durations.
func (s *state) decodeTimeouts(b *hcl.Block, m *MachineImage) Timeouts {
	var t Timeouts
	content, diags := b.Body.Content(timeoutsSchema)
	s.addAll(diags)
	for name, attr := range content.Attributes {
		m.Ranges["timeouts."+name] = attr.Expr.Range()
		d, ok := s.duration(attr, true)
		if !ok {
			continue
		}
		switch name {
		case "instance":
			t.Instance = d
		case "image":
			t.Image = d
		case "copy":
			t.Copy = d
		}
	}
	return t
}

// decodeSourceAMI reads the one of source_ami, source_ami_filter and
// source_ami_ssm that is written.
func (s *state) decodeSourceAMI(b *hcl.Block, m *MachineImage, content *hcl.BodyContent) {
	var forms []written
	if attr := content.Attributes["source_ami"]; attr != nil {
		forms = append(forms, written{attr.Name, attr.Expr.Range()})
		if v, ok := s.stringValue(attr, false, ""); ok && strings.HasPrefix(v, LinkPrefix) {
			m.SourceLink = s.parseLink(attr, v, "source_ami")
		} else if v, ok := s.matchingValue(attr, v, ok, amiIDRE, "AMI id",
			`An AMI id is "ami-" followed by 8 or 17 hexadecimal digits, such as "ami-0abcdef1234567890". To pick the newest AMI by name, use a source_ami_filter block or source_ami_ssm instead.`); ok {
			m.SourceAMI = v
		}
	}
	for _, fb := range content.Blocks {
		if fb.Type == "source_ami_filter" {
			forms = append(forms, written{fb.Type, fb.DefRange})
			m.SourceAMIFilter = s.decodeAMIFilter(fb, m)
		}
	}
	if attr := content.Attributes["source_ami_ssm"]; attr != nil {
		forms = append(forms, written{attr.Name, attr.Expr.Range()})
		if v, ok := s.stringValue(attr, false, ""); ok {
			if strings.HasPrefix(v, "/") && len(v) > 1 {
				m.SourceAMISSM = v
			} else {
				s.attrError(attr, fmt.Sprintf("invalid SSM parameter path %q", v),
					`Write the full path of an SSM parameter that holds an AMI id, starting with "/", such as "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64".`)
			}
		}
	}
	if len(forms) == 0 {
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "missing source AMI",
			Detail:   `A machine_image block needs exactly one of source_ami = "ami-...", source_ami_ssm = "/aws/service/..." or a source_ami_filter { owners = ["amazon"] name = "al2023-ami-*-x86_64" most_recent = true } block.`,
			Subject:  b.DefRange.Ptr(),
		})
		return
	}
	s.conflicts(forms, "Write exactly one of source_ami, source_ami_filter and source_ami_ssm")
}

func (s *state) decodeAMIFilter(b *hcl.Block, m *MachineImage) *AMIFilter {
	f := &AMIFilter{}
	content, diags := b.Body.Content(amiFilterSchema)
	s.addAll(diags)
	attrs := content.Attributes
	for name, attr := range attrs {
		if _, ok := m.Ranges[b.Type+"."+name]; !ok {
			m.Ranges[b.Type+"."+name] = attr.Expr.Range()
		}
	}

	if attr := attrs["name"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok {
			f.Name = v
		}
	}
	if attr := s.required(b, content, "owners", `owners = ["amazon"] (account ids or aliases such as "amazon" or "self")`); attr != nil {
		if owners, ranges, ok := s.stringList(attr); ok {
			if len(owners) == 0 {
				s.attrError(attr, "empty owners", `List the accounts whose AMIs may be picked, such as owners = ["amazon"] or ["123456789012"]; without owners anyone's AMI could match.`)
			}
			for i, o := range owners {
				if o == "" {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  "empty owner",
						Detail:   `An owner is an account id such as "123456789012" or an alias such as "amazon" or "self".`,
						Subject:  ranges[i].Ptr(),
					})
				}
			}
			f.Owners = owners
		}
	}
	if attr := attrs["architecture"]; attr != nil {
		if v, ok := s.oneOf(attr, architectures, "architecture"); ok {
			f.Architecture = v
		}
	}
	if attr := attrs["most_recent"]; attr != nil {
		if v, ok := s.boolValue(attr); ok {
			f.MostRecent = v
		}
	}
	if attr := attrs["filters"]; attr != nil {
		if fs, ok := s.stringMap(attr); ok {
			if _, empty := fs[""]; empty {
				s.add(&hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "empty filter name",
					Detail:   `Filter names are DescribeImages filter names, such as "virtualization-type" or "root-device-type".`,
					Subject:  s.keyRange(attr, "").Ptr(),
				})
			}
			f.Filters = fs
		}
	}
	return f
}

func (s *state) decodeSSH(m *MachineImage, attrs hcl.Attributes) {
	if attr := attrs["ssh_username"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok {
			if v == "" {
				s.attrError(attr, "empty ssh_username", `Write the image's login user, such as "ec2-user" (Amazon Linux) or "ubuntu", or leave ssh_username out for "ec2-user".`)
			} else {
				m.SSHUsername = v
			}
		}
	}
	if attr := attrs["ssh_host"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok {
			m.SSHHost = v
		}
	}
	if attr := attrs["ssh_port"]; attr != nil {
		if v, ok := s.intInRange(attr, 1, 65535, "22"); ok {
			m.SSHPort = v
		}
	}
	if attr := attrs["ssh_timeout"]; attr != nil {
		if v, ok := s.duration(attr, true); ok {
			m.SSHTimeout = v
		}
	}
	if attr := attrs["ssh_private_key_file"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok && v != "" {
			if p, _, ok := s.localPath(attr, v, "private key file", false); ok {
				m.SSHPrivateKeyFile = p
			}
		}
	}
	if attr := attrs["ssh_source_cidrs"]; attr != nil {
		if cidrs, ranges, ok := s.stringList(attr); ok {
			for i, c := range cidrs {
				if _, err := netip.ParsePrefix(c); err != nil {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("invalid CIDR %q", c),
						Detail:   `Write an address block as ADDRESS/BITS, such as "203.0.113.7/32" or "10.0.0.0/16".`,
						Subject:  ranges[i].Ptr(),
					})
				}
			}
			m.SSHSourceCIDRs = cidrs
		}
	}
	if attr := attrs["ssh_interface"]; attr != nil {
		if v, ok := s.oneOf(attr, sshInterfaces, "ssh_interface"); ok {
			m.SSHInterface = v
		}
	}
}

func (s *state) decodeUserData(m *MachineImage, attrs hcl.Attributes) {
	var forms []written
	if attr := attrs["user_data"]; attr != nil {
		forms = append(forms, written{attr.Name, attr.Expr.Range()})
		if v, ok := s.stringValue(attr, false, ""); ok && s.checkUserDataSize(attr, len(v)) {
			m.UserData = v
		}
	}
	if attr := attrs["user_data_file"]; attr != nil {
		forms = append(forms, written{attr.Name, attr.Expr.Range()})
		if v, ok := s.stringValue(attr, false, ""); ok && v != "" {
			if p, _, ok := s.localPath(attr, v, "user data file", false); ok {
				b, err := os.ReadFile(p)
				switch {
				case err != nil:
					s.attrError(attr, fmt.Sprintf("reading user data file %q: %v", v, err), "Check the file's permissions.")
				case s.checkUserDataSize(attr, len(b)):
					m.UserData = string(b)
				}
			}
		}
	}
	s.conflicts(forms, "Write the user data inline with user_data or name a file with user_data_file, not both")
}

func (s *state) checkUserDataSize(attr *hcl.Attribute, n int) bool {
	if n <= maxUserData {
		return true
	}
	s.attrError(attr, fmt.Sprintf("user data too large (%d bytes)", n),
		fmt.Sprintf("EC2 accepts at most %d bytes of user data; compress it (cloud-init reads gzip) or move the work into a provision block.", maxUserData))
	return false
}

func (s *state) decodeVolume(m *MachineImage, attrs hcl.Attributes) {
	if attr := attrs["root_volume_size"]; attr != nil {
		if v, ok := s.intInRange(attr, 1, 16384, "16"); ok {
			m.RootVolumeSize = v
		}
	}
	if attr := attrs["root_volume_type"]; attr != nil {
		if v, ok := s.oneOf(attr, volumeTypes, "root_volume_type"); ok {
			m.RootVolumeType = v
		}
	}
	encryptedOK := true
	if attr := attrs["encrypted"]; attr != nil {
		var v bool
		v, encryptedOK = s.boolValue(attr)
		if encryptedOK {
			m.Encrypted = v
		}
	}
	if attr := attrs["kms_key_id"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok && v != "" {
			if encryptedOK && !m.Encrypted {
				s.attrError(attr, "kms_key_id needs encrypted = true",
					"A KMS key encrypts the root volume; remove encrypted = false, or remove kms_key_id.")
			} else {
				m.KMSKeyID = v
			}
		}
	}
}

// decodeDistribution reads where the AMI goes: copy regions and their
// keys, accounts it is shared with, and its tags.
func (s *state) decodeDistribution(m *MachineImage, attrs hcl.Attributes) {
	regionsOK := true
	if attr := attrs["regions"]; attr != nil {
		regions, ranges, ok := s.stringList(attr)
		regionsOK = ok
		seen := make(map[string]hcl.Range)
		for i, r := range regions {
			if !s.checkRegion(attr, ranges[i], r) {
				regionsOK = false
				continue
			}
			switch first, dup := seen[r]; {
			case dup:
				s.add(&hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("duplicate region %q", r),
					Detail:   fmt.Sprintf("List each copy region once; %q is first listed at %s.", r, posString(first)),
					Subject:  ranges[i].Ptr(),
				})
			case r == m.Region:
				s.add(&hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("regions lists the build region %q", r),
					Detail:   fmt.Sprintf("The AMI is baked in %s (region, at %s); regions lists only the other regions it is copied to, so remove %q from it.", r, posString(m.Ranges["region"]), r),
					Subject:  ranges[i].Ptr(),
				})
			default:
				seen[r] = ranges[i]
			}
		}
		m.Regions = regions
	}
	if attr := attrs["region_kms_key_ids"]; attr != nil {
		if keys, ok := s.stringMap(attr); ok {
			for _, r := range sortedKeys(keys) {
				if regionsOK && !slices.Contains(m.Regions, r) {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("region %q is not listed in regions", r),
						Detail:   fmt.Sprintf("region_kms_key_ids names the KMS key of each copy region; add %q to regions, or remove its key.", r),
						Subject:  s.keyRange(attr, r).Ptr(),
					})
				}
			}
			if len(keys) > 0 && !m.Encrypted {
				s.attrError(attr, "region_kms_key_ids needs encrypted = true",
					"KMS keys encrypt the copies; remove encrypted = false, or remove region_kms_key_ids.")
			}
			m.RegionKMSKeyIDs = keys
		}
	}
	if attr := attrs["share_with"]; attr != nil {
		if accounts, ranges, ok := s.stringList(attr); ok {
			s.checkAccounts(accounts, ranges)
			m.ShareWith = accounts
			// AWS cannot share a snapshot encrypted with the account's
			// default aws/ebs key: the other accounts could never use it.
			if len(accounts) > 0 && m.Encrypted && m.KMSKeyID == "" {
				s.attrError(attr, "sharing an encrypted AMI needs a customer-managed KMS key",
					"AMIs encrypted with the default aws/ebs key cannot be shared. Set kms_key_id (and region_kms_key_ids for copies) to a customer-managed key whose policy grants these accounts kms:Decrypt and kms:CreateGrant, or set encrypted = false.")
			}
		}
	}
	if attr := attrs["tags"]; attr != nil {
		if tags, ok := s.stringMap(attr); ok {
			valueRanges := s.mapValueRanges(attr)
			for _, k := range sortedKeys(tags) {
				var summary, detail string
				lower := strings.ToLower(k)
				switch {
				case k == "":
					summary, detail = "empty tag key", `Tag keys are non-empty, such as "team".`
				case strings.HasPrefix(lower, "bakery:"):
					summary, detail = fmt.Sprintf("reserved tag key %q", k),
						`Tag keys starting with "bakery:" hold bakery's catalog (recipe, version, bake key, stages) and are written by bakery; choose another key, such as "team".`
				case strings.HasPrefix(lower, "aws:"):
					summary, detail = fmt.Sprintf("reserved tag key %q", k),
						`Tag keys starting with "aws:" are reserved by AWS; choose another key, such as "team".`
				case len(k) > 128:
					summary, detail = "tag key too long", "EC2 tag keys are at most 128 characters."
				}
				if summary != "" {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  summary,
						Detail:   detail,
						Subject:  s.keyRange(attr, k).Ptr(),
					})
					continue
				}
				if len(tags[k]) > 256 {
					rng, found := valueRanges[k]
					if !found {
						rng = attr.Expr.Range()
					}
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("value of tag %q too long", k),
						Detail:   "EC2 tag values are at most 256 characters.",
						Subject:  rng.Ptr(),
					})
				}
			}
			m.Tags = tags
		}
	}
}

// checkAccounts reports each of accounts, written at the matching
// ranges, that is not an AWS account id or is listed twice.
func (s *state) checkAccounts(accounts []string, ranges []hcl.Range) {
	seen := make(map[string]bool)
	for i, a := range accounts {
		switch {
		case !accountIDRE.MatchString(a):
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("invalid account id %q", a),
				Detail:   `An AWS account id is 12 digits, written as a string to keep leading zeros, such as "111122223333".`,
				Subject:  ranges[i].Ptr(),
			})
		case seen[a]:
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("duplicate account id %q", a),
				Detail:   "List each account once.",
				Subject:  ranges[i].Ptr(),
			})
		default:
			seen[a] = true
		}
	}
}

// checkRegion reports r, written at rng in attr, unless it is an AWS
// region name.
func (s *state) checkRegion(attr *hcl.Attribute, rng hcl.Range, r string) bool {
	if regionRE.MatchString(r) {
		return true
	}
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("invalid region %q", r),
		Detail:   fmt.Sprintf(`%s names AWS regions such as "us-east-1", "eu-west-2" or "us-gov-west-1".`, attr.Name),
		Subject:  rng.Ptr(),
	})
	return false
}

func (s *state) decodeProvisioner(b *hcl.Block) *Provisioner {
	typ := b.Labels[0]
	schema, known := provisionerSchemas[typ]
	if !known {
		detail := `A provision block is provision "file" (uploads a file or a directory) or provision "shell" (runs commands).`
		if sug := suggest(typ, []string{"file", "shell"}); sug != "" {
			detail = fmt.Sprintf("Did you mean %q? ", sug) + detail
		}
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("unknown provisioner type %q", typ),
			Detail:   detail,
			Subject:  b.LabelRanges[0].Ptr(),
		})
		return nil
	}
	p := &Provisioner{Type: typ, DeclRange: b.DefRange, Ranges: make(map[string]hcl.Range)}
	content, diags := b.Body.Content(schema)
	s.addAll(diags)
	attrs := content.Attributes
	for name, attr := range attrs {
		p.Ranges[name] = attr.Expr.Range()
	}

	switch typ {
	case "file":
		if attr := s.required(b, content, "source", `source = "files/app.conf" (a file) or source = "files/" (a directory's contents)`); attr != nil {
			if src, ok := s.stringValue(attr, false, ""); ok {
				if src == "" {
					s.attrError(attr, "empty provisioner source", `Name a file, or a directory ending in "/", relative to the recipe's folder.`)
				} else if abs, isDir, ok := s.localPath(attr, src, "provisioner source", true); ok {
					p.Source, p.SourcePath, p.SourceIsDir = src, abs, isDir
				}
			}
		}
		if attr := s.required(b, content, "destination", `destination = "/tmp/app.conf"`); attr != nil {
			if dst, ok := s.stringValue(attr, false, ""); ok {
				if path.IsAbs(dst) {
					p.Destination = dst
				} else {
					s.attrError(attr, "destination must be an absolute path",
						fmt.Sprintf("Write the path on the builder from its root, such as %q.", "/"+strings.TrimPrefix(dst, "./")))
				}
			}
		}
	case "shell":
		var forms []written
		if attr := attrs["inline"]; attr != nil {
			forms = append(forms, written{attr.Name, attr.Expr.Range()})
			if cmds, _, ok := s.stringList(attr); ok {
				if len(cmds) == 0 {
					s.attrError(attr, "empty inline", `List the commands to run, such as inline = ["sudo dnf -y install nginx"].`)
				}
				p.Inline = cmds
			}
		}
		if attr := attrs["script"]; attr != nil {
			forms = append(forms, written{attr.Name, attr.Expr.Range()})
			if v, ok := s.stringValue(attr, false, ""); ok {
				if v == "" {
					s.attrError(attr, "empty script", `Name a script file relative to the recipe's folder, such as script = "scripts/setup.sh".`)
				} else if abs, _, ok := s.localPath(attr, v, "script", false); ok {
					p.Script, p.ScriptPath = v, abs
				}
			}
		}
		if len(forms) == 0 {
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "missing inline or script",
				Detail:   `A shell provisioner runs inline = ["command", ...] or script = "scripts/setup.sh"; add one of them.`,
				Subject:  b.DefRange.Ptr(),
			})
		}
		s.conflicts(forms, "A shell provisioner runs either inline commands or a script, not both")
		if attr := attrs["env"]; attr != nil {
			if env, ok := s.stringMap(attr); ok {
				for _, k := range sortedKeys(env) {
					if !envNameRE.MatchString(k) {
						s.add(&hcl.Diagnostic{
							Severity: hcl.DiagError,
							Summary:  fmt.Sprintf("invalid environment variable name %q", k),
							Detail:   `An environment variable name holds letters, digits and '_' and does not start with a digit, such as "APP_ENV".`,
							Subject:  s.keyRange(attr, k).Ptr(),
						})
					}
				}
				p.Env = env
			}
		}
		if attr := attrs["expect_disconnect"]; attr != nil {
			if v, ok := s.boolValue(attr); ok {
				p.ExpectDisconnect = v
			}
		}
	}
	if attr := attrs["pause_before"]; attr != nil {
		if v, ok := s.duration(attr, false); ok {
			p.PauseBefore = v
		}
	}
	return p
}

// conflicts reports each of forms written after the first (in file
// order): they are alternatives, of which at most one may be written.
// detail says which are alternatives.
func (s *state) conflicts(forms []written, detail string) {
	sort.SliceStable(forms, func(i, j int) bool { return forms[i].rng.Start.Byte < forms[j].rng.Start.Byte })
	for i := 1; i < len(forms); i++ {
		first, f := forms[0], forms[i]
		summary := fmt.Sprintf("%s conflicts with %s", f.name, first.name)
		if f.name == first.name {
			summary = fmt.Sprintf("duplicate %s block", f.name)
		}
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  summary,
			Detail:   fmt.Sprintf("%s; %s is already written at %s, so remove one of them.", detail, first.name, posString(first.rng)),
			Subject:  f.rng.Ptr(),
		})
	}
}

// matching evaluates attr as a string and reports it, as an invalid
// what, unless re matches it.
func (s *state) matching(attr *hcl.Attribute, re *regexp.Regexp, what, detail string) (string, bool) {
	v, ok := s.stringValue(attr, false, "")
	if !ok {
		return "", false
	}
	if !re.MatchString(v) {
		s.attrError(attr, fmt.Sprintf("invalid %s %q", what, v), detail)
		return "", false
	}
	return v, true
}

// matchingValue is matching for v, attr's value already evaluated
// (ok false: it did not evaluate, and that is reported).
func (s *state) matchingValue(attr *hcl.Attribute, v string, ok bool, re *regexp.Regexp, what, detail string) (string, bool) {
	if !ok {
		return "", false
	}
	if !re.MatchString(v) {
		s.attrError(attr, fmt.Sprintf("invalid %s %q", what, v), detail)
		return "", false
	}
	return v, true
}

// optionalMatching is matching for an optional argument: "" means unset.
func (s *state) optionalMatching(attr *hcl.Attribute, re *regexp.Regexp, what, detail string) (string, bool) {
	v, ok := s.stringValue(attr, false, "")
	if !ok || v == "" {
		return "", false
	}
	if !re.MatchString(v) {
		s.attrError(attr, fmt.Sprintf("invalid %s %q", what, v), detail)
		return "", false
	}
	return v, true
}

// oneOf evaluates attr as a string and reports it unless it is one of
// allowed; what names it in the summary.
func (s *state) oneOf(attr *hcl.Attribute, allowed []string, what string) (string, bool) {
	v, ok := s.stringValue(attr, false, "")
	if !ok {
		return "", false
	}
	if slices.Contains(allowed, v) {
		return v, true
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	detail := fmt.Sprintf("Use one of %s.", strings.Join(quoted, ", "))
	if sug := suggest(v, allowed); sug != "" {
		detail = fmt.Sprintf("Did you mean %q? ", sug) + detail
	}
	s.attrError(attr, fmt.Sprintf("invalid %s %q", what, v), detail)
	return "", false
}

// boolValue evaluates attr as true or false (the strings "true" and
// "false" are converted). A null value is treated as absent.
func (s *state) boolValue(attr *hcl.Attribute) (bool, bool) {
	val, ok := s.value(attr.Expr)
	if !ok || val.IsNull() {
		return false, false
	}
	b, err := convert.Convert(val, cty.Bool)
	if err != nil {
		s.attrError(attr, fmt.Sprintf("invalid type for %q", attr.Name), fmt.Sprintf("Expected true or false, got %s.", typeName(val)))
		return false, false
	}
	return b.True(), true
}

// intInRange evaluates attr as a whole number from lo to hi; example is
// a valid value for the detail. A null value is treated as absent.
func (s *state) intInRange(attr *hcl.Attribute, lo, hi int64, example string) (int, bool) {
	val, ok := s.value(attr.Expr)
	if !ok || val.IsNull() {
		return 0, false
	}
	n, err := convert.Convert(val, cty.Number)
	if err != nil {
		s.attrError(attr, fmt.Sprintf("invalid type for %q", attr.Name), fmt.Sprintf("Expected a whole number such as %s, got %s.", example, typeName(val)))
		return 0, false
	}
	bf := n.AsBigFloat()
	if !bf.IsInt() || bf.Cmp(new(big.Float).SetInt64(lo)) < 0 || bf.Cmp(new(big.Float).SetInt64(hi)) > 0 {
		s.attrError(attr, fmt.Sprintf("invalid %s %s", attr.Name, bf.Text('g', -1)),
			fmt.Sprintf("%s is a whole number from %d to %d, such as %s.", attr.Name, lo, hi, example))
		return 0, false
	}
	i, _ := bf.Int64()
	return int(i), true
}

// duration evaluates attr as a Go duration string ("30s", "5m"), which
// must be positive, or not negative when positive is false.
func (s *state) duration(attr *hcl.Attribute, positive bool) (time.Duration, bool) {
	v, ok := s.stringValue(attr, true, fmt.Sprintf(`quote a duration, as in %s = "5m"`, attr.Name))
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		s.attrError(attr, fmt.Sprintf("invalid duration %q", v),
			fmt.Sprintf(`%s is a duration such as "30s", "5m" or "1h30m" (units ns, us, ms, s, m, h).`, attr.Name))
		return 0, false
	case d < 0 || positive && d == 0:
		want := "not negative"
		if positive {
			want = "more than zero"
		}
		s.attrError(attr, fmt.Sprintf("invalid duration %q", v), fmt.Sprintf(`%s must be %s, such as "5m".`, attr.Name, want))
		return 0, false
	}
	return d, true
}

// warnSelfSource warns when a source_ami_filter owned by "self" matches
// the names of the AMIs the recipe itself bakes: every bake would start
// from the previous one and `bakery outdated` would list it forever.
func (s *state) warnSelfSource(r *Recipe, m *MachineImage) {
	if m == nil || r.Name == "" {
		return
	}
	f := m.SourceAMIFilter
	if f == nil || f.Name == "" || !slices.Contains(f.Owners, "self") {
		return
	}
	own := m.AMIName
	if own == "" {
		own = r.Name + "-" + r.Version + "-20060102150405" // the default: RECIPE-VERSION-TIMESTAMP
	}
	if ok, _ := path.Match(f.Name, own); !ok {
		return
	}
	rng, ok := m.Ranges["source_ami_filter.name"]
	if !ok {
		rng = m.Ranges["source_ami_filter"]
	}
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  "source_ami_filter matches the AMIs this recipe bakes",
		Detail: fmt.Sprintf("The name pattern %q also matches %q, the name of this recipe's own AMIs, so each bake would start from the previous one and outdated would always list the recipe. Narrow the pattern, or set ami_name so the names differ.",
			f.Name, own),
		Subject: rng.Ptr(),
	})
}
