package journal

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// allocate gives f size bytes of disk blocks (fallocate(2); zeros written
// where the file system does not support it).
func allocate(f *os.File, size int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = unix.Fallocate(int(fd), 0, 0, size)
			if ferr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if errors.Is(ferr, unix.EOPNOTSUPP) || errors.Is(ferr, unix.ENOSYS) {
		return allocateZeros(f, size)
	}
	if ferr != nil {
		return ferr
	}
	// fallocate never shrinks: a reserve larger than wanted (Reserve
	// lowered) is cut to size.
	if st, err := f.Stat(); err == nil && st.Size() > size {
		return f.Truncate(size)
	}
	return nil
}

// freeSpace is the room left to an unprivileged writer in dir's file
// system.
func freeSpace(dir string) (int64, bool) {
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		return 0, false
	}
	return int64(s.Bavail) * int64(s.Bsize), true
}
