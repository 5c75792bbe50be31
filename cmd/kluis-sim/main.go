// Command kluis-sim stands in for the physical world: simulated lock boards
// on pseudo-terminals (Kluis protocol, Kerong CU16), Tasmota relay modules on
// an MQTT broker, whole fleets from a YAML file, and a control API to script
// people and faults. See simulator/README.md; the command line itself is
// simulator/simcli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"kluis/simulator/simcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := simcli.Main(ctx, os.Args[1:], simcli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
