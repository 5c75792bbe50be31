package link

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/journal"
	"kluis/controller/wire"
)

// records keeps the log records at Info and above.
type records struct {
	mu  sync.Mutex
	got []slog.Record
}

func (h *records) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.got = append(h.got, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

// take returns the records since the last take.
func (h *records) take() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.got
	h.got = nil
	return r
}

func attr(r slog.Record, key string) (slog.Value, bool) {
	var v slog.Value
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v, found = a.Value, true
			return false
		}
		return true
	})
	return v, found
}

// ackMsg is an ack from the backend as the MQTT client hands it over.
type ackMsg struct {
	topic   string
	payload []byte
}

func (m ackMsg) Duplicate() bool   { return false }
func (m ackMsg) Qos() byte         { return 1 }
func (m ackMsg) Retained() bool    { return false }
func (m ackMsg) Topic() string     { return m.topic }
func (m ackMsg) MessageID() uint16 { return 1 }
func (m ackMsg) Payload() []byte   { return m.payload }
func (m ackMsg) Ack()              {}

// While the disk is full the journal refuses acks, and the backend acks
// every batch again all night: "journal ack failed" is logged at Error
// the first time, then at most once a minute with the number left out,
// and "journal acks work again" at Info once an ack is journaled again
// (not when a repeated ack, which writes nothing, succeeds).
func TestAckFailuresLoggedOncePerMinute(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	j, _, _, err := journal.Open(journal.Options{Dir: dir, DeviceID: "ack-log", Reserve: 8 << 10, Logger: slog.New(slog.DiscardHandler),
		Write: func(f *os.File, b []byte) (int, error) {
			if full.Load() {
				if st, err := os.Stat(filepath.Join(dir, journal.ReserveName)); err == nil && st.Size() > 0 {
					return 0, syscall.ENOSPC
				}
			}
			return f.Write(b)
		},
		Allocate: func(f *os.File, size int64) error {
			if full.Load() {
				return syscall.ENOSPC
			}
			return f.Truncate(size)
		}})
	require.NoError(t, err)
	t.Cleanup(func() { j.Close() })

	var mu sync.Mutex
	now := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	logs := &records{}
	l, err := New(Options{URL: "tcp://127.0.0.1:1", DeviceID: "ack-log", Journal: j, Clock: clock, Logger: slog.New(logs)})
	require.NoError(t, err)
	ack := func(ids ...string) {
		b, err := wire.Encode(&wire.Ack{IDs: ids})
		require.NoError(t, err)
		l.onMessage(nil, ackMsg{topic: l.topic(wire.KindAck), payload: b})
	}

	// An event acked while there is room.
	early, err := j.AppendEvent(journal.Event{Kind: "alarm"})
	require.NoError(t, err)
	ack(early.ID)
	require.Empty(t, logs.take())

	// The disk fills: the reserve's room takes the events, acks stop at
	// half of it.
	full.Store(true)
	var ids []string
	for range 200 {
		e, err := j.AppendEvent(journal.Event{Kind: "alarm"})
		require.NoError(t, err)
		ids = append(ids, e.ID)
	}
	st, _ := j.Space()
	require.True(t, st.Low)
	for {
		ack(ids[0])
		if j.OutboxLen() == len(ids) { // refused: it stays in the outbox
			break
		}
		require.Empty(t, logs.take(), "a journaled ack is not logged")
		ids = ids[1:]
		require.NotEmpty(t, ids, "acks were never refused")
	}
	got := logs.take()
	require.Len(t, got, 1, "the first refusal")
	require.Equal(t, slog.LevelError, got[0].Level)
	require.Equal(t, "journal ack failed", got[0].Message)

	// The backend repeats an ack the journal took before the disk
	// filled: nothing is written, the disk is still full, and "journal
	// acks work again" would be a lie.
	ack(early.ID)
	require.Empty(t, logs.take(), "a repeated ack proves nothing")

	// The backend acks again and again, every 5 s for 10 minutes: a line
	// a minute, counting the refusals left out since the last one.
	advance(time.Second)
	ack(ids...)
	require.Empty(t, logs.take(), "a second refusal within the minute")
	var left []int64
	for range 10 * 12 {
		advance(5 * time.Second)
		ack(ids...)
		for _, r := range logs.take() {
			require.Equal(t, slog.LevelError, r.Level)
			require.Equal(t, "journal ack failed", r.Message)
			n, ok := attr(r, "suppressed")
			require.True(t, ok, "the line counts the refusals left out")
			left = append(left, n.Int64())
		}
	}
	// At +61 s (12 left out: +1 s, +6 s ... +56 s), then every 60 s (11).
	require.Equal(t, []int64{12, 11, 11, 11, 11, 11, 11, 11, 11, 11}, left)
	advance(5 * time.Second)
	ack(ids...)
	require.Empty(t, logs.take())

	// The disk has room again: the next ack works, said once at Info.
	advance(5 * time.Second)
	full.Store(false)
	require.NoError(t, j.Restore())
	ack(ids[0])
	got = logs.take()
	require.Len(t, got, 1)
	require.Equal(t, slog.LevelInfo, got[0].Level)
	require.Equal(t, "journal acks work again", got[0].Message)
	n, ok := attr(got[0], "suppressed")
	require.True(t, ok)
	require.EqualValues(t, 1, n.Int64(), "the refusal since the last line")
	ack(ids[1:]...)
	require.Empty(t, logs.take(), "working acks are not logged")
	require.Equal(t, 0, j.OutboxLen())
}
