package dashboard

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/report"
)

// boardView is the stages board: one table per recipe.
type boardView struct {
	Recipes []recipeBoard
}

type recipeBoard struct {
	Name     string
	Stages   []stageHead
	Versions []versionRow
}

// stageHead is a stage column's head: its name and the fleet serving it.
type stageHead struct {
	Name     string
	HasFleet bool
	Fleets   []fleetCell
}

// fleetCell is a group serving a stage with its health.
type fleetCell struct {
	Group, Region, Version, State string
	Healthy, Desired              int
	Known                         bool // found in the fleets document
}

type versionRow struct {
	Version      string
	Created      time.Time
	Stages       []stageCell
	Revoked      bool
	RevokeReason string
	TaintedBy    []string
	Where        string
	Runs         []string
}

type stageCell struct {
	Stage string
	In    bool
	Since time.Time
	By    string
}

func (s *Server) board(r *http.Request) (any, error) {
	b, err := s.boardDoc(r.Context())
	if err != nil {
		return nil, err
	}
	rows := map[string]report.FleetRow{}
	for _, f := range b.Fleets {
		for _, g := range f.Groups {
			rows[g.Region+"/"+g.Name] = g
		}
	}
	var v boardView
	for _, d := range b.Status {
		rb := recipeBoard{Name: d.Recipe}
		for _, st := range d.Stages {
			h := stageHead{Name: st}
			runs, ok := d.Fleets[st]
			h.HasFleet = ok
			for _, run := range runs {
				c := fleetCell{Group: run.Group, Region: run.Region, Version: run.Version}
				if row, ok := rows[run.Region+"/"+run.Group]; ok {
					c.Known, c.State, c.Healthy, c.Desired = true, string(row.State), row.Healthy, row.Desired
				}
				h.Fleets = append(h.Fleets, c)
			}
			rb.Stages = append(rb.Stages, h)
		}
		for _, ver := range d.Versions {
			row := versionRow{Version: ver.Version, Created: ver.Created, Revoked: ver.Revoked, RevokeReason: ver.RevokeReason, TaintedBy: ver.TaintedBy}
			for _, st := range d.Stages {
				se, in := ver.Stages[st]
				row.Stages = append(row.Stages, stageCell{Stage: st, In: in, Since: se.Since, By: se.By})
				for _, run := range d.Fleets[st] {
					if run.Version == ver.Version {
						row.Runs = append(row.Runs, st+": "+run.Group)
					}
				}
			}
			var where []string
			for _, a := range ver.Artifacts {
				for _, l := range a.Locations {
					where = append(where, l.Where+" "+shorten(l.ID, 24))
				}
			}
			row.Where = strings.Join(where, ", ")
			rb.Versions = append(rb.Versions, row)
		}
		v.Recipes = append(v.Recipes, rb)
	}
	return v, nil
}

// lineageView is the lineage page: the document and its drawing.
type lineageView struct {
	Lineage Lineage
	Drawing drawing
}

func (s *Server) lineage(r *http.Request) (any, error) {
	recipe, version := r.PathValue("recipe"), r.PathValue("version")
	if err := s.knownRecipe(recipe); err != nil {
		return nil, err
	}
	docs, err := s.status(r.Context(), "")
	if err != nil {
		return nil, err
	}
	l, ok := BuildLineage(docs, recipe, version)
	if !ok {
		var versions []string
		for _, d := range docs {
			if d.Recipe == recipe {
				for _, v := range d.Versions {
					versions = append(versions, v.Version)
				}
			}
		}
		has := "it has no versions yet"
		if len(versions) > 0 {
			has = "its versions are " + strings.Join(versions, ", ")
		}
		return nil, notFound{fmt.Sprintf("recipe %s has no version %q in its catalog: %s", recipe, version, has)}
	}
	return lineageView{Lineage: l, Drawing: layout(l)}, nil
}

// HistoryFilter is what the history page and /api/history filter the
// events by (query parameters of the same names); empty fields match
// everything.
type HistoryFilter struct {
	Recipe, Stage, Actor, Action string
}

// match reports whether ev passes f. An actor matches by its whole
// identity or by its last part ("ann" for arn:aws:iam::1:user/ann).
func (f HistoryFilter) match(ev catalog.Event) bool {
	return (f.Stage == "" || ev.Stage == f.Stage) &&
		(f.Action == "" || ev.Action == f.Action) &&
		(f.Actor == "" || ev.Actor == f.Actor || shortActor(ev.Actor) == f.Actor)
}

// historyView is the history page: the filtered documents and every
// event of them in one timeline, newest first.
type historyView struct {
	Filter  HistoryFilter
	Recipes []string
	Actions []string
	Docs    []report.History
	Events  []catalog.Event
	Pruned  int
}

func (s *Server) history(r *http.Request) (any, error) {
	q := r.URL.Query()
	f := HistoryFilter{Recipe: q.Get("recipe"), Stage: q.Get("stage"), Actor: q.Get("actor"), Action: q.Get("action")}
	names := s.src.Recipes()
	if f.Recipe != "" {
		if err := s.knownRecipe(f.Recipe); err != nil {
			return nil, err
		}
		names = []string{f.Recipe}
	}
	v := historyView{Filter: f, Recipes: s.src.Recipes(), Docs: []report.History{},
		Actions: []string{catalog.ActionBake, catalog.ActionPromote, catalog.ActionDemote, catalog.ActionLaunch,
			catalog.ActionRollback, catalog.ActionRevoke, catalog.ActionUnrevoke, catalog.ActionRetire}}
	for _, name := range names {
		d, err := s.historyOf(r.Context(), name)
		if err != nil {
			return nil, err
		}
		d = filterHistory(d, f)
		v.Docs = append(v.Docs, d)
		v.Events = append(v.Events, d.Events...)
		v.Pruned += d.Pruned
	}
	slices.SortStableFunc(v.Events, func(a, b catalog.Event) int { return b.Time.Compare(a.Time) })
	return v, nil
}

// filterHistory returns d with only the events f matches.
func filterHistory(d report.History, f HistoryFilter) report.History {
	if f.Stage == "" && f.Actor == "" && f.Action == "" {
		return d
	}
	out := d
	out.Events = []catalog.Event{}
	for _, ev := range d.Events {
		if f.match(ev) {
			out.Events = append(out.Events, ev)
		}
	}
	return out
}

func (s *Server) recipeHistory(r *http.Request) (any, error) {
	recipe := r.PathValue("recipe")
	if err := s.knownRecipe(recipe); err != nil {
		return nil, err
	}
	d, err := s.historyOf(r.Context(), recipe)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	return filterHistory(d, HistoryFilter{Stage: q.Get("stage"), Actor: q.Get("actor"), Action: q.Get("action")}), nil
}
