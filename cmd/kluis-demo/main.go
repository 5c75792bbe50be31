// Command kluis-demo runs the whole Kluis system on one machine and scripts
// a night at the city hall: see docs/demo.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
