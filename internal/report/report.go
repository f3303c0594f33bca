// Package report holds the documents bakery's catalog verbs print with
// --output json (status, history, fleets, outdated). The CLI builds and
// prints them; the dashboard (bakery serve) renders the very same
// documents as pages and serves them unchanged under /api/.
package report

import (
	"github.com/bakery-sh/bakery/bake"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/fleet"
	"github.com/bakery-sh/bakery/promote"
)

// Status is one recipe's status (a line of bakery status --output json):
// its versions × stages and, for the stages with a fleet block, the
// groups serving them.
type Status struct {
	promote.RecipeStatus
	// Fleets maps a stage to the groups that serve it (one, unless a
	// launch is under way or something is wrong: bakery fleets says).
	Fleets map[string][]FleetRun `json:"fleets,omitempty"`
}

// FleetRun is a group serving a stage.
type FleetRun struct {
	Group   string `json:"group"`
	Region  string `json:"region"`
	Version string `json:"version"`
	Image   string `json:"image"`
}

// History is the document bakery history --output json prints.
type History struct {
	Recipe string          `json:"recipe"`
	Events []catalog.Event `json:"events"`
	// Ledger is where the full history was read from (s3://BUCKET/PREFIX),
	// empty without a ledger.
	Ledger string `json:"ledger,omitempty"`
	// Pruned is, without a ledger, how many older events the images no
	// longer hold (an AMI keeps its most recent events only).
	Pruned int `json:"pruned,omitempty"`
}

// FleetRow is one group in the fleets table and JSON.
type FleetRow struct {
	fleet.Group
	// Healthy is how many instances are InService and Healthy.
	Healthy int `json:"healthy"`
	// TargetHealthy is, per target group ARN, how many of the group's
	// instances are healthy in it.
	TargetHealthy map[string]int `json:"target_healthy,omitempty"`
	// AgeSeconds is the group's age.
	AgeSeconds int64 `json:"age_seconds"`
	// RollbackTarget is true for the group a rollback of its stage would
	// bring back: the newest disabled one.
	RollbackTarget bool `json:"rollback_target"`
}

// Fleets is the document bakery fleets --output json prints per recipe.
type Fleets struct {
	Recipe string     `json:"recipe"`
	Groups []FleetRow `json:"groups"`
	// Anomalies are what looks wrong (two serving groups in a stage).
	Anomalies []string `json:"anomalies"`
}

// Outdated is the document bakery outdated --output json prints: the
// artifacts whose base moved on since their newest bake (never nil).
type Outdated struct {
	Outdated []bake.Stale `json:"outdated"`
}
