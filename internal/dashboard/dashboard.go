// Package dashboard is bakery serve: a read-only web dashboard of the
// catalog. Its pages are the stages board (versions × stages per recipe,
// and the fleets serving them), the lineage of a version (drawn as SVG on
// the server), the history (filterable by recipe, stage, actor and
// action) and the outdated recipes. Every page has a JSON twin under
// /api/ holding the documents the CLI prints with --output json.
//
// The dashboard reads the catalog through a Source on request, keeps
// what it read for a short while (WithCacheTTL) and never writes. It
// needs no JavaScript: templates are html/template, embedded.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/internal/report"
)

// Source reads the catalog documents the dashboard shows: the same
// functions the CLI's status, fleets, history and outdated print.
type Source interface {
	// Recipes are the names of the recipes served, in order.
	Recipes() []string
	// Status returns the status documents of recipe, or of every recipe
	// served when recipe is "" (bakery status --output json).
	Status(ctx context.Context, recipe string) ([]report.Status, error)
	// Fleets returns the fleets documents of recipe, or of every recipe
	// served when recipe is "" (bakery fleets --output json); recipes
	// without a fleet block have none.
	Fleets(ctx context.Context, recipe string) ([]report.Fleets, error)
	// History returns recipe's history (bakery history RECIPE --output json).
	History(ctx context.Context, recipe string) (report.History, error)
	// Outdated returns the served recipes whose base moved on (bakery
	// outdated --output json).
	Outdated(ctx context.Context) (report.Outdated, error)
}

// Server is the dashboard's HTTP handler.
type Server struct {
	src   Source
	now   func() time.Time
	token string
	cache *cache
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// Option configures a Server.
type Option func(*Server)

// WithClock sets the clock of the cache and of the pages' "read at"
// line (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithCacheTTL sets how long a document read from the catalog is served
// before it is read again (default DefaultCacheTTL; 0 reads on every
// request).
func WithCacheTTL(d time.Duration) Option { return func(s *Server) { s.cache.ttl = d } }

// WithToken makes every request prove it knows token (see
// Server.authorize); the default, "", lets every request in, which only
// loopback addresses may (CheckAddr).
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

//go:embed templates/*.html
var templateFS embed.FS

// New returns the dashboard of src.
func New(src Source, opts ...Option) (*Server, error) {
	s := &Server{src: src, now: time.Now, cache: &cache{ttl: DefaultCacheTTL}, pages: map[string]*template.Template{}}
	for _, o := range opts {
		o(s)
	}
	s.cache.now = s.now
	funcs := template.FuncMap{
		"when":        func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") },
		"rfc3339":     func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
		"short":       shortActor,
		"shorten":     shorten,
		"lineagePath": lineagePath,
		"historyPath": historyPath,
		"join":        strings.Join,
	}
	for _, name := range []string{"board", "lineage", "history", "outdated", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parsing the dashboard's %s template: %w", name, err)
		}
		s.pages[name] = t
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.page("board", s.board))
	m.HandleFunc("GET /api/board", s.api(func(r *http.Request) (any, error) { return s.boardDoc(r.Context()) }))
	m.HandleFunc("GET /api/status", s.api(func(r *http.Request) (any, error) { return s.status(r.Context(), "") }))
	m.HandleFunc("GET /api/status/{recipe}", s.api(s.recipeStatus))
	m.HandleFunc("GET /api/fleets", s.api(func(r *http.Request) (any, error) { return s.fleets(r.Context(), "") }))
	m.HandleFunc("GET /api/fleets/{recipe}", s.api(s.recipeFleets))
	m.HandleFunc("GET /lineage/{recipe}/{version}", s.page("lineage", s.lineage))
	m.HandleFunc("GET /api/lineage/{recipe}/{version}", s.api(func(r *http.Request) (any, error) {
		v, err := s.lineage(r)
		if err != nil {
			return nil, err
		}
		return v.(lineageView).Lineage, nil
	}))
	m.HandleFunc("GET /history", s.page("history", s.history))
	m.HandleFunc("GET /api/history", s.api(func(r *http.Request) (any, error) {
		v, err := s.history(r)
		if err != nil {
			return nil, err
		}
		return v.(historyView).Docs, nil
	}))
	m.HandleFunc("GET /api/history/{recipe}", s.api(s.recipeHistory))
	m.HandleFunc("GET /outdated", s.page("outdated", func(r *http.Request) (any, error) { return s.outdated(r.Context()) }))
	m.HandleFunc("GET /api/outdated", s.api(func(r *http.Request) (any, error) { return s.outdated(r.Context()) }))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			s.fail(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: the dashboard is read-only; it answers GET only", r.Method, r.URL.Path))
			return
		}
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("no page at %s: the pages are / (stages), /history, /outdated and /lineage/RECIPE/VERSION; add /api in front of any for its JSON", r.URL.Path))
	})
	s.mux = m
	return s, nil
}

// ServeHTTP serves the dashboard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	s.authorize(s.mux).ServeHTTP(w, r)
}

// ShutdownTimeout is how long Serve lets requests in flight finish once
// its context ends.
const ShutdownTimeout = 5 * time.Second

// Serve serves the dashboard on ln until ctx ends (bakery serve: SIGINT
// or SIGTERM), then shuts down gracefully: it stops accepting, lets the
// requests in flight finish (at most ShutdownTimeout) and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serving the dashboard on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("stopping the dashboard: %w", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the dashboard on %s: %w", ln.Addr(), err)
	}
	return nil
}

// notFound is an error that answers 404: an unknown recipe or version.
type notFound struct{ msg string }

func (e notFound) Error() string { return e.msg }

// view is what every page template gets.
type view struct {
	Title string
	// API is the page's JSON twin.
	API  string
	Nav  string
	Read time.Time
	// Cache is how old what the page shows may be.
	Cache time.Duration
	Data  any
}

// page serves a page rendered from build's result with the template name.
func (s *Server) page(name string, build func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := build(r)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		api := "/api" + r.URL.Path
		if r.URL.Path == "/" {
			api = "/api/board"
		}
		if r.URL.RawQuery != "" {
			api += "?" + r.URL.RawQuery
		}
		s.render(w, http.StatusOK, name, view{Title: title(name, r), API: api, Nav: name, Read: s.now().UTC(), Cache: s.cache.ttl, Data: data})
	}
}

func title(name string, r *http.Request) string {
	switch name {
	case "board":
		return "Stages"
	case "lineage":
		return "Lineage of " + r.PathValue("recipe") + "@" + r.PathValue("version")
	case "history":
		return "History"
	case "outdated":
		return "Outdated"
	}
	return name
}

// render writes a page; a template error (a bug) is a plain 500.
func (s *Server) render(w http.ResponseWriter, code int, name string, v view) {
	var b strings.Builder
	if err := s.pages[name].Execute(&b, v); err != nil {
		http.Error(w, "rendering the "+name+" page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprint(w, b.String())
}

// api serves build's result as JSON.
func (s *Server) api(build func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := build(r)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(data)
	}
}

// failErr answers an error: 404 for notFound, 502 for a catalog that
// could not be read.
func (s *Server) failErr(w http.ResponseWriter, r *http.Request, err error) {
	var nf notFound
	if errors.As(err, &nf) {
		s.fail(w, r, http.StatusNotFound, nf.msg)
		return
	}
	s.fail(w, r, http.StatusBadGateway, "reading the catalog: "+err.Error()+" (reload to try again)")
}

// fail answers code with msg: {"error": msg} under /api/, else a page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	s.render(w, code, "error", view{Title: http.StatusText(code), Read: s.now().UTC(), Cache: s.cache.ttl, Data: msg})
}

// knownRecipe returns a notFound error unless recipe is served.
func (s *Server) knownRecipe(recipe string) error {
	names := s.src.Recipes()
	if slices.Contains(names, recipe) {
		return nil
	}
	return notFound{fmt.Sprintf("unknown recipe %q: this dashboard serves %s", recipe, strings.Join(names, ", "))}
}

func (s *Server) status(ctx context.Context, recipe string) ([]report.Status, error) {
	return getAs(s.cache, "status/"+recipe, func() ([]report.Status, error) { return s.src.Status(ctx, recipe) })
}

func (s *Server) fleets(ctx context.Context, recipe string) ([]report.Fleets, error) {
	return getAs(s.cache, "fleets/"+recipe, func() ([]report.Fleets, error) { return s.src.Fleets(ctx, recipe) })
}

func (s *Server) historyOf(ctx context.Context, recipe string) (report.History, error) {
	return getAs(s.cache, "history/"+recipe, func() (report.History, error) { return s.src.History(ctx, recipe) })
}

func (s *Server) outdated(ctx context.Context) (report.Outdated, error) {
	return getAs(s.cache, "outdated", func() (report.Outdated, error) { return s.src.Outdated(ctx) })
}

func (s *Server) recipeStatus(r *http.Request) (any, error) {
	recipe := r.PathValue("recipe")
	if err := s.knownRecipe(recipe); err != nil {
		return nil, err
	}
	docs, err := s.status(r.Context(), recipe)
	if err != nil || len(docs) != 1 {
		return nil, cmpErr(err, fmt.Errorf("status of %s: %d documents", recipe, len(docs)))
	}
	return docs[0], nil
}

func (s *Server) recipeFleets(r *http.Request) (any, error) {
	recipe := r.PathValue("recipe")
	if err := s.knownRecipe(recipe); err != nil {
		return nil, err
	}
	docs, err := s.fleets(r.Context(), recipe)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, notFound{fmt.Sprintf("recipe %s has no fleet block, so no fleets", recipe)}
	}
	return docs[0], nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// Board is the document of the stages board (/api/board): the status
// documents and the fleets documents of every recipe served, as the CLI
// prints them.
type Board struct {
	Status []report.Status `json:"status"`
	Fleets []report.Fleets `json:"fleets"`
}

func (s *Server) boardDoc(ctx context.Context) (Board, error) {
	st, err := s.status(ctx, "")
	if err != nil {
		return Board{}, err
	}
	fl, err := s.fleets(ctx, "")
	if err != nil {
		return Board{}, err
	}
	return Board{Status: st, Fleets: fl}, nil
}

// lineagePath is the lineage page of recipe@version.
func lineagePath(recipe, version string) string {
	return "/lineage/" + url.PathEscape(recipe) + "/" + url.PathEscape(version)
}

// historyPath is the history page filtered by the pairs of key, value.
func historyPath(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return "/history"
	}
	return "/history?" + q.Encode()
}

// shortActor keeps the last part of an ARN ("user/ann" → "ann"), as
// the CLI's tables do.
func shortActor(a string) string {
	if i := strings.LastIndex(a, "/"); i >= 0 && strings.HasPrefix(a, "arn:") {
		return a[i+1:]
	}
	return a
}
