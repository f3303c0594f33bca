package ami

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sync/errgroup"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/internal/awsx"
)

// SweepItem is a resource Sweep removes, and why.
type SweepItem struct {
	Resource
	// Reason says why it is an orphan.
	Reason string `json:"reason"`
}

// SweepPlan is what Sweep found and, when applied, removed.
type SweepPlan struct {
	// Now is the time the plan was made at (the Baker's clock).
	Now time.Time `json:"now"`
	// OlderThan is the minimum age of a swept resource; in JSON a
	// duration string such as "1h0m0s".
	OlderThan time.Duration `json:"older_than"`
	// Regions are the regions searched.
	Regions []string `json:"regions"`
	// Remove are the orphans: resources of unfinished bakes older than
	// OlderThan, in removal order within each region.
	Remove []SweepItem `json:"remove"`
	// Duplicates are complete AMIs of a version in a region that holds
	// another, preferred one (in a stage, else newer): reported, never
	// removed by sweep (bake --force replaces a version's AMIs; retire
	// removes what no policy keeps).
	Duplicates []SweepItem `json:"duplicates"`
	// Applied is true when Sweep was asked to remove them.
	Applied bool `json:"applied"`
	// Removed are the resources actually removed.
	Removed []Resource `json:"removed,omitempty"`
}

// MarshalJSON encodes the plan for --output json: OlderThan as a Go
// duration string ("1h0m0s"), not nanoseconds, and every list (Remove,
// Regions, any list field added later) as a list even when empty, so
// readers never meet null; Removed is there once the plan was applied.
// Every other field is encoded as its tag says.
func (p *SweepPlan) MarshalJSON() ([]byte, error) {
	type fields SweepPlan // the fields without this method
	c := fields(*p)
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Slice && f.IsNil() {
			f.Set(reflect.MakeSlice(f.Type(), 0, 0))
		}
	}
	out := struct {
		*fields
		// These shadow the embedded fields of the same JSON name.
		OlderThan string     `json:"older_than"`
		Removed   []Resource `json:"removed,omitzero"`
	}{fields: &c, OlderThan: p.OlderThan.String(), Removed: p.Removed}
	if p.Applied && out.Removed == nil {
		// An applied plan says what it removed, even nothing.
		out.Removed = []Resource{}
	}
	return json.Marshal(out)
}

// String prints the plan as a table, one resource a line.
func (p *SweepPlan) String() (out string) {
	var b strings.Builder
	defer func() { out = b.String() }()
	verb := "would remove"
	if p.Applied {
		verb = "removed"
	}
	defer func() {
		if len(p.Duplicates) == 0 {
			return
		}
		fmt.Fprintf(&b, "%d duplicate AMIs (a version has one AMI per region; not removed):\n", len(p.Duplicates))
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REGION\tID\tNAME\tREASON")
		for _, it := range p.Duplicates {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.Region, it.ID, it.Name, it.Reason)
		}
		tw.Flush()
	}()
	if len(p.Remove) == 0 {
		fmt.Fprintf(&b, "no orphaned bake or launch resources older than %s in %s\n", p.OlderThan, strings.Join(p.Regions, ", "))
		return b.String()
	}
	n := len(p.Remove)
	if p.Applied {
		n = len(p.Removed)
	}
	fmt.Fprintf(&b, "%s %d orphaned bake or launch resources older than %s in %s:\n", verb, n, p.OlderThan, strings.Join(p.Regions, ", "))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tKIND\tID\tBAKE\tCREATED\tREASON\tSTATUS")
	for _, it := range p.Remove {
		created := "-"
		if !it.Created.IsZero() {
			created = it.Created.UTC().Format(time.RFC3339)
		}
		status := "planned"
		if p.Applied {
			status = "kept (error)"
			if slices.ContainsFunc(p.Removed, func(r Resource) bool { return r.Region == it.Region && r.ID == it.ID }) {
				status = "removed"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it.Region, it.Kind, it.ID, cmp.Or(it.BakeID, "-"), created, it.Reason, status)
	}
	tw.Flush()
	return b.String()
}

// Sweep finds, in regions, what bakes that never finished left behind
// (killed processes, OnErrorAbort): resources tagged bakery:bake-id and
// older than olderThan by the Baker's clock: builder instances that are not
// terminated (aged by launch time), key pairs and security groups (aged by
// their bakery:created tag), and AMIs that have a bake id but no bake key,
// with their snapshots. A complete AMI (one with a bake key) and its
// snapshots are never touched. It also finds what killed launches left:
// launch templates a launch created (tagged bakery:launch-id) that no
// Auto Scaling group launches from, older than olderThan by their
// creation (fleet.Inventory.OrphanTemplates). With apply it removes them,
// instances first (waiting until they are terminated), then security
// groups, key pairs, AMIs, snapshots and launch templates (each template
// only if still no group of its name exists), and records each in
// Removed; it goes on
// after an error and returns them all. Pick olderThan longer than any bake
// runs, or Sweep removes the resources of a bake still in progress.
func (b *Baker) Sweep(ctx context.Context, regions []string, olderThan time.Duration, apply bool) (*SweepPlan, error) {
	regions = dedupe(regions)
	if len(regions) == 0 {
		return nil, errors.New("sweeping bake resources: no region given: name the regions to sweep")
	}
	now := b.now().UTC()
	plan := &SweepPlan{Now: now, OlderThan: olderThan, Regions: regions, Applied: apply}
	found := make([][]SweepItem, len(regions))
	dups := make([][]SweepItem, len(regions))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.copyConcurrency)
	for i, region := range regions {
		g.Go(func() error {
			var err error
			found[i], dups[i], err = b.orphans(gctx, region, now.Add(-olderThan))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("sweeping bake resources: %w", err)
	}
	for i := range found {
		plan.Remove = append(plan.Remove, found[i]...)
		plan.Duplicates = append(plan.Duplicates, dups[i]...)
	}
	if !apply {
		return plan, nil
	}

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for i, region := range regions {
		wg.Go(func() {
			removed, err := b.removeOrphans(ctx, region, found[i])
			mu.Lock()
			defer mu.Unlock()
			plan.Removed = append(plan.Removed, removed...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	rs := make([]Resource, len(plan.Removed))
	copy(rs, plan.Removed)
	sortResources(rs, regions)
	plan.Removed = rs
	if err := errors.Join(errs...); err != nil {
		return plan, fmt.Errorf("sweeping bake resources: %w", err)
	}
	return plan, nil
}

// orphans lists the orphaned resources of region whose last sign of life
// (creation or the bake's heartbeat) is at or before cutoff, and the
// duplicate complete AMIs.
func (b *Baker) orphans(ctx context.Context, region string, cutoff time.Time) (items, dups []SweepItem, err error) {
	tagged := filter("tag-key", catalog.TagBakeID)
	old := func(t time.Time) bool { return !t.IsZero() && !t.After(cutoff) }

	instances, err := b.listInstances(ctx, region, tagged)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range instances {
		if old(r.LastSeen) {
			items = append(items, SweepItem{r, "builder instance of bake " + r.BakeID + " still running"})
		}
	}
	groups, err := b.listSecurityGroups(ctx, region, tagged)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range groups {
		if old(r.LastSeen) {
			items = append(items, SweepItem{r, "temporary security group of bake " + r.BakeID})
		}
	}
	keys, err := b.listKeyPairs(ctx, region, tagged)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range keys {
		if old(r.LastSeen) {
			items = append(items, SweepItem{r, "temporary key pair of bake " + r.BakeID})
		}
	}

	imgs, err := b.store.List(ctx, region, tagged)
	if err != nil {
		return nil, nil, err
	}
	// Snapshots of any bakery AMI still registered (complete or not) are
	// never swept on their own: those of an unfinished AMI go with it.
	inUse := map[string]bool{}
	for _, img := range imgs {
		for _, s := range img.Snapshots {
			inUse[s] = true
		}
	}
	var snaps []SweepItem
	seen := map[string]bool{}
	for _, img := range imgs {
		r := imageResource(img)
		// A pending AMI is still being created or copied (a promotion
		// copy can take hours): never swept.
		if img.Complete() || img.State == string(ec2types.ImageStatePending) || !old(r.LastSeen) {
			continue
		}
		items = append(items, SweepItem{r, "unfinished AMI of bake " + img.BakeID + " (no bake key)"})
		for _, s := range img.Snapshots {
			seen[s] = true
			snaps = append(snaps, SweepItem{
				Resource: Resource{Kind: KindSnapshot, ID: s, Region: region, BakeID: img.BakeID, Created: img.Created, LastSeen: r.LastSeen, Image: img.ImageID},
				Reason:   "snapshot of unfinished AMI " + img.ImageID,
			})
		}
	}
	tsnaps, err := b.listSnapshots(ctx, region, tagged)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range tsnaps {
		if s.complete || inUse[s.ID] || seen[s.ID] || !old(s.LastSeen) {
			continue
		}
		snaps = append(snaps, SweepItem{s.Resource, "snapshot of bake " + s.BakeID + " whose AMI is gone"})
	}
	items = append(items, snaps...)

	// What killed launches leave: a launch template with no group.
	templates, err := b.fleet.OrphanTemplates(ctx, region, cutoff)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range templates {
		items = append(items, SweepItem{
			Resource: Resource{Kind: KindLaunchTemplate, ID: o.ID, Name: o.Name, Region: region, Created: o.Created, LastSeen: o.Created},
			Reason:   fmt.Sprintf("launch template of %s's %s launch %s: no Auto Scaling group launches from it", o.Recipe, o.Stage, o.LaunchID),
		})
	}
	return items, duplicates(imgs), nil
}

// duplicates returns the complete AMIs of imgs (one region's) that share
// their recipe, artifact and version with a preferred one
// (catalogami.Preferred).
func duplicates(imgs []catalogami.Image) []SweepItem {
	best := map[string]catalogami.Image{}
	for _, img := range imgs {
		if !img.Complete() {
			continue
		}
		k := img.Recipe + "\x00" + img.Artifact + "\x00" + img.Version
		if cur, ok := best[k]; !ok || catalogami.Preferred(img, cur) {
			best[k] = img
		}
	}
	var out []SweepItem
	for _, img := range imgs {
		k := img.Recipe + "\x00" + img.Artifact + "\x00" + img.Version
		if keep, ok := best[k]; ok && img.Complete() && keep.ImageID != img.ImageID {
			out = append(out, SweepItem{imageResource(img), fmt.Sprintf("duplicate of %s, which stands for %s@%s (%s) in %s", keep.ImageID, img.Recipe, img.Version, img.Artifact, img.Region)})
		}
	}
	return out
}

// removeOrphans removes items, all in region, in kind order, and returns
// what it removed.
func (b *Baker) removeOrphans(ctx context.Context, region string, items []SweepItem) ([]Resource, error) {
	var removed []Resource
	var errs []error
	byKind := map[Kind][]Resource{}
	for _, it := range items {
		byKind[it.Kind] = append(byKind[it.Kind], it.Resource)
	}
	if insts := byKind[KindInstance]; len(insts) > 0 {
		ids := make([]string, len(insts))
		for i, r := range insts {
			ids[i] = r.ID
		}
		if err := b.terminate(ctx, region, ids, time.Time{}, 0); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, insts...)
		}
	}
	for _, r := range byKind[KindSecurityGroup] {
		if err := b.deleteSecurityGroup(ctx, region, r.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, r)
	}
	for _, r := range byKind[KindKeyPair] {
		if err := b.deleteKeyPair(ctx, region, r.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, r)
	}
	stillRegistered := map[string]bool{}
	for _, r := range byKind[KindImage] {
		if err := b.ops.Deregister(ctx, region, r.ID, nil); err != nil {
			errs = append(errs, err)
			stillRegistered[r.ID] = true
			continue
		}
		removed = append(removed, r)
	}
	for _, r := range byKind[KindSnapshot] {
		if stillRegistered[r.Image] {
			continue // in use until its AMI goes
		}
		if err := b.ops.DeleteSnapshot(ctx, region, r.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, r)
	}
	for _, r := range byKind[KindLaunchTemplate] {
		// A launch of that name may have taken it over since the plan (it
		// replaces a template with no group): not if a group has it now.
		if _, taken, err := b.fleet.Get(ctx, region, r.Name); err != nil || taken {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := b.fleet.DeleteTemplate(ctx, region, r.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, r)
	}
	return removed, errors.Join(errs...)
}

// dedupe drops empty and repeated regions, keeping the first occurrence.
func dedupe(regions []string) []string {
	out := make([]string, 0, len(regions))
	for _, r := range regions {
		if r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// EnabledRegions returns the regions enabled for the account, for a
// sweep of every region.
func (b *Baker) EnabledRegions(ctx context.Context) ([]string, error) {
	return awsx.EnabledRegions(ctx, b.clients.EC2(b.cfg.Region))
}
