package recipes

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// versionVars returns the variables expr reads (var.NAME), in order.
func versionVars(expr hcl.Expression) []string {
	var out []string
	for _, tr := range expr.Variables() {
		if tr.RootName() != "var" || len(tr) < 2 {
			continue
		}
		if a, ok := tr[1].(hcl.TraverseAttr); ok && !slices.Contains(out, a.Name) {
			out = append(out, a.Name)
		}
	}
	return out
}

// VersionFixed reports whether the recipe's version is written in the
// recipe (a literal, or computed from locals and functions alone) rather
// than read from a variable, and is not "auto": a new version then needs
// an edit of the recipe, not a -var.
func (r *Recipe) VersionFixed() bool { return len(r.VersionVars) == 0 && !r.VersionAuto }

// NextVersion suggests the version after v: its last number plus one
// ("1.4.2" → "1.4.3", "2024-06-01_1" → "2024-06-01_2"), else v with
// ".1" appended.
func NextVersion(v string) string {
	end := len(v)
	for end > 0 && (v[end-1] < '0' || v[end-1] > '9') {
		end--
	}
	start := end
	for start > 0 && v[start-1] >= '0' && v[start-1] <= '9' {
		start--
	}
	n, err := strconv.ParseUint(v[start:end], 10, 64)
	if start == end || err != nil {
		return v + ".1"
	}
	return v[:start] + strconv.FormatUint(n+1, 10) + v[end:]
}

// NewVersionHint says how to give the recipe a new version, for the
// message that refuses to bake other content under an existing one:
// with a -var when the version comes from a variable, else by editing
// the recipe where the version is written.
func (r *Recipe) NewVersionHint() string {
	next := NextVersion(r.Version)
	switch len(r.VersionVars) {
	case 0:
	case 1:
		return fmt.Sprintf("bump the recipe version, which comes from var.%s: give a new one, for example -var %s=%s", r.VersionVars[0], r.VersionVars[0], next)
	default:
		return fmt.Sprintf("bump the recipe version, which comes from var.%s: give new values with -var NAME=VALUE", strings.Join(r.VersionVars, ", var."))
	}
	at := ""
	if r.VersionRange.Filename != "" {
		at = " at " + posString(r.VersionRange)
	}
	return fmt.Sprintf("the recipe's version is fixed (%q%s), so a new bake needs a new version there: bump the recipe version (for example to %q), "+
		"or write version = var.version (with a variable \"version\") and give -var version=... on each bake, as a nightly job does", r.Version, at, next)
}
