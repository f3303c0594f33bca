package ami

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/bakery-sh/bakery/bake/bakekey"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// keyScheme names how AMI bake keys are computed. Changing what goes into
// a key must change it, so old keys never match new bakes. v3: tags are
// no longer in the key (like ami_name, they are metadata).
const keyScheme = "bakery/ami/v3"

// Defaults for machine_image attributes the recipe left empty.
const (
	defaultInstanceType = "t3.micro"
	defaultSSHUsername  = "ec2-user"
	defaultSSHPort      = 22
	defaultSSHTimeout   = 5 * time.Minute
	defaultVolumeType   = "gp3"
)

// maxListed is how many AMIs an ambiguous source_ami_filter error lists.
const maxListed = 10

// Prepare checks m against AWS and computes its bake key: the build
// region (m.Region, else the AWS config's) and every copy region must
// exist, the instance type must be offered, and the source AMI (an id, a
// filter or an SSM parameter) is resolved to one AMI id. It reads but
// creates nothing. Errors name the recipe line (file:line:col).
func (b *Baker) Prepare(ctx context.Context, r *recipes.Recipe, m *recipes.MachineImage) (*Plan, error) {
	p := &Plan{Recipe: r.Name, Version: r.Version, Artifact: m.Name, recipe: r, machine: m}
	p.BuildRegion = m.Region
	if p.BuildRegion == "" {
		p.BuildRegion = b.cfg.Region
	}
	if p.BuildRegion == "" {
		return nil, fmt.Errorf("%s: machine image %s has no region and the AWS config names none: set region in the recipe or AWS_REGION", m.Pos("region"), m.Name)
	}
	p.Regions = []string{p.BuildRegion}
	for _, reg := range m.Regions {
		if !slices.Contains(p.Regions, reg) {
			p.Regions = append(p.Regions, reg)
		}
	}
	rep := progress.WithPrefix(progress.For(ctx, b.progress), m.Name+": ")

	step := rep.Step("check regions and instance type")
	err := b.checkRegions(ctx, p, m)
	var it *ec2types.InstanceTypeInfo
	if err == nil {
		it, err = b.checkInstanceType(ctx, p.BuildRegion, m)
	}
	step.Done(err)
	if err != nil {
		return nil, err
	}

	step = rep.Step("resolve source AMI")
	src, err := b.resolveSource(ctx, p.BuildRegion, m)
	step.Done(err)
	if err != nil {
		return nil, err
	}
	p.source, p.SourceAMI, p.SourceAMIName = src, src.id, src.name
	p.SourceAMIOwner, p.SourceAMICreated = src.owner, src.created
	// Say which AMI a filter or an SSM parameter picked, as Packer does.
	rep.Info("source AMI " + src.String())
	if err := checkArchitecture(m, it, src); err != nil {
		return nil, err
	}

	step = rep.Step("hash inputs")
	k := bakekey.New(keyScheme)
	k.Add("recipe", recipes.CanonicalMachineImage(r, m))
	k.AddString("source-ami", src.id)
	err = hashInputs(ctx, m.Provisioners, k)
	step.Done(err)
	if err != nil {
		return nil, fmt.Errorf("machine image %s: hashing provisioner inputs: %w", m.Name, err)
	}
	p.Key = k.Sum()
	return p, nil
}

// checkRegions checks that the build region and every copy region exist
// and are enabled for the account.
func (b *Baker) checkRegions(ctx context.Context, p *Plan, m *recipes.MachineImage) error {
	// Ask a region known to exist when there is one: a misspelt build
	// region has no endpoint to ask.
	ask := b.cfg.Region
	if ask == "" {
		ask = p.BuildRegion
	}
	out, err := b.clients.EC2(ask).DescribeRegions(ctx, &ec2.DescribeRegionsInput{AllRegions: aws.Bool(true)})
	if err != nil {
		return fmt.Errorf("%s: listing AWS regions from %s: %w", m.Pos("region"), ask, awsx.ExplainError(err))
	}
	known := map[string]string{}
	var names []string
	for _, reg := range out.Regions {
		known[aws.ToString(reg.RegionName)] = aws.ToString(reg.OptInStatus)
		names = append(names, aws.ToString(reg.RegionName))
	}
	sort.Strings(names)
	for _, reg := range p.Regions {
		attr := "regions"
		if reg == p.BuildRegion {
			attr = "region"
		}
		status, ok := known[reg]
		if !ok {
			return fmt.Errorf("%s: region %q does not exist; known regions: %s", m.Pos(attr), reg, strings.Join(names, ", "))
		}
		if status == "not-opted-in" {
			return fmt.Errorf("%s: region %q is not enabled for this account: enable it in the AWS account settings, or remove it from the recipe", m.Pos(attr), reg)
		}
	}
	return nil
}

// checkInstanceType checks that the builder's instance type exists in the
// build region and returns what EC2 knows of it.
func (b *Baker) checkInstanceType(ctx context.Context, region string, m *recipes.MachineImage) (*ec2types.InstanceTypeInfo, error) {
	it := instanceType(m)
	out, err := b.clients.EC2(region).DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{
		InstanceTypes: []ec2types.InstanceType{ec2types.InstanceType(it)},
	})
	if code := awsx.ErrorCode(err); code == "InvalidInstanceType" || code == "InvalidParameterValue" || err == nil && len(out.InstanceTypes) == 0 {
		return nil, fmt.Errorf("%s: instance type %q does not exist in %s: pick one that does, such as %q (aws ec2 describe-instance-types lists them)", m.Pos("instance_type"), it, region, defaultInstanceType)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: checking instance type %q in %s: %w", m.Pos("instance_type"), it, region, awsx.ExplainError(err))
	}
	return &out.InstanceTypes[0], nil
}

// checkArchitecture checks that instance type it can boot the source AMI.
func checkArchitecture(m *recipes.MachineImage, it *ec2types.InstanceTypeInfo, src sourceImage) error {
	if src.arch == "" || it.ProcessorInfo == nil || len(it.ProcessorInfo.SupportedArchitectures) == 0 {
		return nil
	}
	var archs []string
	for _, a := range it.ProcessorInfo.SupportedArchitectures {
		if string(a) == src.arch {
			return nil
		}
		archs = append(archs, string(a))
	}
	return fmt.Errorf("%s: instance type %q runs %s but source AMI %s (%s) is %s: pick an instance type of that architecture or another source AMI",
		m.Pos("instance_type"), instanceType(m), strings.Join(archs, "/"), src.id, src.name, src.arch)
}

// resolveSource finds the source AMI: by id, by filter or through SSM.
func (b *Baker) resolveSource(ctx context.Context, region string, m *recipes.MachineImage) (sourceImage, error) {
	c := b.clients.EC2(region)
	switch {
	case m.SourceAMI != "" && m.SourceLink != nil:
		return b.sourceByID(ctx, c, region, m.SourceAMI, m.Pos("source_ami"), " (the AMI of "+m.SourceLink.String()+")")
	case m.SourceAMI != "":
		return b.sourceByID(ctx, c, region, m.SourceAMI, m.Pos("source_ami"), "")
	case m.SourceLink != nil:
		return sourceImage{}, fmt.Errorf("%s: source_ami %s is not resolved: bake the recipes together (bakery bake FOLDER) so that %s bakes first, or bake %s once", m.Pos("source_ami"), m.SourceLink, m.SourceLink.Recipe, m.SourceLink.Recipe)
	case m.SourceAMISSM != "":
		out, err := b.clients.SSM(region).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(m.SourceAMISSM)})
		var notFound *ssmtypes.ParameterNotFound
		if errors.As(err, &notFound) {
			return sourceImage{}, fmt.Errorf("%s: SSM parameter %s does not exist in %s: check the path (aws ssm get-parameter --name %s --region %s)", m.Pos("source_ami_ssm"), m.SourceAMISSM, region, m.SourceAMISSM, region)
		}
		if err != nil {
			return sourceImage{}, fmt.Errorf("%s: reading SSM parameter %s in %s: %w", m.Pos("source_ami_ssm"), m.SourceAMISSM, region, awsx.ExplainError(err))
		}
		id := strings.TrimSpace(aws.ToString(out.Parameter.Value))
		if !strings.HasPrefix(id, "ami-") {
			return sourceImage{}, fmt.Errorf("%s: SSM parameter %s in %s holds %q, not an AMI id: name a parameter that holds one", m.Pos("source_ami_ssm"), m.SourceAMISSM, region, id)
		}
		return b.sourceByID(ctx, c, region, id, m.Pos("source_ami_ssm"), " (from SSM parameter "+m.SourceAMISSM+")")
	case m.SourceAMIFilter != nil:
		return b.sourceByFilter(ctx, c, region, m)
	}
	return sourceImage{}, fmt.Errorf("%s: machine image %s names no source AMI: set source_ami, source_ami_filter or source_ami_ssm", m.Pos(""), m.Name)
}

func (b *Baker) sourceByID(ctx context.Context, c ec2API, region, id, pos, from string) (sourceImage, error) {
	out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
	if err != nil && !awsx.IsNotFound(err) && awsx.ErrorCode(err) != "InvalidAMIID.Malformed" {
		return sourceImage{}, fmt.Errorf("%s: looking up source AMI %s%s in %s: %w", pos, id, from, region, awsx.ExplainError(err))
	}
	if err != nil || len(out.Images) == 0 {
		return sourceImage{}, fmt.Errorf("%s: source AMI %s%s not found in %s: check the id (AMI ids differ per region) and that it is shared with this account", pos, id, from, region)
	}
	img := out.Images[0]
	if img.State != "" && img.State != ec2types.ImageStateAvailable {
		return sourceImage{}, fmt.Errorf("%s: source AMI %s%s in %s is %s, not available: pick an available AMI", pos, id, from, region, img.State)
	}
	return toSource(img), nil
}

// String describes the source AMI for a person: its id, then its name,
// owner and creation date when known.
func (s sourceImage) String() string {
	out := s.id
	if s.name != "" {
		out += " " + s.name
	}
	if s.owner != "" {
		out += ", owner " + s.owner
	}
	if s.created != "" {
		out += ", created " + s.created
	}
	return out
}

func toSource(img ec2types.Image) sourceImage {
	src := sourceImage{
		id:         aws.ToString(img.ImageId),
		name:       aws.ToString(img.Name),
		rootDevice: aws.ToString(img.RootDeviceName),
		arch:       string(img.Architecture),
		owner:      aws.ToString(img.OwnerId),
		created:    aws.ToString(img.CreationDate),
	}
	for _, bdm := range img.BlockDeviceMappings {
		if aws.ToString(bdm.DeviceName) == src.rootDevice && bdm.Ebs != nil {
			src.rootSize = aws.ToInt32(bdm.Ebs.VolumeSize)
		}
	}
	return src
}

func (b *Baker) sourceByFilter(ctx context.Context, c ec2API, region string, m *recipes.MachineImage) (sourceImage, error) {
	f := m.SourceAMIFilter
	in := &ec2.DescribeImagesInput{Owners: f.Owners, Filters: []ec2types.Filter{filter("state", "available")}}
	var searched []string
	if f.Name != "" {
		in.Filters = append(in.Filters, filter("name", f.Name))
		searched = append(searched, fmt.Sprintf("name %q", f.Name))
	}
	if len(f.Owners) > 0 {
		searched = append(searched, fmt.Sprintf("owners %s", strings.Join(f.Owners, ", ")))
	}
	if f.Architecture != "" {
		in.Filters = append(in.Filters, filter("architecture", f.Architecture))
		searched = append(searched, "architecture "+f.Architecture)
	}
	keys := make([]string, 0, len(f.Filters))
	for k := range f.Filters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		in.Filters = append(in.Filters, filter(k, f.Filters[k]))
		searched = append(searched, fmt.Sprintf("%s %q", k, f.Filters[k]))
	}
	var imgs []ec2types.Image
	pages := ec2.NewDescribeImagesPaginator(c, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return sourceImage{}, fmt.Errorf("%s: searching source AMIs in %s (%s): %w", m.Pos("source_ami_filter"), region, strings.Join(searched, ", "), awsx.ExplainError(err))
		}
		imgs = append(imgs, page.Images...)
	}
	if len(imgs) == 0 {
		return sourceImage{}, fmt.Errorf("%s: source_ami_filter matched no available AMI in %s (searched %s): check the name pattern, owners and filters (aws ec2 describe-images --region %s --owners ... --filters Name=name,Values=...)",
			m.Pos("source_ami_filter"), region, strings.Join(searched, ", "), region)
	}
	// Newest first; the name and then the id break ties, so the choice
	// does not depend on the order AWS answers in.
	sort.Slice(imgs, func(i, j int) bool {
		ci, cj := aws.ToString(imgs[i].CreationDate), aws.ToString(imgs[j].CreationDate)
		if ci != cj {
			return ci > cj
		}
		ni, nj := aws.ToString(imgs[i].Name), aws.ToString(imgs[j].Name)
		if ni != nj {
			return ni > nj
		}
		return aws.ToString(imgs[i].ImageId) < aws.ToString(imgs[j].ImageId)
	})
	if len(imgs) > 1 && !f.MostRecent {
		var list []string
		for i, img := range imgs {
			if i == maxListed {
				list = append(list, fmt.Sprintf("and %d more", len(imgs)-maxListed))
				break
			}
			list = append(list, fmt.Sprintf("%s (%s, %s)", aws.ToString(img.ImageId), aws.ToString(img.Name), aws.ToString(img.CreationDate)))
		}
		return sourceImage{}, fmt.Errorf("%s: source_ami_filter matched %d AMIs in %s (searched %s): %s; set most_recent = true to take the newest, or narrow the filter",
			m.Pos("source_ami_filter"), len(imgs), region, strings.Join(searched, ", "), strings.Join(list, ", "))
	}
	return toSource(imgs[0]), nil
}

// instanceType returns the builder's instance type.
func instanceType(m *recipes.MachineImage) string {
	if m.InstanceType == "" {
		return defaultInstanceType
	}
	return m.InstanceType
}
