package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/launch"
	"github.com/bakery-sh/bakery/recipes"
)

func launchCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "launch",
		Usage:     "launch a fresh Auto Scaling group from the image of a stage",
		ArgsUsage: "RECIPE --stage STAGE",
		Description: "Creates a new Auto Scaling group RECIPE-STAGE-vNNN from the AMI in STAGE\n" +
			"(or --version, which must be in it unless --force --reason),\n" +
			"as the recipe's fleet \"STAGE\" block says, and waits until every desired\n" +
			"instance is InService and healthy in every target group (healthy_timeout).\n" +
			"Only then are the groups that served disabled (detached, processes\n" +
			"suspended), drained and scaled to 0; red-black keeps keep_disabled of them\n" +
			"for rollback, highlander deletes them. If the gate fails, times out or the\n" +
			"run is interrupted, the new group is deleted with its launch template and\n" +
			"the old group is left exactly as it was; bakery exits 1 with the reason.\n" +
			"With --on-error abort the failed group is kept, disabled, for debugging.",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "stage", Usage: "the `STAGE` whose image is launched (required)"},
			&ucli.StringFlag{Name: "version", Usage: "launch this `VERSION` (it must be in the stage; default: the stage's)"},
			&ucli.IntFlag{Name: "capacity", Usage: "the new group's desired capacity `N` (default: the fleet's, else the serving group's)"},
			&ucli.BoolFlag{Name: "force", Usage: "launch --version although it is not in the stage (needs --reason; never a revoked one)"},
			&ucli.StringFlag{Name: "reason", Usage: "why; recorded in the history"},
			&ucli.StringFlag{Name: "on-error", Value: "cleanup", Usage: "when the new group fails its gate: delete it (cleanup) or keep it disabled for debugging (abort)"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the plan; change nothing"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			onError := c.String("on-error")
			if onError != "cleanup" && onError != "abort" {
				return usagef("--on-error must be cleanup or abort, not %q", onError)
			}
			if c.Bool("force") && (c.String("reason") == "" || c.String("version") == "") {
				return usagef("--force needs --version and --reason: name the version and say why it runs a stage it is not in")
			}
			if c.Int("capacity") < 0 {
				return usagef("--capacity must be 0 or more, not %d", c.Int("capacity"))
			}
			fc, err := e.openFleet(c, g, "launch", "launch")
			if err != nil {
				return err
			}
			s, r, stage, f, l, cfg := fc.s, fc.r, fc.stage, fc.f, fc.l, fc.cfg
			req := launch.Request{Recipe: r.Name, Stage: stage, Fleet: f, Region: cfg.Region, Version: c.String("version"),
				Capacity: c.Int("capacity"), DryRun: c.Bool("dry-run"), Actor: s.actor(),
				Force: c.Bool("force"), Reason: c.String("reason"), KeepFailed: onError == "abort"}
			ctx, unlock, err := s.stageContext(r, stage, req.DryRun, fmt.Sprintf("launch %s to %s", r.Name, stage))
			if err != nil {
				return err
			}
			res, err := l.Launch(ctx, req)
			unlock()
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(e.stderr, "bakery: warning: "+w)
			}
			if g.json {
				return json.NewEncoder(e.stdout).Encode(res)
			}
			writeLaunch(e, res)
			return nil
		},
	})
}

// fleetCmd is what launch and rollback both start from.
type fleetCmd struct {
	s     *session
	r     *recipes.Recipe
	stage string
	f     *recipes.Fleet
	l     *launch.Launcher
	cfg   aws.Config
}

// openFleet reads one RECIPE argument and --stage, the recipe, its fleet
// block of the stage, and makes a launcher with its AWS config. verb
// names the command in usage errors and does says what --stage is needed
// for ("launch", "roll back").
func (e *env) openFleet(c *ucli.Context, g globals, verb, does string) (*fleetCmd, error) {
	if c.NArg() != 1 {
		return nil, usagef("%s takes one RECIPE, for example: bakery %s web --stage prod", verb, verb)
	}
	fc := &fleetCmd{s: &session{e: e, c: c}, stage: c.String("stage")}
	if fc.stage == "" {
		return nil, usagef("%s needs the stage to %s: --stage STAGE", verb, does)
	}
	rs, err := e.findRecipes(c, g, c.Args().First())
	if err != nil {
		return nil, err
	}
	fc.r = rs[0]
	if fc.f, err = fleetOf(fc.r, fc.stage); err != nil {
		return nil, err
	}
	if fc.l, fc.cfg, err = fc.s.launcher(fc.r, fc.f, g); err != nil {
		return nil, err
	}
	return fc, nil
}

// stageContext takes the ledger's lock on r's stage (the one promotions
// take) for purpose, when r has a ledger and the run changes something,
// and returns a context that ends if the lease is lost, and the function
// that gives the lock back. Without a ledger it takes no lock: two runs
// at once converge (launch.ErrSuperseded).
func (s *session) stageContext(r *recipes.Recipe, stage string, dryRun bool, purpose string) (context.Context, func(), error) {
	ctx := s.c.Context
	if dryRun {
		return ctx, func() {}, nil
	}
	lk, err := s.lockStage(r, stage, purpose, false)
	if err != nil || lk == nil {
		return ctx, func() {}, err
	}
	ctx, stop := lk.hold(ctx)
	return ctx, func() {
		stop()
		lk.release()
	}, nil
}

// fleetOf returns r's fleet block of stage, or an error that says what
// to add.
func fleetOf(r *recipes.Recipe, stage string) (*recipes.Fleet, error) {
	if r.StageIndex(stage) < 0 {
		return nil, usagef("unknown stage %q; the recipe's stages are %s", stage, strings.Join(r.Stages, " → "))
	}
	f := r.Fleet(stage)
	if f == nil {
		return nil, fmt.Errorf("recipe %s has no fleet %q block: add one to say where and how stage %s runs (see the README, Launching)", r.Name, stage, stage)
	}
	return f, nil
}

// launcher makes the launcher of r's fleet f: its catalog is the store of
// the fleet's machine_image (with the recipe's ledger, when it has one).
func (s *session) launcher(r *recipes.Recipe, f *recipes.Fleet, g globals) (*launch.Launcher, aws.Config, error) {
	cfg, err := s.awsFor(r)
	if err != nil {
		return nil, aws.Config{}, err
	}
	arts, err := s.artifacts(r)
	if err != nil {
		return nil, aws.Config{}, err
	}
	var cat launch.Catalog
	for _, a := range arts {
		if a.Kind == catalog.KindAMI && a.Name == f.Image {
			cat, _ = a.Store.(launch.Catalog)
		}
	}
	if cat == nil {
		return nil, aws.Config{}, fmt.Errorf("the fleet of stage %s runs machine_image %q, which recipe %s does not have: fix the fleet block's image", f.Stage, f.Image, r.Name)
	}
	poll, err := s.e.pollInterval()
	if err != nil {
		return nil, aws.Config{}, err
	}
	inv := fleet.NewFromConfig(cfg, fleet.WithPollInterval(poll))
	images := awsx.NewRegional(func(region string) *ec2.Client { return awsx.NewEC2(cfg, region) })
	alarms := awsx.NewRegional(func(region string) *cloudwatch.Client { return awsx.NewCloudWatch(cfg, region) })
	l := launch.New(inv, func(region string) launch.Images { return images.Get(region) }, cat,
		launch.WithPollInterval(poll), launch.WithProgress(s.e.reporter(g)),
		launch.WithAlarms(func(region string) launch.Alarms { return alarms.Get(region) }))
	return l, cfg, nil
}

// writeLaunch prints what a launch did, or would do.
func writeLaunch(e *env, res *launch.Result) {
	verb := "launched"
	if res.DryRun {
		verb = "would launch"
	}
	fmt.Fprintf(e.stdout, "%s %s@%s (%s) to %s as %s in %s, %d/%d/%d (min/desired/max)\n",
		verb, res.Recipe, res.Version, res.Image, res.Stage, res.Group, res.Region, res.Min, res.Desired, res.Max)
	disabled, deleted := "disabled", "deleted"
	if res.DryRun {
		disabled, deleted = "would disable", "would delete"
	}
	if len(res.Disabled) > 0 {
		fmt.Fprintf(e.stdout, "%s %s (rollback target: %s)\n", disabled, strings.Join(res.Disabled, ", "), res.Previous)
	}
	if len(res.Deleted) > 0 {
		fmt.Fprintf(e.stdout, "%s %s\n", deleted, strings.Join(res.Deleted, ", "))
	}
}
