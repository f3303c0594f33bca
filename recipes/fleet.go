package recipes

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// The strategies of a fleet block: how a launch replaces the groups that
// ran the stage before.
const (
	// StrategyRedBlack keeps the replaced groups disabled (detached from
	// their target groups, processes suspended, scaled to 0 after the
	// drain) so that a rollback can bring one back; KeepDisabled of them
	// are kept.
	StrategyRedBlack = "red-black"
	// StrategyHighlander deletes every replaced group once the new one
	// serves and the drain has passed.
	StrategyHighlander = "highlander"
)

// The health check types of a fleet's Auto Scaling group.
const (
	// HealthCheckEC2 counts an instance healthy while EC2 says it runs.
	HealthCheckEC2 = "EC2"
	// HealthCheckELB also counts the load balancer's health checks.
	HealthCheckELB = "ELB"
)

// Defaults of a fleet block, applied by Load.
const (
	// DefaultFleetInstanceType is the instance type of a fleet that names
	// none.
	DefaultFleetInstanceType = "t3.micro"
	// DefaultHealthCheckGrace is how long the group ignores the health
	// checks of a new instance unless health_check_grace says otherwise.
	DefaultHealthCheckGrace = 300 * time.Second
	// DefaultHealthyTimeout bounds the health gate of a launch unless
	// healthy_timeout says otherwise.
	DefaultHealthyTimeout = 15 * time.Minute
	// DefaultKeepDisabled is how many disabled groups a red-black fleet
	// keeps for rollback unless keep_disabled says otherwise.
	DefaultKeepDisabled = 1
	// maxGroupSize bounds min_size, max_size and desired_capacity: what
	// a recipe may ask of one group.
	maxGroupSize = 10000
)

var (
	securityGroupIDRE = regexp.MustCompile(`^sg-[0-9a-f]{8,17}$`)
	// targetGroupARNRE is an Elastic Load Balancing target group ARN.
	targetGroupARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+$`)
	// alarmNameRE is a CloudWatch alarm name.
	alarmNameRE = regexp.MustCompile(`^[^\x00-\x1f\x7f]{1,255}$`)
	// instanceProfileRefRE is an instance profile name or ARN.
	instanceProfileRefRE = regexp.MustCompile(`^(arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/[\w+=,.@/-]+|[\w+=,.@-]{1,128})$`)

	strategies       = []string{StrategyRedBlack, StrategyHighlander}
	healthCheckTypes = []string{HealthCheckEC2, HealthCheckELB}
)

var fleetSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "image"},
		{Name: "region"},
		{Name: "instance_type"},
		{Name: "min_size"},
		{Name: "max_size"},
		{Name: "desired_capacity"},
		{Name: "subnets"},
		{Name: "security_groups"},
		{Name: "instance_profile"},
		{Name: "user_data_file"},
		{Name: "target_groups"},
		{Name: "alarms"},
		{Name: "health_check_type"},
		{Name: "health_check_grace"},
		{Name: "strategy"},
		{Name: "keep_disabled"},
		{Name: "drain"},
		{Name: "healthy_timeout"},
		{Name: "tags"},
	},
}

// Fleet is an evaluated fleet block: how `bakery launch` runs the image
// of one stage as an Auto Scaling group. Fleets say where and how images
// run, not what is baked: they are not part of the bake key.
type Fleet struct {
	// Stage is the block label, one of the recipe's stages.
	Stage string `json:"stage"`
	// Image is the machine_image block whose AMI the fleet runs; Load
	// sets it to the recipe's only machine_image when the block names
	// none.
	Image string `json:"image"`
	// Region is where the fleet runs; empty means the AWS config's
	// region.
	Region string `json:"region,omitempty"`
	// InstanceType is the instance type. Default
	// DefaultFleetInstanceType.
	InstanceType string `json:"instance_type"`
	// MinSize, MaxSize and DesiredCapacity size the group; nil means the
	// serving group's value (1 when there is none).
	MinSize         *int `json:"min_size,omitempty"`
	MaxSize         *int `json:"max_size,omitempty"`
	DesiredCapacity *int `json:"desired_capacity,omitempty"`
	// Subnets place the instances; empty means the default VPC's
	// default subnets of the region.
	Subnets []string `json:"subnets,omitempty"`
	// SecurityGroups are the instances' security group ids; empty means
	// the VPC's default group.
	SecurityGroups []string `json:"security_groups,omitempty"`
	// InstanceProfile is the IAM instance profile, by name or ARN.
	InstanceProfile string `json:"instance_profile,omitempty"`
	// UserDataFile is user_data_file as written; UserData is its
	// content, read by Load relative to the recipe's folder (at most
	// 16 KiB).
	UserDataFile string `json:"user_data_file,omitempty"`
	UserData     string `json:"-"`
	// TargetGroups are the ARNs of the load balancer target groups the
	// group serves.
	TargetGroups []string `json:"target_groups,omitempty"`
	// Alarms are CloudWatch alarm names (in Region) that must all be OK
	// for the new group to pass the health gate.
	Alarms []string `json:"alarms,omitempty"`
	// HealthCheckType is HealthCheckEC2 or HealthCheckELB. Default: ELB
	// when the fleet has target groups, else EC2.
	HealthCheckType string `json:"health_check_type"`
	// HealthCheckGrace is the group's health check grace period. Default
	// DefaultHealthCheckGrace.
	HealthCheckGrace time.Duration `json:"health_check_grace"`
	// Strategy is StrategyRedBlack (the default) or StrategyHighlander.
	Strategy string `json:"strategy"`
	// KeepDisabled is how many disabled groups a red-black launch keeps
	// for rollback. Default DefaultKeepDisabled.
	KeepDisabled int `json:"keep_disabled"`
	// Drain is how long a disabled group keeps its instances before it
	// is scaled to 0. Default 0.
	Drain time.Duration `json:"drain,omitempty"`
	// HealthyTimeout bounds the health gate. Default
	// DefaultHealthyTimeout.
	HealthyTimeout time.Duration `json:"healthy_timeout"`
	// Tags are extra tags on the group, its instances and their volumes.
	Tags map[string]string `json:"tags,omitempty"`
	// DeclRange is where the fleet block starts.
	DeclRange hcl.Range `json:"-"`
	// Ranges maps each written attribute to where its value is.
	Ranges map[string]hcl.Range `json:"-"`
}

// Pos returns "file:line:col" of attribute attr, or of the block when
// attr was not written.
func (f *Fleet) Pos(attr string) string { return pos(f.Ranges, attr, f.DeclRange) }

// Sizes returns min, desired and max for a group that replaces one
// sized curMin/curDesired/curMax (all 0 when there is none, which means
// 1/1/1): each size the fleet sets wins over the current one, and a
// capacity above 0 is the desired capacity, stretching min down or max
// up to hold it. Desired is then kept within min and max.
func (f *Fleet) Sizes(curMin, curDesired, curMax, capacity int) (minSize, desired, maxSize int) {
	if curMin == 0 && curDesired == 0 && curMax == 0 {
		curMin, curDesired, curMax = 1, 1, 1
	}
	minSize, desired, maxSize = curMin, curDesired, curMax
	if f.MinSize != nil {
		minSize = *f.MinSize
	}
	if f.DesiredCapacity != nil {
		desired = *f.DesiredCapacity
	}
	if f.MaxSize != nil {
		maxSize = *f.MaxSize
	}
	if capacity > 0 {
		desired = capacity
		minSize, maxSize = min(minSize, capacity), max(maxSize, capacity)
	}
	minSize = min(minSize, maxSize)
	return minSize, min(max(desired, minSize), maxSize), maxSize
}

// Fleet returns the fleet block of stage, or nil when the recipe has
// none.
func (r *Recipe) Fleet(stage string) *Fleet { return r.Fleets[stage] }

// decodeFleets reads the fleet blocks, in file order, into r.Fleets. It
// runs after the recipe block and the machine images are read.
func (s *state) decodeFleets(blocks []*hcl.Block, r *Recipe) {
	seen := make(map[string]*hcl.Block)
	for _, b := range blocks {
		f := s.decodeFleet(b, r)
		stage := b.Labels[0]
		if !s.checkStageLabel(b, r, "runs the image of", "fleet of unknown stage %q") {
			continue
		}
		if s.duplicate(seen, b, "fleet", fmt.Sprintf("Each stage runs at most one fleet and %q is first configured at %%s; merge the two blocks into one.", stage)) {
			continue
		}
		if r.Fleets == nil {
			r.Fleets = make(map[string]*Fleet)
		}
		r.Fleets[stage] = f
	}
}

func (s *state) decodeFleet(b *hcl.Block, r *Recipe) *Fleet {
	f := &Fleet{
		Stage:            b.Labels[0],
		InstanceType:     DefaultFleetInstanceType,
		HealthCheckGrace: DefaultHealthCheckGrace,
		Strategy:         StrategyRedBlack,
		KeepDisabled:     DefaultKeepDisabled,
		HealthyTimeout:   DefaultHealthyTimeout,
		DeclRange:        b.DefRange,
		Ranges:           make(map[string]hcl.Range),
	}
	content, diags := b.Body.Content(fleetSchema)
	s.addAll(diags)
	attrs := content.Attributes
	for name, attr := range attrs {
		f.Ranges[name] = attr.Expr.Range()
	}

	s.decodeFleetImage(b, f, attrs, r)
	if attr := attrs["region"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok && v != "" && s.checkRegion(attr, attr.Expr.Range(), v) {
			f.Region = v
			s.checkFleetRegion(attr, f, r)
		}
	}
	if attr := attrs["instance_type"]; attr != nil {
		if v, ok := s.matching(attr, instanceTypeRE, "instance type",
			`An instance type is FAMILY.SIZE in lowercase, such as "t3.small" or "m7g.large".`); ok {
			f.InstanceType = v
		}
	}
	sizes := map[string]**int{"min_size": &f.MinSize, "max_size": &f.MaxSize, "desired_capacity": &f.DesiredCapacity}
	for _, name := range []string{"min_size", "max_size", "desired_capacity"} {
		if attr := attrs[name]; attr != nil {
			if v, ok := s.intInRange(attr, 0, maxGroupSize, "2"); ok {
				*sizes[name] = &v
			}
		}
	}
	s.checkFleetSizes(f, attrs)
	if attr := attrs["subnets"]; attr != nil {
		f.Subnets = s.idList(attr, subnetIDRE, "subnet id",
			`A subnet id is "subnet-" followed by 8 or 17 hexadecimal digits, such as "subnet-0123456789abcdef0"; leave subnets out to use the default VPC's default subnets.`)
	}
	if attr := attrs["security_groups"]; attr != nil {
		f.SecurityGroups = s.idList(attr, securityGroupIDRE, "security group id",
			`A security group id is "sg-" followed by 8 or 17 hexadecimal digits, such as "sg-0123456789abcdef0".`)
	}
	if attr := attrs["target_groups"]; attr != nil {
		f.TargetGroups = s.idList(attr, targetGroupARNRE, "target group ARN",
			`A target group is named by its ARN, such as "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/web/0123456789abcdef".`)
	}
	if attr := attrs["alarms"]; attr != nil {
		f.Alarms = s.idList(attr, alarmNameRE, "alarm name",
			`Name a CloudWatch alarm of the fleet's region by its name (1 to 255 characters, no control characters), such as "web-5xx".`)
	}
	if attr := attrs["instance_profile"]; attr != nil {
		if v, ok := s.optionalMatching(attr, instanceProfileRefRE, "instance profile",
			`Name an IAM instance profile by its name, such as "web", or its ARN, such as "arn:aws:iam::111122223333:instance-profile/web".`); ok {
			f.InstanceProfile = v
		}
	}
	if attr := attrs["user_data_file"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok && v != "" {
			if p, _, ok := s.localPath(attr, v, "user data file", false); ok {
				if data, ok := s.readUserData(attr, p, v); ok {
					f.UserDataFile, f.UserData = v, data
				}
			}
		}
	}
	f.HealthCheckType = HealthCheckEC2
	if len(f.TargetGroups) > 0 {
		f.HealthCheckType = HealthCheckELB
	}
	if attr := attrs["health_check_type"]; attr != nil {
		if v, ok := s.oneOf(attr, healthCheckTypes, "health_check_type"); ok {
			f.HealthCheckType = v
		}
	}
	if attr := attrs["health_check_grace"]; attr != nil {
		if d, ok := s.duration(attr, false); ok {
			f.HealthCheckGrace = d
		}
	}
	if attr := attrs["strategy"]; attr != nil {
		if v, ok := s.oneOf(attr, strategies, "strategy"); ok {
			f.Strategy = v
		}
	}
	if attr := attrs["keep_disabled"]; attr != nil {
		if v, ok := s.intInRange(attr, 0, 100, "1"); ok {
			f.KeepDisabled = v
		}
	}
	if attr := attrs["drain"]; attr != nil {
		if d, ok := s.duration(attr, false); ok {
			f.Drain = d
		}
	}
	if attr := attrs["healthy_timeout"]; attr != nil {
		if d, ok := s.duration(attr, true); ok {
			f.HealthyTimeout = d
		}
	}
	if attr := attrs["tags"]; attr != nil {
		if tags, ok := s.stringMap(attr); ok {
			for _, k := range sortedKeys(tags) {
				if lk := strings.ToLower(k); strings.HasPrefix(lk, "bakery:") || strings.HasPrefix(lk, "aws:") || k == "" {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("reserved tag key %q", k),
						Detail:   `Tag keys starting with "bakery:" are bakery's own and "aws:" is AWS's; name the tag differently, such as "team".`,
						Subject:  s.keyRange(attr, k).Ptr(),
					})
				}
			}
			f.Tags = tags
		}
	}
	return f
}

// decodeFleetImage sets f.Image from the image attribute, or to the
// recipe's only machine_image.
func (s *state) decodeFleetImage(b *hcl.Block, f *Fleet, attrs hcl.Attributes, r *Recipe) {
	names := make([]string, len(r.MachineImages))
	for i, m := range r.MachineImages {
		names[i] = m.Name
	}
	attr := attrs["image"]
	if attr == nil {
		switch len(names) {
		case 1:
			f.Image = names[0]
		case 0:
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "a fleet needs a machine_image",
				Detail:   `A fleet launches the AMI of one of the recipe's machine_image blocks, and this recipe has none; add a machine_image "NAME" { ... } block, or remove the fleet block.`,
				Subject:  b.DefRange.Ptr(),
			})
		default:
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "missing required argument \"image\"",
				Detail:   fmt.Sprintf("The recipe has several machine_image blocks (%s); name the one this fleet runs, as in image = %q.", strings.Join(names, ", "), names[0]),
				Subject:  b.DefRange.Ptr(),
			})
		}
		return
	}
	v, ok := s.stringValue(attr, false, "")
	if !ok {
		return
	}
	if slices.Contains(names, v) {
		f.Image = v
		return
	}
	detail := "The recipe has no machine_image blocks; a fleet runs the AMI of one of them."
	if len(names) > 0 {
		detail = fmt.Sprintf("image names the machine_image block whose AMI the fleet runs: one of %s.", strings.Join(names, ", "))
		if sug := suggest(v, names); sug != "" {
			detail = fmt.Sprintf("Did you mean %q? ", sug) + detail
		}
	}
	s.attrError(attr, fmt.Sprintf("unknown machine_image %q", v), detail)
}

// checkFleetRegion reports a fleet region the image of its stage is never
// in: not the machine_image's build region, copy regions, or a region of
// this stage or an earlier one (promotion copies the image there).
func (s *state) checkFleetRegion(attr *hcl.Attribute, f *Fleet, r *Recipe) {
	var m *MachineImage
	for _, mi := range r.MachineImages {
		if mi.Name == f.Image {
			m = mi
		}
	}
	idx := r.StageIndex(f.Stage)
	if m == nil || m.Region == "" || idx < 0 {
		return // the build region is the AWS config's: only known at run time
	}
	regions := append([]string{m.Region}, m.Regions...)
	for _, st := range r.Stages[:idx+1] {
		regions = append(regions, r.Stage(st).Regions...)
	}
	if slices.Contains(regions, f.Region) {
		return
	}
	s.attrError(attr, fmt.Sprintf("the image of stage %q is never in %s", f.Stage, f.Region),
		fmt.Sprintf("machine_image %q is baked in %s and copied to %s by the time it reaches %q; add %q to the regions of stage %q (promotion copies the image there), or run the fleet in one of those regions.",
			m.Name, m.Region, strings.Join(regions[1:], ", ")+orNoRegion(len(regions) == 1), f.Stage, f.Region, f.Stage))
}

func orNoRegion(none bool) string {
	if none {
		return "no other region"
	}
	return ""
}

// checkFleetSizes reports sizes that cannot hold together:
// min_size <= desired_capacity <= max_size, among those written.
func (s *state) checkFleetSizes(f *Fleet, attrs hcl.Attributes) {
	check := func(lo *int, loName string, hi *int, hiName string) {
		if lo == nil || hi == nil || *lo <= *hi {
			return
		}
		s.attrError(attrs[hiName], fmt.Sprintf("%s %d is less than %s %d", hiName, *hi, loName, *lo),
			fmt.Sprintf("A group's sizes hold min_size <= desired_capacity <= max_size; raise %s or lower %s (at %s).", hiName, loName, posString(attrs[loName].Expr.Range())))
	}
	check(f.MinSize, "min_size", f.MaxSize, "max_size")
	check(f.MinSize, "min_size", f.DesiredCapacity, "desired_capacity")
	check(f.DesiredCapacity, "desired_capacity", f.MaxSize, "max_size")
}

// idList evaluates attr as a list of distinct strings that re matches,
// reporting each that does not (what names them) or is repeated.
func (s *state) idList(attr *hcl.Attribute, re *regexp.Regexp, what, detail string) []string {
	vals, ranges, ok := s.stringList(attr)
	if !ok {
		return nil
	}
	seen := make(map[string]bool)
	var out []string
	for i, v := range vals {
		switch {
		case !re.MatchString(v):
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("invalid %s %q", what, v),
				Detail:   detail,
				Subject:  ranges[i].Ptr(),
			})
		case seen[v]:
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("duplicate %s %q", what, v),
				Detail:   "List each one once.",
				Subject:  ranges[i].Ptr(),
			})
		default:
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// readUserData reads the user data file at p (written v in attr) and
// checks its size.
func (s *state) readUserData(attr *hcl.Attribute, p, v string) (string, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		s.attrError(attr, fmt.Sprintf("reading user data file %q: %v", v, err), "Check the file's permissions.")
		return "", false
	}
	if !s.checkUserDataSize(attr, len(b)) {
		return "", false
	}
	return string(b), true
}
