//go:build !linux

package journal

import "os"

// datasync is f.Sync (fsync) where fdatasync(2) is not available.
func datasync(f *os.File) error { return f.Sync() }
