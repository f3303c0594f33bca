package retire

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// AMIs observes and retires the versions of one machine_image artifact:
// its catalog (a LifecycleStore, which with catalogami.WithMoreRegions
// looks in every enabled region), what uses its AMIs (fleet.ImagesInUse)
// and the AMIs of other recipes baked from them.
type AMIs struct {
	recipe, artifact string
	store            *catalogami.LifecycleStore
	find             *catalogami.Store
	ops              *catalogami.Ops
	usage            fleet.UsageClients
	options
}

// options are what Options set, for AMIs and Containers.
type options struct {
	regions       []string
	enabled       func(context.Context) ([]string, error)
	stageAccounts map[string][]string
	now           func() time.Time
	actor         string
}

func newOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Option configures AMIs and Containers (those that apply to them).
type Option func(*options)

// WithClock sets the clock of the retire events Apply records (AMIs and
// Containers). Default:
// time.Now. A nil clock keeps the default.
func WithClock(now func() time.Time) Option {
	return func(a *options) {
		if now != nil {
			a.now = now
		}
	}
}

// WithActor names who retires, in the retire events (AMIs and
// Containers). Default: "".
func WithActor(actor string) Option { return func(a *options) { a.actor = actor } }

// WithUsageRegions adds regions in which to look for what uses an AMI
// (the recipe's regions and its fleets'), besides the regions of the
// store and those the version's AMIs are in. Default: none.
func WithUsageRegions(regions ...string) Option {
	return func(a *options) { a.regions = append(a.regions, regions...) }
}

// WithEnabledRegions sets how the account's enabled regions are found:
// orphans (snapshots whose AMI is gone, unfinished promotion copies) are
// looked for in every one of them, wherever the recipe's versions are
// now. Default: awsx.EnabledRegions with the EC2 client of the store's
// first region, when it can list regions; else only the regions of the
// store, WithUsageRegions and the versions.
func WithEnabledRegions(enabled func(context.Context) ([]string, error)) Option {
	return func(a *options) { a.enabled = enabled }
}

// WithStageAccounts names, per stage, the accounts its AMIs are shared
// with: an AMI shared with one of them is in use there while it is the
// stage's current or previous version (Observed.StageAccounts). Default:
// none.
func WithStageAccounts(accounts map[string][]string) Option {
	return func(a *options) { a.stageAccounts = accounts }
}

// NewAMIs returns the retirer of recipe's machine_image artifact whose
// catalog is store. find lists AMIs (other recipes' too, for lineage),
// ops deletes them, usage reads what uses them.
func NewAMIs(recipe, artifact string, store *catalogami.LifecycleStore, find *catalogami.Store, ops *catalogami.Ops, usage fleet.UsageClients, opts ...Option) *AMIs {
	return &AMIs{recipe: recipe, artifact: artifact, store: store, find: find, ops: ops, usage: usage, options: newOptions(opts)}
}

// Artifact names the machine_image artifact a retires.
func (a *AMIs) Artifact() (catalog.Kind, string) { return catalog.KindAMI, a.artifact }

// Observe reads every version of the artifact with every location, what
// uses any of their AMIs in the regions they are in (and the store's and
// WithUsageRegions'), and the AMIs of other recipes or artifacts baked
// from them.
func (a *AMIs) Observe(ctx context.Context) (Observed, error) {
	what := fmt.Sprintf("observing the AMIs of %s/%s", a.recipe, a.artifact)
	entries, err := a.store.Entries(ctx)
	if err != nil {
		return Observed{}, fmt.Errorf("%s: %w", what, err)
	}
	ours := map[string]bool{}
	var located []string
	for _, e := range entries {
		for _, l := range e.Locations {
			ours[l.ID] = true
			located = append(located, l.Where)
		}
	}
	o := Observed{Recipe: a.recipe, Artifact: a.artifact, Entries: entries, InUse: map[string][]Use{}, Shares: map[string][]string{}, StageAccounts: a.stageAccounts}
	enabled, err := a.enabledRegions(ctx)
	if err != nil {
		return Observed{}, fmt.Errorf("%s: %w", what, err)
	}
	orphanRegions := dedupe(slices.Concat(a.store.Regions(), a.regions, located, enabled))
	if o.Orphans, err = a.orphans(ctx, orphanRegions); err != nil {
		return Observed{}, fmt.Errorf("%s: %w", what, err)
	}
	if len(entries) == 0 {
		return o, nil
	}
	if err := a.readShares(ctx, entries, o.Shares); err != nil {
		return Observed{}, fmt.Errorf("%s: %w", what, err)
	}
	uses, err := fleet.ImagesInUse(ctx, a.usage, a.usageRegions(located))
	if err != nil {
		return Observed{}, fmt.Errorf("%s: %w", what, err)
	}
	for id, us := range uses {
		if ours[id] {
			o.InUse[id] = toUses(us)
		}
	}
	// Lineage: AMIs of other recipes (or artifacts) whose source AMI is
	// one of ours, one listing per region the versions are in.
	for _, region := range dedupe(located) {
		imgs, err := a.find.List(ctx, region, ec2types.Filter{Name: aws.String("tag-key"), Values: []string{catalog.TagSourceAMI}})
		if err != nil {
			return Observed{}, fmt.Errorf("%s: finding the images baked from them: %w", what, err)
		}
		for _, img := range imgs {
			if ours[img.BaseName] && (img.Recipe != a.recipe || img.Artifact != a.artifact) {
				o.Dependents = append(o.Dependents, Dependent{Ref: img.Ref, BaseName: img.BaseName})
			}
		}
	}
	return o, nil
}

// enabledRegions returns the account's enabled regions (see
// WithEnabledRegions), none when they cannot be listed by default.
func (a *AMIs) enabledRegions(ctx context.Context) ([]string, error) {
	if a.enabled != nil {
		return a.enabled(ctx)
	}
	home := dedupe(slices.Concat(a.store.Regions(), a.regions))
	if len(home) == 0 {
		return nil, nil
	}
	if rc, ok := a.ops.Client(home[0]).(awsx.RegionsAPI); ok {
		return awsx.EnabledRegions(ctx, rc)
	}
	return nil, nil
}

// readShares reads, when stages have accounts, which AMIs of entries each
// stage account may launch: per region the versions are in and per stage
// account, one paginated DescribeImages of the artifact's AMIs that the
// account may launch (ExecutableUsers), so that the calls grow with
// regions, accounts and pages, not with AMIs. shares then names stage
// accounts only, the ones the plan asks about (sharedInUse).
func (a *AMIs) readShares(ctx context.Context, entries []catalog.Entry, shares map[string][]string) error {
	var accounts []string
	for _, as := range a.stageAccounts {
		accounts = append(accounts, as...)
	}
	slices.Sort(accounts)
	accounts = dedupe(accounts)
	if len(accounts) == 0 {
		return nil
	}
	ours := map[string]bool{}
	var regions []string
	for _, e := range entries {
		for _, l := range e.Locations {
			ours[l.ID] = true
			regions = append(regions, l.Where)
		}
	}
	for _, region := range dedupe(regions) {
		for _, account := range accounts {
			p := ec2.NewDescribeImagesPaginator(a.ops.Client(region), &ec2.DescribeImagesInput{
				Owners:          []string{"self"},
				ExecutableUsers: []string{account},
				Filters: []ec2types.Filter{
					{Name: aws.String("tag:" + catalog.TagRecipe), Values: []string{a.recipe}},
					{Name: aws.String("tag:" + catalog.TagArtifact), Values: []string{a.artifact}},
				},
				MaxResults: aws.Int32(catalogami.PageSize),
			})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					return fmt.Errorf("listing the AMIs of %s/%s account %s may launch in %s: %w", a.recipe, a.artifact, account, region, awsx.ExplainError(err))
				}
				for _, img := range page.Images {
					if id := aws.ToString(img.ImageId); ours[id] && !slices.Contains(shares[id], account) {
						shares[id] = append(shares[id], account)
					}
				}
			}
		}
	}
	return nil
}

// PendingCopyMaxAge is how long a promotion's copy may stay pending
// before retire takes it for stuck and removes it: far beyond the wait of
// a promotion (catalogami.DefaultCopyTimeout), so no running promotion
// loses the copy it waits for.
const PendingCopyMaxAge = 24 * time.Hour

// unfinishedCopies returns, of imgs (the account's AMIs in one region),
// the AMIs of a promotion's copy of the artifact that never finished
// (catalogami.IsUnfinishedCopy): no bake key, which the copying run
// writes last. A failed copy is an orphan once OrphanMinAge old, an
// available one too (the run that made it would have finished it within
// seconds), a pending one only after PendingCopyMaxAge (MakePlan applies
// the ages). Their age is the bakery:created time the copy was started
// with.
func (a *AMIs) unfinishedCopies(imgs []catalogami.Image) []Orphan {
	var out []Orphan
	for _, img := range imgs {
		if !catalogami.IsUnfinishedCopy(img, a.recipe, a.artifact) {
			continue
		}
		reason := "copy of " + a.recipe + "@" + img.Version + " a promotion started and never finished (" + img.State + ")"
		if img.StateReason != "" {
			reason += ": " + img.StateReason
		}
		out = append(out, Orphan{Ref: img.Ref, Artifact: a.artifact, Kind: OrphanAMI, Where: img.Region, ID: img.ImageID,
			Created: img.Created.UTC(), State: img.State, Snapshots: slices.Clone(img.Snapshots), Reason: reason})
	}
	return out
}

// orphans lists, in regions, the snapshots tagged with the artifact that
// no AMI of the account names and the artifact's unfinished promotion
// copies: one paginated DescribeSnapshots and one paginated
// DescribeImages per region, orphanConcurrency regions at once.
func (a *AMIs) orphans(ctx context.Context, regions []string) ([]Orphan, error) {
	found := make([][]Orphan, len(regions))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(orphanConcurrency)
	for i, region := range regions {
		g.Go(func() error {
			var err error
			found[i], err = a.orphansIn(gctx, region)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(found...), nil
}

// orphanConcurrency bounds how many regions are searched for orphans at
// once.
const orphanConcurrency = 8

// orphansIn lists the orphans of the artifact in region: its unfinished
// copies and its snapshots no AMI names, from one listing of the
// account's AMIs and one of the artifact's snapshots.
func (a *AMIs) orphansIn(ctx context.Context, region string) ([]Orphan, error) {
	imgs, err := a.find.List(ctx, region)
	if err != nil {
		return nil, err
	}
	out := a.unfinishedCopies(imgs)
	named := map[string]bool{}
	for _, img := range imgs {
		for _, s := range img.Snapshots {
			named[s] = true
		}
	}
	// In pages, as the AMIs: without MaxResults EC2 answers every snapshot at once.
	p := ec2.NewDescribeSnapshotsPaginator(a.ops.Client(region), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, MaxResults: aws.Int32(catalogami.PageSize), Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + catalog.TagRecipe), Values: []string{a.recipe}},
		{Name: aws.String("tag:" + catalog.TagArtifact), Values: []string{a.artifact}},
	}})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the snapshots of %s/%s in %s: %w", a.recipe, a.artifact, region, awsx.ExplainError(err))
		}
		for _, sn := range page.Snapshots {
			tags := catalogami.TagMap(sn.Tags)
			id := aws.ToString(sn.SnapshotId)
			// Filters narrow; they do not prove.
			if named[id] || tags[catalog.TagRecipe] != a.recipe || tags[catalog.TagArtifact] != a.artifact {
				continue
			}
			out = append(out, Orphan{Ref: catalog.Ref{Recipe: a.recipe, Version: tags[catalog.TagVersion]}, Artifact: a.artifact, Kind: OrphanSnapshot,
				Where: region, ID: id, Created: aws.ToTime(sn.StartTime).UTC(), GiB: int64(aws.ToInt32(sn.VolumeSize)),
				Reason: "snapshot of " + a.recipe + "@" + tags[catalog.TagVersion] + " that no AMI names"})
		}
	}
	return out, nil
}

// namedSnapshots returns the snapshots that an AMI of the account in
// region names (any AMI, bakery's or not, in any state).
func (a *AMIs) namedSnapshots(ctx context.Context, region string) (map[string]bool, error) {
	imgs, err := a.find.List(ctx, region)
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	for _, img := range imgs {
		for _, s := range img.Snapshots {
			named[s] = true
		}
	}
	return named, nil
}

func (a *AMIs) usageRegions(located []string) []string {
	return dedupe(slices.Concat(a.store.Regions(), a.regions, located))
}

func toUses(us []fleet.ImageUse) []Use {
	out := make([]Use, len(us))
	for i, u := range us {
		out[i] = Use{Kind: UseKind(u.Kind), ID: u.ID, Version: u.Version, Region: u.Region, Image: u.Image}
	}
	return out
}

// Skipped is a version, AMI or snapshot Apply did not delete, and why.
type Skipped struct {
	// Ref is the version.
	Ref catalog.Ref `json:"ref"`
	// Where and ID name the AMI or snapshot ("" for the whole version).
	Where string `json:"where,omitempty"`
	ID    string `json:"id,omitempty"`
	// Reason says why.
	Reason string `json:"reason"`
}

// Report is what Apply deleted and skipped.
type Report struct {
	// Retired are the versions whose every AMI is gone.
	Retired []catalog.Ref `json:"retired"`
	// AMIs and Snapshots count what was deleted; GiB is the snapshots'
	// size (their volume sizes, what EBS snapshot storage is billed
	// against at most).
	AMIs      int   `json:"amis"`
	Snapshots int   `json:"snapshots"`
	GiB       int64 `json:"gib"`
	// Manifests counts the container versions taken out of a layout's
	// index.json (or deleted from a registry); Blobs and Bytes what was
	// deleted of the layout's blobs.
	Manifests int   `json:"manifests,omitempty"`
	Blobs     int   `json:"blobs,omitempty"`
	Bytes     int64 `json:"bytes,omitempty"`
	// Skipped are the versions found in use or staged since the plan,
	// and the snapshots another AMI uses.
	Skipped []Skipped `json:"skipped"`
}

// Apply retires the versions plan removes, oldest first, then deletes
// its orphans. Right before each version it reads again what uses its
// AMIs, whether it entered a stage or was revoked, and whether an image
// was baked from it since the plan; such a version is skipped whole (and
// reported). Otherwise it records a retire event on the version (the
// store appends it to the journal first, when it has one), then
// deregisters the AMI of every region the version is in and deletes
// each of its snapshots explicitly, except a snapshot another AMI uses
// (reported). What is gone already counts as done: running Apply again
// with a new plan finishes an interrupted run. It goes on after an error
// and returns them all, with what it did.
//
// The re-check costs, per version, one fleet.ImagesInUse of the regions
// the version is in (calls grow with pages and launch templates) and one
// DescribeImages per AMI: the price of never deleting what something
// started to use a moment ago.
func (a *AMIs) Apply(ctx context.Context, plan *Plan) (*Report, error) {
	rep := &Report{Retired: []catalog.Ref{}, Skipped: []Skipped{}}
	remove := plan.Remove()
	slices.Reverse(remove)
	// The AMIs the plan removes: an image baked from one of them goes
	// with it and keeps nothing.
	removed := map[string]bool{}
	for _, d := range remove {
		for _, l := range d.Locations {
			removed[l.ID] = true
		}
	}
	var errs []error
	for _, d := range remove {
		e, ok := d.EntryOf(catalog.KindAMI, a.artifact)
		if !ok {
			continue // a version with no image of this artifact
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("retiring %s: %w", d.Ref, err))
			break
		}
		d.Entry, d.Locations = e, e.Locations
		done, err := a.retire(ctx, d, removed, rep)
		if err != nil {
			errs = append(errs, fmt.Errorf("retiring %s: %w: run bakery retire --yes again to finish", d.Ref, err))
		}
		if done {
			rep.Retired = append(rep.Retired, d.Ref)
		}
	}
	byRegion := map[string][]Orphan{}
	var regions []string
	for _, o := range plan.Orphans {
		if o.Artifact != a.artifact || o.Kind != OrphanSnapshot && o.Kind != OrphanAMI {
			continue
		}
		if byRegion[o.Where] == nil {
			regions = append(regions, o.Where)
		}
		byRegion[o.Where] = append(byRegion[o.Where], o)
	}
	for _, region := range regions {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("deleting orphaned snapshots: %w", err))
			break
		}
		if err := a.deleteOrphans(ctx, region, byRegion[region], rep); err != nil {
			errs = append(errs, fmt.Errorf("deleting orphaned snapshots in %s: %w: run bakery retire --yes again to finish", region, err))
		}
	}
	return rep, errors.Join(errs...)
}

// deleteOrphans deletes the orphans of region that no AMI names now (an
// AMI registered since the plan keeps its snapshot: skipped, reported).
//
// An unfinished copy is read again first: one finished since the plan
// (it has a bake key now) or in use is kept (reported); otherwise it is
// deregistered and its snapshots deleted. Copies go before snapshots.
func (a *AMIs) deleteOrphans(ctx context.Context, region string, orphans []Orphan, rep *Report) error {
	slices.SortStableFunc(orphans, func(x, y Orphan) int { return strings.Compare(y.Kind, x.Kind) }) // "snapshot" after "ami"
	var uses map[string][]fleet.ImageUse
	for _, o := range orphans {
		if o.Kind != OrphanAMI {
			continue
		}
		if uses == nil {
			var err error
			if uses, err = fleet.ImagesInUse(ctx, a.usage, []string{region}); err != nil {
				return err
			}
		}
		img, ok, err := a.ops.Describe(ctx, region, o.ID)
		if err != nil {
			return err
		}
		if !ok || img.State == string(ec2types.ImageStateDeregistered) {
			continue // gone already
		}
		if !catalogami.IsUnfinishedCopy(img, a.recipe, a.artifact) {
			rep.Skipped = append(rep.Skipped, Skipped{Ref: o.Ref, Where: region, ID: o.ID, Reason: "the copy was finished since the plan: kept"})
			continue
		}
		if us := uses[o.ID]; len(us) > 0 {
			rep.Skipped = append(rep.Skipped, Skipped{Ref: o.Ref, Where: region, ID: o.ID, Reason: "in use by " + toUses(us)[0].String() + ": kept"})
			continue
		}
		if err := a.ops.Deregister(ctx, region, o.ID, dedupe(append(img.Snapshots, o.Snapshots...))); err != nil {
			return err
		}
		rep.AMIs++
		rep.Snapshots += len(dedupe(append(img.Snapshots, o.Snapshots...)))
	}
	named, err := a.namedSnapshots(ctx, region)
	if err != nil {
		return err
	}
	for _, o := range orphans {
		if o.Kind != OrphanSnapshot {
			continue
		}
		if named[o.ID] {
			rep.Skipped = append(rep.Skipped, Skipped{Ref: o.Ref, Where: region, ID: o.ID, Reason: "an AMI names the snapshot since the plan: kept"})
			continue
		}
		if err := a.ops.DeleteSnapshot(ctx, region, o.ID); err != nil {
			return err
		}
		rep.Snapshots++
		rep.GiB += o.GiB
	}
	return nil
}

// retire retires one version; done is true when all its AMIs are gone.
func (a *AMIs) retire(ctx context.Context, d Decision, removed map[string]bool, rep *Report) (done bool, err error) {
	var regions []string
	ids := map[string]bool{}
	for _, l := range d.Locations {
		regions = append(regions, l.Where)
		ids[l.ID] = true
	}
	// The version's other AMIs in those regions go with it: a duplicate
	// the catalog does not list (of two promotions that copied the
	// version to one region at once, or a copy a later promotion
	// superseded: it lists one AMI per region) and an unfinished copy.
	locations := slices.Clone(d.Locations)
	others, err := a.find.Find(ctx, dedupe(regions), catalogami.Query{Recipe: a.recipe, Artifact: a.artifact, Version: d.Ref.Version, Unfinished: true})
	if err != nil {
		return false, err
	}
	for _, img := range others {
		if ids[img.ImageID] || img.Version != d.Ref.Version || img.BakeKey == "" && !catalogami.IsUnfinishedCopy(img, a.recipe, a.artifact) {
			continue // an unfinished bake is bakery sweep's
		}
		ids[img.ImageID] = true
		locations = append(locations, catalog.Location{Where: img.Region, ID: img.ImageID})
	}
	uses, err := fleet.ImagesInUse(ctx, a.usage, dedupe(regions))
	if err != nil {
		return false, err
	}
	var using []string
	for id := range ids {
		for _, u := range toUses(uses[id]) {
			using = append(using, u.String())
		}
	}
	if len(using) > 0 {
		slices.Sort(using)
		rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Reason: "in use since the plan by " + strings.Join(using, ", ")})
		return false, nil
	}
	var present []catalogami.Image
	for _, l := range locations {
		img, ok, err := a.ops.Describe(ctx, l.Where, l.ID)
		if err != nil {
			return false, err
		}
		if !ok || img.State == string(ec2types.ImageStateDeregistered) {
			continue // gone already: an earlier run got this far
		}
		for k := range img.Tags {
			if stage, ok := strings.CutPrefix(k, catalogami.TagStagePrefix); ok {
				rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Where: l.Where, ID: l.ID, Reason: "entered stage " + stage + " since the plan"})
				return false, nil
			}
		}
		if _, revoked := img.Tags[catalogami.TagRevoked]; revoked && !d.Entry.Revoked {
			rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Where: l.Where, ID: l.ID, Reason: "revoked since the plan: kept for keep_revoked"})
			return false, nil
		}
		present = append(present, img)
	}
	if len(present) == 0 {
		return true, nil
	}
	// An image baked from one of its AMIs since the plan keeps it.
	for _, img := range present {
		deps, err := a.find.List(ctx, img.Region, ec2types.Filter{Name: aws.String("tag:" + catalog.TagSourceAMI), Values: []string{img.ImageID}})
		if err != nil {
			return false, err
		}
		for _, dep := range deps {
			if dep.BaseName == img.ImageID && !removed[dep.ImageID] {
				rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Where: img.Region, ID: img.ImageID,
					Reason: "base of " + dep.Ref.String() + " (" + dep.ImageID + ") since the plan"})
				return false, nil
			}
		}
	}
	ev := catalog.Event{Time: a.now().UTC(), Action: catalog.ActionRetire, Actor: a.actor, Reason: strings.Join(d.Reasons, "; ")}
	for _, old := range d.Entry.Events {
		if old.Action == catalog.ActionRetire {
			ev.Time = old.Time // an interrupted run recorded it: the same event again changes nothing
		}
	}
	if err := a.store.Record(ctx, d.Entry, ev); err != nil {
		return false, err
	}
	for _, img := range present {
		if err := a.deregister(ctx, d, img, rep); err != nil {
			return false, err
		}
	}
	return true, nil
}

// deregister deregisters img and deletes those of its snapshots no other
// AMI uses, counting what went.
func (a *AMIs) deregister(ctx context.Context, d Decision, img catalogami.Image, rep *Report) error {
	c := a.ops.Client(img.Region)
	snaps := slices.Clone(img.Snapshots)
	if len(snaps) > 0 {
		// Every AMI of the account in the region, in one paginated
		// listing: moto 5.2.5 answers 500 to the
		// block-device-mapping.snapshot-id filter, and a listing proves
		// what a filter only narrows.
		p := ec2.NewDescribeImagesPaginator(c, &ec2.DescribeImagesInput{Owners: []string{"self"}})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("finding other AMIs that use the snapshots of %s in %s: %w", img.ImageID, img.Region, awsx.ExplainError(err))
			}
			for _, other := range page.Images {
				if aws.ToString(other.ImageId) == img.ImageID {
					continue
				}
				for _, bdm := range other.BlockDeviceMappings {
					if bdm.Ebs == nil {
						continue
					}
					sn := aws.ToString(bdm.Ebs.SnapshotId)
					if i := slices.Index(snaps, sn); i >= 0 {
						snaps = slices.Delete(snaps, i, i+1)
						rep.Skipped = append(rep.Skipped, Skipped{Ref: d.Ref, Where: img.Region, ID: sn,
							Reason: "snapshot also used by AMI " + aws.ToString(other.ImageId) + ": kept"})
					}
				}
			}
		}
	}
	var gib int64
	if len(snaps) > 0 {
		out, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: snaps})
		if err != nil && !awsx.IsNotFound(err) {
			return fmt.Errorf("reading the sizes of the snapshots of %s in %s: %w", img.ImageID, img.Region, awsx.ExplainError(err))
		}
		if out != nil {
			for _, s := range out.Snapshots {
				gib += int64(aws.ToInt32(s.VolumeSize))
			}
		}
	}
	if err := a.ops.Deregister(ctx, img.Region, img.ImageID, snaps); err != nil {
		return err
	}
	a.store.Forget(img.Region, img.ImageID)
	rep.AMIs++
	rep.Snapshots += len(snaps)
	rep.GiB += gib
	return nil
}

// dedupe drops empty and repeated strings, keeping the first occurrence.
func dedupe(ss []string) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
