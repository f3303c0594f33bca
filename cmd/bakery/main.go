// Command bakery bakes, promotes, launches and retires immutable images.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/bakery-sh/bakery/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}
