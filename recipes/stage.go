package recipes

import (
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/hashicorp/hcl/v2"
)

var stageSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "accounts"},
		{Name: "regions"},
		{Name: "repository"},
		{Name: "region_kms_key_ids"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "gate"}},
}

var gateSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "min_soak"},
		{Name: "require_approval"},
		{Name: "approvers"},
		{Name: "approval_valid_for"},
	},
}

// daysRE is a number of days in a duration: "1d", "1.5d", ".5d".
var daysRE = regexp.MustCompile(`([0-9]+(?:\.[0-9]*)?|\.[0-9]+)d`)

// decodeStages reads the stage blocks, in file order, into r.StageSpecs.
// It runs after the recipe block and the artifact blocks are read: a
// stage block names one of the recipe's stages and its accounts are
// checked against the machine images.
func (s *state) decodeStages(blocks []*hcl.Block, r *Recipe) {
	seen := make(map[string]*hcl.Block)
	for _, b := range blocks {
		st := s.decodeStage(b, r)
		stageName := b.Labels[0]
		if !s.checkStageLabel(b, r, "configures", "unknown stage %q") {
			continue
		}
		if s.duplicate(seen, b, "stage", fmt.Sprintf("Each stage has at most one stage block and %q is first configured at %%s; merge the two blocks into one.", stageName)) {
			continue
		}
		if r.StageSpecs == nil {
			r.StageSpecs = make(map[string]*Stage)
		}
		r.StageSpecs[stageName] = st
		s.checkStageSharing(st, r)
	}
}

// checkStageLabel reports the label of block b (a stage or fleet block)
// unless it names one of the recipe's stages. does says what such a block
// does ("configures", "runs the image of") and summary is the
// diagnostic's summary with %q for the label. When the stages are not
// known (the recipe block or its stages list is missing or wrong, which
// is reported already) it reports nothing.
func (s *state) checkStageLabel(b *hcl.Block, r *Recipe, does, summary string) bool {
	stageName := b.Labels[0]
	if len(r.Stages) == 0 || r.StageIndex(stageName) >= 0 {
		return true
	}
	quoted := make([]string, len(r.Stages))
	for i, st := range r.Stages {
		quoted[i] = fmt.Sprintf("%q", st)
	}
	detail := fmt.Sprintf("A %s block %s one of the recipe's stages, %s (stages at %s); rename the block, or add %q to stages.",
		b.Type, does, strings.Join(quoted, ", "), posString(s.stagesRange), stageName)
	if sug := suggest(stageName, r.Stages); sug != "" {
		detail = fmt.Sprintf("Did you mean %q? ", sug) + detail
	}
	s.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf(summary, stageName),
		Detail:   detail,
		Subject:  b.LabelRanges[0].Ptr(),
	})
	return false
}

func (s *state) decodeStage(b *hcl.Block, r *Recipe) *Stage {
	st := &Stage{Name: b.Labels[0], DeclRange: b.DefRange, Ranges: make(map[string]hcl.Range)}
	content, diags := b.Body.Content(stageSchema)
	s.addAll(diags)
	attrs := content.Attributes
	for attrName, attr := range attrs {
		st.Ranges[attrName] = attr.Expr.Range()
	}

	if attr := attrs["accounts"]; attr != nil {
		if accounts, ranges, ok := s.stringList(attr); ok {
			s.checkAccounts(accounts, ranges)
			st.Accounts = accounts
		}
	}
	if attr := attrs["regions"]; attr != nil {
		if regions, ranges, ok := s.stringList(attr); ok {
			seen := make(map[string]hcl.Range)
			for i, rg := range regions {
				if !s.checkRegion(attr, ranges[i], rg) {
					continue
				}
				if first, dup := seen[rg]; dup {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("duplicate region %q", rg),
						Detail:   fmt.Sprintf("List each region once; %q is first listed at %s.", rg, posString(first)),
						Subject:  ranges[i].Ptr(),
					})
					continue
				}
				seen[rg] = ranges[i]
			}
			st.Regions = regions
		}
	}
	if attr := attrs["repository"]; attr != nil {
		if v, ok := s.stringValue(attr, false, ""); ok && v != "" {
			if _, err := name.NewRepository(v); err != nil {
				s.attrError(attr, fmt.Sprintf("invalid repository %q", v),
					fmt.Sprintf("Write a repository such as \"127.0.0.1:5000/team/web\" or \"ghcr.io/org/web\" (no tag), or leave it out to keep the stage's images in the repository they were baked into (%v).", err))
			} else {
				st.Repository = v
			}
		}
	}

	if attr := attrs["region_kms_key_ids"]; attr != nil {
		if keys, ok := s.stringMap(attr); ok {
			for _, rg := range sortedKeys(keys) {
				if !slices.Contains(st.Regions, rg) {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("region %q is not listed in the stage's regions", rg),
						Detail:   fmt.Sprintf("region_kms_key_ids names the KMS key of each region the stage copies its AMIs to; add %q to the stage's regions, or remove its key.", rg),
						Subject:  s.keyRange(attr, rg).Ptr(),
					})
				}
			}
			st.RegionKMSKeyIDs = keys
		}
	}
	var gates []written
	for _, gb := range content.Blocks {
		gates = append(gates, written{gb.Type, gb.DefRange})
		if len(gates) == 1 {
			st.Ranges[gb.Type] = gb.DefRange
		}
		g := s.decodeGate(gb, st, r)
		if len(gates) == 1 {
			st.Gate = g
		}
	}
	s.conflicts(gates, "A stage block holds at most one gate block")
	return st
}

func (s *state) decodeGate(b *hcl.Block, st *Stage, r *Recipe) Gate {
	var g Gate
	content, diags := b.Body.Content(gateSchema)
	s.addAll(diags)
	attrs := content.Attributes
	for attrName, attr := range attrs {
		if _, ok := st.Ranges[b.Type+"."+attrName]; !ok {
			st.Ranges[b.Type+"."+attrName] = attr.Expr.Range()
		}
	}

	if attr := attrs["min_soak"]; attr != nil {
		if d, ok := s.days(attr, "24h", "no minimum"); ok {
			if d > 0 && r.StageIndex(st.Name) == 0 {
				detail := fmt.Sprintf("%q is the first of the recipe's stages (at %s): an image enters it from its bake, so there is no previous stage to soak in. Remove min_soak", st.Name, posString(s.stagesRange))
				if len(r.Stages) > 1 {
					detail += fmt.Sprintf(", or set it on a later stage: min_soak in stage %q is how long an image stays in %q before it may enter %q", r.Stages[1], st.Name, r.Stages[1])
				}
				s.attrError(attr, fmt.Sprintf("min_soak on the first stage %q", st.Name), detail+".")
			} else {
				g.MinSoak = d
			}
		}
	}
	if attr := attrs["require_approval"]; attr != nil {
		if v, ok := s.boolValue(attr); ok {
			g.RequireApproval = v
		}
	}
	if attr := attrs["approvers"]; attr != nil {
		if list, ranges, ok := s.stringList(attr); ok {
			for i, a := range list {
				if !approverRE.MatchString(a) {
					s.add(&hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  fmt.Sprintf("invalid approver %q", a),
						Detail:   `approvers lists the AWS identity ARNs that may approve, "*" matching any characters: "arn:aws:iam::123456789012:role/release-managers" (a role; its assumed-role sessions match too), "arn:aws:iam::123456789012:user/ann", or "arn:aws:sts::*:assumed-role/release/*".`,
						Subject:  ranges[i].Ptr(),
					})
					continue
				}
				g.Approvers = append(g.Approvers, a)
			}
			if len(list) == 0 {
				s.attrError(attr, "empty approvers", "An empty list would let nobody approve: list at least one ARN pattern, or remove approvers to let any identity other than the promoter approve.")
			}
		}
	}
	if attr := attrs["approval_valid_for"]; attr != nil {
		if d, ok := s.days(attr, "7d", "never valid"); ok {
			if d == 0 {
				s.attrError(attr, fmt.Sprintf("invalid duration %q", "0s"), `approval_valid_for is how long an approval counts; "0s" would make every approval expire at once: write a positive duration such as "7d" or "36h", or remove it for the default, 7d.`)
			} else {
				g.ApprovalValidFor = d
			}
		}
	}
	if !g.RequireApproval {
		for _, n := range []string{"approvers", "approval_valid_for"} {
			if attr := attrs[n]; attr != nil {
				s.attrError(attr, fmt.Sprintf("%s without require_approval", n),
					fmt.Sprintf("%s applies to the approvals a stage requires, and stage %q requires none: add require_approval = true to the gate block, or remove %s.", n, st.Name, n))
			}
		}
	}
	return g
}

// approverRE is an approver ARN pattern: arn:PARTITION:iam or sts (or
// *), an empty region, an account (or pattern) and a resource.
var approverRE = regexp.MustCompile(`^arn:[a-z*-]+:(iam|sts|\*)::[0-9*]+:[^\s]+$`)

// days evaluates attr as a duration that is not negative: a Go duration
// ("24h", "90m") in which "d" counts days of 24 hours ("7d", "1d12h").
// example is a value for the messages and zero says what "0s" means.
func (s *state) days(attr *hcl.Attribute, example, zero string) (time.Duration, bool) {
	v, ok := s.stringValue(attr, true, fmt.Sprintf(`quote a duration, as in %s = %q`, attr.Name, example))
	if !ok {
		return 0, false
	}
	d, err := parseDays(v)
	switch {
	case err != nil:
		s.attrError(attr, fmt.Sprintf("invalid duration %q", v),
			fmt.Sprintf(`%s is a duration such as "30m", "24h", "1d", "7d" or "1d12h" (units ns, us, ms, s, m, h, and d for 24 hours).`, attr.Name))
		return 0, false
	case d < 0:
		s.attrError(attr, fmt.Sprintf("invalid duration %q", v),
			fmt.Sprintf(`%s cannot be negative: write a duration that is not negative, such as %q; "0s" means %s.`, attr.Name, example, zero))
		return 0, false
	}
	return d, true
}

// parseDays parses a Go duration string in which "d" is also a unit, of
// 24 hours: "7d", "1.5d", "-1d12h". Every number of days is turned into
// the exact number of hours before time.ParseDuration reads the string
// (no other unit contains a "d").
func parseDays(v string) (time.Duration, error) {
	var bad error
	hours := daysRE.ReplaceAllStringFunc(v, func(m string) string {
		num := strings.TrimSuffix(m, "d")
		days, ok := new(big.Rat).SetString(num)
		if !ok {
			bad = errors.New("invalid number of days")
			return m
		}
		decimals := 0
		if _, frac, found := strings.Cut(num, "."); found {
			decimals = len(frac)
		}
		return days.Mul(days, big.NewRat(24, 1)).FloatString(decimals) + "h"
	})
	if bad != nil {
		return 0, bad
	}
	return time.ParseDuration(hours)
}

// checkStageSharing reports a stage that shares the recipe's machine
// images with other accounts while one of them is encrypted with the
// account's default aws/ebs key, which AWS cannot share: promotion into
// the stage would fail, so it is refused before anything is baked.
func (s *state) checkStageSharing(st *Stage, r *Recipe) {
	if len(st.Accounts) == 0 {
		return
	}
	for _, m := range r.MachineImages {
		if !m.Encrypted || m.KMSKeyID != "" {
			continue
		}
		s.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "sharing an encrypted AMI needs a customer-managed KMS key",
			Detail: fmt.Sprintf("Stage %q shares the AMI of machine_image %q (at %s) with these accounts, but it is encrypted with the default aws/ebs key, which cannot be shared. Set kms_key_id (and region_kms_key_ids for copies) in the machine_image block to a customer-managed key whose policy grants these accounts kms:Decrypt and kms:CreateGrant, or set encrypted = false there.",
				st.Name, m.Name, posString(m.DeclRange)),
			Subject: st.Ranges["accounts"].Ptr(),
		})
	}
}

// checkCopyKeys reports each region an AMI of m is copied to (m's regions
// and every stage's) that has no customer-managed KMS key while the AMI
// is encrypted and shared (share_with, or a stage's accounts): a copy
// there would be encrypted with the region's default aws/ebs key, which
// AWS cannot share, so promotion or sharing would fail on a real account.
// Packer refuses the same.
func (s *state) checkCopyKeys(r *Recipe, m *MachineImage) {
	if !m.Encrypted {
		return
	}
	shared := len(m.ShareWith) > 0
	for _, name := range r.Stages {
		if st := r.StageSpecs[name]; st != nil && len(st.Accounts) > 0 {
			shared = true
		}
	}
	if !shared {
		return
	}
	for _, rg := range m.Regions {
		if m.RegionKMSKeyIDs[rg] == "" {
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("copy region %q has no KMS key", rg),
				Detail: fmt.Sprintf("machine_image %q is encrypted and shared with other accounts, so its copy in %s must be encrypted with a customer-managed key they may use (the default aws/ebs key cannot be shared). Add %q = \"arn:aws:kms:%s:...\" to region_kms_key_ids.",
					m.Name, rg, rg, rg),
				Subject: m.Ranges["regions"].Ptr(),
			})
		}
	}
	for _, name := range r.Stages {
		st := r.StageSpecs[name]
		if st == nil {
			continue
		}
		for _, rg := range st.Regions {
			if rg == m.Region || st.RegionKMSKeyIDs[rg] != "" || m.RegionKMSKeyIDs[rg] != "" {
				continue
			}
			s.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("stage %q copies to %q without a KMS key", name, rg),
				Detail: fmt.Sprintf("machine_image %q (at %s) is encrypted and shared with other accounts, so its copy in %s must be encrypted with a customer-managed key they may use (the default aws/ebs key cannot be shared). Add %q = \"arn:aws:kms:%s:...\" to region_kms_key_ids in stage %q or in the machine_image block.",
					m.Name, posString(m.DeclRange), rg, rg, rg, name),
				Subject: st.Ranges["regions"].Ptr(),
			})
		}
	}
}
