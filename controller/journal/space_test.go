package journal

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/deploy/dev/testenv"
)

func reserveSize(t *testing.T, dir string) int64 {
	t.Helper()
	st, err := os.Stat(filepath.Join(dir, ReserveName))
	require.NoError(t, err)
	return st.Size()
}

// The reserve is made at Open, made whole again after a crash left it cut
// short, and never read: a reserve holding a valid journal line adds no
// record.
func TestReserveMadeAndNeverRead(t *testing.T) {
	dir := t.TempDir()
	j, _, _, err := Open(Options{Dir: dir, DeviceID: "d"})
	require.NoError(t, err)
	_, err = j.AppendEvent(Event{ID: "e1", Kind: "k"})
	require.NoError(t, err)
	require.NoError(t, j.Close())
	require.EqualValues(t, DefaultReserve, reserveSize(t, dir))

	line, err := encodeLine(Record{Seq: 99, Type: TypeEvent, Event: &Event{ID: "from-reserve", Kind: "k"}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ReserveName), line, 0o600)) // cut short, and a record in it
	j, recs, rec, err := Open(Options{Dir: dir, DeviceID: "d"})
	require.NoError(t, err)
	require.False(t, rec.Corrupt)
	require.Len(t, recs, 1)
	require.Equal(t, "e1", recs[0].Event.ID)
	require.EqualValues(t, DefaultReserve, reserveSize(t, dir))
	st, _ := j.Space()
	require.False(t, st.Low)
	require.NoError(t, j.Compact())
	require.NoError(t, j.Close())
	_, recs, _, err = Open(Options{Dir: dir, DeviceID: "d", Reserve: 4096})
	require.NoError(t, err)
	require.Len(t, recs, 2) // meta + e1
	require.EqualValues(t, 4096, reserveSize(t, dir), "a smaller reserve is cut to size")
}

// fullDisk is a Write that says the disk is full while full is set and the
// reserve still holds its room (giving it up makes room, as on a real
// file system).
func fullDisk(dir string, full *atomic.Bool) func(*os.File, []byte) (int, error) {
	return func(f *os.File, b []byte) (int, error) {
		if full.Load() {
			if st, err := os.Stat(filepath.Join(dir, ReserveName)); err == nil && st.Size() > 0 {
				return 0, syscall.ENOSPC
			}
		}
		return f.Write(b)
	}
}

// fullDiskOptions are a journal's in dir with an 8 KiB reserve on a disk
// that is full while full is set: writes fail (fullDisk) and the reserve
// cannot be made.
func fullDiskOptions(dir string, full *atomic.Bool) Options {
	return Options{Dir: dir, DeviceID: "d", Reserve: 8 << 10, Write: fullDisk(dir, full),
		Allocate: func(f *os.File, size int64) error {
			if full.Load() {
				return syscall.ENOSPC
			}
			return allocate(f, size)
		}}
}

// A full disk (injected): the record that met it is written in the
// reserve's room, the journal says it is low, new pulse intents are
// refused (the door stays shut), the operation under way ends, acks stop
// at half the reserve, nothing is lost across a reopen, and Restore makes
// the reserve again.
func TestFullDiskUsesReserve(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	o := fullDiskOptions(dir, &full)
	j, _, _, err := Open(o)
	require.NoError(t, err)
	in, err := j.BeginPulse(Intent{Compartment: 1, Purpose: "pickup"})
	require.NoError(t, err)
	st, changed := j.Space()
	require.False(t, st.Low)

	full.Store(true)
	_, err = j.AppendEvent(Event{ID: "outcome", Kind: "pickup_completed"})
	require.NoError(t, err, "the reserve's room takes the outcome")
	require.EqualValues(t, 0, reserveSize(t, dir))
	select {
	case <-changed:
	default:
		t.Fatal("Space's channel not closed when the reserve was given up")
	}
	st, _ = j.Space()
	require.True(t, st.Low)
	require.NoError(t, j.EndOp(in.ID))
	_, err = j.BeginPulse(Intent{Compartment: 2, Purpose: "pickup"})
	require.ErrorIs(t, err, ErrNoSpace)
	require.Empty(t, j.Unfinished())

	// Acks take at most half of the reserve's room.
	var ids []string
	for i := 0; i < 100; i++ {
		e, err := j.AppendEvent(Event{Kind: "alarm"})
		require.NoError(t, err)
		ids = append(ids, e.ID)
	}
	acked := 0
	for _, id := range ids {
		if _, err := j.Ack(id); err != nil {
			require.ErrorIs(t, err, ErrNoSpace)
			break
		}
		acked++
	}
	require.Less(t, acked, len(ids))
	require.Equal(t, len(ids)+1-acked, j.OutboxLen())
	require.ErrorIs(t, j.Restore(), ErrNoSpace, "still full")

	// A restart on the full disk: it opens without a reserve, low.
	require.NoError(t, j.Close())
	j, _, _, err = Open(o)
	require.NoError(t, err)
	st, _ = j.Space()
	require.True(t, st.Low)
	_, err = j.BeginPulse(Intent{Compartment: 2, Purpose: "pickup"})
	require.ErrorIs(t, err, ErrNoSpace)

	full.Store(false)
	require.NoError(t, j.Restore())
	require.EqualValues(t, 8<<10, reserveSize(t, dir))
	st, _ = j.Space()
	require.False(t, st.Low)
	in2, err := j.BeginPulse(Intent{Compartment: 2, Purpose: "pickup"})
	require.NoError(t, err)
	require.NoError(t, j.Close())

	// Everything written on the full disk is there after a reopen.
	_, recs, _, err := Open(o)
	require.NoError(t, err)
	events, acks := 0, 0
	var intents []uint32
	for _, r := range recs {
		switch r.Type {
		case TypeEvent:
			events++
		case TypeAck:
			acks++
		case TypeIntent:
			intents = append(intents, r.Intent.ID)
		}
	}
	require.Equal(t, len(ids)+1, events)
	require.Equal(t, acked, acks)
	require.Equal(t, []uint32{in.ID, in2.ID}, intents)
}

// The same on a real, small file system filled up by something else.
func TestFullTmpfs(t *testing.T) {
	dir := filepath.Join(testenv.SmallDisk(t, 4<<20), "journal")
	o := Options{Dir: dir, DeviceID: "d", Reserve: 256 << 10}
	j, _, _, err := Open(o)
	require.NoError(t, err)
	payload := []byte(`{"id":"x","kind":"pickup_completed","document_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c","addr":{"board":0,"channel":7},"method":"qr","offline":true,"detail":"` + strings.Repeat("p", 250) + `"}`)
	// A journal with much to compact: acked events.
	for i := 0; i < 1500; i++ {
		e, err := j.AppendEvent(Event{Kind: "k", Payload: payload})
		require.NoError(t, err)
		require.NoError(t, ackErr(j.Ack(e.ID)))
	}
	in, err := j.BeginPulse(Intent{Compartment: 1, Purpose: "pickup"})
	require.NoError(t, err)
	filler := testenv.FillDisk(t, filepath.Dir(dir), "filler")

	var kept []string
	for i := 0; i < 50; i++ {
		e, err := j.AppendEvent(Event{Kind: "pickup_completed", Payload: payload})
		require.NoError(t, err, "event %d on a full disk", i)
		kept = append(kept, e.ID)
	}
	st, _ := j.Space()
	require.True(t, st.Low)
	_, err = j.BeginPulse(Intent{Compartment: 2, Purpose: "pickup"})
	require.ErrorIs(t, err, ErrNoSpace)
	require.NoError(t, j.EndOp(in.ID))
	require.ErrorIs(t, j.Restore(), ErrNoSpace, "the disk is still full")

	// Compaction on the full disk: the new file fits in what is left of
	// the reserve's room, the old one's room comes back, and with it the
	// reserve.
	before := j.Size()
	require.NoError(t, j.Compact())
	require.Less(t, j.Size(), before/10)
	require.NoError(t, j.Restore())
	st, _ = j.Space()
	require.False(t, st.Low)
	require.EqualValues(t, 256<<10, reserveSize(t, dir))
	_, err = j.BeginPulse(Intent{Compartment: 2, Purpose: "pickup"})
	require.NoError(t, err)
	require.NoError(t, j.Close())

	// Start-up with no room at all (and no reserve): it opens, reads
	// everything, refuses new intents; room comes back, so does the
	// reserve.
	require.NoError(t, os.Remove(filepath.Join(dir, ReserveName)))
	f2 := testenv.FillDisk(t, filepath.Dir(dir), "filler2")
	j, recs, _, err := Open(o)
	require.NoError(t, err)
	have := map[string]bool{}
	for _, r := range recs {
		if r.Type == TypeEvent {
			have[r.Event.ID] = true
		}
	}
	for _, id := range kept {
		require.True(t, have[id], "event %s written on the full disk is gone", id)
	}
	st, _ = j.Space()
	require.True(t, st.Low)
	_, err = j.BeginPulse(Intent{Compartment: 3, Purpose: "pickup"})
	require.ErrorIs(t, err, ErrNoSpace)
	require.NoError(t, os.Remove(filler))
	require.NoError(t, os.Remove(f2))
	require.NoError(t, j.Restore())
	_, err = j.BeginPulse(Intent{Compartment: 3, Purpose: "pickup"})
	require.NoError(t, err)
	require.NoError(t, j.Close())
}

const fullKillChildEnv = "KLUIS_JOURNAL_FULL_KILL_CHILD"

// kill -9 of a process appending on a full disk: every event it reported
// durable is in the journal afterwards (written in the reserve's room, not
// kept in memory), and no pulse intent got in.
func TestKillOnFullDisk(t *testing.T) {
	if dir := os.Getenv(fullKillChildEnv); dir != "" {
		fullKillChild(dir)
		return
	}
	dir := filepath.Join(testenv.SmallDisk(t, 2<<20), "journal")
	o := Options{Dir: dir, DeviceID: "kill", Reserve: 256 << 10}
	j, _, _, err := Open(o)
	require.NoError(t, err)
	require.NoError(t, j.Close())
	filler := testenv.FillDisk(t, filepath.Dir(dir), "filler")

	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestKillOnFullDisk$", "-test.count=1")
	cmd.Env = append(os.Environ(), fullKillChildEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	var printed, intents []string
	read := func() {
		if id, ok := strings.CutPrefix(sc.Text(), "durable "); ok {
			printed = append(printed, id)
		}
		if id, ok := strings.CutPrefix(sc.Text(), "intent "); ok {
			intents = append(intents, id)
		}
	}
	for len(printed) < 300 && sc.Scan() {
		read()
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	for sc.Scan() {
		read()
	}
	_ = cmd.Wait()
	require.GreaterOrEqual(t, len(printed), 300, "the child appended on the full disk")
	require.Empty(t, intents, "a pulse intent was journaled on a full disk")

	j, recs, rec, err := Open(o)
	require.NoError(t, err)
	require.False(t, rec.Corrupt)
	have := map[string]bool{}
	for _, r := range recs {
		require.NotEqual(t, TypeIntent, r.Type)
		if r.Type == TypeEvent {
			have[r.Event.ID] = true
		}
	}
	for _, id := range printed {
		require.True(t, have[id], "event %s was reported durable and is gone", id)
	}
	st, _ := j.Space()
	require.True(t, st.Low, "the disk is still full")
	require.NoError(t, os.Remove(filler))
	require.NoError(t, j.Restore())
	_, err = j.BeginPulse(Intent{Compartment: 1, Purpose: "pickup"})
	require.NoError(t, err)
	require.NoError(t, j.Close())
}

func fullKillChild(dir string) {
	j, _, _, err := Open(Options{Dir: dir, DeviceID: "kill", Reserve: 256 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; ; i++ {
				if i%7 == 0 {
					if in, err := j.BeginPulse(Intent{Compartment: g + 1, Purpose: "pickup"}); err == nil {
						out.Lock()
						fmt.Fprintf(w, "intent %d\n", in.ID)
						_ = w.Flush()
						out.Unlock()
					}
				}
				e, err := j.AppendEvent(Event{Kind: fmt.Sprintf("g%d", g)})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					return // the reserve's room is used up
				}
				out.Lock()
				fmt.Fprintf(w, "durable %s\n", e.ID)
				_ = w.Flush()
				out.Unlock()
			}
		}()
	}
	time.Sleep(30 * time.Second) // killed long before
	os.Exit(3)
}

// On a full disk (injected ENOSPC) Ack reports journaled only for an ack
// it made durable: a repeated ack of an event acked before, or of an
// unknown id, writes nothing and says so, so that nobody takes it for a
// sign that the journal takes writes again; once the reserve is back a
// new ack is journaled (and is there after a reopen).
func TestAckJournaledOnlyWhenWritten(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	o := fullDiskOptions(dir, &full)
	j, _, _, err := Open(o)
	require.NoError(t, err)
	var ids []string
	for range 100 {
		e, err := j.AppendEvent(Event{Kind: "alarm"})
		require.NoError(t, err)
		ids = append(ids, e.ID)
	}
	journaled, err := j.Ack(ids[0])
	require.NoError(t, err)
	require.True(t, journaled)

	// The disk fills: acks are journaled in the reserve's room until half
	// of it is used, then refused.
	full.Store(true)
	_, err = j.AppendEvent(Event{Kind: "pickup_completed"})
	require.NoError(t, err)
	st, _ := j.Space()
	require.True(t, st.Low)
	refused := -1
	for i, id := range ids[1:] {
		journaled, err := j.Ack(id)
		if err != nil {
			require.ErrorIs(t, err, ErrNoSpace)
			require.False(t, journaled)
			refused = i + 1
			break
		}
		require.True(t, journaled, "ack %d in the reserve's room", i+1)
	}
	require.Positive(t, refused, "acks were never refused")
	size := j.Size()

	// Still full: acks of events acked before (on the full disk or
	// before it) and of unknown ids succeed, but journal nothing.
	for _, id := range []string{ids[0], ids[refused-1], "nonsense"} {
		journaled, err := j.Ack(id)
		require.NoError(t, err, id)
		require.False(t, journaled, "%s: nothing written", id)
	}
	require.Equal(t, size, j.Size(), "no record written")
	journaled, err = j.Ack(ids[refused])
	require.ErrorIs(t, err, ErrNoSpace, "a new ack is still refused")
	require.False(t, journaled)

	// Room again: the refused ack is journaled now.
	full.Store(false)
	require.NoError(t, j.Restore())
	journaled, err = j.Ack(ids[refused])
	require.NoError(t, err)
	require.True(t, journaled)
	journaled, err = j.Ack(ids[refused])
	require.NoError(t, err)
	require.False(t, journaled, "repeated")
	require.NoError(t, j.Close())
	j, _, _, err = Open(o)
	require.NoError(t, err)
	require.Equal(t, len(ids)-refused-1+1, j.OutboxLen(), "the acked events left the outbox; the pickup_completed stays")
	require.NoError(t, j.Close())
}

// A reserve that cannot be made for another reason than a full disk (here
// a directory in its place) leaves the journal low with that cause, which
// DiskFull tells apart from a full disk; once the obstacle is gone,
// Restore makes the reserve.
func TestReserveFailureKeepsItsCause(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, ReserveName), 0o700))
	j, _, _, err := Open(Options{Dir: dir, DeviceID: "d", Reserve: 4096})
	require.NoError(t, err)
	defer j.Close()
	st, _ := j.Space()
	require.True(t, st.Low)
	require.False(t, st.DiskFull(), "%v", st.Cause)
	require.ErrorIs(t, st.Cause, syscall.EISDIR)
	_, err = j.BeginPulse(Intent{Compartment: 1, Purpose: "pickup"})
	require.ErrorIs(t, err, ErrNoSpace, "no door while low, whatever the cause")

	require.Error(t, j.Restore())
	st, _ = j.Space()
	require.ErrorIs(t, st.Cause, syscall.EISDIR)
	require.NoError(t, os.Remove(filepath.Join(dir, ReserveName)))
	require.NoError(t, j.Restore())
	st, _ = j.Space()
	require.False(t, st.Low)
	require.NoError(t, st.Cause)
	require.EqualValues(t, 4096, reserveSize(t, dir))
}
