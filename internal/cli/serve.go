package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/internal/dashboard"
	"github.com/bakery-sh/bakery/internal/report"
	"github.com/bakery-sh/bakery/recipes"
)

func serveCommand(e *env) *ucli.Command {
	return withUsageErrors(&ucli.Command{
		Name:      "serve",
		Usage:     "serve a read-only web dashboard: stages, lineage, history, outdated",
		ArgsUsage: "[RECIPE|FILE...]",
		Description: "Serves the stages board (versions × stages per recipe, and the fleets\n" +
			"serving them), each version's lineage, the history and the outdated recipes\n" +
			"of RECIPE (every recipe in ./recipes by default), read from the catalog on\n" +
			"request (kept --cache long) and never changed. Every page has a JSON twin\n" +
			"under /api/ with the documents status, fleets, history and outdated print.\n" +
			"It listens on " + dashboard.DefaultAddr + "; any other address needs a token\n" +
			"(--token or " + dashboard.TokenEnv + "), which every request must then send:\n" +
			"Authorization: Bearer TOKEN, or ?token=TOKEN once in a browser. Ctrl-C stops it.",
		Flags: append(varFlags(),
			&ucli.StringFlag{Name: "addr", Value: dashboard.DefaultAddr, Usage: "listen on `HOST:PORT` (anything but loopback needs a token)"},
			&ucli.StringFlag{Name: "token", Usage: "the `TOKEN` every request must send (default $" + dashboard.TokenEnv + ")"},
			&ucli.DurationFlag{Name: "cache", Value: dashboard.DefaultCacheTTL, Usage: "serve what was read from the catalog for this long before reading it again"},
		),
		Action: func(c *ucli.Context) error {
			g, err := readGlobals(c)
			if err != nil {
				return err
			}
			token := c.String("token")
			if token == "" {
				token = e.getenv(dashboard.TokenEnv)
			}
			addr := c.String("addr")
			if err := dashboard.CheckAddr(addr, token); err != nil {
				return usageError{err.Error()}
			}
			if c.Duration("cache") < 0 {
				return usagef("--cache must not be negative, not %s", c.Duration("cache"))
			}
			rs, err := e.outdatedRecipes(c, g)
			if err != nil {
				return err
			}
			src := &dashSource{e: e, c: c, rs: rs, fromDir: true}
			for _, a := range c.Args().Slice() {
				if _, err := os.Stat(a); err == nil || strings.HasSuffix(a, ".hcl") {
					src.fromDir = false
				}
			}
			srv, err := dashboard.New(src, dashboard.WithClock(e.now), dashboard.WithCacheTTL(c.Duration("cache")), dashboard.WithToken(token))
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listening on %s for the dashboard: %w; choose another address with --addr HOST:PORT", addr, err)
			}
			fmt.Fprintf(e.stdout, "bakery dashboard: http://%s/\n", ln.Addr())
			if token != "" {
				fmt.Fprintf(e.stdout, "every request needs the token: open http://%s/?token=TOKEN once, or send Authorization: Bearer TOKEN\n", ln.Addr())
			}
			if err := srv.Serve(c.Context, ln); err != nil {
				return err
			}
			if !g.quiet {
				fmt.Fprintln(e.stderr, "bakery: dashboard stopped")
			}
			return nil
		},
	})
}

// dashSource reads the dashboard's documents with the very functions
// status, fleets, history and outdated print theirs with, in a session
// per request (on the request's context).
type dashSource struct {
	e  *env
	c  *ucli.Context
	rs []*recipes.Recipe
	// fromDir is true when the recipes were found by name in ./recipes,
	// where status finds the other recipes' revocations for the taint.
	fromDir bool
}

// session returns a session whose calls run on ctx.
func (d *dashSource) session(ctx context.Context) *session {
	cc := *d.c
	cc.Context = ctx
	return &session{e: d.e, c: &cc}
}

// pick returns the recipe named name, or every recipe for "".
func (d *dashSource) pick(name string) []*recipes.Recipe {
	if name == "" {
		return d.rs
	}
	for _, r := range d.rs {
		if r.Name == name {
			return []*recipes.Recipe{r}
		}
	}
	return nil
}

// Recipes implements dashboard.Source.
func (d *dashSource) Recipes() []string {
	names := make([]string, len(d.rs))
	for i, r := range d.rs {
		names[i] = r.Name
	}
	return names
}

// Status implements dashboard.Source with status's statusDocs.
func (d *dashSource) Status(ctx context.Context, name string) ([]report.Status, error) {
	rs := d.pick(name)
	var elsewhere []string
	if d.fromDir {
		for _, r := range rs {
			elsewhere = append(elsewhere, r.Name)
		}
	}
	return d.session(ctx).statusDocs(rs, elsewhere, func(*recipes.Recipe, error) bool { return false })
}

// Fleets implements dashboard.Source with fleets's reader.
func (d *dashSource) Fleets(ctx context.Context, name string) ([]report.Fleets, error) {
	s := d.session(ctx)
	docs := []report.Fleets{}
	for _, r := range d.pick(name) {
		if len(r.Fleets) == 0 {
			continue
		}
		doc, err := d.e.fleets(s.c, r, "")
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
	return docs, nil
}

// History implements dashboard.Source with history's historyDoc.
func (d *dashSource) History(ctx context.Context, name string) (report.History, error) {
	rs := d.pick(name)
	if len(rs) != 1 {
		return report.History{}, fmt.Errorf("unknown recipe %q", name)
	}
	return d.session(ctx).historyDoc(rs[0])
}

// Outdated implements dashboard.Source with outdated's reader (its
// warnings are the CLI's to print).
func (d *dashSource) Outdated(ctx context.Context) (report.Outdated, error) {
	stale, err := d.session(ctx).outdated(d.rs, io.Discard)
	return report.Outdated{Outdated: stale}, err
}
