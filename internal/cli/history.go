package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/catalog"
	"github.com/bakery-sh/bakery/catalog/ledger"
	"github.com/bakery-sh/bakery/promote"
	"github.com/bakery-sh/bakery/recipes"
)

// verifyDoc is the JSON document history --verify prints.
type verifyDoc struct {
	// Verdict is "intact" when every recipe's chain is, else "broken".
	Verdict string `json:"verdict"`
	// Recipes are the verdicts, one per recipe verified.
	Recipes []recipeVerdict `json:"recipes"`
}

// recipeVerdict is one recipe's verdict: its ledger's (see
// ledger.Verdict) and the events only its images hold.
type recipeVerdict struct {
	*ledger.Verdict
	// ImagesOnly are events on the images (AMI tags, OCI history) that
	// the ledger lacks: anyone allowed to tag the images can change them.
	ImagesOnly []catalog.Event `json:"images_only"`
}

// exitBroken is history --verify's exit code when a chain is broken: an
// answer, like fmt -check's 3 (the verb printed its own document), apart
// from 1, a failure to verify.
const exitBroken = exitUnformat

// Verdicts of verifyDoc.
const (
	verdictIntact = "intact"
	verdictBroken = "broken"
)

// noLedgerToVerify says how to configure the ledger history --verify
// needs.
func noLedgerToVerify(names []string) error {
	has := "have"
	if len(names) == 1 {
		has = "has"
	}
	return fmt.Errorf("history --verify: %s %s no ledger, and the history on the images alone (AMI tags, OCI history) "+
		"cannot be verified: anyone allowed to tag the images can change it. Configure a ledger: a catalog { bucket = \"...\" } "+
		"block in the recipe, or %s=s3://BUCKET/PREFIX", strings.Join(names, ", "), has, LedgerEnv)
}

// verifyHistory is history --verify [RECIPE]: it verifies the ledger's
// chain of the recipe named (every recipe when none is), prints the
// problems one per line (or a verifyDoc) and exits 3 when a chain is
// broken, 1 when a recipe has no ledger.
func (e *env) verifyHistory(c *ucli.Context, g globals) error {
	if c.NArg() > 1 {
		return usagef("history --verify takes at most one RECIPE, for example: bakery history --verify web")
	}
	rs, err := e.catalogRecipes(c, g, c.Args().First())
	if err != nil {
		return err
	}
	s := &session{e: e, c: c}
	doc := verifyDoc{Verdict: verdictIntact, Recipes: []recipeVerdict{}}
	var noLedger []string
	for _, r := range rs {
		l, err := s.ledger(r)
		if err != nil {
			return err
		}
		if l == nil {
			noLedger = append(noLedger, r.Name)
			continue
		}
		v, err := l.Verify(c.Context, r.Name)
		if err != nil {
			return err
		}
		images, _, err := s.imageHistory(r)
		if err != nil {
			return err
		}
		rv := recipeVerdict{Verdict: v, ImagesOnly: ledger.Unrecorded(images, v.Events)}
		if rv.ImagesOnly == nil {
			rv.ImagesOnly = []catalog.Event{}
		}
		if !v.OK() {
			doc.Verdict = verdictBroken
		}
		doc.Recipes = append(doc.Recipes, rv)
	}
	if len(doc.Recipes) == 0 {
		return noLedgerToVerify(noLedger)
	}
	if g.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else {
		for _, rv := range doc.Recipes {
			writeVerdict(e, rv)
		}
	}
	if len(noLedger) > 0 {
		e.noteFailure("%v", noLedgerToVerify(noLedger))
		return exitError{exitFailure}
	}
	if doc.Verdict == verdictBroken {
		var broken []string
		for _, rv := range doc.Recipes {
			if !rv.OK() {
				broken = append(broken, fmt.Sprintf("%s (%d problem(s) in %s)", rv.Recipe, len(rv.Problems), rv.Ledger))
			}
		}
		e.noteFailure("the history of %s was changed after it was written; see above. Restore the objects from a versioned bucket, "+
			"or keep the report: the chain cannot be repaired", strings.Join(broken, ", "))
		return exitError{exitBroken}
	}
	return nil
}

// writeVerdict prints a recipe's verdict: a summary line, then one line
// per problem and per unverifiable event, each naming the event (time,
// action, version) and where it is.
func writeVerdict(e *env, rv recipeVerdict) {
	state := "intact"
	if !rv.OK() {
		state = fmt.Sprintf("BROKEN (%d problem(s))", len(rv.Problems))
	}
	head := ""
	if rv.Head != "" {
		head = fmt.Sprintf(", newest #%d %s", rv.Chained, rv.Head)
	}
	fmt.Fprintf(e.stdout, "%s: %s: %d event(s) chained%s: %s; %d unverifiable\n", rv.Recipe, rv.Ledger, rv.Chained, head, state,
		len(rv.Unverifiable)+len(rv.ImagesOnly))
	for _, p := range rv.Problems {
		fmt.Fprintf(e.stdout, "%s: BROKEN %s %s: %s: %s\n", rv.Recipe, eventWords(p.Event), p.Key, p.Kind, p.Detail)
	}
	for _, u := range rv.Unverifiable {
		ev := u.Event
		fmt.Fprintf(e.stdout, "%s: UNVERIFIABLE %s %s: %s\n", rv.Recipe, eventWords(&ev), u.Key, u.Reason)
	}
	for _, ev := range rv.ImagesOnly {
		fmt.Fprintf(e.stdout, "%s: UNVERIFIABLE %s %s: %s\n", rv.Recipe, eventWords(&ev), imagesWhere(rv.Recipe, ev), imagesOnlyReason(ev))
	}
}

// eventWords names an event by time, action and version; "- - -" when
// there is none (a deleted object).
func eventWords(ev *catalog.Event) string {
	if ev == nil {
		return "- - -"
	}
	return fmt.Sprintf("%s %s %s", ev.Time.UTC().Format(time.RFC3339Nano), orDash(ev.Action), orDash(ev.Version))
}

// imagesWhere says where an event on the images alone is.
func imagesWhere(recipe string, ev catalog.Event) string {
	if ev.Kind == catalog.KindAMI {
		return fmt.Sprintf("tags of the AMIs of %s@%s (%s)", recipe, ev.Version, ev.Artifact)
	}
	return fmt.Sprintf("history of %s@%s (%s) in its registry or layout", recipe, ev.Version, ev.Artifact)
}

// imagesOnlyReason says why an event on the images alone cannot be
// verified.
func imagesOnlyReason(ev catalog.Event) string {
	if ev.Kind == catalog.KindAMI {
		return "not in the ledger, only on the AMI's tags, which anyone allowed ec2:CreateTags can change"
	}
	return "not in the ledger, only in the image's history, which anyone allowed to push to the repository can change"
}

// imageHistory reads the events r's images hold: the history on each
// version, with the retire events that outlive a container version,
// newest first, and the artifacts they were read from.
func (s *session) imageHistory(r *recipes.Recipe) ([]catalog.Event, []*promote.Artifact, error) {
	all, err := s.loadCatalog([]*recipes.Recipe{r})
	if err != nil {
		return nil, nil, err
	}
	evs := promote.History(all[0])
	for _, a := range all[0] {
		if rs, ok := a.Store.(interface {
			RetiredEvents(context.Context) ([]catalog.Event, error)
		}); ok {
			retired, err := rs.RetiredEvents(s.c.Context)
			if err != nil {
				return nil, nil, err
			}
			evs = promote.MergeHistory(evs, retired)
		}
	}
	return evs, all[0], nil
}
