package broker

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unreadBytes is the number of bytes of conn waiting unread in the
// kernel's receive queue (SIOCINQ); ok is false when it cannot be told.
func unreadBytes(conn net.Conn) (n int, ok bool) {
	sc, isSys := conn.(syscall.Conn)
	if !isSys {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || ierr != nil {
		return 0, false
	}
	return n, true
}
