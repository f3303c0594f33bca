package ami

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

// launchStep runs the builder instance from the source AMI and waits until
// it is running. IMDSv2 is required; the root volume takes the recipe's
// size, type and encryption; iam_instance_profile, when set, is the
// builder's instance profile.
type launchStep struct{}

func (launchStep) Name() string { return "launch builder" }

func (launchStep) Run(ctx context.Context, st *bakeState, _ progress.Step) error {
	m, p, region := st.m, st.plan, st.plan.BuildRegion
	tags := st.baseTags()
	tags["Name"] = fmt.Sprintf("bakery builder %s %s", p.Recipe, p.Version)
	in := &ec2.RunInstancesInput{
		ImageId:      aws.String(p.SourceAMI),
		InstanceType: ec2types.InstanceType(instanceType(m)),
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
		SubnetId:     aws.String(st.subnetID),
		MetadataOptions: &ec2types.InstanceMetadataOptionsRequest{
			HttpTokens:   ec2types.HttpTokensStateRequired,
			HttpEndpoint: ec2types.InstanceMetadataEndpointStateEnabled,
		},
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{rootVolume(m, p.source)},
		TagSpecifications:   catalogami.TagSpecs(tags, ec2types.ResourceTypeInstance, ec2types.ResourceTypeVolume),
	}
	if st.sgID != "" {
		in.SecurityGroupIds = []string{st.sgID}
	}
	if err := requestPublicIP(ctx, st, in); err != nil {
		return err
	}
	if st.keyName != "" {
		in.KeyName = aws.String(st.keyName)
	}
	if m.IAMInstanceProfile != "" {
		in.IamInstanceProfile = &ec2types.IamInstanceProfileSpecification{Name: aws.String(m.IAMInstanceProfile)}
	}
	if m.UserData != "" {
		in.UserData = aws.String(base64.StdEncoding.EncodeToString([]byte(m.UserData)))
	}
	c := st.b.clients.EC2(region)
	out, err := c.RunInstances(ctx, in)
	if err != nil {
		if profileError(m, err) {
			return fmt.Errorf("%s: launching the builder in %s with instance profile %q: %w; check that the profile exists in this account (aws iam get-instance-profile --instance-profile-name %s) and that the baking identity has iam:PassRole on its role (bakery iam-policy bake -f RECIPE --role ROLE prints the policy with it)",
				m.Pos("iam_instance_profile"), region, m.IAMInstanceProfile, awsx.ExplainError(err), m.IAMInstanceProfile)
		}
		return fmt.Errorf("launching the builder (%s from %s) in %s: %w", instanceType(m), p.SourceAMI, region, awsx.ExplainError(err))
	}
	if len(out.Instances) == 0 {
		return fmt.Errorf("launching the builder in %s: RunInstances returned no instance", region)
	}
	st.instanceID = aws.ToString(out.Instances[0].InstanceId)
	st.launched = st.b.clock.Now()

	if err := st.b.waitInstances(ctx, region, []string{st.instanceID}, ec2types.InstanceStateNameRunning, st.launched, st.m.Timeouts.Instance); err != nil {
		return err
	}
	d, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{st.instanceID}})
	if err != nil {
		return fmt.Errorf("reading the builder's addresses in %s: %w", region, awsx.ExplainError(err))
	}
	for _, r := range d.Reservations {
		for _, i := range r.Instances {
			st.publicIP, st.privateIP = aws.ToString(i.PublicIpAddress), aws.ToString(i.PrivateIpAddress)
		}
	}
	return nil
}

// Cleanup terminates the builder (after success too) and waits until it
// is terminated. After a failure it also terminates any instance tagged
// with the bake id whose RunInstances answer was lost.
func (launchStep) Cleanup(ctx context.Context, st *bakeState, failed bool) error {
	if st.keep(failed) {
		return nil
	}
	region := st.plan.BuildRegion
	ids := appendNew(nil, st.instanceID)
	var errs []error
	if failed {
		found, err := st.b.listInstances(ctx, region, tagFilter(catalog.TagBakeID, st.bakeID))
		if err != nil {
			errs = append(errs, err)
		}
		for _, in := range found {
			ids = appendNew(ids, in.ID)
		}
	}
	if err := st.b.terminate(ctx, region, ids, st.launched, st.m.Timeouts.Instance); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// profileError reports whether err, returned by RunInstances, may be
// about m's instance profile: one that does not exist (EC2 answers
// InvalidParameterValue naming iamInstanceProfile; moto NoSuchEntity) or
// that the baking identity may not pass (iam:PassRole, denied).
func profileError(m *recipes.MachineImage, err error) bool {
	if m.IAMInstanceProfile == "" {
		return false
	}
	switch awsx.ErrorCode(err) {
	case "NoSuchEntity", "UnauthorizedOperation", "AccessDenied":
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "instanceprofile") || strings.Contains(msg, "instance profile") || strings.Contains(msg, "passrole")
}

// requestPublicIP asks EC2 for a public IP address for the builder, as
// Packer's associate_public_ip_address does, when SSH goes to its public
// IP (ssh_interface = "public_ip") and the subnet does not assign one.
// AssociatePublicIpAddress exists only on a network interface, so the
// subnet and security group move into the primary interface's
// specification (EC2 refuses them in both places).
func requestPublicIP(ctx context.Context, st *bakeState, in *ec2.RunInstancesInput) error {
	m := st.m
	if len(m.Provisioners) == 0 || m.SSHInterface != recipes.SSHInterfacePublicIP {
		return nil
	}
	if st.subnetPublic {
		return nil
	}
	in.NetworkInterfaces = []ec2types.InstanceNetworkInterfaceSpecification{{
		DeviceIndex:              aws.Int32(0),
		SubnetId:                 in.SubnetId,
		Groups:                   in.SecurityGroupIds,
		AssociatePublicIpAddress: aws.Bool(true),
		DeleteOnTermination:      aws.Bool(true),
	}}
	in.SubnetId, in.SecurityGroupIds = nil, nil
	return nil
}

// rootVolume is the builder's root volume, on the source AMI's root device.
func rootVolume(m *recipes.MachineImage, src sourceImage) ec2types.BlockDeviceMapping {
	device := src.rootDevice
	if device == "" {
		device = "/dev/xvda"
	}
	vt := m.RootVolumeType
	if vt == "" {
		vt = defaultVolumeType
	}
	ebs := &ec2types.EbsBlockDevice{
		VolumeType:          ec2types.VolumeType(vt),
		Encrypted:           aws.Bool(m.Encrypted),
		DeleteOnTermination: aws.Bool(true),
	}
	// Without root_volume_size the volume keeps the source's size. EC2
	// would take it from the AMI when VolumeSize is left out, but moto
	// 5.2.5 refuses a mapping with neither size nor snapshot
	// (MissingParameter), so it is written out.
	switch {
	case m.RootVolumeSize > 0:
		ebs.VolumeSize = aws.Int32(int32(m.RootVolumeSize))
	case src.rootSize > 0:
		ebs.VolumeSize = aws.Int32(src.rootSize)
	}
	if m.Encrypted && m.KMSKeyID != "" {
		ebs.KmsKeyId = aws.String(m.KMSKeyID)
	}
	return ec2types.BlockDeviceMapping{DeviceName: aws.String(device), Ebs: ebs}
}
