package cli

import (
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/promote"
	"github.com/bakery-sh/bakery/recipes"
)

// approvalDoc is the JSON document approve prints.
type approvalDoc struct {
	Recipe     string `json:"recipe"`
	Version    string `json:"version"`
	Stage      string `json:"stage"`
	Approver   string `json:"approver"`
	Unverified bool   `json:"unverified,omitempty"`
	// ValidUntil is when the approval stops counting (RFC 3339).
	ValidUntil string `json:"valid_until"`
}

func approveCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "approve",
		Usage:     "approve a version for a stage that requires approval (four eyes)",
		ArgsUsage: "RECIPE@VERSION --for STAGE [--reason \"...\"]",
		Description: "Records an approve event, with your identity, on every artifact of\n" +
			"RECIPE@VERSION: promoting it into STAGE (a stage whose gate has\n" +
			"require_approval = true) then needs such an approval by someone other\n" +
			"than the promoter, recorded at most approval_valid_for ago (default 7d),\n" +
			"by an identity matching the gate's approvers when it lists some.\n\n" +
			"Your identity is the AWS caller ARN (sts GetCallerIdentity) when the\n" +
			"recipe uses AWS (machine images, or a ledger). For a recipe of\n" +
			"containers only, it is $BAKERY_ACTOR, else your user name in the\n" +
			"registry's credentials, else $USER: a name nobody verified, which the\n" +
			"event marks as unverified and which never satisfies approvers.\n" +
			"The version need not be in the stage before yet.",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "for", Usage: "the `STAGE` approved for (required)"},
			&ucli.StringFlag{Name: "reason", Usage: "why; recorded in the history"},
		),
		Action: func(c *ucli.Context) error {
			g, rname, version, err := oneRef(c, "approve", " --for prod")
			if err != nil {
				return err
			}
			stage := c.String("for")
			if stage == "" {
				return usagef("approve needs the stage it approves for: --for STAGE")
			}
			r, s, arts, err := e.openRecipe(c, g, rname)
			if err != nil {
				return err
			}
			who, err := s.identity(r)
			if err != nil {
				return err
			}
			if err := promote.Load(c.Context, arts); err != nil {
				return err
			}
			now := e.now()
			specs := stages(r)
			a := promote.Approval{Recipe: r.Name, Version: version, Stage: stage, Reason: c.String("reason"), Approver: who}
			if err := promote.Approve(c.Context, r.Stages, specs, arts, a, now); err != nil {
				return err
			}
			until := now.Add(specs[stage].Gate.ValidFor()).UTC()
			if g.json {
				return json.NewEncoder(e.stdout).Encode(approvalDoc{Recipe: r.Name, Version: version, Stage: stage,
					Approver: who.Name, Unverified: !who.Verified, ValidUntil: until.Format("2006-01-02T15:04:05Z07:00")})
			}
			fmt.Fprintf(e.stdout, "approved %s@%s for %s as %s, until %s: someone else may now promote it there\n",
				r.Name, version, stage, who, until.Format("2006-01-02 15:04 MST"))
			return nil
		},
	})
}

// identity is who approves or promotes, for approvals: the AWS caller
// ARN, verified, when r uses AWS (machine images or a ledger; an error
// when AWS does not answer: nothing else may stand in for it); otherwise
// an unverified name: $BAKERY_ACTOR, else the user of the credentials for
// the registry of r's first container with a repository ("USER@HOST"),
// else what actor falls back to (the CI's user, $USER).
func (s *session) identity(r *recipes.Recipe) (promote.Identity, error) {
	l, err := s.ledger(r)
	if err != nil {
		return promote.Identity{}, err
	}
	if len(r.MachineImages) > 0 || l != nil {
		cfg, err := s.awsFor(r)
		if err != nil {
			return promote.Identity{}, err
		}
		out, err := awsx.NewSTS(cfg, "").GetCallerIdentity(s.c.Context, &sts.GetCallerIdentityInput{})
		if err != nil {
			return promote.Identity{}, fmt.Errorf("finding your AWS identity (sts GetCallerIdentity): %w: approvals of %s are by verified AWS identities; check your AWS credentials", err, r.Name)
		}
		if out.Arn == nil || *out.Arn == "" {
			return promote.Identity{}, fmt.Errorf("finding your AWS identity: sts GetCallerIdentity named no ARN: check your AWS credentials")
		}
		return promote.Identity{Name: *out.Arn, Verified: true}, nil
	}
	if a := s.e.getenv("BAKERY_ACTOR"); a != "" {
		return promote.Identity{Name: a}, nil
	}
	for _, ct := range r.Containers {
		if ct.Repository == "" {
			continue
		}
		repo, err := name.NewRepository(ct.Repository)
		if err != nil {
			continue
		}
		auth, err := authn.DefaultKeychain.Resolve(repo.Registry)
		if err != nil {
			continue
		}
		cfg, err := auth.Authorization()
		if err == nil && cfg != nil && cfg.Username != "" {
			return promote.Identity{Name: cfg.Username + "@" + repo.RegistryStr()}, nil
		}
	}
	return promote.Identity{Name: s.e.actor(s.c.Context, nil)}, nil
}
