package awsx

// Permission is one IAM action a verb needs, and how far a policy may
// narrow it.
type Permission struct {
	// Action is the IAM action (ec2:CreateTags).
	Action string
	// Scope is how the policy narrows it.
	Scope Scope
	// Implicit is true for an action no call of bakery's makes, that AWS
	// checks on its behalf: EC2 using a KMS key for an encrypted copy,
	// Auto Scaling launching instances and passing their role. No test
	// against moto can show one missing.
	Implicit bool
}

// Scope says how a policy narrows a permission beyond its action.
type Scope int

// The scopes.
const (
	// ScopeRead is a read AWS does not narrow by resource (Describe*):
	// any resource, in the recipe's regions.
	ScopeRead Scope = iota
	// ScopeCreate creates a resource (or tags one as it is created): any
	// resource, in the recipe's regions.
	ScopeCreate
	// ScopeTagged changes a resource bakery made: only those whose
	// bakery:recipe tag is the recipe's.
	ScopeTagged
	// ScopeLedger reads or writes the ledger: objects under its prefix.
	ScopeLedger
	// ScopeKMS uses the recipe's KMS keys.
	ScopeKMS
	// ScopePassRole passes the fleet's instance profile role.
	ScopePassRole
	// ScopeGlobal is not regional and not narrowed (sts:GetCallerIdentity).
	ScopeGlobal
)

// Permissions lists, per verb, every IAM action its AWS calls need. It is
// the one list: Load's clients check every call against it in strict mode
// (StrictEnv, on in the tests), and bakery iam-policy prints it.
var Permissions = map[Verb][]Permission{
	VerbBake: concat(identity, ledgerWrite,
		read("ec2:DescribeImages", "ec2:DescribeImageAttribute", "ec2:DescribeInstanceTypes", "ec2:DescribeInstances",
			"ec2:DescribeKeyPairs", "ec2:DescribeRegions", "ec2:DescribeSecurityGroups", "ec2:DescribeSnapshotAttribute",
			"ec2:DescribeSnapshots", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ssm:GetParameter"),
		create("ec2:RunInstances", "ec2:CreateImage", "ec2:CopyImage", "ec2:CreateSecurityGroup", "ec2:ImportKeyPair"),
		tagged("ec2:AuthorizeSecurityGroupIngress", "ec2:CreateTags", "ec2:DeleteKeyPair", "ec2:DeleteSecurityGroup",
			"ec2:DeleteSnapshot", "ec2:DeregisterImage", "ec2:EnableImageDeprecation", "ec2:ModifyImageAttribute",
			"ec2:ModifySnapshotAttribute", "ec2:StopInstances", "ec2:TerminateInstances"),
		kmsForCopies, passRole),
	VerbPromote: concat(identity, ledgerWrite,
		read("ec2:DescribeImages", "ec2:DescribeImageAttribute", "ec2:DescribeRegions", "ec2:DescribeSnapshotAttribute", "ec2:DescribeSnapshots"),
		create("ec2:CopyImage"),
		tagged("ec2:CreateTags", "ec2:DeleteTags", "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute"),
		kmsForCopies),
	VerbLaunch: concat(identity, ledgerWrite,
		read("ec2:DescribeImages", "ec2:DescribeRegions", "ec2:DescribeSnapshots", "ec2:DescribeSubnets",
			"autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth", "cloudwatch:DescribeAlarms"),
		create("ec2:CreateLaunchTemplate", "autoscaling:CreateAutoScalingGroup", "elasticloadbalancing:DeregisterTargets"),
		tagged("ec2:CreateTags", "ec2:DeleteLaunchTemplate", "autoscaling:AttachLoadBalancerTargetGroups",
			"autoscaling:CreateOrUpdateTags", "autoscaling:DeleteAutoScalingGroup", "autoscaling:DeleteTags",
			"autoscaling:DetachLoadBalancerTargetGroups", "autoscaling:ResumeProcesses", "autoscaling:SuspendProcesses",
			"autoscaling:UpdateAutoScalingGroup"),
		[]Permission{{Action: "ec2:RunInstances", Scope: ScopeCreate, Implicit: true}}, passRole),
	VerbRetire: concat(identity, ledgerWrite,
		read("ec2:DescribeImages", "ec2:DescribeImageAttribute", "ec2:DescribeInstances", "ec2:DescribeLaunchTemplates",
			"ec2:DescribeLaunchTemplateVersions", "ec2:DescribeRegions", "ec2:DescribeSnapshots",
			"autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeLaunchConfigurations"),
		create("elasticloadbalancing:DeregisterTargets"),
		tagged("ec2:CreateTags", "ec2:DeleteLaunchTemplate", "ec2:DeleteSnapshot", "ec2:DeregisterImage",
			"autoscaling:DeleteAutoScalingGroup", "autoscaling:DetachLoadBalancerTargetGroups")),
	VerbSweep: concat(
		read("ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeKeyPairs", "ec2:DescribeLaunchTemplates",
			"ec2:DescribeRegions", "ec2:DescribeSecurityGroups", "ec2:DescribeSnapshots", "autoscaling:DescribeAutoScalingGroups"),
		tagged("ec2:DeleteKeyPair", "ec2:DeleteLaunchTemplate", "ec2:DeleteSecurityGroup", "ec2:DeleteSnapshot",
			"ec2:DeregisterImage", "ec2:TerminateInstances")),
	VerbStatus: concat(identity, ledgerRead,
		read("ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeInstances", "ec2:DescribeRegions",
			"autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth", "ssm:GetParameter")),
	VerbAdopt: concat(identity, ledgerWrite,
		read("ec2:DescribeImages", "ec2:DescribeRegions", "ec2:DescribeSnapshots"),
		// Packer's AMIs carry no bakery tag yet: adopt tags them, and
		// takes its tags back when it fails part way.
		create("ec2:CreateTags", "ec2:DeleteTags")),
}

var (
	identity    = []Permission{{Action: "sts:GetCallerIdentity", Scope: ScopeGlobal}}
	ledgerRead  = scoped(ScopeLedger, "s3:GetObject", "s3:ListBucket")
	ledgerWrite = scoped(ScopeLedger, "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:DeleteObject")
	// kmsForCopies is what EC2 asks of the caller's KMS key when it
	// copies an AMI into an encrypted one.
	kmsForCopies = implicit(ScopeKMS, "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
		"kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo")
	// passRole is what EC2 asks of the caller when an instance gets an
	// instance profile (the builder's, the fleet's).
	passRole = implicit(ScopePassRole, "iam:PassRole")
)

func read(actions ...string) []Permission   { return scoped(ScopeRead, actions...) }
func create(actions ...string) []Permission { return scoped(ScopeCreate, actions...) }
func tagged(actions ...string) []Permission { return scoped(ScopeTagged, actions...) }

func scoped(s Scope, actions ...string) []Permission {
	out := make([]Permission, len(actions))
	for i, a := range actions {
		out[i] = Permission{Action: a, Scope: s}
	}
	return out
}

func implicit(s Scope, actions ...string) []Permission {
	out := scoped(s, actions...)
	for i := range out {
		out[i].Implicit = true
	}
	return out
}

func concat(lists ...[]Permission) []Permission {
	var out []Permission
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
