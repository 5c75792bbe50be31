package tasmota

import (
	"net"
	"unsafe"

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

// abortNow resets c's TCP connection at once, the descriptor left open:
// connect with an AF_UNSPEC address disconnects the socket (the kernel's
// tcp_disconnect), which sends RST and discards everything written and
// not yet acknowledged before the call returns. It reports whether it
// did (false: c already closed, or the call refused). Reads and writes on
// c fail from then on; closing c stays its owner's (paho's) business.
func abortNow(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var errno unix.Errno
	sa := unix.RawSockaddr{Family: unix.AF_UNSPEC}
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	}); err != nil || errno != 0 {
		return false
	}
	return true
}
