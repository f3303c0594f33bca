// Package cli wires bakery's verbs to the library packages with
// urfave/cli/v2: flags, arguments, exit codes and text or JSON rendering.
// It holds no business logic.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/bakery-sh/bakery/internal/awsx"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/bakery-sh/bakery/internal/progress"
	"github.com/bakery-sh/bakery/internal/redact"
	"github.com/bakery-sh/bakery/internal/steps"
	"github.com/bakery-sh/bakery/recipes"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitUnformat = 3 // fmt -check found files to format (as packer fmt -check)
)

// usageError marks errors in how bakery was called (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitError carries an exit code after its message was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// env is the process environment and streams the verbs use; tests pass
// their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string
	now            func() time.Time
	// logMask is the standard logger's output; verbs add the secrets it
	// must hide (a bake: bakeami.Secrets of its recipes).
	logMask *redact.Writer
	// outMask and errMask mask the sensitive values of the recipes
	// loaded (hide adds them) in everything written to stdout and stderr.
	outMask, errMask *redact.Stream
	// unknownCommand is set when the command line named no known verb.
	unknownCommand bool
	// failed is what the running verb noted for its error report.
	failed failure
}

// getenv returns the value of key in the environment.
func (e *env) getenv(key string) string {
	for i := len(e.environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(e.environ[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// globals are the flags every verb shares.
type globals struct {
	json    bool
	quiet   bool
	noColor bool
}

// globalFlags are accepted both before and after the command name
// ("bakery -q bake ..." and "bakery bake -q ..."); each call returns new
// flag values so the app and every command keep their own.
func globalFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "output format: text or json"},
		&ucli.BoolFlag{Name: "no-color", Usage: "disable color in diagnostics (also NO_COLOR=1)"},
		&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print no progress, only results and errors"},
	}
}

// setFlag returns the context nearest the command where name was given,
// so a flag after the command name wins over one before it.
func setFlag(c *ucli.Context, name string) *ucli.Context {
	for _, lc := range c.Lineage() {
		if lc.Command != nil && lc.Command.Name != "" && !hasFlag(lc.Command.Flags, name) {
			continue
		}
		if lc.IsSet(name) {
			return lc
		}
	}
	return c
}

func hasFlag(flags []ucli.Flag, name string) bool {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

func readGlobals(c *ucli.Context) (globals, error) {
	g := globals{quiet: setFlag(c, "quiet").Bool("quiet"), noColor: setFlag(c, "no-color").Bool("no-color")}
	switch o := setFlag(c, "output").String("output"); o {
	case "text", "":
	case "json":
		g.json = true
	default:
		return g, usagef("--output must be text or json, not %q", o)
	}
	return g, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	if u, ok := w.(interface{ Unwrap() io.Writer }); ok {
		w = u.Unwrap()
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// reporter picks the progress display: bars on a terminal, structured
// lines elsewhere, nothing with -q.
func (e *env) reporter(g globals) progress.Reporter {
	switch {
	case g.quiet:
		return progress.Discard()
	case isTerminal(e.stderr):
		return progress.NewTerminal(e.stderr, progress.WithClock(e.now))
	default:
		return progress.NewLines(e.stderr, progress.WithClock(e.now))
	}
}

// color reports whether diagnostics may use color.
func (e *env) color(g globals) bool {
	return !g.noColor && e.getenv("NO_COLOR") == "" && isTerminal(e.stderr)
}

// Version is set at build time with -ldflags "-X github.com/bakery-sh/bakery/internal/cli.Version=v1.2.3".
var Version = "dev"

// Run runs bakery with args (args[0] is the program name) and returns the
// process exit code: 0 on success, 1 on failure, 2 on usage errors.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	return (&env{stdin: stdin, stdout: stdout, stderr: stderr, environ: environ, now: time.Now}).run(ctx, args)
}

// run runs bakery in e (tests make an env with a clock of their own) and
// returns the exit code; see Run.
func (e *env) run(ctx context.Context, args []string) int {
	e.outMask = redact.NewStream(e.stdout, recipes.SensitivePlaceholder)
	e.errMask = redact.NewStream(e.stderr, recipes.SensitivePlaceholder)
	e.stdout, e.stderr = e.outMask, e.errMask
	stderr := e.stderr
	// packer-plugin-sdk logs [DEBUG] lines through the standard logger;
	// they are shown only with BAKERY_DEBUG=1, with secrets masked (the
	// SSH communicator logs each remote command, env values included).
	if e.getenv("BAKERY_DEBUG") != "" {
		e.logMask = redact.NewWriter(stderr)
		log.SetOutput(e.logMask)
		defer e.logMask.Flush()
	} else {
		e.logMask = redact.NewWriter(io.Discard) // collects the secrets only
		log.SetOutput(io.Discard)
	}
	app := newApp(e)
	err := app.RunContext(ctx, interspersed(app, args))
	if err == nil && e.unknownCommand {
		if jsonAsked(args) {
			writeErrorDoc(e.stdout, e.errorDocument(exitUsage, "usage", e.failed.message, false))
		}
		return exitUsage
	}
	if err == nil {
		return exitOK
	}
	return e.report(args, err, ctx.Err() != nil && errors.Is(err, context.Canceled))
}

// cleanupNotice is what a second interrupt prints.
const cleanupNotice = "cleanup in progress, interrupt again to abandon it (bakery sweep will find what is left)"

// abandonGrace is how long RunWithSignals waits, after the third
// interrupt abandoned the cleanup, for Run to report what was left before
// it returns without it. Abandoned cleanups end at once, so Run normally
// returns well within it.
const abandonGrace = 2 * time.Second

// RunWithSignals is Run for the bakery command, with the interrupts
// (SIGINT, SIGTERM) that arrive on sigs handled in three stages:
//
//   - the first cancels Run's context: the run stops and cleans up what it
//     created, on a context of its own (a step line per removal);
//   - the second prints on stderr that the cleanup is in progress and
//     that interrupting again abandons it;
//   - the third abandons the cleanup: the cleanups' contexts end at once
//     (steps.WithAbandon), and RunWithSignals returns Run's exit code as
//     soon as Run has reported what was left, or 1 after a short grace if
//     Run does not return.
//
// It returns Run's exit code.
func RunWithSignals(ctx context.Context, sigs <-chan os.Signal, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	abandon := make(chan struct{})
	ctx, cancel := context.WithCancel(steps.WithAbandon(ctx, abandon))
	defer cancel()
	code := make(chan int, 1)
	go func() { code <- Run(ctx, args, stdin, stdout, stderr, environ) }()
	for n := 1; ; n++ {
		select {
		case c := <-code:
			return c
		case <-sigs:
		}
		switch n {
		case 1:
			cancel()
		case 2:
			fmt.Fprintf(stderr, "bakery: %s\n", cleanupNotice)
		default:
			fmt.Fprintln(stderr, "bakery: abandoning the cleanup; bakery sweep will find what is left")
			close(abandon)
			select {
			case c := <-code:
				return c
			case <-time.After(abandonGrace):
				return exitFailure
			}
		}
	}
}

func newApp(e *env) *ucli.App {
	app := &ucli.App{
		Name:      "bakery",
		Usage:     "bake immutable images and promote them through stages",
		UsageText: "bakery [global options] command [command options] [arguments...]",
		Description: "bakery bakes versioned container images (OCI) and machine images from\n" +
			"recipe files (recipes/*.bake.hcl), and keeps everything it knows on the\n" +
			"images themselves. With no registry configured, images go to the local\n" +
			"OCI layout in .bakery/ (or $BAKERY_HOME).",
		Version:              Version,
		Reader:               e.stdin,
		Writer:               e.stdout,
		ErrWriter:            e.stderr,
		HideVersion:          true,
		EnableBashCompletion: true,
		// Each -var is one name=value, as in Packer: a value may hold
		// commas ("hello, world", '["eu-west-1","ap-southeast-2"]'), so
		// no slice flag splits at them.
		DisableSliceFlagSeparator: true,
		Flags:                     globalFlags(),
		Commands: []*ucli.Command{
			bakeCommand(e),
			adoptCommand(e),
			promoteCommand(e),
			approveCommand(e),
			launchCommand(e),
			fleetsCommand(e),
			rollbackCommand(e),
			statusCommand(e),
			historyCommand(e),
			sbomCommand(e),
			provenanceCommand(e),
			revokeCommand(e, true),
			revokeCommand(e, false),
			outdatedCommand(e),
			serveCommand(e),
			sweepCommand(e),
			iamPolicyCommand(e),
			retireCommand(e),
			validateCommand(e),
			fmtCommand(e),
			versionCommand(e),
		},
		OnUsageError: func(_ *ucli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
		CommandNotFound: func(c *ucli.Context, name string) {
			e.unknownCommand = true
			e.failed.message = fmt.Sprintf("unknown command %q", name)
			fmt.Fprintf(e.stderr, "bakery: unknown command %q\nRun 'bakery --help' for the list of commands.\n", name)
		},
		ExitErrHandler: func(*ucli.Context, error) {}, // exit codes are decided by Run
		Metadata:       map[string]any{"env": e},
	}
	return app
}

// commandVerbs maps each command that calls AWS to the verb whose IAM
// policy covers it (bakery iam-policy VERB).
var commandVerbs = map[string]awsx.Verb{
	"bake": awsx.VerbBake, "adopt": awsx.VerbAdopt,
	"promote": awsx.VerbPromote, "revoke": awsx.VerbPromote, "unrevoke": awsx.VerbPromote, "approve": awsx.VerbPromote,
	"launch": awsx.VerbLaunch, "rollback": awsx.VerbLaunch,
	"retire": awsx.VerbRetire, "sweep": awsx.VerbSweep,
	"status": awsx.VerbStatus, "history": awsx.VerbStatus, "outdated": awsx.VerbStatus, "fleets": awsx.VerbStatus,
	"serve": awsx.VerbStatus, "sbom": awsx.VerbStatus, "provenance": awsx.VerbStatus,
}

// withUsageErrors makes flag errors of a command exit with code 2, and
// adds the global flags so they may also follow the command name.
// It also notes, before the command runs, what its JSON error document
// needs (see env.beforeCommand).
func withUsageErrors(cmd *ucli.Command) *ucli.Command {
	cmd.Flags = append(cmd.Flags, globalFlags()...)
	before := cmd.Before
	cmd.Before = func(c *ucli.Context) error {
		if e, ok := c.App.Metadata["env"].(*env); ok {
			e.beforeCommand(c)
		}
		if v, ok := commandVerbs[cmd.Name]; ok {
			// Its AWS calls are checked against, and explained by, the
			// verb's IAM policy (awsx.Permissions).
			c.Context = awsx.WithVerb(c.Context, v)
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
	cmd.OnUsageError = func(c *ucli.Context, err error, _ bool) error {
		if e, ok := c.App.Metadata["env"].(*env); ok {
			e.failed.command = cmd.Name
		}
		return usageError{fmt.Sprintf("%s: %v", cmd.Name, err)}
	}
	return cmd
}
