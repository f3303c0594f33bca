package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/bakery-sh/bakery/internal/faultproxy"
)

// scaleOptions are the flags of the scale mode (-scale).
type scaleOptions struct {
	versions  int
	templates int
	groups    int
	registry  int
	workers   int
	moto      string
	// stockMoto runs moto_server as installed, without motoscale.py.
	stockMoto bool
}

// scaleVerb is one bakery command the scale mode measures.
type scaleVerb struct {
	Name      string         `json:"name"`
	Args      []string       `json:"args"`
	Wall      time.Duration  `json:"wall_ns"`
	CPU       time.Duration  `json:"cpu_ns"`
	MaxRSSKiB int64          `json:"max_rss_kib"`
	Calls     map[string]int `json:"calls"`
	Exit      int            `json:"exit"`
}

// scaleReport is what the scale mode prints.
type scaleReport struct {
	Machine  machine          `json:"machine"`
	Versions int              `json:"versions"`
	Regions  []string         `json:"regions"`
	Seed     seedFigures      `json:"seed"`
	Verbs    []scaleVerb      `json:"verbs"`
	Registry []registryReport `json:"registry"`
	// StockMoto: moto_server ran without motoscale.py.
	StockMoto bool `json:"stock_moto"`
}

// motoBinary finds moto_server: $MOTO_SERVER, -moto, then .venv/bin of
// the module.
func motoBinary(root, flagged string) (string, error) {
	for _, p := range []string{flagged, os.Getenv("MOTO_SERVER"), filepath.Join(root, ".venv", "bin", "moto_server")} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errNoMoto
}

// runScale seeds moto with o.versions versions of one recipe in three
// regions (stage marks and events as bakery writes them), launch template
// versions and Auto Scaling groups, puts the fault proxy (no faults) in
// front of it to count calls by API name, and measures status, history,
// outdated and retire's plan; then the registry part (runRegistry).
func runScale(ctx context.Context, o options, so scaleOptions) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	workdir, err := filepath.Abs(o.workdir)
	if err != nil {
		return err
	}
	dir := filepath.Join(workdir, "scale")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "recipes"), 0o755); err != nil {
		return err
	}
	bakery := o.bakery
	if bakery == "" {
		bakery = filepath.Join(workdir, "bin", "bakery")
		logf("building %s from ./cmd/bakery", bakery)
		if err := buildBakery(ctx, root, bakery); err != nil {
			return err
		}
	} else if bakery, err = filepath.Abs(bakery); err != nil {
		return err
	}
	rep := &scaleReport{Machine: probeMachine(), Versions: so.versions, Regions: scaleRegions, StockMoto: so.stockMoto}

	if so.versions > 0 {
		bin, err := motoBinary(root, so.moto)
		if err != nil {
			return err
		}
		patchDir := dir
		if so.stockMoto {
			patchDir = ""
		}
		moto, err := startMoto(ctx, bin, patchDir)
		if err != nil {
			return err
		}
		defer moto.stop()

		logf("seeding moto with %d versions × %d regions = %d AMIs, %d launch template versions, %d groups (%d workers)",
			so.versions, len(scaleRegions), so.versions*len(scaleRegions), so.templates, so.groups, so.workers)
		var calls atomic.Int64
		rep.Seed.Workers, rep.Seed.AMIMethod, rep.Seed.VersionsBaked = so.workers, "CreateImage with tags (AMI) + CreateTags (snapshot)", so.versions
		start := time.Now()
		source, err := seedAMIs(ctx, moto.URL, so.versions, so.workers, &rep.Seed, &calls)
		if err != nil {
			return err
		}
		if err := seedFleets(ctx, moto.URL, so.templates, so.groups, so.workers, &rep.Seed, &calls); err != nil {
			return err
		}
		rep.Seed.Wall, rep.Seed.Calls, rep.Seed.MotoRSSKiB = time.Since(start), calls.Load(), moto.rssKiB()
		logf("seeded in %s (%d calls, moto RSS %s)", rep.Seed.Wall.Round(time.Millisecond), rep.Seed.Calls, fmtBytes(rep.Seed.MotoRSSKiB<<10))

		if rep.Verbs, err = measureVerbs(ctx, bakery, dir, moto.URL, source); err != nil {
			return err
		}
	}

	if so.registry > 0 {
		for _, referrers := range []bool{true, false} {
			logf("measuring status against an in-process registry with %d versions (referrers API: %v)", so.registry, referrers)
			r, err := runRegistry(ctx, bakery, filepath.Join(dir, fmt.Sprintf("registry-%v", referrers)), so.registry, referrers)
			if err != nil {
				return err
			}
			rep.Registry = append(rep.Registry, r)
		}
	}

	writeScaleText(os.Stdout, rep)
	if o.json != "" {
		f, err := os.Create(o.json)
		if err != nil {
			return err
		}
		defer f.Close()
		enc := json.NewEncoder(f)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return nil
}

// measureVerbs writes the scale recipe (from source) into dir/recipes
// and runs bakery's status, history, outdated and retire (the plan) there
// against moto at url, through the fault proxy (no faults) that counts
// their calls by API name.
func measureVerbs(ctx context.Context, bakery, dir, url, source string) ([]scaleVerb, error) {
	if err := os.MkdirAll(filepath.Join(dir, "recipes"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "recipes", "scale.bake.hcl"), []byte(scaleRecipeText(source)), 0o644); err != nil {
		return nil, err
	}
	proxy, err := faultproxy.New(url)
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	env := []string{
		"BAKERY_AWS_ENDPOINT=" + proxy.URL, "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing",
		"AWS_REGION=" + scaleHome, "AWS_DEFAULT_REGION=" + scaleHome, "AWS_PROFILE=", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null", "BAKERY_HOME=" + filepath.Join(dir, "home"), "AWS_EC2_METADATA_DISABLED=true",
	}
	var verbs []scaleVerb
	for _, v := range []struct {
		name string
		args []string
	}{
		{"status", []string{"status", scaleRecipe}},
		{"history", []string{"history", scaleRecipe}},
		{"outdated", []string{"outdated", scaleRecipe}},
		{"retire (plan)", []string{"retire", scaleRecipe}},
	} {
		logf("measuring bakery %s", strings.Join(v.args, " "))
		before := len(proxy.Calls())
		s, exit, err := runVerb(ctx, command{Dir: dir, Env: env, Args: append([]string{bakery}, v.args...)})
		if err != nil {
			return nil, err
		}
		sv := scaleVerb{Name: v.name, Args: v.args, Wall: s.Wall, CPU: s.CPU, MaxRSSKiB: s.MaxRSSKiB,
			Calls: countCalls(proxy.Calls()[before:]), Exit: exit}
		verbs = append(verbs, sv)
		// Said at once too: at large sizes a run takes long.
		logf("%s: %s wall, %s CPU, peak RSS %s, calls %v", v.name, sv.Wall.Round(time.Millisecond), sv.CPU.Round(time.Millisecond), fmtBytes(sv.MaxRSSKiB<<10), sv.Calls)
	}
	return verbs, nil
}

// countCalls counts calls by "Service:Action".
func countCalls(cs []faultproxy.Call) map[string]int {
	out := map[string]int{}
	for _, c := range cs {
		out[c.Action]++
	}
	return out
}

// runVerb runs c, accepting the exit codes bakery uses for "found
// something" (outdated's 3), and returns its timing and exit code.
func runVerb(ctx context.Context, c command) (sample, int, error) {
	s, _, err := runTimed(ctx, c, false)
	if err == nil {
		return s, 0, nil
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		return s, 3, nil
	}
	return s, 0, err
}

// scaleRecipeText is the scale recipe: a machine_image from source baked
// in scaleHome and copied to the other regions, three stages.
func scaleRecipeText(source string) string {
	return `# Generated by internal/bench -scale.
recipe "` + scaleRecipe + `" {
  version = "1.0.0"
  stages  = ["dev", "staging", "prod"]
}

stage "prod" {
  accounts = ["` + scaleProdAccount + `"]
}

machine_image "` + scaleArtifact + `" {
  region        = "` + scaleHome + `"
  regions       = ["` + strings.Join(scaleRegions[1:], `", "`) + `"]
  source_ami    = "` + source + `"
  instance_type = "t3.micro"
  encrypted     = false
  ssh_username  = "ec2-user"
  tags = {
    team = "scale"
  }
}
`
}

func writeScaleText(w io.Writer, rep *scaleReport) {
	fmt.Fprintf(w, "\nscale: %s, %d CPU, %s\n", orUnknown(rep.Machine.CPU), rep.Machine.NumCPU, rep.Machine.GoVersion)
	if rep.Versions > 0 {
		s := rep.Seed
		fmt.Fprintf(w, "moto seeded: %d AMIs (%d versions × %d regions), %d snapshots, %d launch templates / %d versions, %d groups\n",
			s.AMIs, rep.Versions, len(rep.Regions), s.Snapshots, s.Templates, s.TemplateVers, s.Groups)
		fmt.Fprintf(w, "  with %s, %d workers: %d calls in %s (%.0f calls/s), moto RSS after %s\n",
			s.AMIMethod, s.Workers, s.Calls, s.Wall.Round(time.Millisecond), float64(s.Calls)/s.Wall.Seconds(), fmtBytes(s.MotoRSSKiB<<10))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "verb\twall\tCPU\tpeak RSS\tcalls\tby API")
		for _, v := range rep.Verbs {
			total, by := tally(v.Calls)
			rss := fmtBytes(v.MaxRSSKiB << 10)
			if v.MaxRSSKiB<<10 >= 200_000_000 {
				rss += " MISS (goal < 200 MB)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", v.Name, v.Wall.Round(time.Millisecond), v.CPU.Round(time.Millisecond), rss, total, by)
		}
		tw.Flush()
		if rep.StockMoto {
			fmt.Fprintln(w, "  (stock moto answers DescribeImages in one page whatever its size: the counts show per-image calls, not pages)")
		} else {
			fmt.Fprintln(w, "  (moto patched by internal/bench/motoscale.py: tags looked up by resource id, DescribeImages in pages of MaxResults as EC2 does)")
		}
	}
	if len(rep.Registry) > 0 {
		r0 := rep.Registry[0]
		fmt.Fprintf(w, "registry (go-containerregistry pkg/registry, in process): %d versions, the newest 3 promoted to dev, staging, prod (seeded in %s)\n",
			r0.Versions, r0.SeedWall.Round(time.Millisecond))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "verb\treferrers API\twall\tpeak RSS\trequests\tper version\tby kind")
		for _, r := range rep.Registry {
			total, by := tally(r.Requests)
			fmt.Fprintf(tw, "status\t%v\t%s\t%s\t%d\t%.2f\t%s\n", r.Referrers, r.Wall.Round(time.Millisecond), fmtBytes(r.MaxRSSKiB<<10), total,
				float64(total)/float64(r.Versions), by)
		}
		tw.Flush()
	}
}

// tally returns the sum of counts and "NAME N, ..." by name.
func tally(counts map[string]int) (total int, by string) {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		total += counts[k]
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return total, strings.Join(parts, ", ")
}
