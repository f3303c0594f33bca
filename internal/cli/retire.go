package cli

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/fleet"
	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/recipes"
	"github.com/bakery-sh/bakery/retire"
)

// retireDoc is what retire prints per recipe, in text and JSON.
type retireDoc struct {
	// Recipe is the recipe name.
	Recipe string `json:"recipe"`
	// Images are the plans of its machine images.
	Images []imagePlan `json:"images"`
	// Groups are the decisions on its Auto Scaling groups.
	Groups []retire.GroupDecision `json:"groups"`
	// GroupReport is what was deleted of them (with --yes).
	GroupReport *retire.GroupReport `json:"group_report,omitempty"`
	// Applied is true when --yes was given.
	Applied bool `json:"applied"`
}

// imagePlan is the plan of one machine image and, with --yes, what was
// done.
type imagePlan struct {
	*retire.Plan
	// Kind is the kind of image the plan is about.
	Kind catalog.Kind `json:"kind"`
	// Mixed is true when the recipe has machine and container images:
	// each version is planned once for both.
	Mixed bool `json:"-"`
	// Report is what was deleted and skipped (with --yes).
	Report *retire.Report `json:"report,omitempty"`
}

func retireCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "retire",
		Usage:     "delete superseded machine and container images the recipe's retain block does not keep",
		ArgsUsage: "[RECIPE|FILE...]",
		Description: "Plans, for every version of RECIPE (every recipe in ./recipes by default, or\n" +
			"the recipe FILEs given), keep or remove, with every reason: in a stage, in use\n" +
			"(an instance not terminated, any launch template version, a launch\n" +
			"configuration or Auto Scaling group, in every region the version is in),\n" +
			"shared with a stage's account while it is the stage's current or previous\n" +
			"version, a rollback target, the base of a kept image, or inside the retain\n" +
			"block's keep_last, keep_within and keep_revoked. A version is kept or removed\n" +
			"as a whole: in every region, with its AMIs and its container images together.\n" +
			"Without --yes nothing changes. With --yes it checks again right before each\n" +
			"version that nothing uses it, then deregisters every copy and deletes each\n" +
			"snapshot, and records a retire event. Run it again to finish an interrupted\n" +
			"run. Disabled Auto Scaling groups beyond a fleet's keep_disabled, and failed\n" +
			"ones (kept by launch --on-error abort) beyond the newest max(1, keep_disabled),\n" +
			"go first, with their launch templates (never the serving group or the newest\n" +
			"disabled one, the rollback target). Container images in the local layout\n" +
			"($BAKERY_HOME) leave index.json, their retire event staying as a tombstone,\n" +
			"then the blobs nothing else references are deleted; in a registry, their\n" +
			"events, referrers fallback tag, tag and manifest are deleted by digest (a\n" +
			"registry refusing deletion is reported and the version kept). Orphans are\n" +
			"listed and removed too: snapshots no AMI names and unfinished promotion copies\n" +
			"in every enabled region, and layout blobs no manifest references.",
		Flags: append(varFlags(),
			&ucli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "remove what the plan removes"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the plan only (the default without --yes)"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			if c.Bool("yes") && c.Bool("dry-run") {
				return usagef("--yes and --dry-run contradict each other; give one")
			}
			rs, err := e.retireRecipes(c, g)
			if err != nil {
				return err
			}
			apply := c.Bool("yes")
			var docs []retireDoc
			var failed error
			for _, r := range rs {
				doc, err := e.retireRecipe(c, r, apply)
				docs = append(docs, doc)
				if err != nil {
					failed = err
					break
				}
			}
			if g.json {
				if err := writeJSONLines(e.stdout, docs); err != nil {
					return err
				}
			} else {
				e.writeRetire(docs, apply)
			}
			return failed
		},
	})
}

// retireRecipes loads the recipes the arguments name: recipe files (an
// argument that is a file or ends in .hcl) or names of recipes in
// ./recipes; every recipe in ./recipes without arguments.
func (e *env) retireRecipes(c *ucli.Context, g globals) ([]*recipes.Recipe, error) {
	if c.NArg() == 0 {
		return e.findRecipes(c, g, "")
	}
	var out []*recipes.Recipe
	for _, a := range c.Args().Slice() {
		if st, err := os.Stat(a); (err == nil && !st.IsDir()) || strings.HasSuffix(a, ".hcl") {
			rs, err := e.loadRecipeFiles(c, g, []string{a})
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
			continue
		}
		rs, err := e.findRecipes(c, g, a)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// retireRecipe plans, and with apply retires, r's Auto Scaling groups
// (first: a group deleted no longer keeps its AMI), then every version
// of r: one plan for all its machine and container images, so a version
// with both is kept or removed whole.
func (e *env) retireRecipe(c *ucli.Context, r *recipes.Recipe, apply bool) (retireDoc, error) {
	doc := retireDoc{Recipe: r.Name, Images: []imagePlan{}, Groups: []retire.GroupDecision{}, Applied: apply}
	rt := r.Retain
	policy := retire.Policy{KeepLast: rt.KeepLast, KeepWithin: rt.KeepWithin, KeepPrevious: rt.KeepPrevious, KeepRevoked: rt.KeepRevoked}
	var amis, containers []retire.Retirer
	ss := &session{e: e, c: c}
	if len(r.MachineImages) > 0 {
		var err error
		if amis, err = e.retireAMIs(ss, r, apply, &doc); err != nil {
			return doc, err
		}
	}
	// Who retires: the AWS caller when the recipe has machine images.
	copts := []retire.Option{retire.WithClock(e.now), retire.WithActor(ss.actor())}
	for _, ct := range r.Containers {
		if ct.Repository == "" {
			l, err := catalogoci.OpenLayout(e.home())
			if err != nil {
				return doc, err
			}
			containers = append(containers, retire.NewLayoutContainers(r.Name, ct.Name, l, l.Store(ct.Name, r.Name, ct.Name), copts...))
			continue
		}
		rs, err := catalogoci.NewRegistryStore(ct.Repository, r.Name, ct.Name)
		if err != nil {
			return doc, err
		}
		containers = append(containers, retire.NewRegistryContainers(r.Name, ct.Name, rs, copts...))
	}
	var obs []retire.Observed
	kind := catalog.KindContainer
	if len(amis) > 0 {
		kind = catalog.KindAMI
	}
	all := append(amis, containers...)
	for _, rt := range all {
		o, err := rt.Observe(c.Context)
		if err != nil {
			return doc, err
		}
		obs = append(obs, o)
	}
	if len(all) == 0 {
		return doc, nil
	}
	ip := imagePlan{Plan: retire.MakePlan(retire.Merge(r.Name, obs...), policy, e.now().UTC()), Kind: kind, Mixed: len(amis) > 0 && len(containers) > 0}
	var err error
	if apply {
		ip.Report, err = retire.ApplyAll(c.Context, ip.Plan, all...)
	}
	doc.Images = append(doc.Images, ip)
	return doc, err
}

// retireAMIs plans, and with apply deletes, r's Auto Scaling groups, and
// returns the retirers of its machine images.
func (e *env) retireAMIs(s *session, r *recipes.Recipe, apply bool, doc *retireDoc) ([]retire.Retirer, error) {
	c := s.c
	arts, err := s.artifacts(r)
	if err != nil {
		return nil, err
	}
	cfg, err := s.awsFor(r)
	if err != nil {
		return nil, err
	}
	poll, err := e.pollInterval()
	if err != nil {
		return nil, err
	}
	var fleetRegions []string
	keepDisabled := map[string]int{}
	for stage, f := range r.Fleets {
		fleetRegions = append(fleetRegions, cmp.Or(f.Region, cfg.Region))
		keepDisabled[stage] = f.KeepDisabled
	}
	if len(r.Fleets) > 0 {
		gs := retire.NewGroups(fleet.NewFromConfig(cfg, fleet.WithPollInterval(poll)))
		groups, err := gs.Observe(c.Context, r.Name, fleetRegions)
		if err != nil {
			return nil, err
		}
		doc.Groups = retire.PlanGroups(groups, keepDisabled)
		if apply {
			rep, err := gs.Apply(c.Context, doc.Groups)
			doc.GroupReport = rep
			if err != nil {
				return nil, err
			}
		}
	}
	clients := awsx.NewRegional(func(region string) *ec2.Client { return awsx.NewEC2(cfg, region) })
	ops := catalogami.NewOps(func(region string) catalogami.API { return clients.Get(region) }, poll, nil)
	find := catalogami.NewStoreFromConfig(cfg)
	usage := fleet.UsageClientsFromConfig(cfg)
	stageAccounts := map[string][]string{}
	for _, st := range r.Stages {
		stageAccounts[st] = r.Stage(st).Accounts
	}
	var out []retire.Retirer
	for _, art := range arts {
		store, ok := art.Store.(*catalogami.LifecycleStore)
		if art.Kind != catalog.KindAMI || !ok {
			continue
		}
		var m *recipes.MachineImage
		for _, mi := range r.MachineImages {
			if mi.Name == art.Name {
				m = mi
			}
		}
		out = append(out, retire.NewAMIs(r.Name, art.Name, store, find, ops, usage,
			retire.WithClock(e.now), retire.WithActor(s.actor()),
			retire.WithUsageRegions(append(amiRegions(r, m, cfg.Region), fleetRegions...)...),
			retire.WithStageAccounts(stageAccounts),
			retire.WithEnabledRegions(func(ctx context.Context) ([]string, error) { return s.enabledRegions(ctx, cfg) })))
	}
	return out, nil
}

// writeRetire prints each plan as a table, then what was done or what
// --yes would do.
func (e *env) writeRetire(docs []retireDoc, applied bool) {
	first := true
	for _, doc := range docs {
		for _, d := range doc.Images {
			if !first {
				fmt.Fprintln(e.stdout)
			}
			first = false
			e.writeImagePlan(d, applied)
		}
		if len(doc.Groups) == 0 {
			continue
		}
		if !first {
			fmt.Fprintln(e.stdout)
		}
		first = false
		fmt.Fprintf(e.stdout, "%s: Auto Scaling groups (disabled and failed ones beyond each fleet's keep_disabled go)\n", doc.Recipe)
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tREGION\tVERSION\tSTATE\tDECISION\tREASONS")
		remove := 0
		for _, g := range doc.Groups {
			decision := "keep"
			if !g.Keep {
				decision = "remove"
				remove++
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, g.Region, g.Version, g.State, decision, strings.Join(g.Reasons, "; "))
		}
		tw.Flush()
		switch {
		case remove == 0:
			fmt.Fprintln(e.stdout, "no group to delete")
		case doc.GroupReport != nil:
			fmt.Fprintf(e.stdout, "deleted %d of %d groups with their launch templates\n", len(doc.GroupReport.Deleted), remove)
			for _, sk := range doc.GroupReport.Skipped {
				fmt.Fprintf(e.stdout, "skipped group %s\n", sk)
			}
		case !applied:
			fmt.Fprintf(e.stdout, "would delete %d groups; nothing deleted: run again with --yes to delete them\n", remove)
		}
	}
}

// writeImagePlan prints the plan of one machine image.
func (e *env) writeImagePlan(d imagePlan, applied bool) {
	fmt.Fprintf(e.stdout, "%s/%s: %s\n", d.Recipe, d.Artifact, d.Policy)
	if len(d.Decisions) == 0 && len(d.Orphans) == 0 {
		fmt.Fprintln(e.stdout, "no versions")
		return
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tDECISION\tLOCATIONS\tREASONS")
	amis := 0
	for _, dec := range d.Decisions {
		decision := "keep"
		if !dec.Keep {
			decision = "remove"
			for _, part := range dec.Artifacts {
				if part.Kind == catalog.KindAMI {
					amis += len(part.Locations)
				}
			}
		}
		var locs []string
		for _, l := range dec.Locations {
			locs = append(locs, l.Where+":"+l.ID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", dec.Ref.Version, decision, strings.Join(locs, ","), strings.Join(dec.Reasons, "; "))
	}
	for _, o := range d.Orphans {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Ref.Version, "remove "+o.Kind, o.Where+":"+o.ID, o.Reason)
	}
	tw.Flush()
	remove := len(d.Remove())
	switch {
	case remove == 0 && len(d.Orphans) == 0:
		fmt.Fprintln(e.stdout, "nothing to remove")
	case d.Report != nil && d.Kind == catalog.KindContainer:
		rep := d.Report
		fmt.Fprintf(e.stdout, "retired %d of %d versions: %d manifests deleted or untagged, %d layout blobs (%d bytes) deleted\n",
			len(rep.Retired), remove, rep.Manifests, rep.Blobs, rep.Bytes)
		for _, sk := range rep.Skipped {
			fmt.Fprintf(e.stdout, "skipped %s: %s\n", sk.Ref, sk.Reason)
		}
	case d.Report != nil:
		rep := d.Report
		fmt.Fprintf(e.stdout, "retired %d of %d versions: %d AMIs, %d snapshots, %d GiB of snapshot storage reclaimed\n",
			len(rep.Retired), remove, rep.AMIs, rep.Snapshots, rep.GiB)
		if d.Mixed {
			fmt.Fprintf(e.stdout, "and %d container manifests deleted or untagged, %d layout blobs (%d bytes) deleted\n", rep.Manifests, rep.Blobs, rep.Bytes)
		}
		for _, sk := range rep.Skipped {
			what := sk.Ref.String()
			if sk.ID != "" {
				what += " " + sk.Where + ":" + sk.ID
			}
			fmt.Fprintf(e.stdout, "skipped %s: %s\n", what, sk.Reason)
		}
	case !applied && d.Kind == catalog.KindContainer:
		fmt.Fprintf(e.stdout, "would remove %d versions (their tags, events and manifests; in a layout, their unshared blobs) and %d orphans; nothing removed: run again with --yes to remove them\n", remove, len(d.Orphans))
	case !applied:
		also := ""
		if d.Mixed {
			also = ", their container images"
		}
		fmt.Fprintf(e.stdout, "would remove %d versions (%d AMIs and their snapshots%s) and %d orphans; nothing removed: run again with --yes to remove them\n", remove, amis, also, len(d.Orphans))
	}
}
