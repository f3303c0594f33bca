package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// Template is a launch template version a group launches from.
type Template struct {
	// ID is the launch template id.
	ID string
	// Name is the launch template name.
	Name string
	// Version is the version number, as the group pins it ("1").
	Version string
}

// CreateTemplate creates the launch template name in region with data as
// its first version (the full launch data: EC2 ignores nothing of it
// and, unlike a version made from a SourceVersion, it depends on no
// other), tagged with tags. The group pins that version by number.
func (inv *Inventory) CreateTemplate(ctx context.Context, region, name string, data *ec2types.RequestLaunchTemplateData, tags map[string]string) (Template, error) {
	in := &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: data,
		VersionDescription: aws.String("bakery launch of " + name),
	}
	if len(tags) > 0 {
		in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: ec2Tags(tags)}}
	}
	out, err := inv.c.EC2(region).CreateLaunchTemplate(ctx, in)
	if awsx.ErrorCode(err) == "InvalidLaunchTemplateName.AlreadyExistsException" {
		// Templates are named after their group. With no group of that
		// name, the template is what a launch killed between the two
		// creations left behind (or an earlier try of this call whose
		// answer was lost): nothing launches from it. Replace it.
		if _, ok, gerr := inv.Get(ctx, region, name); gerr == nil && !ok {
			_, derr := inv.c.EC2(region).DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateName: aws.String(name)})
			if derr == nil || awsx.IsNotFound(derr) {
				out, err = inv.c.EC2(region).CreateLaunchTemplate(ctx, in)
			}
		}
	}
	if err != nil {
		return Template{}, fmt.Errorf("creating launch template %s in %s: %w", name, region, awsx.ExplainError(err))
	}
	lt := out.LaunchTemplate
	return Template{ID: aws.ToString(lt.LaunchTemplateId), Name: name, Version: strconv.FormatInt(aws.ToInt64(lt.LatestVersionNumber), 10)}, nil
}

// DeleteTemplate deletes launch template id in region, with every
// version. One that is gone already (or an empty id) counts as deleted.
func (inv *Inventory) DeleteTemplate(ctx context.Context, region, id string) error {
	if id == "" {
		return nil
	}
	_, err := inv.c.EC2(region).DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: aws.String(id)})
	if err != nil && !awsx.IsNotFound(err) {
		return fmt.Errorf("deleting launch template %s in %s: %w", id, region, awsx.ExplainError(err))
	}
	return nil
}

// DefaultSubnets returns the default subnets (one per zone) of the
// default VPC in region, sorted.
func (inv *Inventory) DefaultSubnets(ctx context.Context, region string) ([]string, error) {
	out, err := inv.c.EC2(region).DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{
		Filters: []ec2types.Filter{{Name: aws.String("default-for-az"), Values: []string{"true"}}},
	})
	if err != nil {
		return nil, fmt.Errorf("finding the default subnets in %s: %w", region, awsx.ExplainError(err))
	}
	var ids []string
	for _, s := range out.Subnets {
		ids = append(ids, aws.ToString(s.SubnetId))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("finding the default subnets in %s: the region has no default VPC: name subnets in the fleet block", region)
	}
	slices.Sort(ids)
	return ids, nil
}

// GroupSpec is a group CreateGroup creates.
type GroupSpec struct {
	// Name is the group name.
	Name string
	// Template is the launch template version it launches from.
	Template Template
	// Min, Desired and Max are its sizes.
	Min, Desired, Max int
	// Subnets place its instances.
	Subnets []string
	// TargetGroups are the target groups it is attached to at creation.
	TargetGroups []string
	// HealthCheckType is "EC2" or "ELB"; HealthCheckGrace its grace
	// period.
	HealthCheckType  string
	HealthCheckGrace time.Duration
	// Tags are its tags, propagated to its instances at launch.
	Tags map[string]string
}

// CreateGroup creates the group spec describes in region.
func (inv *Inventory) CreateGroup(ctx context.Context, region string, spec GroupSpec) error {
	in := &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(spec.Name),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{
			LaunchTemplateId: aws.String(spec.Template.ID),
			Version:          aws.String(spec.Template.Version),
		},
		MinSize:                aws.Int32(int32(spec.Min)),
		MaxSize:                aws.Int32(int32(spec.Max)),
		DesiredCapacity:        aws.Int32(int32(spec.Desired)),
		VPCZoneIdentifier:      aws.String(strings.Join(spec.Subnets, ",")),
		TargetGroupARNs:        spec.TargetGroups,
		HealthCheckType:        aws.String(spec.HealthCheckType),
		HealthCheckGracePeriod: aws.Int32(int32(spec.HealthCheckGrace / time.Second)),
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Tags)) {
		in.Tags = append(in.Tags, astypes.Tag{
			Key: aws.String(k), Value: aws.String(spec.Tags[k]),
			ResourceId: aws.String(spec.Name), ResourceType: aws.String("auto-scaling-group"),
			PropagateAtLaunch: aws.Bool(true),
		})
	}
	_, err := inv.c.AutoScaling(region).CreateAutoScalingGroup(ctx, in)
	if awsx.ErrorCode(err) == "AlreadyExists" && spec.Tags[TagLaunchID] != "" {
		// An earlier try of this call took effect and its answer was
		// lost; the SDK tried again. The group is ours if it carries
		// this launch's id.
		if g, ok, gerr := inv.Get(ctx, region, spec.Name); gerr == nil && ok && g.LaunchID == spec.Tags[TagLaunchID] {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("creating Auto Scaling group %s in %s: %w", spec.Name, region, awsx.ExplainError(err))
	}
	return nil
}

// Tag sets tags on group name in region (not propagated to instances).
func (inv *Inventory) Tag(ctx context.Context, region, name string, tags map[string]string) error {
	if len(tags) == 0 {
		return nil
	}
	var ts []astypes.Tag
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		ts = append(ts, astypes.Tag{Key: aws.String(k), Value: aws.String(tags[k]),
			ResourceId: aws.String(name), ResourceType: aws.String("auto-scaling-group"), PropagateAtLaunch: aws.Bool(false)})
	}
	if _, err := inv.c.AutoScaling(region).CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: ts}); err != nil {
		return fmt.Errorf("tagging Auto Scaling group %s in %s: %w", name, region, awsx.ExplainError(err))
	}
	return nil
}

// Untag deletes tag keys from group name in region.
func (inv *Inventory) Untag(ctx context.Context, region, name string, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	var ts []astypes.Tag
	for _, k := range keys {
		ts = append(ts, astypes.Tag{Key: aws.String(k), ResourceId: aws.String(name), ResourceType: aws.String("auto-scaling-group")})
	}
	if _, err := inv.c.AutoScaling(region).DeleteTags(ctx, &autoscaling.DeleteTagsInput{Tags: ts}); err != nil {
		return fmt.Errorf("untagging Auto Scaling group %s in %s: %w", name, region, awsx.ExplainError(err))
	}
	return nil
}

// Resize sets the sizes of group name in region.
func (inv *Inventory) Resize(ctx context.Context, region, name string, minSize, desired, maxSize int) error {
	_, err := inv.c.AutoScaling(region).UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		MinSize:              aws.Int32(int32(minSize)),
		DesiredCapacity:      aws.Int32(int32(desired)),
		MaxSize:              aws.Int32(int32(maxSize)),
	})
	if err != nil {
		return fmt.Errorf("resizing Auto Scaling group %s in %s to %d/%d/%d: %w", name, region, minSize, desired, maxSize, awsx.ExplainError(err))
	}
	return nil
}

// Detach detaches g from its target groups and deregisters its
// instances from them (detaching deregisters them on AWS; moto 5.2.5
// leaves instances the group itself terminates registered, so bakery
// does not rely on it).
func (inv *Inventory) Detach(ctx context.Context, g Group) error {
	if len(g.TargetGroups) == 0 {
		return nil
	}
	_, err := inv.c.AutoScaling(g.Region).DetachLoadBalancerTargetGroups(ctx, &autoscaling.DetachLoadBalancerTargetGroupsInput{
		AutoScalingGroupName: aws.String(g.Name), TargetGroupARNs: g.TargetGroups,
	})
	if err != nil {
		return fmt.Errorf("detaching Auto Scaling group %s in %s from its target groups: %w", g.Name, g.Region, awsx.ExplainError(err))
	}
	return inv.deregister(ctx, g)
}

func (inv *Inventory) deregister(ctx context.Context, g Group) error {
	ids := g.InstanceIDs()
	if len(ids) == 0 {
		return nil
	}
	targets := make([]elbtypes.TargetDescription, len(ids))
	for i, id := range ids {
		targets[i] = elbtypes.TargetDescription{Id: aws.String(id)}
	}
	for _, tg := range g.TargetGroups {
		_, err := inv.c.ELB(g.Region).DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: aws.String(tg), Targets: targets})
		// InvalidTarget: not registered (any more), which is the goal.
		if err != nil && !awsx.IsNotFound(err) && awsx.ErrorCode(err) != "InvalidTarget" {
			return fmt.Errorf("deregistering the instances of %s from target group %s: %w", g.Name, tg, awsx.ExplainError(err))
		}
	}
	return nil
}

// Disable takes g out of service without touching its instances:
// detaches it from its target groups (deregistering its instances),
// suspends DisableProcesses, and tags it TagDisabled at at. Its sizes
// are left as they are: the drain scales it down later.
func (inv *Inventory) Disable(ctx context.Context, g Group, at time.Time) error {
	if err := inv.Detach(ctx, g); err != nil {
		return err
	}
	_, err := inv.c.AutoScaling(g.Region).SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{
		AutoScalingGroupName: aws.String(g.Name), ScalingProcesses: DisableProcesses,
	})
	if err != nil {
		return fmt.Errorf("suspending the processes of %s in %s: %w", g.Name, g.Region, awsx.ExplainError(err))
	}
	return inv.Tag(ctx, g.Region, g.Name, map[string]string{TagDisabled: at.UTC().Format(time.RFC3339Nano)})
}

// Fail takes g, a group whose launch failed, out of service for
// debugging: detached from its target groups, DisableProcesses
// suspended, tagged TagFailed with reason (cut to 256 characters) and
// TagLaunching removed. Its instances and launch template are kept.
func (inv *Inventory) Fail(ctx context.Context, g Group, reason string) error {
	if err := inv.Detach(ctx, g); err != nil {
		return err
	}
	_, err := inv.c.AutoScaling(g.Region).SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{
		AutoScalingGroupName: aws.String(g.Name), ScalingProcesses: DisableProcesses,
	})
	if err != nil {
		return fmt.Errorf("suspending the processes of %s in %s: %w", g.Name, g.Region, awsx.ExplainError(err))
	}
	if r := []rune(reason); len(r) > 256 {
		reason = string(r[:255]) + "…"
	}
	if err := inv.Tag(ctx, g.Region, g.Name, map[string]string{TagFailed: reason}); err != nil {
		return err
	}
	return inv.Untag(ctx, g.Region, g.Name, TagLaunching)
}

// Restore puts group was.Name back as was shows it: its target groups
// (detaching, and deregistering from, those it did not have first;
// attaching those it lost last), its suspended processes, its sizes and
// its state tags (TagDisabled, TagFailed, TagLaunching set to was's
// values, or removed where was had none). It is how a failed or
// interrupted launch or rollback leaves the groups it touched exactly as
// they were.
func (inv *Inventory) Restore(ctx context.Context, was Group) error {
	return inv.set(ctx, was, "restoring")
}

// Set makes group want.Name in want.Region as want shows it, in the order
// Restore describes: target groups, suspended processes, sizes, state
// tags (TagDisabled, TagFailed, TagLaunching). Rollback uses it to
// enable a disabled group; Restore to put one back.
func (inv *Inventory) Set(ctx context.Context, want Group) error {
	return inv.set(ctx, want, "changing")
}

func (inv *Inventory) set(ctx context.Context, was Group, verb string) error {
	what := fmt.Sprintf("%s Auto Scaling group %s in %s", verb, was.Name, was.Region)
	now, ok, err := inv.Get(ctx, was.Region, was.Name)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !ok {
		return fmt.Errorf("%s: it is gone: launch its version again to bring it back", what)
	}
	c := inv.c.AutoScaling(was.Region)
	extra := now
	extra.TargetGroups = missing(now.TargetGroups, was.TargetGroups)
	if err := inv.Detach(ctx, extra); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if suspend := missing(was.Suspended, now.Suspended); len(suspend) > 0 {
		if _, err := c.SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{AutoScalingGroupName: aws.String(was.Name), ScalingProcesses: suspend}); err != nil {
			return fmt.Errorf("%s: suspending %s: %w", what, strings.Join(suspend, ", "), awsx.ExplainError(err))
		}
	}
	if now.Min != was.Min || now.Desired != was.Desired || now.Max != was.Max {
		if err := inv.Resize(ctx, was.Region, was.Name, was.Min, was.Desired, was.Max); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if resume := missing(now.Suspended, was.Suspended); len(resume) > 0 {
		if _, err := c.ResumeProcesses(ctx, &autoscaling.ResumeProcessesInput{AutoScalingGroupName: aws.String(was.Name), ScalingProcesses: resume}); err != nil {
			return fmt.Errorf("%s: resuming %s: %w", what, strings.Join(resume, ", "), awsx.ExplainError(err))
		}
	}
	if attach := missing(was.TargetGroups, now.TargetGroups); len(attach) > 0 {
		if _, err := c.AttachLoadBalancerTargetGroups(ctx, &autoscaling.AttachLoadBalancerTargetGroupsInput{AutoScalingGroupName: aws.String(was.Name), TargetGroupARNs: attach}); err != nil {
			return fmt.Errorf("%s: attaching target groups %s: %w", what, strings.Join(attach, ", "), awsx.ExplainError(err))
		}
	}
	var untag []string
	set := map[string]string{}
	for _, k := range []string{TagDisabled, TagFailed, TagLaunching} {
		v, had := was.Tags[k]
		cur, has := now.Tags[k]
		switch {
		case had && (!has || cur != v):
			set[k] = v
		case !had && has:
			untag = append(untag, k)
		}
	}
	if err := inv.Tag(ctx, was.Region, was.Name, set); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := inv.Untag(ctx, was.Region, was.Name, untag...); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// missing returns the elements of want that have lacks.
func missing(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// Delete deletes group g and its launch template: it detaches the group
// from its target groups (deregistering its instances), deletes it with
// ForceDelete (terminating its instances), waits until Auto Scaling no
// longer knows it (at most DeleteTimeout), then deletes its launch
// template. A group that is gone already counts as deleted; running it
// again finishes the job.
func (inv *Inventory) Delete(ctx context.Context, g Group) error {
	what := fmt.Sprintf("deleting Auto Scaling group %s in %s", g.Name, g.Region)
	cur, exists, err := inv.Get(ctx, g.Region, g.Name)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !exists {
		return inv.DeleteTemplate(ctx, g.Region, g.TemplateID)
	}
	if g.TemplateID == "" {
		g.TemplateID = cur.TemplateID
	}
	if err := inv.Detach(ctx, cur); err != nil && !isGone(err) {
		return fmt.Errorf("%s: %w", what, err)
	}
	c := inv.c.AutoScaling(g.Region)
	w := awsx.Wait{What: fmt.Sprintf("Auto Scaling to accept the deletion of %s", g.Name), Timeout: DeleteTimeout, Interval: inv.poll, Clock: inv.clock}
	err = w.Retry(ctx, busy, func(ctx context.Context) error {
		_, err := c.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: aws.String(g.Name), ForceDelete: aws.Bool(true)})
		if isGone(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, awsx.ExplainError(err))
	}
	w = awsx.Wait{What: fmt.Sprintf("Auto Scaling group %s in %s to be gone", g.Name, g.Region), Timeout: DeleteTimeout, Interval: inv.poll, Clock: inv.clock}
	err = w.Until(ctx, func(ctx context.Context) (bool, error) {
		_, ok, err := inv.Get(ctx, g.Region, g.Name)
		return !ok, err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if g.TemplateID != "" {
		if err := inv.DeleteTemplate(ctx, g.Region, g.TemplateID); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// isGone reports whether err says the group does not exist.
func isGone(err error) bool {
	if err == nil {
		return false
	}
	return awsx.IsNotFound(err) || awsx.ErrorCode(err) == "ValidationError" && strings.Contains(err.Error(), "not found")
}

// busy reports whether err says the group cannot be deleted yet (a
// scaling activity in progress).
func busy(err error) bool {
	code := awsx.ErrorCode(err)
	return code == "ScalingActivityInProgress" || code == "ResourceInUse" || awsx.IsThrottle(err)
}

// TargetHealth is the health of one instance in one target group.
type TargetHealth struct {
	// TargetGroup is the target group ARN.
	TargetGroup string `json:"target_group"`
	// Instance is the instance id.
	Instance string `json:"instance"`
	// State is "healthy", "initial", "unhealthy", "unused", "draining",
	// "unavailable", or "unregistered" when the instance is not a
	// target of the group at all.
	State string `json:"state"`
	// Reason is the load balancer's reason code, if any.
	Reason string `json:"reason,omitempty"`
}

// Health is a group's instances as Auto Scaling and its target groups
// see them.
type Health struct {
	// Group is the group as Auto Scaling reports it.
	Group Group `json:"group"`
	// Targets are the health of each instance in each of the group's
	// target groups.
	Targets []TargetHealth `json:"targets,omitempty"`
}

// Healthy returns how many of the group's instances are healthy in
// target group tg.
func (h Health) Healthy(tg string) int {
	n := 0
	for _, t := range h.Targets {
		if t.TargetGroup == tg && t.State == string(elbtypes.TargetHealthStateEnumHealthy) {
			n++
		}
	}
	return n
}

// ErrGone is returned, wrapped, by Health when the group does not exist.
var ErrGone = errors.New("the Auto Scaling group does not exist")

// Health reads group name in region and the health of its instances in
// each target group it is attached to (targetGroups, when not empty,
// instead: those the group must serve).
func (inv *Inventory) Health(ctx context.Context, region, name string, targetGroups []string) (Health, error) {
	g, ok, err := inv.Get(ctx, region, name)
	if err != nil {
		return Health{}, err
	}
	if !ok {
		return Health{}, fmt.Errorf("reading the health of %s in %s: %w", name, region, ErrGone)
	}
	h := Health{Group: g}
	tgs := targetGroups
	if len(tgs) == 0 {
		tgs = g.TargetGroups
	}
	for _, tg := range tgs {
		out, err := inv.c.ELB(region).DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(tg)})
		if err != nil {
			return Health{}, fmt.Errorf("reading the target health of %s in %s: %w", tg, region, awsx.ExplainError(err))
		}
		seen := map[string]TargetHealth{}
		for _, d := range out.TargetHealthDescriptions {
			if d.Target == nil || d.TargetHealth == nil {
				continue
			}
			seen[aws.ToString(d.Target.Id)] = TargetHealth{TargetGroup: tg, Instance: aws.ToString(d.Target.Id),
				State: string(d.TargetHealth.State), Reason: string(d.TargetHealth.Reason)}
		}
		for _, id := range g.InstanceIDs() {
			th, ok := seen[id]
			if !ok {
				th = TargetHealth{TargetGroup: tg, Instance: id, State: "unregistered"}
			}
			h.Targets = append(h.Targets, th)
		}
	}
	return h, nil
}

// ec2Tags turns a map into EC2 tags, sorted by key.
func ec2Tags(m map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}
