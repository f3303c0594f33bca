package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakery-sh/bakery/bake"
	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/internal/report"
	"github.com/bakery-sh/bakery/promote"
)

// fakeSource serves fixed documents and counts the reads.
type fakeSource struct {
	mu      sync.Mutex
	reads   map[string]int
	status  []report.Status
	history map[string]report.History
	err     error
	// block, when set, holds every read until it is closed.
	block   chan struct{}
	reading chan struct{}
}

func (f *fakeSource) read(what string) error {
	f.mu.Lock()
	if f.reads == nil {
		f.reads = map[string]int{}
	}
	f.reads[what]++
	err := f.err
	f.mu.Unlock()
	if f.block != nil {
		f.reading <- struct{}{}
		<-f.block
	}
	return err
}

func (f *fakeSource) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeSource) count(what string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[what]
}

func (f *fakeSource) Recipes() []string {
	var out []string
	for _, s := range f.status {
		out = append(out, s.Recipe)
	}
	return out
}

func (f *fakeSource) Status(_ context.Context, recipe string) ([]report.Status, error) {
	if err := f.read("status/" + recipe); err != nil {
		return nil, err
	}
	if recipe == "" {
		return f.status, nil
	}
	for _, s := range f.status {
		if s.Recipe == recipe {
			return []report.Status{s}, nil
		}
	}
	return nil, nil
}

func (f *fakeSource) Fleets(context.Context, string) ([]report.Fleets, error) {
	return []report.Fleets{}, f.read("fleets")
}

func (f *fakeSource) History(_ context.Context, recipe string) (report.History, error) {
	return f.history[recipe], f.read("history/" + recipe)
}

func (f *fakeSource) Outdated(context.Context) (report.Outdated, error) {
	return report.Outdated{Outdated: []bake.Stale{{Recipe: "web", Artifact: "web", Kind: catalog.KindAMI, Reason: "source AMI moved on"}}}, f.read("outdated")
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// sample is two recipes: base (an AMI in prod, another revoked) and app,
// baked from base@1.0.0's copy in eu-west-1.
func sample() *fakeSource {
	ami := func(id, region string) []catalog.Location { return []catalog.Location{{Where: region, ID: id}} }
	return &fakeSource{
		status: []report.Status{
			{RecipeStatus: promote.RecipeStatus{Recipe: "base", Stages: []string{"dev", "prod"}, Versions: []promote.VersionStatus{
				{Version: "1.1.0", Revoked: true, RevokeReason: "CVE", Stages: map[string]catalog.StageEntry{},
					Artifacts: []promote.ArtifactState{{Kind: catalog.KindAMI, Name: "base", Reference: "ami-11", Locations: ami("ami-11", "us-east-1"), BaseName: "ami-amzn"}}},
				{Version: "1.0.0", Stages: map[string]catalog.StageEntry{"prod": {Since: t0, By: "arn:aws:iam::1:user/ann"}},
					Artifacts: []promote.ArtifactState{{Kind: catalog.KindAMI, Name: "base", Reference: "ami-10",
						Locations: append(ami("ami-10", "us-east-1"), ami("ami-10eu", "eu-west-1")...), BaseName: "ami-amzn"}}},
			}}},
			{RecipeStatus: promote.RecipeStatus{Recipe: "app", Stages: []string{"dev"}, Versions: []promote.VersionStatus{
				{Version: "2.0.0", Stages: map[string]catalog.StageEntry{}, TaintedBy: []string{"base@1.1.0"},
					Artifacts: []promote.ArtifactState{{Kind: catalog.KindAMI, Name: "app", Reference: "ami-21", Locations: ami("ami-21", "us-east-1"), BaseName: "ami-11"}}},
				{Version: "1.0.0", Stages: map[string]catalog.StageEntry{"dev": {Since: t0, By: "bob"}},
					Artifacts: []promote.ArtifactState{{Kind: catalog.KindAMI, Name: "app", Reference: "ami-20", Locations: ami("ami-20", "us-east-1"), BaseName: "ami-10eu"}}},
			}}},
		},
		history: map[string]report.History{
			"base": {Recipe: "base", Events: []catalog.Event{
				{Time: t0, Action: catalog.ActionPromote, Recipe: "base", Version: "1.0.0", Stage: "prod", Actor: "arn:aws:iam::1:user/ann"},
				{Time: t0.Add(-time.Hour), Action: catalog.ActionPromote, Recipe: "base", Version: "1.0.0", Stage: "dev", Actor: "bob"},
				{Time: t0.Add(-2 * time.Hour), Action: catalog.ActionBake, Recipe: "base", Version: "1.0.0", Actor: "bob"},
			}},
			"app": {Recipe: "app", Events: []catalog.Event{
				{Time: t0.Add(-30 * time.Minute), Action: catalog.ActionPromote, Recipe: "app", Version: "1.0.0", Stage: "dev", Actor: "bob"},
			}},
		},
	}
}

// clock is a fake clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newServer(t *testing.T, src Source, opts ...Option) *httptest.Server {
	t.Helper()
	s, err := New(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts
}

// get fetches path (without following redirects) and returns the answer.
func get(t *testing.T, ts *httptest.Server, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestCheckAddrNeedsATokenOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr, token string
		ok          bool
	}{
		{DefaultAddr, "", true},
		{"127.0.0.2:80", "", true},
		{"localhost:8080", "", true},
		{"[::1]:8080", "", true},
		{"0.0.0.0:8080", "", false},
		{":8080", "", false},
		{"[::]:8080", "", false},
		{"10.0.0.5:8080", "", false},
		{"dash.example.com:8080", "", false},
		{"0.0.0.0:8080", "s3cret", true},
		{"dash.example.com:8080", "s3cret", true},
	} {
		err := CheckAddr(tc.addr, tc.token)
		if (err == nil) != tc.ok {
			t.Errorf("CheckAddr(%q, %q) = %v, want ok=%v", tc.addr, tc.token, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "--token") || !strings.Contains(err.Error(), TokenEnv) || !strings.Contains(err.Error(), tc.addr)) {
			t.Errorf("CheckAddr(%q): %q does not name the address, --token and %s", tc.addr, err, TokenEnv)
		}
	}
	if err := CheckAddr("8080", ""); err == nil || !strings.Contains(err.Error(), "HOST:PORT") {
		t.Errorf("CheckAddr(8080) = %v, want a HOST:PORT error", err)
	}
	host, _, _ := net.SplitHostPort(DefaultAddr)
	if !IsLoopback(host) {
		t.Errorf("the default address %s is not loopback", DefaultAddr)
	}
}

func TestTokenIsNeededOnEveryRequest(t *testing.T) {
	ts := newServer(t, sample(), WithToken("s3cret"))
	for _, p := range []string{"/", "/api/status", "/history", "/lineage/base/1.0.0", "/nope"} {
		resp, body := get(t, ts, p)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "?token=") || !strings.Contains(body, "Authorization: Bearer") {
			t.Errorf("GET %s without a token: %d %q, want 401 saying how to send it", p, resp.StatusCode, body)
		}
		if resp, _ := get(t, ts, p+"?token=wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", p, resp.StatusCode)
		}
		if resp, _ := get(t, ts, p, "Authorization", "Bearer wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong bearer: %d, want 401", p, resp.StatusCode)
		}
	}
	if resp, body := get(t, ts, "/api/status", "Authorization", "Bearer s3cret"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"recipe": "base"`) {
		t.Errorf("GET /api/status with the bearer: %d %q", resp.StatusCode, body)
	}
	// A browser: ?token= once, redirected without it, then the cookie.
	resp, _ := get(t, ts, "/history?recipe=base&token=s3cret")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || strings.Contains(loc, "s3cret") || loc != "/history?recipe=base" {
		t.Fatalf("GET with ?token=: %d to %q, want 303 to /history?recipe=base", resp.StatusCode, loc)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || strings.Contains(cookie.Value, "s3cret") {
		t.Fatalf("cookie after ?token=: %+v, want an HttpOnly cookie that does not hold the token", cookie)
	}
	if resp, body := get(t, ts, loc, "Cookie", cookie.Name+"="+cookie.Value); resp.StatusCode != http.StatusOK || !strings.Contains(body, "promote") {
		t.Errorf("GET %s with the cookie: %d", loc, resp.StatusCode)
	}
	if resp, _ := get(t, ts, "/", "Cookie", cookie.Name+"="+cookieValue("other")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a cookie of another token: %d, want 401", resp.StatusCode)
	}
	// Without a token every request is let in.
	open := newServer(t, sample())
	if resp, _ := get(t, open, "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET / without a token configured: %d", resp.StatusCode)
	}
}

func TestCacheKeepsDocumentsForItsTTL(t *testing.T) {
	src := sample()
	clk := &clock{t: t0}
	ts := newServer(t, src, WithClock(clk.now), WithCacheTTL(5*time.Second))
	get(t, ts, "/api/status")
	get(t, ts, "/")
	if n := src.count("status/"); n != 1 {
		t.Fatalf("two requests within the TTL read the catalog %d times, want 1", n)
	}
	clk.add(4999 * time.Millisecond)
	get(t, ts, "/api/status")
	if n := src.count("status/"); n != 1 {
		t.Fatalf("a request just before the TTL read the catalog again (%d reads)", n)
	}
	clk.add(time.Millisecond)
	get(t, ts, "/api/status")
	if n := src.count("status/"); n != 2 {
		t.Fatalf("a request at the TTL read the catalog %d times in all, want 2", n)
	}
	// An error is not kept: the next request reads again.
	src.setErr(errors.New("registry down"))
	clk.add(time.Minute)
	if resp, body := get(t, ts, "/api/status"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "registry down") {
		t.Errorf("a failed read: %d %q, want 502 with the error", resp.StatusCode, body)
	}
	src.setErr(nil)
	if resp, _ := get(t, ts, "/api/status"); resp.StatusCode != http.StatusOK {
		t.Errorf("after a failed read: %d", resp.StatusCode)
	}
	if n := src.count("status/"); n != 4 {
		t.Errorf("reads after an error: %d in all, want 4", n)
	}
	// A TTL of 0 reads on every request.
	src0 := sample()
	ts0 := newServer(t, src0, WithClock(clk.now), WithCacheTTL(0))
	get(t, ts0, "/api/status")
	get(t, ts0, "/api/status")
	if n := src0.count("status/"); n != 2 {
		t.Errorf("with TTL 0: %d reads, want 2", n)
	}
}

func TestBadInputIsAClear404(t *testing.T) {
	ts := newServer(t, sample())
	for _, tc := range []struct{ path, want string }{
		{"/lineage/nope/1.0.0", `unknown recipe "nope": this dashboard serves base, app`},
		{"/lineage/base/9.9.9", `recipe base has no version "9.9.9" in its catalog: its versions are 1.1.0, 1.0.0`},
		{"/history?recipe=nope", `unknown recipe "nope"`},
		{"/nope", "no page at /nope"},
	} {
		resp, body := get(t, ts, tc.path)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: %d %s, want a 404 page", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(body, htmlEscaped(tc.want)) {
			t.Errorf("GET %s: page does not say %q:\n%s", tc.path, tc.want, body)
		}
	}
	for _, tc := range []struct{ path, want string }{
		{"/api/status/nope", `unknown recipe "nope": this dashboard serves base, app`},
		{"/api/history/nope", `unknown recipe "nope"`},
		{"/api/lineage/base/9.9.9", `recipe base has no version "9.9.9"`},
		{"/api/fleets/base", "recipe base has no fleet block"},
	} {
		resp, body := get(t, ts, tc.path)
		var doc map[string]string
		if err := json.Unmarshal([]byte(body), &doc); err != nil || resp.StatusCode != http.StatusNotFound || !strings.Contains(doc["error"], tc.want) {
			t.Errorf("GET %s: %d %q, want 404 {\"error\": ...%s...}", tc.path, resp.StatusCode, body, tc.want)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/api/status", strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/status: %d, want 405 (read-only)", resp.StatusCode)
	}
}

// htmlEscaped is how html/template writes s in a page.
func htmlEscaped(s string) string {
	return strings.NewReplacer(`"`, "&#34;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func TestAPIServesTheSourceDocuments(t *testing.T) {
	src := sample()
	ts := newServer(t, src)
	check := func(path string, want any) {
		t.Helper()
		resp, body := get(t, ts, path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		got := reflect.New(reflect.TypeOf(want))
		if err := json.Unmarshal([]byte(body), got.Interface()); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(got.Elem().Interface())
		if string(wb) != string(gb) {
			t.Errorf("GET %s:\n got %s\nwant %s", path, gb, wb)
		}
	}
	check("/api/status", src.status)
	check("/api/status/app", src.status[1])
	check("/api/history/base", src.history["base"])
	check("/api/history?recipe=app", []report.History{src.history["app"]})
	check("/api/board", Board{Status: src.status, Fleets: []report.Fleets{}})
	out, _ := src.Outdated(context.Background())
	check("/api/outdated", out)
	// Filters: the documents with only the events that match.
	prod := src.history["base"]
	prod.Events = prod.Events[:1]
	check("/api/history/base?stage=prod", prod)
	check("/api/history?actor=ann", []report.History{prod, {Recipe: "app", Events: []catalog.Event{}}})
	bob := src.history["base"]
	bob.Events = bob.Events[1:]
	check("/api/history?recipe=base&actor=bob", []report.History{bob})
	bakes := src.history["base"]
	bakes.Events = bakes.Events[2:]
	check("/api/history/base?action=bake", bakes)
}

func TestHistoryPageFiltersAndLinks(t *testing.T) {
	ts := newServer(t, sample())
	_, body := get(t, ts, "/history?stage=prod")
	if n := strings.Count(body, "<tr data-action="); n != 1 || !strings.Contains(body, `data-stage="prod"`) {
		t.Errorf("/history?stage=prod shows %d events, want the one promotion to prod:\n%s", n, body)
	}
	_, body = get(t, ts, "/history")
	if n := strings.Count(body, "<tr data-action="); n != 4 {
		t.Errorf("/history shows %d events, want all 4", n)
	}
	// Newest first across recipes: base's prod promotion, app's dev one, then base's older.
	first := strings.Index(body, `data-recipe="base" data-version="1.0.0" data-stage="prod"`)
	second := strings.Index(body, `data-recipe="app"`)
	if first < 0 || second < first {
		t.Errorf("/history is not newest first across recipes")
	}
	for _, link := range []string{`href="/history?actor=ann"`, `href="/lineage/app/1.0.0"`, `href="/history?recipe=base&amp;stage=prod"`} {
		if !strings.Contains(body, link) {
			t.Errorf("/history has no link %s", link)
		}
	}
}

func TestBoardMarksRevokedTaintedAndLinksLineage(t *testing.T) {
	ts := newServer(t, sample())
	resp, body := get(t, ts, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`data-version="1.1.0" data-revoked="true"`,
		"REVOKED</span> CVE",
		"TAINTED</span> baked from revoked base@1.1.0",
		`data-stage="prod" data-since="2026-03-01T12:00:00Z" data-by="arn:aws:iam::1:user/ann"`,
		`href="/lineage/base/1.0.0"`,
		`href="/api/board"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the board does not hold %s", want)
		}
	}
}

func TestBuildLineageFollowsBasesBothWays(t *testing.T) {
	docs := sample().status
	l, ok := BuildLineage(docs, "base", "1.0.0")
	if !ok {
		t.Fatal("base@1.0.0 not found")
	}
	levels := map[string]int{}
	for _, n := range l.Nodes {
		levels[n.ID] = n.Level
	}
	want := map[string]int{"ami-amzn": -1, "base@1.0.0": 0, "app@1.0.0": 1}
	if !reflect.DeepEqual(levels, want) {
		t.Errorf("lineage of base@1.0.0: nodes %v, want %v", levels, want)
	}
	wantEdges := []LineageEdge{{From: "ami-amzn", To: "base@1.0.0", Artifact: "base"}, {From: "base@1.0.0", To: "app@1.0.0", Artifact: "app"}}
	if !reflect.DeepEqual(l.Edges, wantEdges) {
		t.Errorf("edges %v, want %v", l.Edges, wantEdges)
	}
	// Up through bakery's own image to the external source.
	l, _ = BuildLineage(docs, "app", "2.0.0")
	levels = map[string]int{}
	for _, n := range l.Nodes {
		levels[n.ID] = n.Level
	}
	if want := map[string]int{"ami-amzn": -2, "base@1.1.0": -1, "app@2.0.0": 0}; !reflect.DeepEqual(levels, want) {
		t.Errorf("lineage of app@2.0.0: %v, want %v", levels, want)
	}
	if _, ok := BuildLineage(docs, "base", "3.0.0"); ok {
		t.Error("an unknown version has a lineage")
	}
	// Containers match by digest; an external base keeps name and digest.
	cdocs := []report.Status{{RecipeStatus: promote.RecipeStatus{Recipe: "img", Versions: []promote.VersionStatus{
		{Version: "1", Artifacts: []promote.ArtifactState{{Kind: catalog.KindContainer, Name: "img", Digest: "sha256:aa", BaseName: "alpine:3", BaseDigest: "sha256:00"}}},
	}}}, {RecipeStatus: promote.RecipeStatus{Recipe: "svc", Versions: []promote.VersionStatus{
		{Version: "7", Artifacts: []promote.ArtifactState{{Kind: catalog.KindContainer, Name: "svc", Digest: "sha256:bb", BaseName: "reg/img:1", BaseDigest: "sha256:aa"}}},
	}}}}
	l, _ = BuildLineage(cdocs, "img", "1")
	var ids []string
	for _, n := range l.Nodes {
		ids = append(ids, n.ID)
	}
	if want := []string{"alpine:3@sha256:00", "img@1", "svc@7"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("container lineage nodes %v, want %v", ids, want)
	}
}

func TestLineagePageDrawsSVGWithLinks(t *testing.T) {
	ts := newServer(t, sample())
	resp, body := get(t, ts, "/lineage/base/1.0.0")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET lineage: %d", resp.StatusCode)
	}
	for _, want := range []string{"<svg", `data-node="app@1.0.0"`, `<a href="/lineage/app/1.0.0">`, `data-node="ami-amzn"`, `class="edge"`, `href="/api/lineage/base/1.0.0"`} {
		if !strings.Contains(body, want) {
			t.Errorf("lineage page holds no %s", want)
		}
	}
	if strings.Contains(body, `<a href="/lineage/ami-amzn`) {
		t.Error("an external base links to a lineage page")
	}
	if n := strings.Count(body, `class="edge"`); n != 2 {
		t.Errorf("lineage page draws %d edges, want 2", n)
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	src := sample()
	src.block, src.reading = make(chan struct{}), make(chan struct{}, 1)
	s, err := New(src)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/api/outdated")
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-src.reading // the request is in flight
	cancel()      // SIGINT
	// New connections are refused once Serve stops accepting.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the dashboard still accepts connections after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(src.block)
	if code := <-got; code != http.StatusOK {
		t.Errorf("the request in flight at shutdown got %d, want 200", code)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after a graceful shutdown: %v", err)
	}
}

func TestHistoryPathEscapes(t *testing.T) {
	if got := historyPath("recipe", "a b", "stage", ""); got != "/history?recipe="+url.QueryEscape("a b") {
		t.Errorf("historyPath = %q", got)
	}
}

// TestHistoryPageMarksUnverifiedApprovals: an approval by a name nobody
// verified says so, as bakery history does.
func TestHistoryPageMarksUnverifiedApprovals(t *testing.T) {
	src := sample()
	h := src.history["app"]
	h.Events = append([]catalog.Event{
		{Time: t0, Action: catalog.ActionApprove, Recipe: "app", Version: "1.0.0", Stage: "prod", Actor: "carol", Unverified: true},
		{Time: t0.Add(-time.Minute), Action: catalog.ActionApprove, Recipe: "app", Version: "1.0.0", Stage: "prod", Actor: "arn:aws:iam::1:user/dave"},
	}, h.Events...)
	src.history["app"] = h
	_, body := get(t, newServer(t, src), "/history?recipe=app")
	if !strings.Contains(body, `>carol</a> (unverified)</td>`) || strings.Count(body, "(unverified)") != 1 {
		t.Errorf("/history does not mark carol's approval, and only hers, as unverified:\n%s", body)
	}
}
