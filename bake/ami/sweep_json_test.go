package ami

import (
	"encoding/json"
	"testing"
	"time"
)

// TestSweepPlanJSON: the plan --output json prints has a list where
// there is nothing to remove (not null), durations as strings, and,
// once applied, the list of what was removed.
func TestSweepPlanJSON(t *testing.T) {
	now := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	orphan := SweepItem{Resource{Kind: KindKeyPair, ID: "bakery-bk-1", Region: "eu-west-1", BakeID: "bk-1", Created: now.Add(-time.Hour)}, "temporary key pair of bake bk-1"}
	for _, tc := range []struct {
		name string
		plan *SweepPlan
		want map[string]string // JSON field → its encoding; "" means absent
	}{
		{"nothing found", &SweepPlan{Now: now, OlderThan: time.Hour, Regions: []string{"us-east-1"}},
			map[string]string{"now": `"2026-11-27T01:00:00Z"`, "older_than": `"1h0m0s"`, "regions": `["us-east-1"]`, "remove": `[]`, "applied": `false`, "removed": ""}},
		{"applied, nothing found", &SweepPlan{Now: now, OlderThan: 90 * time.Minute, Regions: []string{"us-east-1"}, Applied: true},
			map[string]string{"older_than": `"1h30m0s"`, "remove": `[]`, "applied": `true`, "removed": `[]`}},
		{"one orphan", &SweepPlan{Now: now, Regions: []string{"eu-west-1"}, Remove: []SweepItem{orphan}},
			map[string]string{"older_than": `"0s"`, "removed": "",
				"remove": `[{"kind":"` + string(KindKeyPair) + `","id":"bakery-bk-1","region":"eu-west-1","bake_id":"bk-1","created":"2026-11-27T00:00:00Z","reason":"temporary key pair of bake bk-1"}]`}},
		{"one orphan removed", &SweepPlan{Now: now, OlderThan: time.Hour, Regions: []string{"eu-west-1"}, Remove: []SweepItem{orphan}, Applied: true, Removed: []Resource{orphan.Resource}},
			map[string]string{"older_than": `"1h0m0s"`, "applied": `true`,
				"removed": `[{"kind":"` + string(KindKeyPair) + `","id":"bakery-bk-1","region":"eu-west-1","bake_id":"bk-1","created":"2026-11-27T00:00:00Z"}]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.plan)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				v, ok := got[k]
				switch {
				case want == "" && ok:
					t.Errorf("%s = %s, want it left out; JSON %s", k, v, b)
				case want != "" && string(v) != want:
					t.Errorf("%s = %s, want %s; JSON %s", k, v, want, b)
				}
			}
			for k, v := range got {
				if string(v) == "null" {
					t.Errorf("%s is null; JSON %s", k, b)
				}
			}
		})
	}
}
