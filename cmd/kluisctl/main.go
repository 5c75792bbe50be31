// Command kluisctl is the command-line tool for Kluis staff and technicians
// over the backend's REST API.
//
//	KLUIS_URL=http://127.0.0.1:8080 kluisctl login an.desmet   # prints a token
//	export KLUIS_TOKEN=kls_...
//	kluisctl documents list -state notified
//	kluisctl -o json documents show 3f0c...
//	kluisctl open kortrijk-1 4 -reason "door stuck"
//
// Run kluisctl help for every command.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
