package cli

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns the path of a Chromium or Chrome binary; without one
// the test fails under CI (scripts/deps.sh installs chromium) and is
// skipped elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the dashboard's browser test needs chromium in CI (scripts/deps.sh installs it: apt-get install chromium)")
	}
	t.Skip("chromium not installed (scripts/deps.sh installs it)")
	return ""
}

// screenshotDir is where the browser test writes its screenshots for
// review: $BAKERY_SCREENSHOTS, else the test's artifact directory
// (kept under -outputdir with go test -artifacts).
func screenshotDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("BAKERY_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// boardRow is a version row of the stages board as the browser shows it.
type boardRow struct {
	Version string                       `json:"version"`
	Revoked bool                         `json:"revoked"`
	Tainted bool                         `json:"tainted"`
	Stages  map[string]map[string]string `json:"stages"` // stage → since, by
}

// boardFleet is a fleet in a stage's column head.
type boardFleet struct {
	Stage   string `json:"stage"`
	Group   string `json:"group"`
	Healthy string `json:"healthy"`
	Desired string `json:"desired"`
}

type boardRecipe struct {
	Recipe   string       `json:"recipe"`
	Versions []boardRow   `json:"versions"`
	Fleets   []boardFleet `json:"fleets"`
}

// readBoard reads the stages board from the page's DOM.
const readBoard = `[...document.querySelectorAll('section.recipe')].map(s => ({
  recipe: s.dataset.recipe,
  versions: [...s.querySelectorAll('tbody tr')].map(tr => ({
    version: tr.dataset.version,
    revoked: tr.dataset.revoked === 'true',
    tainted: tr.classList.contains('tainted'),
    stages: Object.fromEntries([...tr.querySelectorAll('td.in')].map(td => [td.dataset.stage, {since: td.dataset.since, by: td.dataset.by}])),
  })),
  fleets: [...s.querySelectorAll('thead th[data-stage]')].flatMap(th => [...th.querySelectorAll('[data-fleet]')].map(f => ({
    stage: th.dataset.stage, group: f.dataset.fleet,
    healthy: (f.querySelector('[data-healthy]') || {dataset: {}}).dataset.healthy || '',
    desired: (f.querySelector('[data-healthy]') || {dataset: {}}).dataset.desired || '',
  }))),
}))`

// statusDocs decodes status --output json.
func statusDocs(t *testing.T, out string) []statusDoc {
	t.Helper()
	var docs []statusDoc
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var d statusDoc
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("decoding status: %v\n%s", err, line)
		}
		docs = append(docs, d)
	}
	return docs
}

// sameBoard fails the test unless the board shows what status says:
// every recipe, version, stage with since and by, revocation and taint.
func sameBoard(t *testing.T, board []boardRecipe, docs []statusDoc, fleets []fleetsDoc) {
	t.Helper()
	if len(board) != len(docs) {
		t.Fatalf("the board shows %d recipes, status %d", len(board), len(docs))
	}
	for i, d := range docs {
		b := board[i]
		if b.Recipe != d.Recipe || len(b.Versions) != len(d.Versions) {
			t.Errorf("board recipe %d: %s with %d versions, status: %s with %d", i, b.Recipe, len(b.Versions), d.Recipe, len(d.Versions))
			continue
		}
		for j, v := range d.Versions {
			row := b.Versions[j]
			if row.Version != v.Version || row.Revoked != v.Revoked || row.Tainted != (len(v.TaintedBy) > 0) || len(row.Stages) != len(v.Stages) {
				t.Errorf("%s row %d: %+v, status says %s revoked=%v tainted=%v stages=%v", d.Recipe, j, row, v.Version, v.Revoked, v.TaintedBy, v.Stages)
				continue
			}
			for st, se := range v.Stages {
				cell := row.Stages[st]
				since, err := time.Parse(time.RFC3339Nano, cell["since"])
				if err != nil || !since.Equal(se.Since) || cell["by"] != se.By {
					t.Errorf("%s@%s in %s: the board says since %q by %q, status since %v by %q", d.Recipe, v.Version, st, cell["since"], cell["by"], se.Since, se.By)
				}
			}
		}
		var want []boardFleet
		for _, st := range d.Stages {
			for _, run := range d.Fleets[st] {
				f := boardFleet{Stage: st, Group: run.Group}
				for _, fd := range fleets {
					for _, g := range fd.Groups {
						if g.Name == run.Group {
							f.Healthy, f.Desired = itoa(g.Healthy), itoa(g.Desired)
						}
					}
				}
				want = append(want, f)
			}
		}
		if len(want) != len(b.Fleets) {
			t.Errorf("%s: the board shows fleets %+v, status and fleets say %+v", d.Recipe, b.Fleets, want)
			continue
		}
		for k := range want {
			if want[k] != b.Fleets[k] {
				t.Errorf("%s: the board shows fleet %+v, status and fleets say %+v", d.Recipe, b.Fleets[k], want[k])
			}
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestDashboardInABrowser opens bakery serve in headless Chromium against
// moto and an in-process registry: the board shows what status says, a
// promotion made while the page is open shows on reload, the links lead
// from the board to lineage (and on through the SVG), to history (and its
// filters) and outdated, and a bad address is a clear 404 page. Every
// page is saved as a screenshot for review.
func TestDashboardInABrowser(t *testing.T) {
	browser := chromium(t)
	shots := screenshotDir(t)
	clk := &shiftClock{}
	p := newDashProject(t, clk.now)
	srv := startServe(t, clk.now, p.env, p.vars...)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.WindowSize(1360, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute) // a hung browser fails the test instead of the run
	defer cancelTimeout()

	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shoot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimPrefix(loc, srv.url)
	}
	board := func() []boardRecipe {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.Evaluate[[]boardRecipe](readBoard))
		if err != nil {
			t.Fatalf("reading the board: %v", err)
		}
		return b
	}
	cli := func(args ...string) string {
		t.Helper()
		return mustRunClock(t, clk.now, p.env, append(args, p.vars...)...).stdout
	}
	fleets := func() []fleetsDoc {
		var out []fleetsDoc
		for _, line := range strings.Split(strings.TrimSpace(cli("-o", "json", "fleets")), "\n") {
			var d fleetsDoc
			if err := json.Unmarshal([]byte(line), &d); err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return out
	}

	// The board shows what status says.
	do("opening the board", chromedp.Navigate(srv.url+"/"), chromedp.WaitVisible(chromedp.CSS(`section.recipe[data-recipe="base"] table`)))
	shoot("stages")
	sameBoard(t, board(), statusDocs(t, cli("-o", "json", "status")), fleets())

	// A promotion made while the page is open shows on reload, once the
	// dashboard's cache (5 s) has expired.
	cli("-q", "promote", "app@1.0.0", "--to", "dev")
	clk.add(6 * time.Second)
	do("reloading the board", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`section.recipe[data-recipe="app"] tr[data-version="1.0.0"] td.in[data-stage="dev"]`)))
	shoot("stages-after-promotion")
	after := statusDocs(t, cli("-o", "json", "status"))
	sameBoard(t, board(), after, fleets())

	// Board → lineage of base@1.0.0 → (through the SVG) lineage of app@1.0.0.
	do("following base@1.0.0 to its lineage",
		chromedp.Click(chromedp.CSS(`section.recipe[data-recipe="base"] tr[data-version="1.0.0"] td.version a`)),
		chromedp.WaitVisible(chromedp.CSS(`svg g.node.target[data-node="base@1.0.0"]`)))
	if loc := location(); loc != "/lineage/base/1.0.0" {
		t.Errorf("the version link led to %s", loc)
	}
	nodes, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('svg g.node')].map(g => g.dataset.node)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 || !strings.HasPrefix(nodes[0], "ami-") || nodes[1] != "base@1.0.0" || nodes[2] != "app@1.0.0" {
		t.Errorf("lineage of base@1.0.0 draws %v, want its source AMI, itself and app@1.0.0", nodes)
	}
	shoot("lineage-base")
	do("following app@1.0.0 in the graph",
		chromedp.Click(chromedp.CSS(`svg g.node[data-node="app@1.0.0"] rect`)),
		chromedp.WaitVisible(chromedp.CSS(`svg g.node.target[data-node="app@1.0.0"]`)))
	if loc := location(); loc != "/lineage/app/1.0.0" {
		t.Errorf("the graph's link led to %s", loc)
	}
	shoot("lineage-app")

	// History, then its stage filter by a link in the table.
	do("opening the history", chromedp.Click(chromedp.CSS(`header a[href="/history"]`)), chromedp.WaitVisible(chromedp.CSS(`table.history`)))
	shoot("history")
	do("filtering the history by a stage link",
		chromedp.Click(chromedp.CSS(`table.history tr[data-recipe="base"][data-stage="prod"] td:nth-child(5) a`)),
		chromedp.WaitReady(chromedp.CSS(`select[name="recipe"] option[selected]`)))
	if loc := location(); loc != "/history?recipe=base&stage=prod" {
		t.Errorf("the stage link led to %s", loc)
	}
	stages, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('table.history tbody tr')].map(tr => tr.dataset.recipe + '/' + tr.dataset.stage)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) == 0 {
		t.Error("the filtered history is empty")
	}
	for _, s := range stages {
		if s != "base/prod" {
			t.Errorf("the history filtered by base and prod shows an event of %s", s)
		}
	}
	shoot("history-base-prod")

	// Outdated: worker was never baked.
	do("opening outdated", chromedp.Click(chromedp.CSS(`header a[href="/outdated"]`)), chromedp.WaitVisible(chromedp.CSS(`table.outdated`)))
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('table.outdated tr[data-recipe="worker"]').length`)); err != nil || n != 1 {
		t.Errorf("outdated lists worker %d times (%v), want once", n, err)
	}
	shoot("outdated")

	// A version that does not exist is a 404 page that says what does.
	do("opening an unknown version", chromedp.Navigate(srv.url+"/lineage/base/9.9.9"), chromedp.WaitVisible(chromedp.CSS(`[data-error]`)))
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[data-error]`)))
	if err != nil || msg != `recipe base has no version "9.9.9" in its catalog: its versions are 1.1.0, 1.0.0` {
		t.Errorf("the 404 page says %q (%v)", msg, err)
	}
	shoot("not-found")
	t.Logf("screenshots in %s", shots)
}
