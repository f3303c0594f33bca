package recipes

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Defaults of a retain block, applied by Load (also to a recipe without
// one).
const (
	// DefaultKeepLast is how many of the newest versions are kept
	// whatever else holds, unless keep_last says otherwise.
	DefaultKeepLast = 5
	// DefaultKeepPrevious is how many versions that were in a stage
	// before its current one (rollback targets) are kept per stage,
	// unless keep_previous says otherwise.
	DefaultKeepPrevious = 1
	// DefaultKeepRevoked is how long a revoked version is kept for
	// forensics, unless keep_revoked says otherwise.
	DefaultKeepRevoked = 7 * 24 * time.Hour
	// maxKeepCount bounds keep_last and keep_previous.
	maxKeepCount = 10000
)

// Retain is the evaluated retain block: what `bakery retire` keeps of
// the recipe's images. Anything currently in a stage is always kept. It
// says how long images live, not what is baked: not part of the bake key.
type Retain struct {
	// KeepLast is how many of the newest versions are kept whatever
	// else holds. Default DefaultKeepLast.
	KeepLast int `json:"keep_last"`
	// KeepWithin keeps the versions baked within this long of now; 0
	// (the default) keeps none for their age.
	KeepWithin time.Duration `json:"keep_within,omitempty"`
	// KeepPrevious is how many versions per stage that held the stage
	// before its current version are kept (rollback targets). Default
	// DefaultKeepPrevious.
	KeepPrevious int `json:"keep_previous"`
	// KeepRevoked is how long a revoked version is kept after its
	// revocation. Default DefaultKeepRevoked.
	KeepRevoked time.Duration `json:"keep_revoked"`
	// DeprecateAfter is the AMI deprecation time a bake sets, as a
	// time after the bake; 0 (the default) sets none.
	DeprecateAfter time.Duration `json:"deprecate_after,omitempty"`
	// DeclRange is where the retain block starts (the zero range when
	// the recipe has none).
	DeclRange hcl.Range `json:"-"`
	// Ranges maps each written attribute name to where its value is.
	Ranges map[string]hcl.Range `json:"-"`
}

// DefaultRetain returns the retention of a recipe without a retain
// block: DefaultKeepLast, DefaultKeepPrevious and DefaultKeepRevoked,
// nothing kept for its age and no deprecation.
func DefaultRetain() Retain {
	return Retain{KeepLast: DefaultKeepLast, KeepPrevious: DefaultKeepPrevious, KeepRevoked: DefaultKeepRevoked}
}

// Pos returns "file:line:col" of attribute attr, or of the block when
// attr was not written.
func (rt *Retain) Pos(attr string) string { return pos(rt.Ranges, attr, rt.DeclRange) }

var retainSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "keep_last"},
		{Name: "keep_within"},
		{Name: "keep_previous"},
		{Name: "keep_revoked"},
		{Name: "deprecate_after"},
	},
}

// decodeRetains reads the retain blocks (at most one) into r.Retain,
// which holds the defaults when there is none.
func (s *state) decodeRetains(blocks []*hcl.Block, r *Recipe) {
	r.Retain = DefaultRetain()
	var forms []written
	for _, b := range blocks {
		forms = append(forms, written{b.Type, b.DefRange})
		rt := s.decodeRetain(b)
		if len(forms) == 1 {
			r.Retain = rt
		}
	}
	s.conflicts(forms, "A recipe file holds at most one retain block")
}

// decodeRetain reads one retain block; an attribute with an error keeps
// its default (the error is reported).
func (s *state) decodeRetain(b *hcl.Block) Retain {
	rt := DefaultRetain()
	rt.DeclRange, rt.Ranges = b.DefRange, make(map[string]hcl.Range)
	content, diags := b.Body.Content(retainSchema)
	s.addAll(diags)
	attrs := content.Attributes
	for name, attr := range attrs {
		rt.Ranges[name] = attr.Expr.Range()
	}
	if attr := attrs["keep_last"]; attr != nil {
		if v, ok := s.intInRange(attr, 0, maxKeepCount, "5"); ok {
			rt.KeepLast = v
		}
	}
	if attr := attrs["keep_previous"]; attr != nil {
		if v, ok := s.intInRange(attr, 0, maxKeepCount, "1"); ok {
			rt.KeepPrevious = v
		}
	}
	for name, dst := range map[string]*time.Duration{"keep_within": &rt.KeepWithin, "keep_revoked": &rt.KeepRevoked, "deprecate_after": &rt.DeprecateAfter} {
		if attr := attrs[name]; attr != nil {
			if d, ok := s.days(attr, "30d", "none"); ok {
				*dst = d
			}
		}
	}
	return rt
}
