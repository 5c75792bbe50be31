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

// watchdog sends READY=1 as soon as ready is closed (start-up complete),
// then WATCHDOG=1 every interval/2 while healthy() holds (a stuck engine
// stops the pings and systemd restarts kluisd), until ctx ends.
func (n notifier) watchdog(ctx context.Context, interval time.Duration, ready <-chan struct{}, healthy func() bool) {
	if n.socket == "" {
		return
	}
	// Waited for, not polled: systemd counts the start until READY=1, and
	// a polling tick (100 ms, later 5 ms) added up to a tick to every
	// start (kluis-bench start).
	select {
	case <-ctx.Done():
		return
	case <-ready:
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
