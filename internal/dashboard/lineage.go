package dashboard

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/report"
)

// Lineage is what one version was baked from and what was baked from
// it, through every recipe served: the document /api/lineage serves and
// the lineage page draws.
type Lineage struct {
	// Recipe and Version name the version asked for.
	Recipe  string `json:"recipe"`
	Version string `json:"version"`
	// Nodes are the images: bakery's own versions (Recipe and Version
	// set) and the bases from outside bakery (External, Image).
	Nodes []LineageNode `json:"nodes"`
	// Edges go from a base to what was baked from it.
	Edges []LineageEdge `json:"edges"`
}

// LineageNode is one image in a lineage.
type LineageNode struct {
	// ID identifies the node in Edges: RECIPE@VERSION for bakery's
	// versions, the base's name or digest for the others.
	ID string `json:"id"`
	// Recipe and Version name a version baked by bakery.
	Recipe  string `json:"recipe,omitempty"`
	Version string `json:"version,omitempty"`
	// External is true for a base bakery did not bake (a public image, a
	// source AMI); Image is its name or id and Digest its digest.
	External bool   `json:"external,omitempty"`
	Image    string `json:"image,omitempty"`
	Digest   string `json:"digest,omitempty"`
	// Level is the generation relative to the version asked for:
	// negative for its bases, positive for what was baked from it.
	Level int `json:"level"`
	// Stages are the stages a version is in; Revoked and TaintedBy as in
	// status.
	Stages    []string `json:"stages,omitempty"`
	Revoked   bool     `json:"revoked,omitempty"`
	TaintedBy []string `json:"tainted_by,omitempty"`
}

// LineageEdge says that To was baked from From (node ids).
type LineageEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Artifact is the artifact of To baked from From.
	Artifact string `json:"artifact"`
}

// versionNode is one version of the catalog, for lineage.
type versionNode struct {
	recipe string
	v      *report.Status
	i      int // index in v.Versions
}

// BuildLineage returns the lineage of recipe@version among the recipes'
// status documents, and false when no such version is in them. A base is
// matched to bakery's own image by digest (containers) or AMI id (any of
// a version's copies), as the taint of a revocation is.
func BuildLineage(docs []report.Status, recipe, version string) (Lineage, bool) {
	byID := map[string]string{} // image digest or AMI id → RECIPE@VERSION
	nodes := map[string]versionNode{}
	var target string
	for di := range docs {
		d := &docs[di]
		for vi, v := range d.Versions {
			id := d.Recipe + "@" + v.Version
			nodes[id] = versionNode{recipe: d.Recipe, v: d, i: vi}
			for _, a := range v.Artifacts {
				if a.Digest != "" {
					byID[a.Digest] = id
				}
				for _, l := range a.Locations {
					byID[l.ID] = id
				}
				if a.Reference != "" && a.Kind == catalog.KindAMI {
					byID[a.Reference] = id
				}
			}
			if d.Recipe == recipe && v.Version == version {
				target = id
			}
		}
	}
	if target == "" {
		return Lineage{}, false
	}
	// children: a base's id → the versions baked from it.
	type link struct{ from, to, artifact string }
	var links []link
	external := map[string]LineageNode{}
	for _, id := range sortedKeys(nodes) {
		n := nodes[id]
		for _, a := range n.v.Versions[n.i].Artifacts {
			from, ok := "", false
			for _, b := range []string{a.BaseDigest, a.BaseName} {
				if b == "" {
					continue
				}
				if from, ok = byID[b]; ok {
					break
				}
			}
			if !ok {
				if a.BaseName == "" && a.BaseDigest == "" {
					continue
				}
				switch {
				case a.BaseName != "" && a.BaseDigest != "":
					from = a.BaseName + "@" + a.BaseDigest
				case a.BaseDigest != "":
					from = a.BaseDigest
				default:
					from = a.BaseName
				}
				external[from] = LineageNode{ID: from, External: true, Image: a.BaseName, Digest: a.BaseDigest}
			}
			if from == id {
				continue
			}
			links = append(links, link{from, id, a.Name})
		}
	}
	l := Lineage{Recipe: recipe, Version: version, Nodes: []LineageNode{}, Edges: []LineageEdge{}}
	level := map[string]int{target: 0}
	// Up: the bases, generation by generation; down: what was baked from.
	for _, dir := range []int{-1, 1} {
		frontier := []string{target}
		for len(frontier) > 0 {
			var next []string
			for _, cur := range frontier {
				for _, k := range links {
					from, to := k.from, k.to
					if dir > 0 {
						from, to = k.to, k.from
					}
					if to != cur {
						continue
					}
					if _, seen := level[from]; seen {
						continue
					}
					level[from] = level[cur] + dir
					next = append(next, from)
				}
			}
			frontier = next
		}
	}
	for _, k := range links {
		lf, okf := level[k.from]
		lt, okt := level[k.to]
		if okf && okt && lt == lf+1 {
			l.Edges = append(l.Edges, LineageEdge{From: k.from, To: k.to, Artifact: k.artifact})
		}
	}
	slices.SortStableFunc(l.Edges, func(a, b LineageEdge) int { return level[a.From] - level[b.From] })
	for _, id := range sortedKeys(level) {
		if n, ok := nodes[id]; ok {
			v := n.v.Versions[n.i]
			ln := LineageNode{ID: id, Recipe: n.recipe, Version: v.Version, Level: level[id], Revoked: v.Revoked, TaintedBy: v.TaintedBy}
			for _, s := range n.v.Stages {
				if _, in := v.Stages[s]; in {
					ln.Stages = append(ln.Stages, s)
				}
			}
			l.Nodes = append(l.Nodes, ln)
			continue
		}
		ext := external[id]
		ext.Level = level[id]
		l.Nodes = append(l.Nodes, ext)
	}
	slices.SortStableFunc(l.Nodes, func(a, b LineageNode) int { return a.Level - b.Level })
	return l, true
}

// sortedKeys returns m's keys in order, for a stable drawing.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Sizes of the lineage drawing, in SVG user units.
const (
	boxW, boxH = 230, 54
	gapX, gapY = 70, 22
	margin     = 16
)

// svgNode is a node placed in the drawing.
type svgNode struct {
	LineageNode
	X, Y   int
	Title  string // first line
	Detail string // second line
	Href   string // the node's own lineage page ("" for external bases)
	Target bool
}

// svgEdge is an edge placed in the drawing: a curve from the right side
// of the base to the left side of what was baked from it.
type svgEdge struct {
	Path, Label string
	LX, LY      int
}

// drawing is the lineage laid out in columns, one per generation.
type drawing struct {
	W, H  int
	Nodes []svgNode
	Edges []svgEdge
}

// layout places the nodes of l in columns by generation, oldest base on
// the left.
func layout(l Lineage) drawing {
	minL, maxL := 0, 0
	for _, n := range l.Nodes {
		minL, maxL = min(minL, n.Level), max(maxL, n.Level)
	}
	rows := map[int]int{}
	at := map[string]svgNode{}
	var d drawing
	tallest := 0
	for _, n := range l.Nodes {
		col := n.Level - minL
		row := rows[n.Level]
		rows[n.Level]++
		tallest = max(tallest, rows[n.Level])
		sn := svgNode{LineageNode: n, X: margin + col*(boxW+gapX), Y: margin + row*(boxH+gapY)}
		if n.External {
			sn.Title = shorten(n.Image, 30)
			if sn.Title == "" {
				sn.Title = "base"
			}
			sn.Detail = "not baked by bakery"
			if n.Digest != "" {
				sn.Detail = shorten(n.Digest, 30)
			}
		} else {
			sn.Title = n.Recipe + "@" + n.Version
			sn.Href = lineagePath(n.Recipe, n.Version)
			sn.Target = n.Recipe == l.Recipe && n.Version == l.Version
			switch {
			case n.Revoked:
				sn.Detail = "REVOKED"
			case len(n.TaintedBy) > 0:
				sn.Detail = "TAINTED"
			case len(n.Stages) > 0:
				sn.Detail = "in " + strings.Join(n.Stages, ", ")
			default:
				sn.Detail = "in no stage"
			}
		}
		at[n.ID] = sn
		d.Nodes = append(d.Nodes, sn)
	}
	for _, e := range l.Edges {
		a, b := at[e.From], at[e.To]
		x1, y1 := a.X+boxW, a.Y+boxH/2
		x2, y2 := b.X, b.Y+boxH/2
		mid := (x1 + x2) / 2
		d.Edges = append(d.Edges, svgEdge{
			Path:  fmt.Sprintf("M%d,%d C%d,%d %d,%d %d,%d", x1, y1, mid, y1, mid, y2, x2-6, y2),
			Label: e.Artifact, LX: mid, LY: (y1+y2)/2 - 4,
		})
	}
	d.W = 2*margin + (maxL-minL+1)*boxW + (maxL-minL)*gapX
	d.H = 2*margin + tallest*boxH + max(0, tallest-1)*gapY
	return d
}

// shorten keeps at most n characters of s, eliding the middle.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	h := (n - 1) / 2
	return string(r[:h]) + "…" + string(r[len(r)-(n-1-h):])
}
