// Package launch runs a stage's image as a fresh Auto Scaling group:
// immutable deploys, where every launch creates a new group from the AMI
// promoted to the stage and nothing is patched in place. A launch is a
// readable list of steps (internal/steps), each with Run and Cleanup:
//
//  1. resolve the image: the version in the stage, available in the
//     fleet's region, not revoked or deregistered;
//  2. observe the stage's groups (catalog/fleet) and plan: the new
//     group's name and sizes, which groups to disable and which to
//     delete (Plan, a pure function);
//  3. create the group's launch template with the full launch data
//     (IMDSv2 required, EBS encrypted, tags on instances and volumes),
//     pinned by version number;
//  4. create the group RECIPE-STAGE-vNNN, tagged and attached to the
//     fleet's target groups;
//  5. the health gate: every desired instance InService and Healthy and
//     healthy in every target group, within healthy_timeout;
//  6. only then disable the groups that served (detach, suspend), keep
//     them warm for the drain, and scale them to 0;
//  7. delete what the strategy retires: disabled groups beyond
//     keep_disabled (red-black), or every old group (highlander);
//  8. record a launch event on the image.
//
// Until the old groups are scaled down, any failure, timeout or
// interruption undoes the launch: the old groups are restored exactly as
// they were (sizes, target groups, processes) and the new group is
// deleted with its launch template.
//
// launch does not import bake, promote or retire: they meet in catalog.
package launch

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/steps"
	"github.com/bakery-sh/bakery/recipes"
)

// Catalog is what a launch reads of the versions of the fleet's
// machine_image and how it records the launch in their history.
// *catalog/ami.LifecycleStore implements it.
type Catalog interface {
	// Entries returns every version with its lifecycle.
	Entries(ctx context.Context) ([]catalog.Entry, error)
	// Record adds a launch event to a version's history.
	Record(ctx context.Context, e catalog.Entry, ev catalog.Event) error
}

// Images reads AMIs. *ec2.Client implements it.
type Images interface {
	DescribeImages(context.Context, *ec2.DescribeImagesInput, ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error)
}

// HealthSource reports a group's instances as Auto Scaling and its
// target groups see them. *fleet.Inventory implements it.
type HealthSource interface {
	Health(ctx context.Context, region, group string, targetGroups []string) (fleet.Health, error)
}

// ErrSuperseded is returned, wrapped, by Launch when a newer launch of
// the same stage (a group with a higher number) was serving or launching
// by the time this one passed its gate: this launch is undone and the
// newer one holds the stage, so two launches at once end with one
// serving group.
var ErrSuperseded = errors.New("a newer launch of the stage took over")

// Alarms reads CloudWatch alarms. *cloudwatch.Client implements it.
type Alarms interface {
	DescribeAlarms(context.Context, *cloudwatch.DescribeAlarmsInput, ...func(*cloudwatch.Options)) (*cloudwatch.DescribeAlarmsOutput, error)
}

// Request is one launch.
type Request struct {
	// Recipe is the recipe name.
	Recipe string
	// Stage is the stage whose image is launched.
	Stage string
	// Fleet is the stage's fleet block.
	Fleet *recipes.Fleet
	// Region is where the fleet runs when Fleet.Region is empty (the AWS
	// config's region).
	Region string
	// Version, when set, is the version to launch; it must be in Stage.
	// Default: the version in Stage.
	Version string
	// Capacity, when above 0, is the new group's desired capacity (its
	// min and max stretch to hold it). Default: the fleet's, else the
	// serving group's.
	Capacity int
	// Force launches Version although it is not in Stage (never a
	// revoked one); Reason must say why, and both are recorded.
	Force  bool
	Reason string
	// KeepFailed keeps a new group that fails its gate, for debugging:
	// disabled (detached, processes suspended) with its instances and
	// launch template, tagged fleet.TagFailed. Default: it is deleted.
	KeepFailed bool
	// DryRun plans the launch and changes nothing.
	DryRun bool
	// Actor is who launches, recorded in the history.
	Actor string
}

// region is the region the fleet runs in.
func (r Request) region() string { return cmp.Or(r.Fleet.Region, r.Region) }

// Result is what a launch did (or, with DryRun, would do).
type Result struct {
	// Recipe, Stage, Version and Image name what was launched where.
	Recipe  string `json:"recipe"`
	Stage   string `json:"stage"`
	Version string `json:"version"`
	Image   string `json:"image"`
	Region  string `json:"region"`
	// Group is the new group (with DryRun: the name it would get).
	Group string `json:"group"`
	// LaunchTemplate and LaunchTemplateVersion are the new group's
	// launch template id and the version it pins.
	LaunchTemplate        string `json:"launch_template,omitempty"`
	LaunchTemplateVersion string `json:"launch_template_version,omitempty"`
	// Previous is the group that served before (the rollback target).
	Previous string `json:"previous,omitempty"`
	// Strategy is "red-black" or "highlander".
	Strategy string `json:"strategy"`
	// State is the new group's state: "serving", or "planned" with
	// DryRun.
	State string `json:"state"`
	// Min, Desired and Max are the new group's sizes.
	Min     int `json:"min"`
	Desired int `json:"desired"`
	Max     int `json:"max"`
	// Disabled are the groups this launch disabled (and scaled to 0).
	Disabled []string `json:"disabled"`
	// Deleted are the old groups this launch deleted.
	Deleted []string `json:"deleted"`
	// Instances are the new group's instances.
	Instances []fleet.Instance `json:"instances"`
	// LaunchID identifies this launch run (the bakery:launch-id tag).
	LaunchID string `json:"launch_id"`
	// DryRun is true when nothing was changed.
	DryRun bool `json:"dry_run"`
	// Failed is the new group kept after a failed gate (KeepFailed).
	Failed string `json:"failed,omitempty"`
	// Warnings are problems after the new group served that did not undo
	// the launch (an old group that could not be deleted, a history
	// event that could not be recorded).
	Warnings []string `json:"warnings,omitempty"`
}

// Defaults of a Launcher.
const (
	// DefaultPoll is how often the health gate asks AWS.
	DefaultPoll = 15 * time.Second
	// DefaultCleanupTimeout bounds the undoing of a failed launch: more
	// than fleet.DeleteTimeout, the wait for a deleted group to be gone.
	DefaultCleanupTimeout = fleet.DeleteTimeout + 5*time.Minute
)

// Option configures a Launcher.
type Option func(*Launcher)

// WithClock sets the clock the health gate and the drain run on, and
// the time of the disable tags and the launch event. Default: the system
// clock. A nil clock keeps the default.
func WithClock(c awsx.Clock) Option {
	return func(l *Launcher) {
		if c != nil {
			l.clock = c
		}
	}
}

// WithPollInterval sets how often the health gate asks AWS. Default:
// DefaultPoll. Values of zero or less keep the default.
func WithPollInterval(d time.Duration) Option {
	return func(l *Launcher) {
		if d > 0 {
			l.poll = d
		}
	}
}

// WithProgress sets where step lines and the health gate's changes go.
// Default: progress.Discard().
func WithProgress(r progress.Reporter) Option {
	return func(l *Launcher) {
		if r != nil {
			l.progress = r
		}
	}
}

// WithHealth sets where the health gate reads the new group's health.
// Default: the Launcher's inventory. Tests pass a source that fails or
// changes instances between reads.
func WithHealth(h HealthSource) Option {
	return func(l *Launcher) {
		if h != nil {
			l.health = h
		}
	}
}

// WithAlarms sets where the health gate reads the CloudWatch alarms a
// fleet names (alarms(region)). Default: none, and a launch of a fleet
// that names alarms is refused before it changes anything.
func WithAlarms(alarms func(region string) Alarms) Option {
	return func(l *Launcher) { l.alarms = alarms }
}

// WithCleanupTimeout bounds undoing a failed or interrupted launch.
// Default: DefaultCleanupTimeout. Values of zero or less keep the
// default.
func WithCleanupTimeout(d time.Duration) Option {
	return func(l *Launcher) {
		if d > 0 {
			l.cleanupTimeout = d
		}
	}
}

// Launcher launches fleets. It is safe for concurrent use; two launches
// of the same recipe and stage at once converge on the newer group (see
// ErrSuperseded).
type Launcher struct {
	inv            *fleet.Inventory
	images         func(region string) Images
	cat            Catalog
	clock          awsx.Clock
	poll           time.Duration
	progress       progress.Reporter
	health         HealthSource
	alarms         func(region string) Alarms
	cleanupTimeout time.Duration
}

// New returns a Launcher that changes groups through inv, reads AMIs
// through images(region) and versions from cat.
func New(inv *fleet.Inventory, images func(region string) Images, cat Catalog, opts ...Option) *Launcher {
	l := &Launcher{inv: inv, images: images, cat: cat, clock: awsx.SystemClock(), poll: DefaultPoll,
		progress: progress.Discard(), health: inv, cleanupTimeout: DefaultCleanupTimeout}
	for _, o := range opts {
		o(l)
	}
	return l
}

// state is what the steps of one launch share.
type state struct {
	req      Request
	res      *Result
	region   string
	entry    catalog.Entry
	image    amiInfo
	plan     Plan
	subnets  []string
	template fleet.Template
	// created is true once the new group exists.
	created bool
	// disabled are the groups being disabled, as they were before.
	disabled []fleet.Group
	// committed is true once the old groups are scaled down: from then
	// on nothing is undone.
	committed bool
	// failure is why the gate failed, for the TagFailed of a kept group.
	failure string
	// action is the event recorded: catalog.ActionLaunch or
	// catalog.ActionRollback.
	action string
	// target is, in a rollback, the disabled group brought back, as it
	// was; enabled is true once it is being changed.
	target  fleet.Group
	enabled bool
}

// Launch launches req. It returns the result and, on failure, an error
// that says what failed and what was undone; the result then describes
// the attempt.
func (l *Launcher) Launch(ctx context.Context, req Request) (*Result, error) {
	return l.launch(ctx, req, catalog.ActionLaunch)
}

// launch launches req, recording action (a launch, or a rollback that
// launches the previous version again).
func (l *Launcher) launch(ctx context.Context, req Request, action string) (*Result, error) {
	if req.Fleet == nil {
		return nil, fmt.Errorf("launching %s to %s: the recipe has no fleet \"%s\" block: add one to say where the stage runs", req.Recipe, req.Stage, req.Stage)
	}
	if req.Force && req.Reason == "" {
		return nil, fmt.Errorf("launching %s to %s: --force needs --reason: say why this version runs a stage it is not in", req.Recipe, req.Stage)
	}
	if req.Force && req.Version == "" {
		return nil, fmt.Errorf("launching %s to %s: --force needs --version: name the version to launch", req.Recipe, req.Stage)
	}
	if err := checkSizes(req.Fleet); err != nil {
		return nil, fmt.Errorf("launching %s to %s: %w", req.Recipe, req.Stage, err)
	}
	st := &state{req: req, region: req.region(), action: action}
	st.res = &Result{Recipe: req.Recipe, Stage: req.Stage, Region: st.region, Strategy: req.Fleet.Strategy,
		LaunchID: newLaunchID(), DryRun: req.DryRun, Disabled: []string{}, Deleted: []string{}, Instances: []fleet.Instance{}}
	if st.region == "" {
		return st.res, fmt.Errorf("launching %s to %s: no region: set region in the fleet block or AWS_REGION", req.Recipe, req.Stage)
	}
	runner := steps.Runner{Progress: l.progress, CleanupTimeout: l.cleanupTimeout}
	list := []steps.Step[state]{&resolveStep{l}, &observeStep{l}}
	if !req.DryRun {
		list = append(list, &templateStep{l}, &groupStep{l}, &gateStep{l}, &disableStep{l}, &drainStep{l}, &retireStep{l}, &recordStep{l})
	}
	if err := steps.Run(ctx, runner, st, list...); err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("interrupted (%w): %w", cause, err)
		}
		what := fmt.Sprintf("launching %s to %s in %s", req.Recipe, req.Stage, st.region)
		if st.committed {
			what += fmt.Sprintf(" (%s serves and %s are disabled: nothing was undone, but what came after did not run; check with bakery fleets)", st.res.Group, orNone(st.res.Disabled))
		} else if st.res.Failed != "" {
			what += fmt.Sprintf(" (%s kept for debugging: disabled, not serving; delete it when done", st.res.Failed)
			if len(st.disabled) > 0 {
				what += ", " + names(st.disabled) + " restored"
			}
			what += ")"
		} else if st.created && !st.committed {
			what += fmt.Sprintf(" (undone: %s deleted", st.res.Group)
			if len(st.disabled) > 0 {
				what += ", " + names(st.disabled) + " restored"
			}
			what += ")"
		}
		if steps.CleanupFailed(err) {
			what += " (undoing it failed too: check the groups with bakery fleets and delete what is left)"
		}
		return st.res, fmt.Errorf("%s: %w", what, err)
	}
	if req.DryRun {
		st.res.State = "planned"
	} else {
		st.res.State = string(fleet.StateServing)
	}
	return st.res, nil
}

// checkSizes refuses a fleet whose sizes cannot hold together (Load
// refuses such a recipe; a Fleet made in code may still have them).
func checkSizes(f *recipes.Fleet) error {
	pairs := []struct {
		lo, hi         *int
		loName, hiName string
	}{
		{f.MinSize, f.MaxSize, "min_size", "max_size"},
		{f.MinSize, f.DesiredCapacity, "min_size", "desired_capacity"},
		{f.DesiredCapacity, f.MaxSize, "desired_capacity", "max_size"},
	}
	for _, p := range pairs {
		if p.lo != nil && p.hi != nil && *p.lo > *p.hi {
			return fmt.Errorf("fleet %s: %s %d is more than %s %d: fix the fleet block (bakery validate checks it)", f.Stage, p.loName, *p.lo, p.hiName, *p.hi)
		}
	}
	return nil
}

func names(gs []fleet.Group) string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Name
	}
	return strings.Join(out, ", ")
}

// newLaunchID returns a random launch id, "l-" and 16 hex digits.
func newLaunchID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return "l-" + hex.EncodeToString(b)
}

// Plan is what a launch does to the stage's groups, decided from the
// groups it observed before it changes anything.
type Plan struct {
	// Name is the new group's name.
	Name string
	// Previous is the group that serves now and becomes the rollback
	// target ("" when none serves).
	Previous string
	// Min, Desired and Max size the new group.
	Min, Desired, Max int
	// Disable are the serving groups the new one replaces, as they are.
	Disable []fleet.Group
	// Delete are the groups the strategy retires once the new group
	// serves: disabled groups beyond keep_disabled (red-black), or every
	// old group (highlander). Failed and launching groups are left alone.
	Delete []fleet.Group
}

// MakePlan decides a launch of fleet f from groups, the stage's groups
// (oldest first), for a new group named name and capacity (0: none
// asked). It is a pure function of its inputs.
func MakePlan(f *recipes.Fleet, groups []fleet.Group, name string, capacity int) Plan {
	p := Plan{Name: name}
	var old []fleet.Group // disabled before this launch
	for _, g := range groups {
		switch g.State {
		case fleet.StateServing:
			p.Disable = append(p.Disable, g)
		case fleet.StateDisabled, fleet.StateDraining:
			old = append(old, g)
		}
	}
	var cur fleet.Group
	if n := len(p.Disable); n > 0 {
		cur = p.Disable[n-1] // the newest serving group
		p.Previous = cur.Name
	}
	p.Min, p.Desired, p.Max = f.Sizes(cur.Min, cur.Desired, cur.Max, capacity)
	if f.Strategy == recipes.StrategyHighlander {
		p.Delete = append(slices.Clone(p.Disable), old...)
		return p
	}
	// Red-black: the groups disabled now are the newest disabled ones;
	// keep keep_disabled of all disabled groups, newest first.
	kept := slices.Clone(p.Disable)
	slices.Reverse(kept)
	slices.SortStableFunc(old, func(a, b fleet.Group) int {
		return cmp.Or(b.Disabled.Compare(a.Disabled), cmp.Compare(b.Number, a.Number))
	})
	kept = append(kept, old...)
	if len(kept) > f.KeepDisabled {
		p.Delete = kept[f.KeepDisabled:]
	}
	return p
}

// tags are the bakery tags of the new group (propagated to its
// instances), of its launch template, instances and volumes.
func (st *state) tags() map[string]string {
	t := map[string]string{}
	for k, v := range st.req.Fleet.Tags {
		t[k] = v
	}
	if _, ok := t["Name"]; !ok {
		t["Name"] = st.plan.Name
	}
	t[catalog.TagRecipe] = st.req.Recipe
	t[catalog.TagVersion] = st.entry.Version
	t[fleet.TagStage] = st.req.Stage
	t[fleet.TagArtifact] = st.req.Fleet.Image
	t[fleet.TagImage] = st.image.id
	t[fleet.TagLaunchID] = st.res.LaunchID
	t[fleet.TagPrevious] = st.plan.Previous
	return t
}

// wait sleeps d on the clock, or until ctx ends.
func (l *Launcher) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-l.clock.After(d):
		return nil
	}
}
