//go:build !linux

package tasmota

import "net"

// unacked cannot be read on this system: the driver resets when in doubt.
func unacked(*net.TCPConn) (n int, known bool) { return 0, false }

// abortNow is not available on this system: the reset happens when paho
// closes the connection (SO_LINGER 0), after it noticed the loss.
func abortNow(*net.TCPConn) bool { return false }
