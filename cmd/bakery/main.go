// Command bakery bakes, promotes, launches and retires immutable images.
//
// SIGINT and SIGTERM interrupt it: the first stops the run, which cleans
// up what it created; the second says the cleanup is in progress; the
// third abandons the cleanup and exits (see cli.RunWithSignals).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/bakery-sh/bakery/internal/cli"
)

func main() {
	sigs := make(chan os.Signal, 3)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(cli.RunWithSignals(context.Background(), sigs, os.Args, os.Stdin, os.Stdout, os.Stderr, os.Environ()))
}
