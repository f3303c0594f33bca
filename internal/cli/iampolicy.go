package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/catalog/ledger"
	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/recipes"
)

func iamPolicyCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:  "iam-policy",
		Usage: "print the least-privilege IAM policy the named verbs need",
		Description: "Prints an IAM policy document (JSON) granting what bakery's AWS calls for\n" +
			"the verbs need (default: every verb): " + strings.Join(verbNames(), ", ") + ".\n" +
			"With a recipe (-f FILE, or RECIPE found in ./recipes), it is narrowed to\n" +
			"the recipe: resources bakery changes must carry its bakery:recipe tag,\n" +
			"regions are the recipe's, iam:PassRole names its instance profiles' roles\n" +
			"(taken to be named as the profiles, as the console makes them; --role names\n" +
			"them when they are not: aws iam get-instance-profile shows a profile's role),\n" +
			"KMS actions its keys, and S3 actions its ledger's prefix. The actions come\n" +
			"from the same table every AWS call is checked against (BAKERY_IAM_STRICT=1).",
		ArgsUsage: "[VERB...] [RECIPE]",
		Flags: append(recipeFlags(),
			&ucli.StringFlag{Name: "account", Usage: "the AWS account `ID` the ARNs name (default: any, \"*\")"},
			&ucli.StringSliceFlag{Name: "role", Usage: "the `ROLE` (name or ARN) that iam:PassRole names, for bake and launch, instead of roles named as the recipe's instance profiles (repeatable)"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			var verbs []awsx.Verb
			name := ""
			for _, a := range c.Args().Slice() {
				v, err := awsx.ParseVerb(a)
				switch {
				case err == nil:
					verbs = append(verbs, v)
				case name == "" && !slices.Contains(verbNames(), a):
					name = a // a recipe name
				default:
					return usagef("%v", err)
				}
			}
			if len(verbs) == 0 {
				verbs = awsx.Verbs
			}
			scope := awsx.PolicyScope{Account: c.String("account")}
			if v := e.getenv(LedgerEnv); v != "" {
				if scope.LedgerBucket, scope.LedgerPrefix, _, err = ledger.ParseURL(v); err != nil {
					return fmt.Errorf("%s: %w", LedgerEnv, err)
				}
			}
			if name != "" || c.String("file") != "" {
				rs, err := e.findRecipes(c, g, name)
				if err != nil && name != "" {
					return fmt.Errorf("%q is no verb (%s), so it was taken for a recipe: %w", name, strings.Join(verbNames(), ", "), err)
				}
				if err != nil {
					return err
				}
				if len(rs) != 1 {
					return usagef("%d recipes found: name one (bakery iam-policy VERB... RECIPE)", len(rs))
				}
				if r := rs[0]; len(r.MachineImages) == 0 && len(r.Fleets) == 0 && r.Catalog == nil && e.getenv(LedgerEnv) == "" {
					return fmt.Errorf("recipe %s has no machine_image, fleet or ledger: bakery makes no AWS call for it, so it needs no IAM policy", r.Name)
				}
				if scope, err = e.policyScope(rs[0], scope.Account); err != nil {
					return err
				}
			}
			roles := c.StringSlice("role")
			for _, r := range roles {
				if !roleRE.MatchString(r) {
					return usagef("--role %q is no IAM role name or ARN (like web-role or arn:aws:iam::123456789012:role/web-role)", r)
				}
			}
			if len(roles) > 0 {
				scope.Roles = slices.Compact(slices.Sorted(slices.Values(roles)))
			}
			doc, err := awsx.Policy(verbs, scope)
			if err != nil {
				return usagef("%v", err)
			}
			if len(roles) > 0 && !slices.ContainsFunc(doc.Statement, func(st awsx.Statement) bool { return slices.Contains(st.Action, "iam:PassRole") }) {
				return usagef("--role names the roles bake and launch pass to EC2, and %s pass none: drop --role or add bake or launch", verbList(verbs))
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(doc); err != nil {
				return fmt.Errorf("writing the policy: %w", err)
			}
			return nil
		},
	})
}

func verbNames() []string {
	out := make([]string, len(awsx.Verbs))
	for i, v := range awsx.Verbs {
		out[i] = string(v)
	}
	return out
}

// policyScope narrows a policy to r: its name, regions (every machine
// image's, stage and fleet regions, and the AWS config's when r names
// none), instance profiles, KMS keys and ledger.
func (e *env) policyScope(r *recipes.Recipe, account string) (awsx.PolicyScope, error) {
	s := awsx.PolicyScope{Recipe: r.Name, Account: account}
	fallback := cmp.Or(e.getenv("AWS_REGION"), e.getenv("AWS_DEFAULT_REGION"))
	for _, m := range r.MachineImages {
		s.Regions = append(s.Regions, amiRegions(r, m, fallback)...)
		if m.IAMInstanceProfile != "" {
			s.Roles = append(s.Roles, m.IAMInstanceProfile)
		}
		if m.KMSKeyID != "" {
			s.KMSKeys = append(s.KMSKeys, m.KMSKeyID)
		}
		for _, k := range m.RegionKMSKeyIDs {
			s.KMSKeys = append(s.KMSKeys, k)
		}
	}
	for _, st := range r.Stages {
		for _, k := range r.Stage(st).RegionKMSKeyIDs {
			s.KMSKeys = append(s.KMSKeys, k)
		}
	}
	for _, f := range r.Fleets {
		s.Regions = append(s.Regions, cmp.Or(f.Region, fallback))
		if p := f.InstanceProfile; p != "" {
			// The role an instance profile holds is, by convention,
			// named as the profile (what the console creates).
			if i := strings.LastIndex(p, "/"); strings.HasPrefix(p, "arn:") && i >= 0 {
				p = p[i+1:]
			}
			s.Roles = append(s.Roles, p)
		}
	}
	if v := e.getenv(LedgerEnv); v != "" {
		bucket, prefix, _, err := ledger.ParseURL(v)
		if err != nil {
			return s, fmt.Errorf("%s: %w", LedgerEnv, err)
		}
		s.LedgerBucket, s.LedgerPrefix = bucket, prefix
	} else if r.Catalog != nil {
		s.LedgerBucket, s.LedgerPrefix = r.Catalog.Bucket, r.Catalog.Prefix
	}
	s.Regions = slices.DeleteFunc(s.Regions, func(r string) bool { return r == "" })
	slices.Sort(s.Roles)
	s.Roles = slices.Compact(s.Roles)
	slices.Sort(s.KMSKeys)
	s.KMSKeys = slices.Compact(s.KMSKeys)
	return s, nil
}

// roleRE matches an IAM role name or role ARN (with a path or not).
var roleRE = regexp.MustCompile(`^([\w+=,.@-]{1,64}|arn:aws[a-z-]*:iam::[0-9]{12}:role/([\x21-\x7e]+/)?[\w+=,.@-]{1,64})$`)

// verbList names verbs for a message.
func verbList(verbs []awsx.Verb) string {
	names := make([]string, len(verbs))
	for i, v := range verbs {
		names[i] = string(v)
	}
	return strings.Join(names, ", ")
}
