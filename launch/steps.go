package launch

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
)

// amiInfo is what the launch template needs of the AMI.
type amiInfo struct {
	id         string
	rootDevice string
	ebsDevices []ec2types.BlockDeviceMapping
}

// resolveStep finds the image: the version in the stage (or the one
// asked for, which must be in it), not revoked, in the fleet's region,
// available.
type resolveStep struct{ l *Launcher }

func (*resolveStep) Name() string { return "resolve the image" }

func (s *resolveStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	req := st.req
	entries, err := s.l.cat.Entries(ctx)
	if err != nil {
		return fmt.Errorf("reading the versions of %s: %w", req.Recipe, err)
	}
	var inStage *catalog.Entry
	for i := range entries {
		if _, ok := entries[i].Stages[req.Stage]; ok {
			inStage = &entries[i]
		}
	}
	e := inStage
	if req.Version != "" {
		i := slices.IndexFunc(entries, func(e catalog.Entry) bool { return e.Version == req.Version })
		if i < 0 {
			var known []string
			for _, e := range entries {
				known = append(known, e.Version)
			}
			return fmt.Errorf("%s has no version %s (known: %s): bake it first, or pick one from bakery status", req.Recipe, req.Version, orNone(known))
		}
		e = &entries[i]
	}
	switch {
	case e == nil:
		return fmt.Errorf("no version of %s is in stage %s: promote one first (bakery promote %s@VERSION --to %s)", req.Recipe, req.Stage, req.Recipe, req.Stage)
	case e.Revoked:
		return fmt.Errorf("%s@%s is revoked (%s): launch another version, or lift the revocation first", req.Recipe, e.Version, cmpOr(e.RevokeReason, "no reason given"))
	case (inStage == nil || inStage.Version != e.Version) && !req.Force:
		held := "no version is"
		if inStage != nil {
			held = inStage.Version + " is"
		}
		return fmt.Errorf("%s@%s is not in stage %s (%s): promote it first (bakery promote %s@%s --to %s), or launch it anyway with --force --reason", req.Recipe, e.Version, req.Stage, held, req.Recipe, e.Version, req.Stage)
	}
	st.entry = *e
	st.res.Version = e.Version
	i := slices.IndexFunc(e.Locations, func(l catalog.Location) bool { return l.Where == st.region })
	if i < 0 {
		var where []string
		for _, l := range e.Locations {
			where = append(where, l.Where)
		}
		return fmt.Errorf("%s@%s is not in %s (it is in %s): promote it there: add %s to the regions of stage %s and run bakery promote %s@%s --to %s again",
			req.Recipe, e.Version, st.region, orNone(where), st.region, req.Stage, req.Recipe, e.Version, req.Stage)
	}
	id := e.Locations[i].ID
	out, err := s.l.images(st.region).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
	if err != nil && !awsx.IsNotFound(err) {
		return fmt.Errorf("reading AMI %s of %s@%s in %s: %w", id, req.Recipe, e.Version, st.region, awsx.ExplainError(err))
	}
	if err != nil || len(out.Images) == 0 || out.Images[0].State == ec2types.ImageStateDeregistered {
		return fmt.Errorf("AMI %s of %s@%s in %s is deregistered or disabled: promote another version to %s, or bake %s again", id, req.Recipe, e.Version, st.region, req.Stage, e.Version)
	}
	img := out.Images[0]
	if img.State != ec2types.ImageStateAvailable {
		return fmt.Errorf("AMI %s of %s@%s in %s is %s, not available: wait for it, or promote another version", id, req.Recipe, e.Version, st.region, img.State)
	}
	st.image = amiInfo{id: id, rootDevice: aws.ToString(img.RootDeviceName)}
	for _, m := range img.BlockDeviceMappings {
		if m.Ebs != nil {
			st.image.ebsDevices = append(st.image.ebsDevices, m)
		}
	}
	st.res.Image = id
	return nil
}

func (*resolveStep) Cleanup(context.Context, *state, bool) error { return nil }

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// observeStep reads the stage's groups and makes the plan.
type observeStep struct{ l *Launcher }

func (*observeStep) Name() string { return "plan the fleet" }

func (s *observeStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	req := st.req
	groups, err := s.l.inv.List(ctx, st.region, fleet.Selector{Recipe: req.Recipe, Stage: req.Stage})
	if err != nil {
		return err
	}
	name, err := s.l.inv.NextName(ctx, st.region, req.Recipe, req.Stage)
	if err != nil {
		return err
	}
	st.plan = MakePlan(req.Fleet, groups, name, req.Capacity)
	p := st.plan
	st.res.Group, st.res.Previous = p.Name, p.Previous
	st.res.Min, st.res.Desired, st.res.Max = p.Min, p.Desired, p.Max
	for _, g := range p.Disable {
		st.res.Disabled = append(st.res.Disabled, g.Name)
	}
	for _, g := range p.Delete {
		st.res.Deleted = append(st.res.Deleted, g.Name)
	}
	if _, err := s.l.alarmStates(ctx, st); err != nil {
		return err
	}
	st.subnets = req.Fleet.Subnets
	if len(st.subnets) == 0 {
		if st.subnets, err = s.l.inv.DefaultSubnets(ctx, st.region); err != nil {
			return err
		}
	}
	return nil
}

func (*observeStep) Cleanup(context.Context, *state, bool) error { return nil }

// templateStep creates the new group's launch template.
type templateStep struct{ l *Launcher }

func (*templateStep) Name() string { return "create the launch template" }

func (s *templateStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	f := st.req.Fleet
	tags := st.tags()
	data := &ec2types.RequestLaunchTemplateData{
		ImageId:      aws.String(st.image.id),
		InstanceType: ec2types.InstanceType(f.InstanceType),
		MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
			HttpTokens:              ec2types.LaunchTemplateHttpTokensStateRequired,
			HttpEndpoint:            ec2types.LaunchTemplateInstanceMetadataEndpointStateEnabled,
			HttpPutResponseHopLimit: aws.Int32(2),
		},
		SecurityGroupIds: f.SecurityGroups,
		TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{
			{ResourceType: ec2types.ResourceTypeInstance, Tags: ec2Tags(tags)},
			{ResourceType: ec2types.ResourceTypeVolume, Tags: ec2Tags(tags)},
		},
	}
	data.BlockDeviceMappings = encryptedDevices(st.image)
	if p := f.InstanceProfile; p != "" {
		data.IamInstanceProfile = &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{}
		if strings.HasPrefix(p, "arn:") {
			data.IamInstanceProfile.Arn = aws.String(p)
		} else {
			data.IamInstanceProfile.Name = aws.String(p)
		}
	}
	if f.UserData != "" {
		data.UserData = aws.String(base64.StdEncoding.EncodeToString([]byte(f.UserData)))
	}
	tpl, err := s.l.inv.CreateTemplate(ctx, st.region, st.plan.Name, data, tags)
	if err != nil {
		return err
	}
	st.template = tpl
	st.res.LaunchTemplate, st.res.LaunchTemplateVersion = tpl.ID, tpl.Version
	return nil
}

// Cleanup deletes the template when no group was created from it. Once
// one was, the group's cleanup owns it: fleet.Inventory.Delete deletes
// it with the group, and a group that could not be deleted (or is kept
// for debugging) keeps its template, which it needs to scale or be
// rolled back to.
func (s *templateStep) Cleanup(ctx context.Context, st *state, failed bool) error {
	if !failed || st.committed || st.template.ID == "" || st.res.Failed != "" || st.created {
		return nil
	}
	return s.l.inv.DeleteTemplate(ctx, st.region, st.template.ID)
}

// encryptedDevices are the AMI's EBS devices, each encrypted (with the
// account's default EBS key), deleted with the instance; the root
// device alone when EC2 reports none.
func encryptedDevices(img amiInfo) []ec2types.LaunchTemplateBlockDeviceMappingRequest {
	var out []ec2types.LaunchTemplateBlockDeviceMappingRequest
	for _, m := range img.ebsDevices {
		out = append(out, ec2types.LaunchTemplateBlockDeviceMappingRequest{
			DeviceName: m.DeviceName,
			Ebs: &ec2types.LaunchTemplateEbsBlockDeviceRequest{
				Encrypted:           aws.Bool(true),
				DeleteOnTermination: aws.Bool(true),
				VolumeType:          ec2types.VolumeType(m.Ebs.VolumeType),
				VolumeSize:          m.Ebs.VolumeSize,
			},
		})
	}
	if len(out) == 0 && img.rootDevice != "" {
		out = append(out, ec2types.LaunchTemplateBlockDeviceMappingRequest{
			DeviceName: aws.String(img.rootDevice),
			Ebs:        &ec2types.LaunchTemplateEbsBlockDeviceRequest{Encrypted: aws.Bool(true), DeleteOnTermination: aws.Bool(true)},
		})
	}
	return out
}

func ec2Tags(m map[string]string) []ec2types.Tag {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]ec2types.Tag, len(keys))
	for i, k := range keys {
		out[i] = ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])}
	}
	return out
}

// groupStep creates the new group, marked launching.
type groupStep struct{ l *Launcher }

func (*groupStep) Name() string { return "create the group" }

func (s *groupStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	f, p := st.req.Fleet, st.plan
	tags := st.tags()
	tags[fleet.TagLaunching] = st.res.LaunchID
	// Recorded before the call: a create that fails after AWS made the
	// group (a lost answer) is still cleaned up; deleting a group that
	// does not exist is a no-op.
	st.created = true
	err := s.l.inv.CreateGroup(ctx, st.region, fleet.GroupSpec{
		Name: p.Name, Template: st.template, Min: p.Min, Desired: p.Desired, Max: p.Max,
		Subnets: st.subnets, TargetGroups: f.TargetGroups,
		HealthCheckType: f.HealthCheckType, HealthCheckGrace: f.HealthCheckGrace, Tags: tags,
	})
	switch code := awsx.ErrorCode(err); {
	case err == nil:
		return nil
	case strings.HasPrefix(code, "InvalidSubnet"):
		return fmt.Errorf("%w: check the subnets of fleet %q (%s): each must exist in %s", err, f.Stage, f.Pos("subnets"), st.region)
	case strings.Contains(err.Error(), "TargetGroup") || strings.Contains(err.Error(), "target group"):
		return fmt.Errorf("%w: check the target_groups of fleet %q (%s): each must exist in %s", err, f.Stage, f.Pos("target_groups"), st.region)
	}
	return err
}

func (s *groupStep) Cleanup(ctx context.Context, st *state, failed bool) error {
	if !failed || st.committed || !st.created {
		return nil
	}
	if st.req.KeepFailed {
		g, ok, err := s.l.inv.Get(ctx, st.region, st.plan.Name)
		if err != nil || ok {
			if err == nil {
				err = s.l.inv.Fail(ctx, g, cmpOr(st.failure, "interrupted"))
			}
			if err == nil {
				st.res.Failed = g.Name
			}
			return err
		}
	}
	return s.l.inv.Delete(ctx, fleet.Group{Name: st.plan.Name, Region: st.region, TemplateID: st.template.ID})
}

// gateStep waits until the new group is healthy: every desired instance
// InService and Healthy, and healthy in every target group of the fleet.
type gateStep struct{ l *Launcher }

func (*gateStep) Name() string { return "wait for the group to be healthy" }

func (s *gateStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	f, name := st.req.Fleet, st.plan.Name
	w := awsx.Wait{What: name + " to be healthy", Timeout: f.HealthyTimeout, Interval: s.l.poll, Clock: s.l.clock}
	var (
		last       fleet.Health
		lastAlarms map[string]string
		read       bool
		said       string
	)
	err := w.Until(ctx, func(ctx context.Context) (bool, error) {
		h, err := s.l.health.Health(ctx, st.region, name, f.TargetGroups)
		if err != nil {
			return false, err
		}
		alarms, err := s.l.alarmStates(ctx, st)
		if err != nil {
			return false, err
		}
		last, lastAlarms, read = h, alarms, true
		v := judgeAlarms(Judge(h, st.plan.Desired, f.TargetGroups), f.Alarms, alarms)
		if v.Summary != said {
			said = v.Summary
			s.l.progress.Info(name + ": " + v.Summary)
		}
		return v.Healthy, nil
	})
	if err != nil && !read {
		return fmt.Errorf("health gate of %s: %w", name, err)
	}
	if err != nil {
		v := judgeAlarms(Judge(last, st.plan.Desired, f.TargetGroups), f.Alarms, lastAlarms)
		detail := v.Summary
		if len(v.Problems) > 0 {
			detail += "; " + strings.Join(v.Problems, "; ")
		}
		st.failure = detail
		return fmt.Errorf("health gate of %s: %s: %w", name, detail, err)
	}
	st.res.Instances = last.Group.Instances
	return s.l.inv.Untag(ctx, st.region, name, fleet.TagLaunching)
}

func (*gateStep) Cleanup(context.Context, *state, bool) error { return nil }

// Verdict is the health gate's judgement of one reading.
type Verdict struct {
	// Healthy is true when the group passes the gate.
	Healthy bool
	// Summary says how far it is: "3/3 InService, 2/3 healthy in tg web".
	Summary string
	// Problems name each instance that is not ready, and why.
	Problems []string
}

// Judge decides whether h passes the health gate of a group of desired
// instances serving targetGroups: at least desired instances must be
// InService and Healthy in the group and "healthy" in every target group
// (initial, unused, draining, unavailable, unhealthy and unregistered
// are not). It is a pure function.
func Judge(h fleet.Health, desired int, targetGroups []string) Verdict {
	state := map[string]map[string]fleet.TargetHealth{}
	for _, t := range h.Targets {
		if state[t.TargetGroup] == nil {
			state[t.TargetGroup] = map[string]fleet.TargetHealth{}
		}
		state[t.TargetGroup][t.Instance] = t
	}
	inService, ready := 0, 0
	healthyIn := map[string]int{}
	var problems []string
	for _, i := range h.Group.Instances {
		ok := i.Lifecycle == "InService" && i.Health == "Healthy"
		if ok {
			inService++
		}
		var why []string
		if !ok {
			why = append(why, i.Lifecycle+"/"+cmpOr(i.Health, "?"))
		}
		for _, tg := range targetGroups {
			t, seen := state[tg][i.ID]
			if seen && t.State == "healthy" {
				healthyIn[tg]++
				continue
			}
			s := "unregistered"
			if seen {
				s = t.State
				if t.Reason != "" {
					s += " (" + t.Reason + ")"
				}
			}
			why = append(why, s+" in tg "+tgName(tg))
			ok = false
		}
		if ok {
			ready++
		} else {
			problems = append(problems, i.ID+": "+strings.Join(why, ", "))
		}
	}
	parts := []string{fmt.Sprintf("%d/%d InService", inService, desired)}
	for _, tg := range targetGroups {
		parts = append(parts, fmt.Sprintf("%d/%d healthy in tg %s", healthyIn[tg], desired, tgName(tg)))
	}
	if n := len(h.Group.Instances); n < desired {
		problems = append(problems, fmt.Sprintf("%d of %d instances launched", n, desired))
	}
	return Verdict{Healthy: ready >= desired, Summary: strings.Join(parts, ", "), Problems: problems}
}

// judgeAlarms adds the fleet's alarms to v: each of names must be OK in
// states (name → state value).
func judgeAlarms(v Verdict, names []string, states map[string]string) Verdict {
	if len(names) == 0 {
		return v
	}
	ok := 0
	for _, n := range names {
		if states[n] == string(cwtypes.StateValueOk) {
			ok++
			continue
		}
		v.Healthy = false
		v.Problems = append(v.Problems, fmt.Sprintf("alarm %s is %s", n, cmpOr(states[n], "missing")))
	}
	v.Summary += fmt.Sprintf(", %d/%d alarms OK", ok, len(names))
	return v
}

// alarmStates reads the state of each alarm of the fleet (nil when it
// names none). An alarm that does not exist is an error: the gate could
// never pass.
func (l *Launcher) alarmStates(ctx context.Context, st *state) (map[string]string, error) {
	f := st.req.Fleet
	if len(f.Alarms) == 0 {
		return nil, nil
	}
	if l.alarms == nil {
		return nil, fmt.Errorf("fleet %s names alarms, but the launcher was made without WithAlarms and cannot read them: pass launch.WithAlarms", f.Stage)
	}
	out, err := l.alarms(st.region).DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: f.Alarms})
	if err != nil {
		return nil, fmt.Errorf("reading the alarms of fleet %s in %s: %w", f.Stage, st.region, awsx.ExplainError(err))
	}
	states := map[string]string{}
	for _, a := range out.MetricAlarms {
		states[aws.ToString(a.AlarmName)] = string(a.StateValue)
	}
	for _, a := range out.CompositeAlarms {
		states[aws.ToString(a.AlarmName)] = string(a.StateValue)
	}
	for _, n := range f.Alarms {
		if _, ok := states[n]; !ok {
			return nil, fmt.Errorf("alarm %s of fleet %s does not exist in %s: create it, or remove it from alarms (%s)", n, f.Stage, st.region, f.Pos("alarms"))
		}
	}
	return states, nil
}

// tgName is the name part of a target group ARN.
func tgName(arn string) string {
	_, rest, ok := strings.Cut(arn, ":targetgroup/")
	if !ok {
		return arn
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// disableStep disables the groups the new one replaces: detached from
// their target groups first, then processes suspended. It reads the
// stage's groups again first, so that what it disables is what serves
// now, and so that two launches of one stage at once converge: a launch
// that finds a newer group (a higher number) serving or launching yields
// to it (ErrSuperseded: it is undone), and one that finds none disables
// every other serving group. Its cleanup, when the launch fails before
// it is committed, restores them exactly.
type disableStep struct{ l *Launcher }

func (*disableStep) Name() string { return "disable the old groups" }

func (s *disableStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	groups, err := s.l.inv.List(ctx, st.region, fleet.Selector{Recipe: st.req.Recipe, Stage: st.req.Stage})
	if err != nil {
		return err
	}
	ours := 0
	for _, g := range groups {
		if g.Name == st.plan.Name {
			ours = g.Number
		}
	}
	var disable []fleet.Group
	for _, g := range groups {
		if g.Name == st.plan.Name {
			continue
		}
		if st.action == catalog.ActionLaunch && g.Number > ours && (g.State == fleet.StateServing || g.State == fleet.StateLaunching) {
			return fmt.Errorf("%s is %s: %w; %s yields to it", g.Name, g.State, ErrSuperseded, st.plan.Name)
		}
		if g.State == fleet.StateServing {
			disable = append(disable, g)
		}
	}
	st.plan.Disable = disable
	st.res.Disabled = []string{}
	for _, g := range disable {
		st.res.Disabled = append(st.res.Disabled, g.Name)
	}
	at := s.l.clock.Now()
	for _, g := range disable {
		// Recorded before the first change, as it was: the cleanup puts
		// it back even if Disable stops half way.
		st.disabled = append(st.disabled, g)
		if err := s.l.inv.Disable(ctx, g, at); err != nil {
			return err
		}
	}
	return nil
}

func (s *disableStep) Cleanup(ctx context.Context, st *state, failed bool) error {
	if !failed || st.committed {
		return nil
	}
	var errs []error
	for _, g := range slices.Backward(st.disabled) {
		if err := s.l.inv.Restore(ctx, g); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// drainStep keeps the disabled groups warm for the fleet's drain, then
// scales them to 0. Once they are scaled down the launch is committed.
type drainStep struct{ l *Launcher }

func (*drainStep) Name() string { return "drain the old groups" }

func (s *drainStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	if len(st.disabled) > 0 {
		if err := s.l.wait(ctx, st.req.Fleet.Drain); err != nil {
			return fmt.Errorf("draining %s for %s: %w", names(st.disabled), st.req.Fleet.Drain, err)
		}
	}
	for _, g := range st.disabled {
		if err := s.l.inv.Resize(ctx, g.Region, g.Name, 0, 0, g.Max); err != nil {
			return err
		}
	}
	st.committed = true
	return nil
}

func (*drainStep) Cleanup(context.Context, *state, bool) error { return nil }

// retireStep deletes what the strategy retires. The new group serves by
// now: a failure here is a warning, not an undo.
type retireStep struct{ l *Launcher }

func (*retireStep) Name() string { return "delete retired groups" }

func (s *retireStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	var deleted []string
	for _, g := range st.plan.Delete {
		if err := s.l.inv.Delete(ctx, g); err != nil {
			st.res.Warnings = append(st.res.Warnings, fmt.Sprintf("%v: delete it with the AWS console or CLI, or it stays as a rollback target", err))
			continue
		}
		deleted = append(deleted, g.Name)
	}
	st.res.Deleted = append([]string{}, deleted...)
	return nil
}

func (*retireStep) Cleanup(context.Context, *state, bool) error { return nil }

// recordStep records the launch (or rollback) in the image's history.
type recordStep struct{ l *Launcher }

func (*recordStep) Name() string { return "record it in the history" }

func (s *recordStep) Run(ctx context.Context, st *state, _ progress.Step) error {
	ev := catalog.Event{
		Time: s.l.clock.Now().UTC().Truncate(time.Microsecond), Action: st.action, Stage: st.req.Stage, Actor: st.req.Actor,
		Reason: fmt.Sprintf("group %s in %s (%s %s)", st.plan.Name, st.region, st.action, st.res.LaunchID),
		Forced: st.req.Force,
	}
	if st.req.Force {
		ev.Reason += ": " + st.req.Reason
	}
	if err := s.l.cat.Record(ctx, st.entry, ev); err != nil {
		st.res.Warnings = append(st.res.Warnings, fmt.Sprintf("the group serves, but %v: the history lacks it", err))
	}
	return nil
}

func (*recordStep) Cleanup(context.Context, *state, bool) error { return nil }
