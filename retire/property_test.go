package retire

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

var (
	propertySeed      = flag.Uint64("retire.seed", 20261127, "seed of the plan's property test (the test prints the one it used)")
	propertyScenarios = flag.Int("retire.scenarios", 10000, "random catalogs the plan's property test checks")
)

var propertyRegions = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}

// modelVersion is one version as the scenario generator knows it: the
// ground truth the catalog entries are rendered from.
type modelVersion struct {
	created   time.Time
	revoked   bool
	revokedAt time.Time
	regions   int
	base      int // index of the version it was baked from, -1 for none
	used      bool
	dependent bool // another recipe's image was baked from it
	// sharedProd is true when one of its AMIs is shared with prod's
	// account (others may be shared with an account of no stage).
	sharedProd bool
	// container is true when the version has a container image besides
	// its AMI: one unit, decided once.
	container bool
}

// scenario is a random catalog: versions, promotions over time,
// revocations, lineage, uses and a policy.
type scenario struct {
	policy   Policy
	versions []modelVersion
	stages   []string
	// promotions lists, per stage, the versions promoted into it in
	// order; holder is the version in it now (-1 for none).
	promotions map[string][]int
	holder     map[string]int
	observed   Observed
}

func id(i, region int) string { return fmt.Sprintf("ami-%d-%d", i, region) }

// prodAccount is the account prod's AMIs are shared with.
const prodAccount = "111122223333"

func digest(i int) string { return fmt.Sprintf("sha256:%064d", i) }

func newScenario(r *rand.Rand) *scenario {
	s := &scenario{stages: []string{"dev", "staging", "prod"}, promotions: map[string][]int{}, holder: map[string]int{}}
	for _, st := range s.stages {
		s.holder[st] = -1
	}
	s.policy = Policy{KeepLast: r.IntN(7), KeepPrevious: r.IntN(4), KeepRevoked: time.Duration(r.IntN(21*24)) * time.Hour}
	if r.IntN(2) == 0 {
		s.policy.KeepWithin = time.Duration(r.IntN(60*24)) * time.Hour
	}
	n := 1 + r.IntN(12)
	t := now.Add(-150 * day)
	entries := make([]catalog.Entry, n)
	var containers []catalog.Entry
	containerOf := map[int]int{}
	for i := range n {
		t = t.Add(time.Duration(1+r.IntN(12*24)) * time.Hour)
		v := modelVersion{created: t, regions: 1 + r.IntN(len(propertyRegions)), base: -1}
		switch x := r.IntN(10); {
		case x < 3 && i > 0:
			v.base = r.IntN(i)
		case x == 3:
			v.base = -2 // a base outside the catalog
		}
		s.versions = append(s.versions, v)
		e := catalog.Entry{
			Image: catalog.Image{Ref: catalog.Ref{Recipe: "web", Version: fmt.Sprintf("1.0.%d", i)}, Artifact: "web", Kind: catalog.KindAMI,
				Reference: id(i, 0), Created: t},
			Lifecycle: catalog.Lifecycle{Stages: map[string]catalog.StageEntry{}},
		}
		for reg := range v.regions {
			e.Locations = append(e.Locations, catalog.Location{Where: propertyRegions[reg], ID: id(i, reg)})
		}
		switch v.base {
		case -1:
		case -2:
			e.BaseName = "ami-elsewhere"
		default:
			e.BaseName = id(v.base, r.IntN(s.versions[v.base].regions))
		}
		entries[i] = e
		if r.IntN(3) == 0 {
			// A container image of the same version, baked up to two days
			// apart: the version's bake time is the later one.
			s.versions[i].container = true
			ct := t.Add(time.Duration(r.IntN(48)-24) * time.Hour)
			if ct.After(s.versions[i].created) {
				s.versions[i].created = ct
			}
			c := catalog.Entry{
				Image: catalog.Image{Ref: e.Ref, Artifact: "app", Kind: catalog.KindContainer, Reference: "reg.example/web:" + e.Version,
					Digest: digest(i), Created: ct},
				Lifecycle: catalog.Lifecycle{Stages: map[string]catalog.StageEntry{},
					Locations: []catalog.Location{{Where: "reg.example/web", ID: digest(i)}}},
			}
			// Lineage through the container images, when both have one.
			if v.base >= 0 && s.versions[v.base].container && r.IntN(2) == 0 {
				e.BaseName = ""
				entries[i].BaseName = ""
				c.BaseDigest = digest(v.base)
			}
			containers = append(containers, c)
			containerOf[i] = len(containers) - 1
		}
	}
	// Promotions, revocations and unrevocations over time, each after
	// the bake of the version it acts on.
	ops := r.IntN(4 * n)
	t = s.versions[0].created
	for range ops {
		t = t.Add(time.Duration(1+r.IntN(6*24)) * time.Hour)
		if t.After(now) {
			break
		}
		var baked []int
		for i, v := range s.versions {
			if !v.created.After(t) {
				baked = append(baked, i)
			}
		}
		i := baked[r.IntN(len(baked))]
		v := &s.versions[i]
		// The container image of a version (if any) goes through the
		// same promotions and revocations as its AMI.
		each := func(k int, fn func(e *catalog.Entry)) {
			fn(&entries[k])
			if c, ok := containerOf[k]; ok {
				fn(&containers[c])
			}
		}
		switch x := r.IntN(10); {
		case x < 7 && !v.revoked:
			st := s.stages[r.IntN(len(s.stages))]
			if old := s.holder[st]; old >= 0 && old != i {
				each(old, func(e *catalog.Entry) {
					delete(e.Stages, st)
					e.Events = append(e.Events, catalog.Event{Time: t, Action: catalog.ActionDemote, Stage: st})
				})
			}
			s.holder[st] = i
			s.promotions[st] = append(s.promotions[st], i)
			each(i, func(e *catalog.Entry) {
				e.Stages[st] = catalog.StageEntry{Since: t}
				e.Events = append(e.Events, catalog.Event{Time: t, Action: catalog.ActionPromote, Stage: st})
			})
		case x < 9 && !v.revoked:
			v.revoked, v.revokedAt = true, t
			for _, st := range s.stages {
				if s.holder[st] == i {
					s.holder[st] = -1
				}
			}
			each(i, func(e *catalog.Entry) {
				e.Revoked = true
				clear(e.Stages)
				e.Events = append(e.Events, catalog.Event{Time: t, Action: catalog.ActionRevoke})
			})
		case v.revoked:
			v.revoked = false
			each(i, func(e *catalog.Entry) {
				e.Revoked = false
				e.Events = append(e.Events, catalog.Event{Time: t, Action: catalog.ActionUnrevoke})
			})
		}
	}
	s.observed = Observed{Recipe: "web", Artifact: "web", InUse: map[string][]Use{}, Shares: map[string][]string{},
		StageAccounts: map[string][]string{"prod": {prodAccount}, "dev": nil}}
	for i := range s.versions {
		v := &s.versions[i]
		switch r.IntN(4) {
		case 0:
			v.sharedProd = true
			where := id(i, r.IntN(v.regions))
			s.observed.Shares[where] = []string{"999988887777", prodAccount}
		case 1:
			s.observed.Shares[id(i, r.IntN(v.regions))] = []string{"999988887777"}
		}
	}
	kinds := []UseKind{UseInstance, UseLaunchTemplate, UseLaunchConfiguration, UseGroup}
	for i := range s.versions {
		v := &s.versions[i]
		if r.IntN(7) == 0 {
			v.used = true
			where := id(i, r.IntN(v.regions))
			s.observed.InUse[where] = append(s.observed.InUse[where], Use{Kind: kinds[r.IntN(len(kinds))], ID: fmt.Sprintf("x-%d", r.IntN(100)), Image: where})
		}
		if r.IntN(10) == 0 {
			v.dependent = true
			dep := Dependent{Ref: catalog.Ref{Recipe: "app", Version: fmt.Sprint(i)}, BaseName: id(i, r.IntN(v.regions))}
			if v.container && r.IntN(2) == 0 {
				dep = Dependent{Ref: dep.Ref, BaseName: "reg.example/web@" + digest(i)}
			}
			s.observed.Dependents = append(s.observed.Dependents, dep)
		}
	}
	// The plan must not depend on the order the catalog lists versions in.
	entries = append(entries, containers...)
	r.Shuffle(len(entries), func(a, b int) { entries[a], entries[b] = entries[b], entries[a] })
	s.observed.Entries = entries
	return s
}

// staged reports whether version i is in a stage now.
func (s *scenario) staged(i int) bool {
	for _, st := range s.stages {
		if s.holder[st] == i {
			return true
		}
	}
	return false
}

// rollback reports whether version i is one of the KeepPrevious
// versions a stage held before, most recent first, skipping the holder
// and revoked ones: read from the promotion log, not from events.
func (s *scenario) rollback(i int) bool {
	for _, st := range s.stages {
		var seen []int
		log := s.promotions[st]
		for k := len(log) - 1; k >= 0 && len(seen) < s.policy.KeepPrevious; k-- {
			v := log[k]
			if v == s.holder[st] || s.versions[v].revoked || slices.Contains(seen, v) {
				continue
			}
			seen = append(seen, v)
		}
		if slices.Contains(seen, i) {
			return true
		}
	}
	return false
}

// sharedInUse reports whether version i is shared with prod's account
// while it is prod's current version or its previous one: the last
// promoted into prod before, other than the holder, revoked or not.
func (s *scenario) sharedInUse(i int) bool {
	if !s.versions[i].sharedProd {
		return false
	}
	if s.holder["prod"] == i {
		return true
	}
	log := s.promotions["prod"]
	for k := len(log) - 1; k >= 0; k-- {
		if log[k] != s.holder["prod"] {
			return log[k] == i
		}
	}
	return false
}

// window reports whether version i is inside a keep_* window.
func (s *scenario) window(i int) bool {
	v := s.versions[i]
	if v.revoked {
		return now.Sub(v.revokedAt) <= s.policy.KeepRevoked
	}
	newer := 0
	for k, o := range s.versions {
		// Newer: baked later, or at the same time with a higher version
		// (an AMI and a container image of two versions may tie).
		if !o.revoked && (o.created.After(v.created) || o.created.Equal(v.created) && k > i) {
			newer++
		}
	}
	return newer < s.policy.KeepLast || s.policy.KeepWithin > 0 && now.Sub(v.created) <= s.policy.KeepWithin
}

// expectedKept is the set the policy keeps, computed from the model.
func (s *scenario) expectedKept() map[int]bool {
	kept := map[int]bool{}
	for i, v := range s.versions {
		if s.staged(i) || v.used || v.dependent || s.rollback(i) || s.sharedInUse(i) || s.window(i) {
			kept[i] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for i, v := range s.versions {
			if kept[i] && v.base >= 0 && !kept[v.base] {
				kept[v.base], changed = true, true
			}
		}
	}
	return kept
}

func TestPlanProperty(t *testing.T) {
	seed, n := *propertySeed, *propertyScenarios
	t.Logf("checking %d random catalogs with seed %d (rerun: go test ./retire -run TestPlanProperty -retire.seed %d)", n, seed, seed)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var removedTotal, keptTotal, withContainers, sharedKept int
	for k := range n {
		s := newScenario(r)
		plan := MakePlan(s.observed, s.policy, now)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("scenario %d (seed %d), policy %s:\n%s\n%s", k, seed, s.policy, fmt.Sprintf(format, args...), dump(s, plan))
		}
		if len(plan.Decisions) != len(s.versions) {
			fail("%d decisions for %d versions", len(plan.Decisions), len(s.versions))
		}
		removed := map[int]bool{}
		for _, d := range plan.Decisions {
			var i int
			fmt.Sscanf(d.Ref.Version, "1.0.%d", &i)
			wantLocs, wantParts := s.versions[i].regions, 1
			if s.versions[i].container {
				wantLocs, wantParts = wantLocs+1, 2
				withContainers++
			}
			if len(d.Locations) != wantLocs || len(d.Artifacts) != wantParts {
				fail("%s: decided for %d of its %d locations, %d of its %d images", d.Ref, len(d.Locations), wantLocs, len(d.Artifacts), wantParts)
			}
			if len(d.Reasons) == 0 {
				fail("%s: a decision without a reason", d.Ref)
			}
			if !d.Keep {
				removed[i] = true
			}
		}
		for i, v := range s.versions {
			if !removed[i] {
				keptTotal++
				continue
			}
			removedTotal++
			switch {
			case s.staged(i):
				fail("1.0.%d is in a stage and removed", i)
			case v.used:
				fail("1.0.%d is in use and removed", i)
			case s.rollback(i):
				fail("1.0.%d is a rollback target and removed", i)
			case s.sharedInUse(i):
				fail("1.0.%d is shared with prod's account while prod's current or previous version, and removed", i)
			case v.dependent:
				fail("1.0.%d is the base of another recipe's image and removed", i)
			case s.window(i):
				fail("1.0.%d is inside a keep_* window and removed", i)
			}
			for k, o := range s.versions {
				if o.base == i && !removed[k] {
					fail("1.0.%d is the base of kept 1.0.%d and removed", i, k)
				}
			}
		}
		want := s.expectedKept()
		for i := range s.versions {
			if s.sharedInUse(i) && !s.staged(i) && !s.rollback(i) {
				sharedKept++
			}
		}
		for i := range s.versions {
			if want[i] == removed[i] {
				fail("1.0.%d: the plan removes it: %v; the policy allows removing it: %v", i, removed[i], !want[i])
			}
		}
	}
	if removedTotal == 0 || keptTotal == 0 || withContainers == 0 || sharedKept == 0 {
		t.Fatalf("the scenarios removed %d and kept %d versions, %d with a container image, %d kept only for a stage account's share: the generator does not exercise them all",
			removedTotal, keptTotal, withContainers, sharedKept)
	}
	t.Logf("%d scenarios: %d versions removed, %d kept, %d with an AMI and a container image, %d kept by a stage account's share and no stage or rollback rule",
		n, removedTotal, keptTotal, withContainers, sharedKept)
}

func dump(s *scenario, plan *Plan) string {
	out := fmt.Sprintf("holders %v, promotions %v\n", s.holder, s.promotions)
	for i, v := range s.versions {
		out += fmt.Sprintf("  model 1.0.%d: created %s ago, revoked %v (%s ago), base %d, used %v, dependent %v, container %v\n",
			i, now.Sub(v.created), v.revoked, now.Sub(v.revokedAt), v.base, v.used, v.dependent, v.container)
	}
	for _, d := range plan.Decisions {
		out += fmt.Sprintf("  plan %s keep=%v %v\n", d.Ref.Version, d.Keep, d.Reasons)
	}
	return out
}
