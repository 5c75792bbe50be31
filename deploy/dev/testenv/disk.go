package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// SmallDisk mounts a tmpfs of size bytes on a fresh temporary directory
// and returns it, unmounted when the test ends; it skips the test where
// mounting is not allowed (it needs root). Tests of a full disk fill it
// with FillDisk.
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("kluis-test", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// FillDisk writes the file name in dir until its file system is full
// (ENOSPC) and returns the file's path; remove it to make room again.
func FillDisk(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatalf("fill %s: %v", p, err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v, want ENOSPC", p, err)
			}
			return p
		}
	}
}

// TmpfsDir returns a fresh directory on tmpfs (/dev/shm) where there is
// one, else t.TempDir(), removed when the test ends: for tests that sync
// a lot and are not about durability (on a loaded machine's disk an
// fdatasync can take hundreds of milliseconds).
func TmpfsDir(t testing.TB, prefix string) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", prefix); err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}
