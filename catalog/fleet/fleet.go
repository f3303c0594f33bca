// Package fleet is the fleet inventory: the Auto Scaling groups bakery
// launched, read from the groups themselves (principle 1: what bakery
// knows lives on the resources). Every group carries the bakery tags of
// the launch that made it (TagRecipe, TagStage, TagVersion, TagImage,
// TagLaunchID, TagPrevious) and its state is derived from them and from
// its suspended processes: serving, launching, disabled, draining or
// failed. Groups are named RECIPE-STAGE-vNNN and each has a launch
// template of its own, of the same name, pinned by version number.
//
// Launch writes through an Inventory (create, disable, restore, delete);
// retire and the fleets command read it. The clients it calls are small
// interfaces that *autoscaling.Client, *ec2.Client and
// *elasticloadbalancingv2.Client implement.
package fleet

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// Tag keys bakery writes on the Auto Scaling groups it launches (and,
// propagated at launch, on their instances), next to catalog.TagRecipe
// and catalog.TagVersion.
const (
	// TagStage is the stage the group runs.
	TagStage = "bakery:stage"
	// TagImage is the AMI id the group's launch template runs.
	TagImage = "bakery:image"
	// TagArtifact is the machine_image block of that AMI.
	TagArtifact = catalog.TagArtifact
	// TagLaunchID identifies the launch run that created the group.
	TagLaunchID = "bakery:launch-id"
	// TagPrevious names the group that served the stage when this one
	// was launched: the rollback target ("" for the first).
	TagPrevious = "bakery:previous"
	// TagLaunching marks a group whose launch has not passed its health
	// gate yet (value: the launch id). It is removed once it serves.
	TagLaunching = "bakery:launching"
	// TagDisabled marks a group a later launch disabled (value: the
	// RFC 3339 UTC time it was disabled).
	TagDisabled = "bakery:disabled"
	// TagFailed marks a group kept after a failed launch for debugging
	// (value: the reason).
	TagFailed = "bakery:failed"
)

// DisableProcesses are the Auto Scaling processes a disabled group has
// suspended: it launches no instance, acts on no alarm, and does not
// rebalance zones, so it keeps what it has while it drains.
var DisableProcesses = []string{"Launch", "AlarmNotification", "AZRebalance"}

// State is what a group does for its stage.
type State string

// The states of a group.
const (
	// StateServing is a group that serves its stage.
	StateServing State = "serving"
	// StateLaunching is a group whose launch has not passed the health
	// gate yet.
	StateLaunching State = "launching"
	// StateDraining is a disabled group that still has instances.
	StateDraining State = "draining"
	// StateDisabled is a disabled group scaled to 0: a rollback target.
	StateDisabled State = "disabled"
	// StateFailed is a group kept after its launch failed.
	StateFailed State = "failed"
)

// Instance is one instance of a group.
type Instance struct {
	// ID is the instance id.
	ID string `json:"id"`
	// Zone is its availability zone.
	Zone string `json:"zone,omitempty"`
	// Lifecycle is its Auto Scaling lifecycle state ("InService",
	// "Pending", "Terminating", ...).
	Lifecycle string `json:"lifecycle"`
	// Health is its Auto Scaling health status ("Healthy" or
	// "Unhealthy").
	Health string `json:"health"`
}

// Group is one bakery-tagged Auto Scaling group.
type Group struct {
	// Name is the group name, RECIPE-STAGE-vNNN.
	Name string `json:"name"`
	// Region is where it runs.
	Region string `json:"region"`
	// Recipe, Stage, Version, Artifact and Image are read from its tags.
	Recipe   string `json:"recipe"`
	Stage    string `json:"stage"`
	Version  string `json:"version"`
	Artifact string `json:"artifact,omitempty"`
	Image    string `json:"image"`
	// LaunchID is the launch run that created it.
	LaunchID string `json:"launch_id,omitempty"`
	// Previous is the group that served before it (the rollback target).
	Previous string `json:"previous,omitempty"`
	// Number is NNN of its name (0 when the name has no number).
	Number int `json:"number"`
	// TemplateID and TemplateVersion are the launch template and version
	// it launches from.
	TemplateID      string `json:"launch_template_id,omitempty"`
	TemplateVersion string `json:"launch_template_version,omitempty"`
	// Min, Desired and Max are its sizes.
	Min     int `json:"min"`
	Desired int `json:"desired"`
	Max     int `json:"max"`
	// Instances are its instances.
	Instances []Instance `json:"instances"`
	// Suspended are its suspended processes, sorted.
	Suspended []string `json:"suspended,omitempty"`
	// TargetGroups are the ARNs of the target groups it is attached to.
	TargetGroups []string `json:"target_groups,omitempty"`
	// State is derived from its tags and suspended processes.
	State State `json:"state"`
	// Disabled is when a launch disabled it (zero when it was not).
	Disabled time.Time `json:"disabled,omitzero"`
	// Created is when the group was created.
	Created time.Time `json:"created"`
	// Status is Auto Scaling's status ("Delete in progress"), if any.
	Status string `json:"status,omitempty"`
	// Tags are all its tags.
	Tags map[string]string `json:"tags,omitempty"`
}

// InService returns how many of its instances are InService and Healthy.
func (g Group) InService() int {
	n := 0
	for _, i := range g.Instances {
		if i.Lifecycle == string(astypes.LifecycleStateInService) && i.Health == "Healthy" {
			n++
		}
	}
	return n
}

// InstanceIDs returns the ids of its instances.
func (g Group) InstanceIDs() []string {
	ids := make([]string, len(g.Instances))
	for i, in := range g.Instances {
		ids[i] = in.ID
	}
	return ids
}

// Prefix is the start of the names of the groups of recipe's stage:
// "RECIPE-STAGE-v".
func Prefix(recipe, stage string) string { return recipe + "-" + stage + "-v" }

// Name is the name of group number n of recipe's stage: RECIPE-STAGE-vNNN
// (at least three digits).
func Name(recipe, stage string, n int) string { return fmt.Sprintf("%s%03d", Prefix(recipe, stage), n) }

var numberRE = regexp.MustCompile(`^[0-9]+$`)

// number returns NNN of name when it is a group name of recipe's stage.
func number(name, recipe, stage string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix(recipe, stage))
	if !ok || !numberRE.MatchString(rest) {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil
}

// NextNumber returns the number after every one of groups that is a group
// of recipe's stage by its name.
func NextNumber(recipe, stage string, groups []Group) int {
	next := 1
	for _, g := range groups {
		if n, ok := number(g.Name, recipe, stage); ok && n >= next {
			next = n + 1
		}
	}
	return next
}

// AutoScaling is the part of the Auto Scaling API an Inventory calls.
// *autoscaling.Client implements it.
type AutoScaling interface {
	DescribeAutoScalingGroups(context.Context, *autoscaling.DescribeAutoScalingGroupsInput, ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
	CreateAutoScalingGroup(context.Context, *autoscaling.CreateAutoScalingGroupInput, ...func(*autoscaling.Options)) (*autoscaling.CreateAutoScalingGroupOutput, error)
	UpdateAutoScalingGroup(context.Context, *autoscaling.UpdateAutoScalingGroupInput, ...func(*autoscaling.Options)) (*autoscaling.UpdateAutoScalingGroupOutput, error)
	DeleteAutoScalingGroup(context.Context, *autoscaling.DeleteAutoScalingGroupInput, ...func(*autoscaling.Options)) (*autoscaling.DeleteAutoScalingGroupOutput, error)
	SuspendProcesses(context.Context, *autoscaling.SuspendProcessesInput, ...func(*autoscaling.Options)) (*autoscaling.SuspendProcessesOutput, error)
	ResumeProcesses(context.Context, *autoscaling.ResumeProcessesInput, ...func(*autoscaling.Options)) (*autoscaling.ResumeProcessesOutput, error)
	AttachLoadBalancerTargetGroups(context.Context, *autoscaling.AttachLoadBalancerTargetGroupsInput, ...func(*autoscaling.Options)) (*autoscaling.AttachLoadBalancerTargetGroupsOutput, error)
	DetachLoadBalancerTargetGroups(context.Context, *autoscaling.DetachLoadBalancerTargetGroupsInput, ...func(*autoscaling.Options)) (*autoscaling.DetachLoadBalancerTargetGroupsOutput, error)
	CreateOrUpdateTags(context.Context, *autoscaling.CreateOrUpdateTagsInput, ...func(*autoscaling.Options)) (*autoscaling.CreateOrUpdateTagsOutput, error)
	DeleteTags(context.Context, *autoscaling.DeleteTagsInput, ...func(*autoscaling.Options)) (*autoscaling.DeleteTagsOutput, error)
}

// EC2 is the part of the EC2 API an Inventory calls: launch templates,
// the default subnets, and the AMIs and instances Observe reads.
// *ec2.Client implements it.
type EC2 interface {
	DescribeImages(context.Context, *ec2.DescribeImagesInput, ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error)
	DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
	CreateLaunchTemplate(context.Context, *ec2.CreateLaunchTemplateInput, ...func(*ec2.Options)) (*ec2.CreateLaunchTemplateOutput, error)
	DeleteLaunchTemplate(context.Context, *ec2.DeleteLaunchTemplateInput, ...func(*ec2.Options)) (*ec2.DeleteLaunchTemplateOutput, error)
	DescribeLaunchTemplates(context.Context, *ec2.DescribeLaunchTemplatesInput, ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error)
	DescribeSubnets(context.Context, *ec2.DescribeSubnetsInput, ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error)
}

// ELB is the part of the Elastic Load Balancing v2 API an Inventory
// calls: target health. *elasticloadbalancingv2.Client implements it.
type ELB interface {
	DescribeTargetHealth(context.Context, *elb.DescribeTargetHealthInput, ...func(*elb.Options)) (*elb.DescribeTargetHealthOutput, error)
	DeregisterTargets(context.Context, *elb.DeregisterTargetsInput, ...func(*elb.Options)) (*elb.DeregisterTargetsOutput, error)
}

// Clients hands out the clients of a region.
type Clients struct {
	// AutoScaling returns region's Auto Scaling client.
	AutoScaling func(region string) AutoScaling
	// EC2 returns region's EC2 client.
	EC2 func(region string) EC2
	// ELB returns region's Elastic Load Balancing v2 client.
	ELB func(region string) ELB
}

// ClientsFromConfig returns Clients made from cfg (awsx.NewAutoScaling,
// awsx.NewEC2, and an elasticloadbalancingv2 client with cfg's endpoint
// override), one per service and region, created on first use.
func ClientsFromConfig(cfg aws.Config) Clients {
	as := awsx.NewRegional(func(r string) *autoscaling.Client { return awsx.NewAutoScaling(cfg, r) })
	ec := awsx.NewRegional(func(r string) *ec2.Client { return awsx.NewEC2(cfg, r) })
	lb := awsx.NewRegional(func(r string) *elb.Client {
		return elb.NewFromConfig(cfg, func(o *elb.Options) {
			if r != "" {
				o.Region = r
			}
		})
	})
	return Clients{
		AutoScaling: func(r string) AutoScaling { return as.Get(r) },
		EC2:         func(r string) EC2 { return ec.Get(r) },
		ELB:         func(r string) ELB { return lb.Get(r) },
	}
}

// Default bounds of an Inventory's waits.
const (
	// DefaultPoll is how often a wait asks AWS.
	DefaultPoll = 15 * time.Second
	// DeleteTimeout bounds the wait for a deleted group to be gone
	// (Auto Scaling terminates its instances first).
	DeleteTimeout = 15 * time.Minute
)

// Option configures an Inventory.
type Option func(*Inventory)

// WithClock sets the clock the Inventory's waits run on. Default: the
// system clock. A nil clock keeps the default.
func WithClock(c awsx.Clock) Option {
	return func(i *Inventory) {
		if c != nil {
			i.clock = c
		}
	}
}

// WithPollInterval sets how often the Inventory's waits ask AWS.
// Default: DefaultPoll. Values of zero or less keep the default.
func WithPollInterval(d time.Duration) Option {
	return func(i *Inventory) {
		if d > 0 {
			i.poll = d
		}
	}
}

// Inventory reads and changes bakery's Auto Scaling groups and their
// launch templates. It is safe for concurrent use.
type Inventory struct {
	c     Clients
	clock awsx.Clock
	poll  time.Duration
}

// New returns an Inventory over clients.
func New(clients Clients, opts ...Option) *Inventory {
	inv := &Inventory{c: clients, clock: awsx.SystemClock(), poll: DefaultPoll}
	for _, o := range opts {
		o(inv)
	}
	return inv
}

// NewFromConfig returns an Inventory whose clients come from cfg
// (ClientsFromConfig).
func NewFromConfig(cfg aws.Config, opts ...Option) *Inventory {
	return New(ClientsFromConfig(cfg), opts...)
}

// Clients returns the clients the Inventory calls.
func (inv *Inventory) Clients() Clients { return inv.c }

// Selector picks groups by their bakery tags; empty fields match any.
type Selector struct {
	// Recipe matches catalog.TagRecipe; it must be set unless Any is.
	Recipe string
	// Stage matches TagStage.
	Stage string
	// Any lists every bakery group of the region (every recipe).
	Any bool
}

// List returns the bakery groups of region that sel picks, oldest
// first (by number, then creation): one paginated
// DescribeAutoScalingGroups filtered by tag.
func (inv *Inventory) List(ctx context.Context, region string, sel Selector) ([]Group, error) {
	var filters []astypes.Filter
	switch {
	case sel.Recipe != "":
		filters = append(filters, astypes.Filter{Name: aws.String("tag:" + catalog.TagRecipe), Values: []string{sel.Recipe}})
	case !sel.Any:
		return nil, fmt.Errorf("listing Auto Scaling groups in %s: the selector names no recipe", region)
	default:
		filters = append(filters, astypes.Filter{Name: aws.String("tag-key"), Values: []string{TagStage}})
	}
	if sel.Stage != "" {
		filters = append(filters, astypes.Filter{Name: aws.String("tag:" + TagStage), Values: []string{sel.Stage}})
	}
	groups, err := inv.describe(ctx, region, &autoscaling.DescribeAutoScalingGroupsInput{Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("listing the Auto Scaling groups of %s in %s: %w", orAll(sel.Recipe), region, err)
	}
	// Filters narrow; they do not prove: keep only what matches.
	groups = slices.DeleteFunc(groups, func(g Group) bool {
		return g.Stage == "" || (sel.Recipe != "" && g.Recipe != sel.Recipe) || (sel.Stage != "" && g.Stage != sel.Stage)
	})
	slices.SortFunc(groups, func(a, b Group) int {
		return cmp.Or(strings.Compare(a.Recipe, b.Recipe), strings.Compare(a.Stage, b.Stage), cmp.Compare(a.Number, b.Number), a.Created.Compare(b.Created), strings.Compare(a.Name, b.Name))
	})
	return groups, nil
}

func orAll(recipe string) string {
	if recipe == "" {
		return "every recipe"
	}
	return recipe
}

// Get returns the group named name in region; ok is false when there is
// none (any more).
func (inv *Inventory) Get(ctx context.Context, region, name string) (g Group, ok bool, err error) {
	groups, err := inv.describe(ctx, region, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil {
		return Group{}, false, fmt.Errorf("reading Auto Scaling group %s in %s: %w", name, region, err)
	}
	for _, g := range groups {
		if g.Name == name {
			return g, true, nil
		}
	}
	return Group{}, false, nil
}

// NextName returns the name of the next group of recipe's stage in
// region: the number after every group of that recipe and stage, and
// after any group (bakery's or not) that holds a name it would take,
// so a name in use is never reused.
func (inv *Inventory) NextName(ctx context.Context, region, recipe, stage string) (string, error) {
	groups, err := inv.List(ctx, region, Selector{Recipe: recipe, Stage: stage})
	if err != nil {
		return "", err
	}
	for n := NextNumber(recipe, stage, groups); ; n++ {
		name := Name(recipe, stage, n)
		_, taken, err := inv.Get(ctx, region, name)
		if err != nil {
			return "", err
		}
		if !taken {
			return name, nil
		}
	}
}

func (inv *Inventory) describe(ctx context.Context, region string, in *autoscaling.DescribeAutoScalingGroupsInput) ([]Group, error) {
	p := autoscaling.NewDescribeAutoScalingGroupsPaginator(inv.c.AutoScaling(region), in)
	var out []Group
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, awsx.ExplainError(err)
		}
		for _, g := range page.AutoScalingGroups {
			out = append(out, fromAWS(region, g))
		}
	}
	return out, nil
}

// fromAWS reads a group.
func fromAWS(region string, g astypes.AutoScalingGroup) Group {
	tags := map[string]string{}
	for _, t := range g.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	out := Group{
		Name:         aws.ToString(g.AutoScalingGroupName),
		Region:       region,
		Recipe:       tags[catalog.TagRecipe],
		Stage:        tags[TagStage],
		Version:      tags[catalog.TagVersion],
		Artifact:     tags[TagArtifact],
		Image:        tags[TagImage],
		LaunchID:     tags[TagLaunchID],
		Previous:     tags[TagPrevious],
		Min:          int(aws.ToInt32(g.MinSize)),
		Desired:      int(aws.ToInt32(g.DesiredCapacity)),
		Max:          int(aws.ToInt32(g.MaxSize)),
		TargetGroups: slices.Clone(g.TargetGroupARNs),
		Status:       aws.ToString(g.Status),
		Tags:         tags,
	}
	out.Number, _ = number(out.Name, out.Recipe, out.Stage)
	if g.CreatedTime != nil {
		out.Created = g.CreatedTime.UTC()
	}
	if lt := g.LaunchTemplate; lt != nil {
		out.TemplateID, out.TemplateVersion = aws.ToString(lt.LaunchTemplateId), aws.ToString(lt.Version)
	}
	for _, i := range g.Instances {
		out.Instances = append(out.Instances, Instance{
			ID:        aws.ToString(i.InstanceId),
			Zone:      aws.ToString(i.AvailabilityZone),
			Lifecycle: string(i.LifecycleState),
			Health:    aws.ToString(i.HealthStatus),
		})
	}
	slices.SortFunc(out.Instances, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
	for _, p := range g.SuspendedProcesses {
		out.Suspended = append(out.Suspended, aws.ToString(p.ProcessName))
	}
	slices.Sort(out.Suspended)
	if t, err := time.Parse(time.RFC3339Nano, tags[TagDisabled]); err == nil {
		out.Disabled = t.UTC()
	}
	out.State = stateOf(out)
	return out
}

// stateOf derives a group's state from its tags and suspended processes.
func stateOf(g Group) State {
	_, failed := g.Tags[TagFailed]
	_, launching := g.Tags[TagLaunching]
	_, disabled := g.Tags[TagDisabled]
	switch {
	case failed:
		return StateFailed
	case launching:
		return StateLaunching
	case disabled || slices.Contains(g.Suspended, "Launch"):
		if g.Desired > 0 || len(g.Instances) > 0 {
			return StateDraining
		}
		return StateDisabled
	}
	return StateServing
}
