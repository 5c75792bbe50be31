package tasmota

import (
	"net"

	"golang.org/x/sys/unix"
)

// unacked returns how many bytes written to c the other end has not
// acknowledged yet (SIOCOUTQ); known is false when it cannot be read (c
// closed).
func unacked(c *net.TCPConn) (n int, known bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || ierr != nil {
		return 0, false
	}
	return n, true
}
