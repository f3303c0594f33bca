package recipes

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// need says why a verb loading a recipe outside ScopeAll needs an
// attribute; an attribute without one is not read by those verbs.
type need struct {
	// all: every attribute of the block, and of its nested blocks, is
	// needed.
	all bool
	// attrs are the attributes needed, by name; nested blocks' attributes
	// are named BLOCK.ATTR.
	attrs map[string]bool
	// bases are the attributes needed in ScopeBases only.
	bases map[string]bool
	// why finishes "variable X is needed ...", and basesWhy for bases:
	// RECIPE is replaced by the recipe's name.
	why, basesWhy string
}

// needs lists, by block type, what the catalog verbs read from a recipe:
// where its artifacts live, its stages, gates and ledger, the regions of
// its fleets and, for outdated, its bases.
var needs = map[string]need{
	"recipe": {attrs: set("stages"), why: "to know RECIPE's stages"},
	"container": {attrs: set("repository"), bases: set("base"), why: "to find where RECIPE's images live",
		basesWhy: "to check whether RECIPE's base has moved on"},
	"machine_image": {
		attrs: set("region", "regions", "encrypted", "kms_key_id", "region_kms_key_ids"),
		bases: set("source_ami", "source_ami_ssm", "source_ami_filter.name", "source_ami_filter.owners",
			"source_ami_filter.architecture", "source_ami_filter.most_recent", "source_ami_filter.filters"),
		why:      "to find where RECIPE's images live",
		basesWhy: "to check whether RECIPE's source AMI has moved on",
	},
	"stage":   {all: true, why: "to find where RECIPE's images live and what its stages ask"},
	"catalog": {all: true, why: "to find RECIPE's ledger"},
	"fleet":   {attrs: set("region"), why: "to find RECIPE's fleets"},
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// checkNeeded reports, outside ScopeAll, each variable left without a
// value that an attribute the catalog verbs read depends on (directly or
// through locals), at the first such attribute; and each file that
// file() could not read there when such an attribute depends on it.
func (s *state) checkNeeded(file *hcl.File, localBlocks []*hcl.Block, recipeName string) {
	body, ok := file.Body.(*hclsyntax.Body)
	if !ok || (len(s.missing) == 0 && len(s.missingFiles) == 0) {
		return
	}
	localExprs := make(map[string]hcl.Expression)
	for _, b := range localBlocks {
		attrs, _ := b.Body.JustAttributes()
		for n, a := range attrs {
			localExprs[n] = a.Expr
		}
	}
	reported := make(map[string]bool)
	var fileReported bool
	for _, b := range body.Blocks {
		n, ok := needs[b.Type]
		if !ok {
			continue
		}
		for _, a := range attributes(b.Body, "") {
			why := n.why
			switch {
			case n.all || n.attrs[a.path]:
			case s.opts.Scope == ScopeBases && n.bases[a.path]:
				why = n.basesWhy
			default:
				continue
			}
			why = strings.ReplaceAll(why, "RECIPE", recipeName)
			val, diags := a.attr.Expr.Value(s.ctx)
			if diags.HasErrors() || val.IsWhollyKnown() {
				continue // known, or an error reported already
			}
			what := a.path
			if b.Type == "stage" && len(b.Labels) == 1 {
				what = fmt.Sprintf("%s of stage %q", a.path, b.Labels[0])
			}
			rng := a.attr.Expr.Range()
			vars := s.missingVars(a.attr.Expr, localExprs, map[string]bool{})
			for _, v := range vars {
				if reported[v] {
					continue
				}
				reported[v] = true
				s.add(&hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("variable %q is needed %s (%s at %s)", v, why, what, posString(rng)),
					Detail: fmt.Sprintf("Set it with -var %s=... or %s%s=...; the variables that only a bake reads may stay unset.",
						v, EnvVarPrefix, v),
					Subject: rng.Ptr(),
				})
			}
			if len(vars) == 0 && len(s.missingFiles) > 0 && !fileReported {
				fileReported = true
				s.add(&hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("%s cannot be evaluated without the files it reads", what),
					Detail: fmt.Sprintf("The value of %s at %s is needed %s, and it reads a file that is not here (%s). Run bakery where the recipe's files are.",
						what, posString(rng), why, strings.Join(s.missingFiles, ", ")),
					Subject: rng.Ptr(),
				})
			}
		}
	}
}

// namedAttr is an attribute with its path in its block: NAME, or
// BLOCK.NAME in a nested block.
type namedAttr struct {
	path string
	attr *hclsyntax.Attribute
}

// attributes returns the attributes of body and of its nested blocks, in
// source order.
func attributes(body *hclsyntax.Body, prefix string) []namedAttr {
	var out []namedAttr
	for _, a := range body.Attributes {
		out = append(out, namedAttr{prefix + a.Name, a})
	}
	for _, b := range body.Blocks {
		out = append(out, attributes(b.Body, prefix+b.Type+".")...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].attr.SrcRange.Start.Byte < out[j].attr.SrcRange.Start.Byte })
	return out
}

// missingVars returns the variables without a value that expr refers to,
// directly or through locals, in the order it refers to them.
func (s *state) missingVars(expr hcl.Expression, locals map[string]hcl.Expression, seen map[string]bool) []string {
	var out []string
	for _, tr := range expr.Variables() {
		if len(tr) < 2 {
			continue
		}
		step, ok := tr[1].(hcl.TraverseAttr)
		if !ok {
			continue
		}
		switch tr.RootName() {
		case "var":
			if s.missing[step.Name] && !seen["var."+step.Name] {
				seen["var."+step.Name] = true
				out = append(out, step.Name)
			}
		case "local":
			if le := locals[step.Name]; le != nil && !seen["local."+step.Name] {
				seen["local."+step.Name] = true
				out = append(out, s.missingVars(le, locals, seen)...)
			}
		}
	}
	return out
}
