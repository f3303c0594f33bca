package promote

import (
	"reflect"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/catalog"
)

// TestStatusMarksForcedPromotions: a version in a stage by a forced
// promotion says so, with the reason; one forced once but promoted since
// without force does not.
func TestStatusMarksForcedPromotions(t *testing.T) {
	forced := entry("1.0.0", map[string]time.Time{"dev": t0, "prod": t0.Add(time.Hour)})
	forced.Events = []catalog.Event{
		{Time: t0, Action: catalog.ActionPromote, Stage: "dev", Actor: "ci"},
		{Time: t0.Add(time.Hour), Action: catalog.ActionPromote, Stage: "prod", Actor: "ann", Forced: true, Reason: "CVE-2026-3 hotfix"},
	}
	again := entry("2.0.0", map[string]time.Time{"dev": t0.Add(2 * time.Hour)})
	again.Events = []catalog.Event{
		{Time: t0, Action: catalog.ActionPromote, Stage: "dev", Actor: "ann", Forced: true, Reason: "try"},
		{Time: t0.Add(time.Minute), Action: catalog.ActionDemote, Stage: "dev", Actor: "ci"},
		{Time: t0.Add(2 * time.Hour), Action: catalog.ActionPromote, Stage: "dev", Actor: "ci"},
	}
	rs := Status("web", stages, []*Artifact{art("web", forced, again)}, nil)
	got := map[string]map[string]ForcedPromotion{}
	for _, v := range rs.Versions {
		got[v.Version] = v.Forced
	}
	want := map[string]map[string]ForcedPromotion{
		"1.0.0": {"prod": {Time: t0.Add(time.Hour), By: "ann", Reason: "CVE-2026-3 hotfix"}},
		"2.0.0": nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("forced = %+v, want %+v", got, want)
	}
}
