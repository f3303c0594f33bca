package recipes

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// AutoVersion is the value of a recipe's version attribute that asks
// bakery to assign the version: version = "auto".
const AutoVersion = "auto"

// DefaultVersionFormat is the version_format of an auto-versioned recipe
// that sets none: the bake's UTC date and a counter, as 2026.11.26.1.
const DefaultVersionFormat = "{date}.{n}"

// versionFormatFields are the placeholders of a version_format and how
// each renders a UTC time ({n} is the counter, handled apart).
var versionFormatFields = map[string]func(time.Time) string{
	"date":  func(t time.Time) string { return t.Format("2006.01.02") },
	"year":  func(t time.Time) string { return t.Format("2006") },
	"month": func(t time.Time) string { return t.Format("01") },
	"day":   func(t time.Time) string { return t.Format("02") },
}

// autoVersionVarDiag is the error for -var version=raw given to a recipe
// whose version, at rng, is "auto".
func autoVersionVarDiag(rng hcl.Range, raw string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("version is %q, and -var version=%s is given", AutoVersion, raw),
		Detail:   `With version = "auto" bakery assigns the version of each new image; drop -var version, or write version = var.version (with a variable "version" whose default is "auto") to let a -var choose it.`,
		Subject:  rng.Ptr(),
	}
}

var placeholderRE = regexp.MustCompile(`\{[^{}]*\}`)

// checkVersionFormat returns why f is not a valid version_format, or "".
func checkVersionFormat(f string) string {
	ns := 0
	for _, m := range placeholderRE.FindAllString(f, -1) {
		name := m[1 : len(m)-1]
		switch _, ok := versionFormatFields[name]; {
		case name == "n":
			ns++
		case !ok:
			return fmt.Sprintf("unknown placeholder %s", m)
		}
	}
	if ns != 1 {
		return "it must hold {n}, the counter, exactly once"
	}
	lit := placeholderRE.ReplaceAllString(f, "0")
	if strings.ContainsAny(lit, "{}") {
		return "a brace is not part of a placeholder"
	}
	if !versionRE.MatchString(lit) {
		return "besides placeholders, a version holds letters, digits, '_', '.' and '-', and does not start with '.' or '-'"
	}
	return ""
}

// VersionAt returns the version an auto-versioned recipe gets when it is
// baked at now (taken as UTC) with counter n: its version format with
// every placeholder filled in.
func (r *Recipe) VersionAt(now time.Time, n int) string {
	now = now.UTC()
	return placeholderRE.ReplaceAllStringFunc(r.versionFormat(), func(m string) string {
		name := m[1 : len(m)-1]
		if name == "n" {
			return strconv.Itoa(n)
		}
		return versionFormatFields[name](now)
	})
}

// NextAutoVersion returns the version an auto-versioned recipe gets when
// it is baked at now, given the versions it already has: its version
// format for now with {n} one more than the highest counter among the
// existing versions that match the format for now (for the default
// format, those of the same day), or 1 when none does.
func (r *Recipe) NextAutoVersion(now time.Time, existing []string) string {
	re := r.counterRE(now)
	highest := 0
	for _, v := range existing {
		if m := re.FindStringSubmatch(v); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil && n > highest {
				highest = n
			}
		}
	}
	return r.VersionAt(now, highest+1)
}

// counterRE matches the versions of the format for now and captures
// their counter.
func (r *Recipe) counterRE(now time.Time) *regexp.Regexp {
	now = now.UTC()
	var b strings.Builder
	b.WriteString("^")
	f := r.versionFormat()
	last := 0
	for _, loc := range placeholderRE.FindAllStringIndex(f, -1) {
		b.WriteString(regexp.QuoteMeta(f[last:loc[0]]))
		name := f[loc[0]+1 : loc[1]-1]
		if name == "n" {
			b.WriteString(`([1-9][0-9]{0,17})`)
		} else {
			b.WriteString(regexp.QuoteMeta(versionFormatFields[name](now)))
		}
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(f[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// IsAutoVersion reports whether v is a version the recipe's format could
// have assigned, on any date.
func (r *Recipe) IsAutoVersion(v string) bool {
	var b strings.Builder
	b.WriteString("^")
	f := r.versionFormat()
	last := 0
	for _, loc := range placeholderRE.FindAllStringIndex(f, -1) {
		b.WriteString(regexp.QuoteMeta(f[last:loc[0]]))
		if f[loc[0]+1:loc[1]-1] == "n" {
			b.WriteString(`[1-9][0-9]*`)
		} else {
			b.WriteString(`[0-9.]+`)
		}
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(f[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String()).MatchString(v)
}

func (r *Recipe) versionFormat() string {
	if r.VersionFormat == "" {
		return DefaultVersionFormat
	}
	return r.VersionFormat
}

// WithVersion returns a copy of r whose version is v, for an
// auto-versioned recipe once its bake has found or assigned its version.
// The copy shares r's blocks.
func (r *Recipe) WithVersion(v string) *Recipe {
	c := *r
	c.Version = v
	return &c
}
