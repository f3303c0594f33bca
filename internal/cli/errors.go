package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	ucli "github.com/urfave/cli/v2"

	"github.com/bakery-sh/bakery/recipes"
)

// errorDoc is the JSON document a failing verb prints on stdout with
// --output json, as well as its message on stderr. Its fields are the
// same for every verb (README: "JSON on failure").
type errorDoc struct {
	Error errorBody `json:"error"`
}

// errorBody describes one failure.
type errorBody struct {
	// Message is the error as stderr shows it, without "bakery: ".
	Message string `json:"message"`
	// Kind is "usage" (exit 2: how bakery was called), "recipe" (the
	// recipe files have errors: see Diagnostics), "interrupted" or
	// "failure".
	Kind string `json:"kind"`
	// ExitCode is the process exit code.
	ExitCode int `json:"exit_code"`
	// Command is the verb that failed ("bake", "promote"), empty when
	// none was named.
	Command string `json:"command,omitempty"`
	// Recipe and Version name the image the verb was given
	// (RECIPE@VERSION, or RECIPE alone), when it was given one.
	Recipe  string `json:"recipe,omitempty"`
	Version string `json:"version,omitempty"`
	// File, Line and Column point at the first error in a recipe file,
	// when the failure is about one.
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	// Hint says what to do, when it is separate from Message.
	Hint string `json:"hint,omitempty"`
	// Diagnostics are every problem found in the recipe files (kind
	// "recipe"), errors and warnings, in file order.
	Diagnostics []diagnosticDoc `json:"diagnostics,omitempty"`
}

// diagnosticDoc is one recipe diagnostic.
type diagnosticDoc struct {
	// Severity is "error" or "warning".
	Severity string `json:"severity"`
	// Summary is the one-line problem, Detail what to do about it.
	Summary string `json:"summary"`
	Detail  string `json:"detail,omitempty"`
	// File, Line and Column are where it starts (1-based).
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

// failure is what the verb that is running learnt about its own failure
// before returning it: the command, the image it was given, and the
// diagnostics it printed.
type failure struct {
	// json is whether the verb was asked for --output json; jsonKnown
	// whether it read its flags.
	json, jsonKnown bool
	command         string
	recipe          string
	version         string
	diags           hcl.Diagnostics
	// message is the last line the verb printed before it returned an
	// exitError (its own summary of what failed).
	message string
}

// writeDiagnostics prints diags on stderr (see recipes.Loader) and keeps
// them for the JSON error document.
func (e *env) writeDiagnostics(l *recipes.Loader, diags hcl.Diagnostics, g globals) error {
	e.failed.diags = append(e.failed.diags, diags...)
	return l.WriteDiagnostics(e.stderr, diags, e.color(g))
}

// noteFailure prints "bakery: MESSAGE" on stderr and keeps MESSAGE for
// the JSON error document of the exitError the verb then returns.
func (e *env) noteFailure(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.failed.message = msg
	fmt.Fprintf(e.stderr, "bakery: %s\n", msg)
}

// beforeCommand records, before a verb runs, what its JSON error
// document needs: whether JSON was asked for and the image it names.
func (e *env) beforeCommand(c *ucli.Context) {
	e.failed.command = c.Command.Name
	if g, err := readGlobals(c); err == nil {
		e.failed.json = g.json
		e.failed.jsonKnown = true
	}
	arg := c.Args().First()
	if r, v, ok := strings.Cut(arg, "@"); ok && r != "" && v != "" {
		e.failed.recipe, e.failed.version = r, v
		return
	}
	if arg != "" && (strings.HasPrefix(c.Command.ArgsUsage, "RECIPE ") || strings.HasPrefix(c.Command.ArgsUsage, "[RECIPE]") || c.Command.ArgsUsage == "RECIPE") &&
		!strings.HasSuffix(arg, ".hcl") && !strings.Contains(arg, "/") {
		e.failed.recipe = arg
	}
}

// jsonAsked reports whether args ask for --output json, for failures
// found before a verb read its flags (an unknown flag or command).
func jsonAsked(args []string) bool {
	asked := false
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return asked
		case a == "--output" || a == "-o" || a == "-output":
			if i+1 < len(args) {
				asked = args[i+1] == "json"
				i++
			}
		case strings.HasPrefix(a, "--output="), strings.HasPrefix(a, "-o="), strings.HasPrefix(a, "-output="):
			_, v, _ := strings.Cut(a, "=")
			asked = v == "json"
		}
	}
	return asked
}

// positionRE finds a recipe position in a message: FILE.hcl:LINE,COL (as
// diagnostics print it) or FILE.hcl:LINE:COL.
var positionRE = regexp.MustCompile(`([^\s"'(]+\.hcl):(\d+)[,:](\d+)`)

// errorDocument builds the JSON error document of a failure with the
// given exit code, kind and message. The diagnostics the verb printed are
// listed; when they are what failed (printed is true: the verb printed
// its messages and returned an exitError, and an error is among them),
// the kind is "recipe", the position is the first error's and, unless
// the verb summed the failure up itself, so is the message.
func (e *env) errorDocument(code int, kind, msg string, printed bool) errorDoc {
	f := e.failed
	b := errorBody{Message: msg, Kind: kind, ExitCode: code, Command: f.command, Recipe: f.recipe, Version: f.version}
	var first *hcl.Diagnostic
	for _, d := range f.diags {
		dd := diagnosticDoc{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			dd.Severity = "warning"
		} else if first == nil {
			first = d
		}
		if d.Subject != nil {
			dd.File, dd.Line, dd.Column = d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column
		}
		b.Diagnostics = append(b.Diagnostics, dd)
	}
	if first != nil && printed {
		b.Kind, b.Hint = "recipe", first.Detail
		if f.message == "" {
			b.Message = first.Summary
		}
		if first.Subject != nil {
			b.File, b.Line, b.Column = first.Subject.Filename, first.Subject.Start.Line, first.Subject.Start.Column
		}
	}
	if b.File == "" {
		if m := positionRE.FindStringSubmatch(b.Message); m != nil {
			b.File = m[1]
			b.Line, _ = strconv.Atoi(m[2])
			b.Column, _ = strconv.Atoi(m[3])
		}
	}
	if kind == "usage" {
		b.Hint = "run 'bakery --help' for usage"
		if f.command != "" {
			b.Hint = fmt.Sprintf("run 'bakery %s --help' for usage", f.command)
		}
	}
	return errorDoc{Error: b}
}

// report prints err, the failure of a run, on stderr (and, with --output
// json, as a JSON error document on stdout) and returns the exit code.
func (e *env) report(args []string, err error, interrupted bool) int {
	code, kind, msg := exitFailure, "failure", ""
	var ee exitError
	var ue usageError
	switch {
	case errors.As(err, &ee):
		// The verb printed its messages already.
		code, msg = ee.code, e.failed.message
		if msg == "" {
			msg = "failed; see the messages on standard error"
		}
	case errors.As(err, &ue):
		code, kind, msg = exitUsage, "usage", ue.msg
		fmt.Fprintf(e.stderr, "bakery: %s\nRun 'bakery --help' for usage.\n", ue.msg)
	case interrupted:
		kind, msg = "interrupted", "interrupted: "+err.Error()
		fmt.Fprintf(e.stderr, "bakery: %s\n", msg)
	default:
		msg = err.Error()
		fmt.Fprintf(e.stderr, "bakery: %v\n", err)
	}
	wantJSON := e.failed.json
	if !e.failed.jsonKnown {
		wantJSON = jsonAsked(args)
	}
	// Exit 3 is an answer (outdated, fmt -check), not a failure: the
	// verb printed its own document.
	if wantJSON && code != exitUnformat {
		writeErrorDoc(e.stdout, e.errorDocument(code, kind, msg, errors.As(err, &ee)))
	}
	return code
}

// writeErrorDoc writes doc as one JSON line.
func writeErrorDoc(w io.Writer, doc errorDoc) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(doc) // stdout is gone: stderr has the message
}
