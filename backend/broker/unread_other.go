//go:build !linux

package broker

import "net"

// unreadBytes cannot tell the unread bytes here (SIOCINQ is Linux's).
func unreadBytes(net.Conn) (int, bool) { return 0, false }
