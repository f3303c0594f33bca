package awsx

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// PolicyDocument is an IAM policy document, as IAM reads it.
type PolicyDocument struct {
	// Version is the policy language version, "2012-10-17".
	Version string `json:"Version"`
	// Statement are its statements.
	Statement []Statement `json:"Statement"`
}

// Statement is one statement of a policy document.
type Statement struct {
	// Sid names what the statement is for.
	Sid string `json:"Sid"`
	// Effect is always "Allow" here.
	Effect string `json:"Effect"`
	// Action are the IAM actions, sorted.
	Action []string `json:"Action"`
	// Resource are the ARNs, or "*".
	Resource []string `json:"Resource"`
	// Condition narrows it: operator → key → values.
	Condition map[string]map[string][]string `json:"Condition,omitempty"`
}

// PolicyScope is what a policy is narrowed to, from the recipe.
type PolicyScope struct {
	// Recipe is the recipe name: resources bakery changes must carry it
	// as their bakery:recipe tag. Empty: any recipe's (the tag must be
	// there).
	Recipe string
	// Regions limit every regional action (aws:RequestedRegion). Empty:
	// any region.
	Regions []string
	// Roles are the instance profiles' roles a launch passes to EC2
	// (iam:PassRole), as ARNs or names. Empty: any role (a launch with
	// no instance profile passes none).
	Roles []string
	// KMSKeys are the KMS keys (ARNs) region copies encrypt with. Empty:
	// any key in the regions.
	KMSKeys []string
	// LedgerBucket and LedgerPrefix locate the ledger; S3 actions are
	// granted on its objects only. Empty bucket: no ledger, no S3 action.
	LedgerBucket, LedgerPrefix string
	// Account is the AWS account id the ARNs name ("*" when empty).
	Account string
}

// createActions are the EC2 actions that tag what they create: tagging
// on creation needs ec2:CreateTags with ec2:CreateAction naming them.
var createActions = []string{"RunInstances", "CreateImage", "CopyImage", "CreateSecurityGroup", "ImportKeyPair", "CreateLaunchTemplate", "CreateVolume"}

// Policy returns the least-privilege policy of verbs (every verb's
// Permissions), narrowed to s.
func Policy(verbs []Verb, s PolicyScope) (PolicyDocument, error) {
	by := map[Scope][]string{}
	for _, v := range verbs {
		perms, ok := Permissions[v]
		if !ok {
			return PolicyDocument{}, fmt.Errorf("unknown verb %q: the verbs are %s", v, verbList())
		}
		for _, p := range perms {
			if !slices.Contains(by[p.Scope], p.Action) {
				by[p.Scope] = append(by[p.Scope], p.Action)
			}
		}
	}
	for _, actions := range by {
		slices.Sort(actions)
	}
	account := cmp.Or(s.Account, "*")
	regional := map[string]map[string][]string{}
	if len(s.Regions) > 0 {
		regional["StringEquals"] = map[string][]string{"aws:RequestedRegion": dedupeStrings(s.Regions)}
	}
	with := func(base map[string]map[string][]string, op, key string, values ...string) map[string]map[string][]string {
		out := map[string]map[string][]string{}
		for o, kv := range base {
			out[o] = map[string][]string{}
			for k, v := range kv {
				out[o][k] = v
			}
		}
		if out[op] == nil {
			out[op] = map[string][]string{}
		}
		out[op][key] = values
		return out
	}
	orNil := func(c map[string]map[string][]string) map[string]map[string][]string {
		if len(c) == 0 {
			return nil
		}
		return c
	}
	doc := PolicyDocument{Version: "2012-10-17"}
	add := func(sid string, actions, resources []string, cond map[string]map[string][]string) {
		if len(actions) > 0 {
			doc.Statement = append(doc.Statement, Statement{Sid: sid, Effect: "Allow", Action: actions, Resource: resources, Condition: orNil(cond)})
		}
	}
	add("BakeryIdentity", by[ScopeGlobal], []string{"*"}, nil)
	add("BakeryRead", by[ScopeRead], []string{"*"}, regional)
	add("BakeryCreate", by[ScopeCreate], []string{"*"}, regional)
	var onCreate []string
	for _, a := range by[ScopeCreate] {
		if op, ok := strings.CutPrefix(a, "ec2:"); ok && slices.Contains(createActions, op) {
			onCreate = append(onCreate, op)
		}
	}
	if len(onCreate) > 0 {
		add("BakeryTagOnCreate", []string{"ec2:CreateTags"}, []string{"*"}, with(regional, "StringEquals", "ec2:CreateAction", onCreate...))
	}
	own := with(regional, "StringLike", "aws:ResourceTag/bakery:recipe", "*")
	if s.Recipe != "" {
		own = with(regional, "StringEquals", "aws:ResourceTag/bakery:recipe", s.Recipe)
	}
	add("BakeryChangeOwn", by[ScopeTagged], []string{"*"}, own)
	if len(by[ScopeKMS]) > 0 {
		// A recipe names keys by ARN, id or alias; IAM grants keys by ARN,
		// and keys known by alias through kms:ResourceAliases.
		var keys, aliases []string
		for _, k := range s.KMSKeys {
			switch {
			case strings.HasPrefix(k, "arn:") && strings.Contains(k, ":alias/"):
				aliases = append(aliases, k[strings.Index(k, ":alias/")+1:])
			case strings.HasPrefix(k, "arn:"):
				keys = append(keys, k)
			case strings.HasPrefix(k, "alias/"):
				aliases = append(aliases, k)
			default:
				keys = append(keys, "arn:aws:kms:*:"+account+":key/"+k)
			}
		}
		if len(keys) > 0 || len(aliases) == 0 {
			if len(keys) == 0 {
				keys = []string{"arn:aws:kms:*:" + account + ":key/*"}
			}
			add("BakeryKMS", by[ScopeKMS], keys, regional)
		}
		if len(aliases) > 0 {
			add("BakeryKMSByAlias", by[ScopeKMS], []string{"arn:aws:kms:*:" + account + ":key/*"},
				with(regional, "ForAnyValue:StringEquals", "kms:ResourceAliases", aliases...))
		}
	}
	if len(by[ScopePassRole]) > 0 {
		var roles []string
		for _, r := range s.Roles {
			if !strings.HasPrefix(r, "arn:") {
				r = "arn:aws:iam::" + account + ":role/" + r
			}
			roles = append(roles, r)
		}
		if len(roles) == 0 {
			roles = []string{"arn:aws:iam::" + account + ":role/*"}
		}
		add("BakeryPassRole", by[ScopePassRole], roles, map[string]map[string][]string{"StringEquals": {"iam:PassedToService": {"ec2.amazonaws.com"}}})
	}
	if s.LedgerBucket != "" && len(by[ScopeLedger]) > 0 {
		prefix := strings.Trim(s.LedgerPrefix, "/")
		objects := "arn:aws:s3:::" + s.LedgerBucket + "/*"
		if prefix != "" {
			objects = "arn:aws:s3:::" + s.LedgerBucket + "/" + prefix + "/*"
		}
		var bucketActions, objectActions []string
		for _, a := range by[ScopeLedger] {
			if a == "s3:ListBucket" || a == "s3:GetBucketLocation" {
				bucketActions = append(bucketActions, a)
			} else {
				objectActions = append(objectActions, a)
			}
		}
		add("BakeryLedgerObjects", objectActions, []string{objects}, nil)
		var list map[string]map[string][]string
		if prefix != "" {
			list = map[string]map[string][]string{"StringLike": {"s3:prefix": {prefix + "/*"}}}
		}
		add("BakeryLedgerList", bucketActions, []string{"arn:aws:s3:::" + s.LedgerBucket}, list)
	}
	return doc, nil
}

// Actions returns every action of verbs, sorted.
func Actions(verbs ...Verb) []string {
	var out []string
	for _, v := range verbs {
		for _, p := range Permissions[v] {
			out = append(out, p.Action)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ParseVerb returns the verb named s.
func ParseVerb(s string) (Verb, error) {
	if slices.Contains(Verbs, Verb(s)) {
		return Verb(s), nil
	}
	return "", fmt.Errorf("unknown verb %q: the verbs are %s", s, verbList())
}

func verbList() string {
	names := make([]string, len(Verbs))
	for i, v := range Verbs {
		names[i] = string(v)
	}
	return strings.Join(names, ", ")
}

func dedupeStrings(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
