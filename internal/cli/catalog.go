package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/catalog"
	catalogami "github.com/bakery-sh/bakery/catalog/ami"
	"github.com/bakery-sh/bakery/catalog/ledger"
	catalogoci "github.com/bakery-sh/bakery/catalog/oci"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/promote"
	"github.com/bakery-sh/bakery/recipes"
)

// recipeFlags are the flags of the verbs that find a recipe by name.
func recipeFlags() []ucli.Flag {
	return append(varFlags(),
		&ucli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "the recipe `FILE` (default: find the recipe by name in ./recipes/*.bake.hcl)"},
	)
}

// parseRef splits "RECIPE@VERSION".
func parseRef(s string) (recipe, version string, err error) {
	recipe, version, ok := strings.Cut(s, "@")
	if !ok || recipe == "" || version == "" {
		return "", "", usagef("%q: name an image as RECIPE@VERSION, for example web@1.4.2", s)
	}
	return recipe, version, nil
}

// oneRef reads the global flags and the one RECIPE@VERSION argument of
// the verb named verb; example is the rest of a command line that uses
// it (after "bakery VERB web@1.4.2"), for the usage error.
func oneRef(c *ucli.Context, verb, example string) (g globals, recipe, version string, err error) {
	if g, err = readGlobals(c); err != nil {
		return g, "", "", err
	}
	if c.NArg() != 1 {
		return g, "", "", usagef("%s takes one RECIPE@VERSION, for example: bakery %s web@1.4.2%s", verb, verb, example)
	}
	recipe, version, err = parseRef(c.Args().First())
	return g, recipe, version, err
}

// findRecipes loads the recipe named name (every recipe when name is
// empty) from -f FILE or ./recipes/*.bake.hcl, all of it checked; see
// findRecipesIn.
func (e *env) findRecipes(c *ucli.Context, g globals, name string) ([]*recipes.Recipe, error) {
	rs, _, err := e.findRecipesIn(c, g, name, recipes.ScopeAll, false)
	return rs, err
}

// nameTheFile says how the command c names a recipe file: with -f, or
// (outdated, which has no -f) as an argument.
func nameTheFile(c *ucli.Context) string {
	if c.Command != nil && !hasFlag(c.Command.Flags, "file") {
		return fmt.Sprintf("name the recipe file as an argument: bakery %s recipes/NAME.bake.hcl", c.Command.Name)
	}
	return "name the recipe file with -f FILE"
}

// session holds what the catalog verbs share: AWS configuration, loaded
// only when a recipe has machine images or a ledger, and the ledgers.
type session struct {
	e       *env
	c       *ucli.Context
	aws     *aws.Config
	mu      sync.Mutex
	regions []string // the account's enabled regions, once read
	// ledgers are the recipes' ledgers by recipe name, nil for none.
	ledgers map[string]*ledger.Ledger
}

// LedgerEnv names the environment variable that points every recipe at a
// ledger, s3://BUCKET[/PREFIX][?region=REGION]. It overrides the recipes'
// catalog blocks, so that one runner (a CI job, a developer trying a
// scratch bucket) can choose the ledger without editing the recipes.
const LedgerEnv = "BAKERY_LEDGER"

// ledger returns r's ledger: the one BAKERY_LEDGER names, else the one of
// r's catalog block, else nil (no ledger: history is what the images hold
// and promotions take no lock).
func (s *session) ledger(r *recipes.Recipe) (*ledger.Ledger, error) {
	if l, ok := s.ledgers[r.Name]; ok {
		return l, nil
	}
	var bucket, prefix, region string
	if v := s.e.getenv(LedgerEnv); v != "" {
		var err error
		if bucket, prefix, region, err = ledger.ParseURL(v); err != nil {
			return nil, fmt.Errorf("%s: %w", LedgerEnv, err)
		}
	} else if r.Catalog != nil {
		bucket, prefix, region = r.Catalog.Bucket, r.Catalog.Prefix, r.Catalog.Region
	} else {
		return nil, nil
	}
	cfg, err := s.awsWithFallback(r, region)
	if err != nil {
		return nil, err
	}
	l, err := ledger.NewFromConfig(cfg, bucket, prefix, region, ledger.WithClock(s.e.now))
	if err != nil {
		return nil, err
	}
	if s.ledgers == nil {
		s.ledgers = map[string]*ledger.Ledger{}
	}
	s.ledgers[r.Name] = l
	return l, nil
}

// awsFor loads the AWS configuration once.
func (s *session) awsFor(r *recipes.Recipe) (aws.Config, error) { return s.awsWithFallback(r, "") }

// awsWithFallback loads the AWS configuration once. Its default region,
// when the environment names none, is the first machine image's, else
// fallback.
func (s *session) awsWithFallback(r *recipes.Recipe, fallback string) (aws.Config, error) {
	if s.aws != nil {
		return *s.aws, nil
	}
	region := fallback
	for _, m := range r.MachineImages {
		if m.Region != "" {
			region = m.Region
			break
		}
	}
	cfg, err := s.e.awsConfig(s.c, region)
	if err != nil {
		return aws.Config{}, err
	}
	s.aws = &cfg
	return cfg, nil
}

// openRecipe loads the recipe named name for a verb that works on its
// catalog, and opens the catalog of every artifact of it.
func (e *env) openRecipe(c *ucli.Context, g globals, name string) (*recipes.Recipe, *session, []*promote.Artifact, error) {
	rs, err := e.catalogRecipes(c, g, name)
	if err != nil {
		return nil, nil, nil, err
	}
	s := &session{e: e, c: c}
	arts, err := s.artifacts(rs[0])
	if err != nil {
		return nil, nil, nil, err
	}
	return rs[0], s, arts, nil
}

// artifacts opens the catalog of every artifact of r.
func (s *session) artifacts(r *recipes.Recipe) ([]*promote.Artifact, error) {
	var arts []*promote.Artifact
	for _, ct := range r.Containers {
		var store catalog.Store
		if ct.Repository == "" {
			l, err := catalogoci.OpenLayout(s.e.home())
			if err != nil {
				return nil, err
			}
			store = l.Store(ct.Name, r.Name, ct.Name)
		} else {
			rs, err := catalogoci.NewRegistryStore(ct.Repository, r.Name, ct.Name)
			if err != nil {
				return nil, err
			}
			store = rs
		}
		arts = append(arts, &promote.Artifact{Kind: catalog.KindContainer, Name: ct.Name, Store: store})
	}
	for _, m := range r.MachineImages {
		cfg, err := s.awsFor(r)
		if err != nil {
			return nil, err
		}
		poll, err := s.e.pollInterval()
		if err != nil {
			return nil, err
		}
		opts := []catalogami.Option{
			catalogami.WithClock(s.e.now),
			catalogami.WithPollInterval(poll),
			catalogami.WithEncryption(m.Encrypted, m.RegionKMSKeyIDs),
		}
		// With a ledger, every event is appended to it before it is
		// tagged on the AMIs, which keep only the most recent.
		l, err := s.ledger(r)
		if err != nil {
			return nil, err
		}
		if l != nil {
			opts = append(opts, catalogami.WithJournal(l))
		}
		// A version's copies may be in regions the recipe no longer
		// names (or names through a var file not given now): look in
		// every region enabled for the account, so a revoke never leaves
		// a launchable copy behind and status shows every copy.
		opts = append(opts, catalogami.WithMoreRegions(func(ctx context.Context) ([]string, error) { return s.enabledRegions(ctx, cfg) }))
		arts = append(arts, &promote.Artifact{Kind: catalog.KindAMI, Name: m.Name,
			Store: catalogami.NewLifecycleStore(cfg, r.Name, m.Name, amiRegions(r, m, cfg.Region), opts...)})
	}
	return arts, nil
}

// enabledRegions returns the account's enabled regions, read once per
// session (the stores of several machine images call it concurrently).
func (s *session) enabledRegions(ctx context.Context, cfg aws.Config) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.regions == nil {
		regions, err := awsx.EnabledRegions(ctx, awsx.NewEC2(cfg, ""))
		if err != nil {
			return nil, err
		}
		s.regions = regions
	}
	return s.regions, nil
}

// amiRegions are the regions an artifact's AMIs may be in: the build
// region, the copies, and every stage's regions.
func amiRegions(r *recipes.Recipe, m *recipes.MachineImage, defaultRegion string) []string {
	regions := []string{m.Region}
	if m.Region == "" {
		regions[0] = defaultRegion
	}
	regions = append(regions, m.Regions...)
	for _, st := range r.Stages {
		regions = append(regions, r.Stage(st).Regions...)
	}
	slices.Sort(regions)
	return slices.Compact(regions)
}

// stages returns the recipe's stage specs and gates for promote.
func stages(r *recipes.Recipe) map[string]promote.Stage {
	out := map[string]promote.Stage{}
	for _, name := range r.Stages {
		st := r.Stage(name)
		out[name] = promote.Stage{
			Spec: catalog.StageSpec{Name: name, Accounts: st.Accounts, Regions: st.Regions, Repository: st.Repository, KMSKeyIDs: st.RegionKMSKeyIDs},
			Gate: promote.Gate{MinSoak: st.Gate.MinSoak, RequireApproval: st.Gate.RequireApproval,
				Approvers: st.Gate.Approvers, ApprovalValidFor: st.Gate.ApprovalValidFor},
		}
	}
	return out
}
