package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/hcl/v2"
	ucli "github.com/urfave/cli/v2"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/bakery-sh/bakery/bake"
	bakeami "github.com/bakery-sh/bakery/bake/ami"
	bakeoci "github.com/bakery-sh/bakery/bake/oci"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/recipes"
)

func bakeCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "bake",
		Usage:     "bake the images of one or more recipes, skipping what has not changed",
		ArgsUsage: "RECIPE.bake.hcl|FOLDER...",
		Description: "Bakes every artifact of each recipe. An artifact whose bake key (recipe,\n" +
			"base image digest and input file contents) matches an existing image is\n" +
			"reported 'up to date' and not rebuilt. A version is immutable: baking other\n" +
			"content under an existing version is refused.\n\n" +
			"Recipes bake after the recipes their bases link to (base = \"recipe:NAME\",\n" +
			"source_ami = \"recipe:NAME\"), on the image that recipe's run produced;\n" +
			"independent recipes bake at the same time (--parallel), and a run of\n" +
			"several recipes ends with a summary. A recipe whose base recipe failed is\n" +
			"skipped. The machine_image blocks of a recipe bake in parallel too. A block\n" +
			"that fails does not stop the others: their images are kept and reported,\n" +
			"and the run fails at the end naming the failed blocks. --only and --except\n" +
			"pick blocks by name (--only also a recipe by name), --only with the\n" +
			"recipes they are built on.\n\n" +
			"Images without a repository go to the local OCI layout in .bakery/\n" +
			"($BAKERY_HOME overrides). Layer timestamps come from SOURCE_DATE_EPOCH\n" +
			"(default: the Unix epoch), so the same inputs give the same digest anywhere.",
		Flags: append(varFlags(),
			&ucli.BoolFlag{Name: "force", Usage: "rebake even if an image with the same bake key exists"},
			&ucli.StringFlag{Name: "manifest", Usage: "also write the JSON result to `FILE`"},
			&ucli.StringFlag{Name: "on-error", Value: "cleanup", Usage: "when a machine-image bake fails: cleanup (remove everything it created) or abort (keep it for debugging and list it)"},
			&ucli.IntFlag{Name: "parallel", Value: bake.DefaultParallel, Usage: "bake at most `N` machine_image blocks at once across the recipes, N recipes of containers at once (default: no more than the CPUs), and N blocks of a recipe at once (Packer's -parallel-builds; its container blocks, baked in turn, take one together)"},
			&ucli.StringSliceFlag{Name: "only", Usage: "bake only the container or machine_image blocks named `NAME`, or the recipe NAME, and the recipes they are built on (repeatable or comma-separated)"},
			&ucli.StringSliceFlag{Name: "except", Usage: "bake every block but those named `NAME` (repeatable or comma-separated)"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			parallel := c.Int("parallel")
			if parallel < 1 {
				return usagef("--parallel must be 1 or more, not %d", parallel)
			}
			if len(c.StringSlice("only")) > 0 && len(c.StringSlice("except")) > 0 {
				return usagef("--only and --except exclude each other: name the blocks to bake or the blocks to skip")
			}
			rs, err := e.loadRecipes(c, g)
			if err != nil {
				return err
			}
			// A link may name a recipe of the folder that this run does not
			// bake: it stands for that recipe's newest baked image.
			outside := siblingRecipes(rs)
			graph, err := e.bakeGraph(g, rs, outside, c.StringSlice("only"), c.StringSlice("except"))
			if err != nil {
				return err
			}
			if len(outside) > 0 {
				names := map[string]bool{}
				for _, o := range outside {
					names[o.Name] = true
				}
				s := &session{e: e, c: c}
				for i, r := range graph.Recipes {
					if graph.Recipes[i], err = s.resolveLinksNewest(r, outside, names); err != nil {
						return err
					}
				}
			}
			rs = graph.Recipes
			for _, r := range rs {
				e.logMask.Add(bakeami.Secrets(r)...)
			}
			epoch, err := e.sourceDateEpoch()
			if err != nil {
				return err
			}
			rep := e.reporter(g)
			baker, err := bakeoci.NewBaker(
				bakeoci.WithHome(e.home()),
				bakeoci.WithEpoch(epoch),
				bakeoci.WithProgress(rep),
				bakeoci.WithClock(e.now),
				bakeoci.WithActor(e.actor(c.Context, nil)),
				bakeoci.WithBakeryVersion(Version),
			)
			if err != nil {
				return err
			}
			opts := []bake.Option{bake.WithProgress(rep), bake.WithForce(c.Bool("force")), bake.WithParallel(parallel), bake.WithClock(e.now, nil)}
			if c.IsSet("parallel") {
				opts = append(opts, bake.WithContainerParallel(parallel))
			}
			leaseOpts, err := e.bakeLeases(c)
			if err != nil {
				return err
			}
			opts = append(opts, leaseOpts...)
			if amiBaker, err := e.machineImageBaker(c, g, rs, rep); err != nil {
				return err
			} else if amiBaker != nil {
				opts = append(opts, bake.WithMachineImages(amiBaker))
			}
			engine := bake.New(baker, opts...)
			// A nightly job bakes many recipes, each after the recipes its
			// bases link to: one failure does not stop the others (only
			// the recipes built on it are skipped), but makes the run
			// fail. A recipe whose blocks partly failed still reports the
			// images that were baked.
			outs := engine.BakeGraph(c.Context, graph)
			var results []*bake.Result
			var failed, skipped []string
			var runErr error
			for _, o := range outs {
				r, res, err := o.Recipe, o.Result, o.Err
				if res == nil && o.SkippedFor != "" {
					res = &bake.Result{Recipe: r.Name, Version: r.Version, Artifacts: []bake.Artifact{}, Outcome: "skipped", SkippedFor: o.SkippedFor}
				}
				if res != nil {
					results = append(results, res)
					if !g.json && o.SkippedFor == "" {
						printBakeText(e.stdout, res)
					}
				}
				switch {
				case err == nil:
					continue
				case o.SkippedFor != "":
					skipped = append(skipped, r.Name)
					continue
				}
				failed = append(failed, failedBlocks(r, err)...)
				if c.Context.Err() != nil || len(rs) == 1 {
					runErr = err
					continue
				}
				fmt.Fprintf(e.stderr, "bakery: %s: %v\n", r.File, err)
			}
			if !g.json && len(outs) > 1 {
				printSummary(e.stdout, outs)
			}
			if g.json {
				if err := writeJSONLines(e.stdout, results); err != nil {
					return err
				}
			}
			// The manifest lists what this run baked; a run stopped before
			// anything was baked leaves the previous one alone.
			if m := c.String("manifest"); m != "" && (runErr == nil || len(results) > 0) {
				if err := writeManifest(m, results); err != nil {
					return err
				}
			}
			if runErr != nil {
				return runErr
			}
			if len(failed)+len(skipped) > 0 {
				msg := fmt.Sprintf("%d of %d recipes failed (%s)", len(outs)-countOK(outs)-len(skipped), len(outs), strings.Join(failed, ", "))
				if len(skipped) > 0 {
					msg += fmt.Sprintf("; skipped, as their base did not bake: %s", strings.Join(skipped, ", "))
				}
				return errors.New(msg + "; see the errors above")
			}
			return nil
		},
	})
}

// bakeGraph checks the links between rs and narrows them to what the
// run bakes: --only names blocks (or a recipe, all of its blocks, when
// none of its blocks has a name given), and brings in the recipes they
// are built on; --except names blocks.
func (e *env) bakeGraph(g globals, rs, outside []*recipes.Recipe, only, except []string) (*recipes.Graph, error) {
	graph, diags := recipes.LinkGraph(rs, outside...)
	if diags.HasErrors() {
		return nil, e.setDiagnostics(g, diags)
	}
	names := bake.SplitNames(only)
	var sel []*recipes.Recipe
	var err error
	if len(names) > 0 {
		sel, err = onlyWithBases(graph, names)
	} else {
		sel, err = bake.Selection{Except: except}.Apply(rs)
	}
	if err != nil {
		return nil, usagef("%v", err)
	}
	graph, diags = recipes.LinkGraph(sel, outside...)
	if diags.HasErrors() {
		return nil, usagef("the blocks picked by --except leave out what others are built on: %s; bake those too", diags[0].Summary)
	}
	return graph, nil
}

// onlyWithBases returns the recipes of graph narrowed to the blocks
// --only names (a recipe name picks the whole recipe when none of its
// blocks is named), plus, whole, every recipe those are built on. A
// name that is no block and no recipe is an error listing the blocks.
func onlyWithBases(graph *recipes.Graph, names []string) ([]*recipes.Recipe, error) {
	var blockOnly []string
	for _, n := range names {
		if !slices.ContainsFunc(graph.Recipes, func(r *recipes.Recipe) bool { return r.Name == n }) {
			blockOnly = append(blockOnly, n)
		}
	}
	if len(blockOnly) > 0 {
		if _, err := (bake.Selection{Only: blockOnly}).Apply(graph.Recipes); err != nil {
			return nil, err
		}
	}
	picked := map[string]*recipes.Recipe{} // nil: the whole recipe, as a base
	for _, r := range graph.Recipes {
		named := func(l string) bool { return slices.Contains(names, l) }
		cp := *r
		if !slices.Contains(names, r.Name) || slices.ContainsFunc(blockLabels(r), named) {
			cp.Containers, cp.MachineImages = nil, nil
			for _, c := range r.Containers {
				if named(c.Name) {
					cp.Containers = append(cp.Containers, c)
				}
			}
			for _, m := range r.MachineImages {
				if named(m.Name) {
					cp.MachineImages = append(cp.MachineImages, m)
				}
			}
		}
		if len(cp.Containers)+len(cp.MachineImages) > 0 {
			picked[r.Name] = &cp
		}
	}
	for _, r := range graph.Recipes {
		if cp := picked[r.Name]; cp != nil {
			for _, l := range cp.Links() {
				for _, d := range graph.Needs(l.Recipe) {
					if _, ok := picked[d]; !ok {
						picked[d] = nil
					}
				}
			}
		}
	}
	var out []*recipes.Recipe
	for _, r := range graph.Recipes {
		switch cp, ok := picked[r.Name]; {
		case !ok:
		case cp == nil:
			out = append(out, r)
		default:
			out = append(out, cp)
		}
	}
	return out, nil
}

// setDiagnostics prints diagnostics about a set of recipes (links,
// duplicate names) with their source snippets and returns the failure.
func (e *env) setDiagnostics(g globals, diags hcl.Diagnostics) error {
	loader := recipes.NewLoader()
	for _, d := range diags {
		if d.Subject != nil {
			if src, err := os.ReadFile(d.Subject.Filename); err == nil {
				loader.Format(d.Subject.Filename, src)
			}
		}
	}
	if err := e.writeDiagnostics(loader, diags, g); err != nil {
		return err
	}
	e.noteFailure("%d problem(s) across the recipes; fix them and run again", len(diags))
	return exitError{exitFailure}
}

// countOK counts the outcomes that baked or were up to date.
func countOK(outs []*bake.Outcome) int {
	n := 0
	for _, o := range outs {
		if o.Err == nil {
			n++
		}
	}
	return n
}

// printSummary prints one line per recipe and artifact of a run of
// several recipes: recipe, artifact, result, duration.
func printSummary(w io.Writer, outs []*bake.Outcome) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RECIPE\tARTIFACT\tRESULT\tDURATION")
	for _, o := range outs {
		r := o.Recipe
		d := "-"
		if !o.Start.IsZero() {
			d = o.End.Sub(o.Start).Round(time.Millisecond).String()
		}
		status := o.Status()
		if o.SkippedFor != "" {
			status = "skipped (" + o.SkippedFor + " did not bake)"
		}
		arts := map[string]string{}
		if o.Result != nil {
			for _, a := range o.Result.Artifacts {
				arts[a.Name] = "baked"
				if a.Cached {
					arts[a.Name] = "up to date"
				}
			}
			for _, f := range o.Result.Failed {
				arts[f.Name] = "failed"
			}
		}
		for _, name := range blockLabels(r) {
			st, ok := arts[name]
			if !ok {
				st = status
			}
			fmt.Fprintf(tw, "%s@%s\t%s\t%s\t%s\n", r.Name, r.Version, name, st, d)
		}
	}
	tw.Flush()
}

// blockLabels are r's block labels, containers first, in file order.
func blockLabels(r *recipes.Recipe) []string {
	var out []string
	for _, c := range r.Containers {
		out = append(out, c.Name)
	}
	for _, m := range r.MachineImages {
		out = append(out, m.Name)
	}
	return out
}

// failedBlocks names the blocks of r that err says failed, as
// RECIPE/BLOCK, or the recipe alone when none of its blocks was baked.
func failedBlocks(r *recipes.Recipe, err error) []string {
	var fe *bake.FailedError
	if !errors.As(err, &fe) || len(fe.Failed) == fe.Blocks {
		return []string{r.Name}
	}
	out := make([]string, 0, len(fe.Failed))
	for _, n := range fe.Names() {
		out = append(out, r.Name+"/"+n)
	}
	return out
}

// home is the local OCI layout folder: $BAKERY_HOME or .bakery.
func (e *env) home() string {
	if h := e.getenv("BAKERY_HOME"); h != "" {
		return h
	}
	return ".bakery"
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org);
// the default is the Unix epoch.
func (e *env) sourceDateEpoch() (time.Time, error) {
	s := e.getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, usagef("SOURCE_DATE_EPOCH=%q: expected a non-negative number of seconds since 1970", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

func printBakeText(w io.Writer, r *bake.Result) {
	for _, a := range r.Artifacts {
		verb := "baked"
		if a.Cached {
			verb = "up to date"
		}
		switch {
		case a.Kind == catalog.KindAMI:
			fmt.Fprintf(w, "%s@%s %s: %s %s in %s (snapshots %s)\n", r.Recipe, r.Version, a.Name, verb, a.ID, a.Region, strings.Join(a.Snapshots, ", "))
		case a.Location != "":
			fmt.Fprintf(w, "%s@%s %s: %s %s (OCI layout %s) %s\n", r.Recipe, r.Version, a.Name, verb, a.Ref, a.Location, a.Digest)
		default:
			fmt.Fprintf(w, "%s@%s %s: %s %s %s\n", r.Recipe, r.Version, a.Name, verb, a.Ref, a.Digest)
		}
	}
	for _, f := range r.Failed {
		fmt.Fprintf(w, "%s@%s %s: failed (see the error below)\n", r.Recipe, r.Version, f.Name)
	}
}

// machineImageBaker returns the AMI baker when any recipe has a
// machine_image block; AWS configuration is loaded only then.
func (e *env) machineImageBaker(c *ucli.Context, g globals, rs []*recipes.Recipe, rep progress.Reporter) (*bakeami.Baker, error) {
	var onError bakeami.OnError
	switch v := c.String("on-error"); v {
	case "cleanup":
		onError = bakeami.OnErrorCleanup
	case "abort":
		onError = bakeami.OnErrorAbort
	default:
		return nil, usagef("--on-error must be cleanup or abort, not %q", v)
	}
	region := ""
	need := false
	for _, r := range rs {
		for _, m := range r.MachineImages {
			need = true
			if region == "" {
				region = m.Region
			}
		}
	}
	if !need {
		return nil, nil
	}
	cfg, err := e.awsConfig(c, region)
	if err != nil {
		return nil, err
	}
	out := io.Writer(e.stderr)
	if g.quiet {
		out = io.Discard
	}
	poll, err := e.pollInterval()
	if err != nil {
		return nil, err
	}
	maxWait, err := e.durationEnv("BAKERY_MAX_WAIT")
	if err != nil {
		return nil, err
	}
	// With a ledger, the AMIs' SBOM and provenance go to it.
	s := &session{e: e, c: c, aws: &cfg}
	var mu sync.Mutex
	documents := func(r *recipes.Recipe) (bakeami.DocumentStore, error) {
		mu.Lock()
		defer mu.Unlock()
		l, err := s.ledger(r)
		if err != nil || l == nil {
			return nil, err
		}
		return l, nil
	}
	return bakeami.NewBaker(cfg,
		bakeami.WithDocuments(documents),
		bakeami.WithBakeryVersion(Version),
		bakeami.WithPollInterval(poll),
		bakeami.WithMaxWait(maxWait),
		bakeami.WithActor(e.actor(c.Context, &cfg)),
		bakeami.WithProgress(rep),
		bakeami.WithOutput(out),
		bakeami.WithOnError(onError),
		bakeami.WithClock(e.now),
		bakeami.WithSecrets(e.logMask.Secrets()),
		bakeami.WithGetenv(e.getenv),
	)
}

// bakeLeases are the engine options that make runners sharing a ledger
// bake each bake key once: the recipes' ledgers (BAKERY_LEDGER, else the
// catalog block; none: no lease), this runner's name as the holder, the
// clock, and how often a waiting runner looks again
// ($BAKERY_LEASE_POLL, default bake.DefaultLeasePoll).
func (e *env) bakeLeases(c *ucli.Context) ([]bake.Option, error) {
	poll, err := e.durationEnv("BAKERY_LEASE_POLL")
	if err != nil {
		return nil, err
	}
	if poll == 0 {
		poll = bake.DefaultLeasePoll
	}
	s := &session{e: e, c: c}
	var mu sync.Mutex
	leases := func(r *recipes.Recipe) (bake.Leases, error) {
		mu.Lock()
		defer mu.Unlock()
		l, err := s.ledger(r)
		if err != nil || l == nil {
			return nil, err
		}
		return l, nil
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s on %s (pid %d)", e.actor(c.Context, nil), host, os.Getpid())
	return []bake.Option{bake.WithLeases(leases, holder), bake.WithClock(e.now, nil), bake.WithLeasePoll(poll)}, nil
}

// pollInterval is how often AWS waits ask: $BAKERY_POLL_INTERVAL, else
// the default of the AWS code paths (15 s, as Packer's).
func (e *env) pollInterval() (time.Duration, error) {
	d, err := e.durationEnv("BAKERY_POLL_INTERVAL")
	if d == 0 && err == nil {
		d = bakeami.DefaultPollInterval
	}
	return d, err
}

// durationEnv reads a positive duration ("2s", "10m") from the
// environment variable key; 0 when it is unset.
func (e *env) durationEnv(key string) (time.Duration, error) {
	v := e.getenv(key)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, usagef("%s=%q: expected a positive duration such as 2s or 10m", key, v)
	}
	return d, nil
}

// newAMIBaker is an AMI baker for reads (outdated): no progress, no output.
func newAMIBaker(cfg aws.Config, e *env) (*bakeami.Baker, error) {
	return bakeami.NewBaker(cfg, bakeami.WithClock(e.now))
}

// awsConfig loads the AWS configuration (credentials chain, region,
// BAKERY_AWS_ENDPOINT); fallbackRegion, when set, is used if the chain
// names no region.
func (e *env) awsConfig(c *ucli.Context, fallbackRegion string) (aws.Config, error) {
	cfg, err := awsx.Load(c.Context, awsx.WithGetenv(e.getenv))
	if errors.Is(err, awsx.ErrNoRegion) && fallbackRegion != "" {
		cfg, err = awsx.Load(c.Context, awsx.WithGetenv(e.getenv), awsx.WithRegion(fallbackRegion))
	}
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS configuration: %w", err)
	}
	return cfg, nil
}

// writeJSONLines writes one JSON document per line.
func writeJSONLines[T any](w io.Writer, docs []T) error {
	enc := json.NewEncoder(w)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return fmt.Errorf("writing JSON output: %w", err)
		}
	}
	return nil
}

// writeManifest writes the results atomically to path.
func writeManifest(path string, results []*bake.Result) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".manifest-*")
	if err != nil {
		return fmt.Errorf("writing manifest %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := writeJSONLines(tmp, results); err != nil {
		tmp.Close()
		return fmt.Errorf("writing manifest %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing manifest %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing manifest %s: %w", path, err)
	}
	return nil
}
