package daemon

import (
	"context"
	"fmt"
	"net"
	"time"
)

// notifier speaks systemd's sd_notify protocol (a datagram to
// $NOTIFY_SOCKET) without any library: READY=1 once start-up is complete,
// WATCHDOG=1 at half the watchdog interval while the engine is healthy,
// STOPPING=1 on shutdown. An empty socket disables it.
type notifier struct {
	socket string
}

func (n notifier) send(state string) error {
	if n.socket == "" {
		return nil
	}
	name := n.socket
	if name[0] == '@' {
		name = "\x00" + name[1:] // abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// watchdog sends READY=1 when ready() first holds, then WATCHDOG=1 every
// interval/2 while healthy() holds (a stuck engine stops the pings and
// systemd restarts kluisd), until ctx ends.
func (n notifier) watchdog(ctx context.Context, interval time.Duration, ready, healthy func() bool) {
	if n.socket == "" {
		return
	}
	// Looked at every 5 ms: kluisd is ready a few milliseconds after its
	// start, and systemd counts the start until READY=1 (a 100 ms tick
	// made a 10 ms start look like 110 ms: kluis-bench tap).
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !ready() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	_ = n.send("READY=1")
	if interval <= 0 {
		return
	}
	pt := time.NewTicker(interval / 2)
	defer pt.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pt.C:
			if healthy() {
				_ = n.send("WATCHDOG=1")
			}
		}
	}
}
