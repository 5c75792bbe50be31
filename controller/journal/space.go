package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ReserveName is the journal's reserve of disk space inside its directory
// (see "A full disk" in doc.go). It holds zeros and is never read: its
// name does not start with FileName, so it is never taken for a journal,
// a compaction's temporary file or a damaged tail.
const ReserveName = "journal.reserve"

// DefaultReserve is the reserve's size when Options.Reserve is 0: room for
// about 2,000 records (an event is about 500 bytes), many times what the
// operations under way and their alarms need to end.
const DefaultReserve = 1 << 20

// ErrNoSpace is returned, while the journal's reserve is given up (a full
// disk), by what would use the room kept for records that must not be
// lost: a new pulse intent (BeginPulse; a door that is not journaled is
// not opened) and acknowledgements beyond half the reserve (Ack; the event
// stays in the outbox and is sent again).
var ErrNoSpace = errors.New("journal: disk full, reserve in use")

// isNoSpace reports whether err is the file system saying it is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// SpaceState is what Space reports.
type SpaceState struct {
	// Low is true while the reserve is not held: given up to a full disk
	// (or it could not be made at Open). New pulse intents are refused
	// (ErrNoSpace) until Restore makes it again.
	Low bool
	// Reserve is the reserve's size in bytes (0: none configured).
	Reserve int64
	// UsedSinceLow is how many bytes of records were appended since the
	// reserve was given up.
	UsedSinceLow int64
	// Cause is why the journal is low (nil when it is not): the file
	// system's error when it said it was full, or what kept the reserve
	// from being made (at Open or at the last Restore), which may be
	// something else than a full disk (an I/O error, a reserve file
	// kluisd may not write).
	Cause error
}

// DiskFull reports whether the journal is low because its disk is full
// (ENOSPC, EDQUOT, or too little room to make the reserve), not for
// another reason (Cause).
func (s SpaceState) DiskFull() bool {
	return s.Low && (s.Cause == nil || isNoSpace(s.Cause) || errors.Is(s.Cause, ErrNoSpace))
}

// Space returns the journal's space state and a channel closed when it
// next changes.
func (j *Journal) Space() (SpaceState, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return SpaceState{Low: j.low, Reserve: j.reserve, UsedSinceLow: j.lowUsed, Cause: j.lowCause}, j.spaceWake
}

// setLowLocked changes the space state (cause: why it is low) and wakes
// Space's watchers. j.mu held.
func (j *Journal) setLowLocked(low bool, cause error) {
	if !low {
		cause = nil
	}
	if j.low == low {
		j.lowCause = cause
		return
	}
	j.low, j.lowUsed, j.lowCause = low, 0, cause
	close(j.spaceWake)
	j.spaceWake = make(chan struct{})
}

func (j *Journal) reservePath() string { return filepath.Join(j.o.Dir, ReserveName) }

// makeReserve allocates the reserve file in full (idempotent: a reserve
// left whole or half made by a crash is completed) and makes it durable.
// On failure the file is cut to nothing, so a half-made reserve does not
// take room the journal's records need.
func (j *Journal) makeReserve() error {
	p := j.reservePath()
	_, statErr := os.Lstat(p)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("journal: reserve: %w", err)
	}
	err = j.o.Allocate(f, j.reserve)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		_ = f.Truncate(0)
		_ = f.Sync()
		_ = f.Close()
		return fmt.Errorf("journal: reserve of %d bytes: %w", j.reserve, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("journal: reserve: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// Only the reserve's own name: were it lost by a power cut,
		// Open would make it again.
		return j.o.SyncDir(j.o.Dir)
	}
	return nil
}

// releaseLocked gives the reserve's room to the journal after the disk
// said it is full (cause): the reserve file is cut to nothing and the cut
// made durable (a file system frees the blocks once the cut is committed).
// It reports whether the reserve was held, i.e. whether writing again is
// worth it. j.mu held.
func (j *Journal) releaseLocked(cause error) bool {
	if j.low || j.reserve <= 0 {
		return false
	}
	f, err := os.OpenFile(j.reservePath(), os.O_RDWR|os.O_TRUNC, 0o600)
	if err == nil {
		err = f.Sync()
		_ = f.Close()
	}
	if errors.Is(err, os.ErrNotExist) {
		err = nil // gone already (removed by hand): nothing to free
	}
	j.setLowLocked(true, cause)
	j.releases++
	j.log.Error("journal: disk full: reserve released for the records that must be kept; no new door operation until there is room again",
		"reserve_bytes", j.reserve, "cause", cause, "release_err", err)
	return true
}

// freeReserve cuts a reserve file left by an earlier run to nothing, made
// durable, before the journal is open (Open's copy of a damaged tail on a
// full disk); it reports whether it freed any room.
func (j *Journal) freeReserve() bool {
	if j.reserve <= 0 {
		return false
	}
	st, err := os.Stat(j.reservePath())
	if err != nil || st.Size() == 0 {
		return false
	}
	f, err := os.OpenFile(j.reservePath(), os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return false
	}
	err = f.Sync()
	_ = f.Close()
	j.log.Error("journal: disk full: reserve released for the damaged records' copy", "reserve_bytes", st.Size(), "sync_err", err)
	return true
}

// Restore makes the reserve again once the disk has room for it and as
// much again (so that the next record does not give it up at once). It
// returns nil when the reserve is held (or none is configured) and
// ErrNoSpace, possibly with the file system's error, when not.
func (j *Journal) Restore() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	if !j.low {
		return nil
	}
	if free, ok := freeSpace(j.o.Dir); ok && free < 2*j.reserve {
		err := fmt.Errorf("%w: %d bytes free, %d needed to make the reserve", ErrNoSpace, free, 2*j.reserve)
		j.setLowLocked(true, err)
		return err
	}
	if err := j.makeReserve(); err != nil {
		// Not necessarily a full disk: the cause is kept as it is (Space).
		j.setLowLocked(true, err)
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	j.setLowLocked(false, nil)
	j.log.Info("journal: reserve made again: door operations may start", "reserve_bytes", j.reserve)
	return nil
}

// allocateZeros writes size zero bytes into f from its start (where
// fallocate is not available).
func allocateZeros(f *os.File, size int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() > size {
		if err := f.Truncate(size); err != nil {
			return err
		}
	}
	zero := make([]byte, 64<<10)
	for off := int64(0); off < size; {
		n := min(int64(len(zero)), size-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}
