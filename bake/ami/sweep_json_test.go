package ami

import (
	"encoding/json"
	"testing"
	"time"
)

// TestSweepPlanJSON: the plan --output json prints has a list where
// there is nothing to remove (not null) and durations as strings.
func TestSweepPlanJSON(t *testing.T) {
	now := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		plan *SweepPlan
		want string
	}{
		{"nothing found", &SweepPlan{Now: now, OlderThan: time.Hour, Regions: []string{"us-east-1"}},
			`{"now":"2026-11-27T01:00:00Z","older_than":"1h0m0s","regions":["us-east-1"],"remove":[],"applied":false}`},
		{"applied, nothing found", &SweepPlan{Now: now, OlderThan: 90 * time.Minute, Regions: []string{"us-east-1"}, Applied: true},
			`{"now":"2026-11-27T01:00:00Z","older_than":"1h30m0s","regions":["us-east-1"],"remove":[],"applied":true,"removed":[]}`},
		{"one orphan", &SweepPlan{Now: now, OlderThan: 0, Regions: []string{"eu-west-1"},
			Remove: []SweepItem{{Resource{Kind: KindKeyPair, ID: "bakery-bk-1", Region: "eu-west-1", BakeID: "bk-1", Created: now.Add(-time.Hour)}, "temporary key pair of bake bk-1"}}},
			`{"now":"2026-11-27T01:00:00Z","older_than":"0s","regions":["eu-west-1"],"remove":[{"kind":"` + string(KindKeyPair) + `","id":"bakery-bk-1","region":"eu-west-1","bake_id":"bk-1","created":"2026-11-27T00:00:00Z","reason":"temporary key pair of bake bk-1"}],"applied":false}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.plan)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("JSON =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
