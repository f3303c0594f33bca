package recipes

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/bakery-sh/bakery/catalog"
)

// DefaultLedgerPrefix is the key prefix of the ledger in its bucket when
// the catalog block sets none.
const DefaultLedgerPrefix = "bakery"

// Catalog is the evaluated catalog block: where the recipe's ledger is,
// the append-only history and the locks that many runners share, kept in
// an S3 bucket (see package catalog/ledger). A recipe without the block
// has no ledger unless BAKERY_LEDGER names one.
type Catalog struct {
	// Bucket is the S3 bucket of the ledger. Required.
	Bucket string `json:"bucket"`
	// Prefix is the key prefix under which the ledger keeps its objects,
	// without leading or trailing "/"; default DefaultLedgerPrefix. An
	// empty prefix written as prefix = "" keeps them at the bucket's root.
	Prefix string `json:"prefix"`
	// Region is the bucket's region; empty means the AWS config's.
	Region string `json:"region,omitempty"`
	// DeclRange is where the catalog block starts.
	DeclRange hcl.Range `json:"-"`
	// Ranges maps each written attribute name to where its value is.
	Ranges map[string]hcl.Range `json:"-"`
}

// Pos returns "file:line:col" of attribute attr, or of the block when
// attr was not written.
func (c *Catalog) Pos(attr string) string { return pos(c.Ranges, attr, c.DeclRange) }

var catalogSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "bucket"},
		{Name: "prefix"},
		{Name: "region"},
	},
}

// bucketRE is an S3 bucket name (general purpose buckets): 3 to 63
// lowercase letters, digits, '.' and '-', starting and ending with a
// letter or digit.
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// decodeCatalogs reads the catalog blocks (at most one) into r.Catalog.
func (s *state) decodeCatalogs(blocks []*hcl.Block, r *Recipe) {
	var forms []written
	for _, b := range blocks {
		forms = append(forms, written{b.Type, b.DefRange})
		c := s.decodeCatalog(b)
		if len(forms) == 1 && c != nil {
			r.Catalog = c
		}
	}
	s.conflicts(forms, "A recipe file holds at most one catalog block")
}

// decodeCatalog reads one catalog block; it returns nil when the block
// has an error.
func (s *state) decodeCatalog(b *hcl.Block) *Catalog {
	before := len(s.diags)
	c := &Catalog{Prefix: DefaultLedgerPrefix, DeclRange: b.DefRange, Ranges: make(map[string]hcl.Range)}
	content, diags := b.Body.Content(catalogSchema)
	s.addAll(diags)
	attrs := content.Attributes
	for name, attr := range attrs {
		c.Ranges[name] = attr.Expr.Range()
	}
	if attr := s.required(b, content, "bucket", `bucket = "my-bakery-ledger"`); attr != nil {
		if v, ok := s.stringValue(attr, true, `quote it, as in bucket = "my-bakery-ledger"`); ok {
			if !bucketRE.MatchString(v) || strings.Contains(v, "..") {
				s.attrError(attr, fmt.Sprintf("invalid bucket name %q", v),
					`An S3 bucket name has 3 to 63 lowercase letters, digits, '.' and '-', and starts and ends with a letter or digit, such as "acme-bakery-ledger". Name the bucket only, without s3:// or a path (the path goes in prefix).`)
			} else {
				c.Bucket = v
			}
		}
	}
	if attr := attrs["prefix"]; attr != nil {
		if v, ok := s.stringValue(attr, true, `quote it, as in prefix = "bakery"`); ok {
			p := strings.Trim(v, "/")
			switch {
			case strings.Contains(p, "//"):
				s.attrError(attr, fmt.Sprintf("invalid prefix %q", v), `A prefix is a key path such as "bakery" or "teams/web/bakery", without empty parts ("//").`)
			case len(p) > 512:
				s.attrError(attr, "prefix too long", "Keep the prefix under 512 characters: S3 keys are at most 1024 bytes and the ledger adds the recipe, stage and event names.")
			default:
				c.Prefix = p
			}
		}
	}
	if attr := attrs["region"]; attr != nil {
		if v, ok := s.stringValue(attr, true, `quote it, as in region = "us-east-1"`); ok && s.checkRegion(attr, attr.Expr.Range(), v) {
			c.Region = v
		}
	}
	if len(s.diags) > before && s.diags[before:].HasErrors() {
		return nil
	}
	return c
}

// checkTagBudget reports a machine_image whose AMIs cannot hold bakery's
// own tags with room for history (see catalog.MaxAMITags): the bake's
// tags, the recipe's tags, a stage mark per stage, a revocation, the tags
// left free for concurrent writers and catalog.MinAMIEvents events.
func (s *state) checkTagBudget(r *Recipe, m *MachineImage) {
	fixed := catalog.AMIBaseTags + len(m.Tags) + len(r.Stages) + catalog.AMIRevokedTags + catalog.AMIReservedTags
	room := catalog.MaxAMITags - fixed
	if room >= catalog.MinAMIEvents {
		return
	}
	subject, ok := m.Ranges["tags"]
	if !ok {
		subject = m.DeclRange
	}
	over := catalog.MinAMIEvents - room
	fix := fmt.Sprintf("remove %d of its %d tags", min(over, len(m.Tags)), len(m.Tags))
	if over > len(m.Tags) {
		fix += fmt.Sprintf(" and %d of the recipe's %d stages", over-len(m.Tags), len(r.Stages))
	}
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("machine_image %q has too many tags for its history", m.Name),
		Detail: fmt.Sprintf("EC2 allows %d tags on an AMI. bakery writes %d of its own from the bake, %d recipe tags, a stage mark per stage (%d stages), a revocation mark, and leaves %d free for concurrent promotions: %d in all, which leaves room for %d history events, fewer than the %d bakery needs. To fix it, %s.",
			catalog.MaxAMITags, catalog.AMIBaseTags, len(m.Tags), len(r.Stages), catalog.AMIReservedTags, fixed, max(room, 0), catalog.MinAMIEvents, fix),
		Subject: subject.Ptr(),
	})
}
