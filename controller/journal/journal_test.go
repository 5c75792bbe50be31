package journal

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func open(t *testing.T, dir string) (*Journal, []Record, Recovery) {
	t.Helper()
	j, recs, rec, err := Open(Options{Dir: dir, DeviceID: "dev1", Keep: func(r Record) bool { return r.Type == "code_used" }})
	require.NoError(t, err)
	t.Cleanup(func() { j.Close() })
	return j, recs, rec
}

// threeEvents writes a journal of three events in dir and returns its path
// and content.
func threeEvents(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	j, _, _ := open(t, dir)
	for i := 0; i < 3; i++ {
		_, err := j.AppendEvent(Event{Kind: "k"})
		require.NoError(t, err)
	}
	require.NoError(t, j.Close())
	p := filepath.Join(dir, FileName)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return p, b
}

// ackErr is Ack's error (for require.NoError).
func ackErr(_ bool, err error) error { return err }

func TestAppendReopenOutboxAck(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir)
	e1, err := j.AppendEvent(Event{Kind: "door_opened"})
	require.NoError(t, err)
	e2, err := j.AppendEvent(Event{Kind: "collected", Payload: json.RawMessage(`{"code_id":"c1"}`)})
	require.NoError(t, err)
	require.NotEqual(t, e1.ID, e2.ID)
	require.Len(t, j.Outbox(), 2)
	for _, c := range []struct {
		id        string
		journaled bool
	}{{e1.ID, true}, {e1.ID, false}, {"nonsense", false}} { // a repeated ack writes no second record
		journaled, err := j.Ack(c.id)
		require.NoError(t, err)
		require.Equal(t, c.journaled, journaled, c.id)
	}
	in, err := j.BeginPulse(Intent{Compartment: 3, Board: 0, Channel: 2, Slot: -1, Purpose: "pickup"})
	require.NoError(t, err)
	require.NotZero(t, in.ID)
	require.NoError(t, j.Close())

	j2, recs, rec := open(t, dir)
	require.Equal(t, 4, rec.Records, "2 events, 1 ack, 1 intent")
	require.Len(t, recs, 4)
	require.Zero(t, rec.TornBytes)
	out := j2.Outbox()
	require.Len(t, out, 1)
	require.Equal(t, e2.ID, out[0].ID)
	require.JSONEq(t, `{"code_id":"c1"}`, string(out[0].Payload))
	open := j2.OpenIntents()
	require.Len(t, open, 1)
	require.Equal(t, in.ID, open[0].Intent.ID)
	require.NoError(t, j2.EndPulse(in.ID, true))
	require.Empty(t, j2.OpenIntents())
	require.True(t, j2.Unfinished()[0].Uncertain)
	e3, err := j2.AppendEvent(Event{Kind: "alarm"})
	require.NoError(t, err)
	require.NotContains(t, []string{e1.ID, e2.ID}, e3.ID, "ids never reused after reopen")
}

// Every prefix of a journal file (a power cut at any byte) opens cleanly and
// yields a prefix of the records, never a misread one.
func TestTornTailAtEveryByte(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir)
	var want []string
	for i := 0; i < 3; i++ {
		e, err := j.AppendEvent(Event{Kind: fmt.Sprintf("k%d", i)})
		require.NoError(t, err)
		want = append(want, e.ID)
	}
	require.NoError(t, j.Close())
	full, err := os.ReadFile(filepath.Join(dir, FileName))
	require.NoError(t, err)
	for cut := 0; cut <= len(full); cut++ {
		d := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(d, FileName), full[:cut], 0o600))
		j, recs, rec, err := Open(Options{Dir: d, DeviceID: "dev1"})
		require.NoError(t, err, "cut %d", cut)
		require.False(t, rec.Corrupt, "cut %d: a torn tail is not corruption", cut)
		for i, r := range recs {
			require.Equal(t, want[i], r.Event.ID, "cut %d", cut)
		}
		// The file now ends on a whole record and appends work.
		_, err = j.AppendEvent(Event{Kind: "after"})
		require.NoError(t, err)
		j.Close()
		_, recs2, rec2, err := Open(Options{Dir: d, DeviceID: "dev1"})
		require.NoError(t, err)
		require.Len(t, recs2, len(recs)+1, "cut %d", cut)
		require.Zero(t, rec2.TornBytes)
	}
}

func TestCorruptTail(t *testing.T) {
	dir := t.TempDir()
	p, b := threeEvents(t, dir)

	// A flipped bit in the last record: the CRC catches it; dropped as torn.
	last := append([]byte(nil), b...)
	last[len(last)-5] ^= 0x01
	require.NoError(t, os.WriteFile(p, last, 0o600))
	_, recs, rec := open(t, dir)
	require.Len(t, recs, 2)
	require.Positive(t, rec.TornBytes)

	// A flipped bit in the middle record: reading stops there, the rest is
	// moved aside and reported.
	dir2 := t.TempDir()
	mid := append([]byte(nil), b...)
	mid[len(b)/2] ^= 0x40
	require.NoError(t, os.WriteFile(filepath.Join(dir2, FileName), mid, 0o600))
	_, recs, rec = open(t, dir2)
	require.Len(t, recs, 1)
	require.True(t, rec.Corrupt)
	bad, err := os.ReadFile(rec.BadFile)
	require.NoError(t, err)
	require.NotEmpty(t, bad)

	// Garbage that is valid CRC-less text.
	dir3 := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir3, FileName), []byte("hello world\n{\"type\":\"event\"}\n"), 0o600))
	_, recs, rec = open(t, dir3)
	require.Empty(t, recs)
	require.True(t, rec.Corrupt)
}

func TestCompactKeepsLiveRecords(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir)
	var ids []string
	for i := 0; i < 10; i++ {
		e, err := j.AppendEvent(Event{Kind: "k"})
		require.NoError(t, err)
		ids = append(ids, e.ID)
	}
	for _, id := range ids[:8] {
		require.NoError(t, ackErr(j.Ack(id)))
	}
	openIn, err := j.BeginPulse(Intent{Compartment: 1, Slot: -1, Purpose: "pickup"})
	require.NoError(t, err)
	doneIn, err := j.BeginPulse(Intent{Compartment: 2, Slot: -1, Purpose: "pickup"})
	require.NoError(t, err)
	require.NoError(t, j.EndPulse(doneIn.ID, false))
	data, _ := json.Marshal(map[string]string{"code_id": "abc"})
	_, err = j.Append(Record{Type: "code_used", Data: data})
	require.NoError(t, err)
	_, err = j.Append(Record{Type: "scratch"})
	require.NoError(t, err)
	before := j.Size()
	require.NoError(t, j.Compact())
	require.Less(t, j.Size(), before)
	e, err := j.AppendEvent(Event{Kind: "after"})
	require.NoError(t, err)
	require.NoError(t, j.Close())

	j2, recs, _ := open(t, dir)
	var types []string
	for _, r := range recs {
		types = append(types, r.Type)
	}
	require.Equal(t, []string{"meta", "event", "event", "intent", "intent", "done", "code_used", "event"}, types)
	out := j2.Outbox()
	require.Equal(t, []string{ids[8], ids[9], e.ID}, []string{out[0].ID, out[1].ID, out[2].ID})
	require.Len(t, j2.OpenIntents(), 1)
	require.Equal(t, openIn.ID, j2.OpenIntents()[0].Intent.ID)
	un := j2.Unfinished()
	require.Len(t, un, 2, "a done intent stays until its operation ends")
	require.False(t, un[0].Done)
	require.True(t, un[1].Done)
	require.NoError(t, j2.EndOp(doneIn.ID))
	require.NoError(t, j2.EndOp(openIn.ID))
	require.Empty(t, j2.Unfinished())
	// Sequence numbers continue: no id reuse even if everything was acked.
	for _, id := range append(ids, e.ID) {
		require.NoError(t, ackErr(j2.Ack(id)))
	}
	require.NoError(t, j2.Compact())
	require.NoError(t, j2.Close())
	j3, _, _ := open(t, dir)
	e4, err := j3.AppendEvent(Event{Kind: "later"})
	require.NoError(t, err)
	require.NotContains(t, append(ids, e.ID), e4.ID)
	in, err := j3.BeginPulse(Intent{Slot: -1})
	require.NoError(t, err)
	require.Greater(t, in.ID, doneIn.ID, "command ids keep increasing")
	_, err = os.Stat(filepath.Join(dir, FileName+".tmp"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestClosedAndBadRecords(t *testing.T) {
	j, _, _ := open(t, t.TempDir())
	_, err := j.Append(Record{})
	require.Error(t, err)
	_, err = j.Append(Record{Type: "x", Data: json.RawMessage(`"` + string(make([]byte, 0)) + `"`)})
	require.NoError(t, err)
	big := make([]byte, MaxRecord+10)
	for i := range big {
		big[i] = 'a'
	}
	_, err = j.Append(Record{Type: "x", Data: json.RawMessage(`"` + string(big) + `"`)})
	require.Error(t, err)
	require.NoError(t, j.Close())
	_, err = j.AppendEvent(Event{Kind: "k", At: time.Now()})
	require.ErrorIs(t, err, ErrClosed)
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte("00000000 {}\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		j, _, _, err := Open(Options{Dir: d, DeviceID: "x"})
		if err != nil {
			return
		}
		defer j.Close()
		if _, err := j.AppendEvent(Event{Kind: "k"}); err != nil {
			t.Fatal(err)
		}
	})
}

// A compaction whose rename succeeded but whose directory fsync failed must
// not leave appends going to the old, unlinked file: they would vanish at
// the next start. Appends retry the directory fsync before they count as
// durable; when it fails again the append fails, and what it wrote is cut
// off so that it does not come back at the next start.
func TestCompactDirSyncFailureLosesNothing(t *testing.T) {
	dir := t.TempDir()
	fails := 0
	j, _, _, err := Open(Options{Dir: dir, DeviceID: "dev1", SyncDir: func(d string) error {
		if fails > 0 {
			fails--
			return fmt.Errorf("injected fsync dir failure")
		}
		return syncDir(d)
	}})
	require.NoError(t, err)
	defer j.Close()
	e1, err := j.AppendEvent(Event{Kind: "door_opened"})
	require.NoError(t, err)
	fails = 2
	require.Error(t, j.Compact())
	_, err = j.AppendEvent(Event{Kind: "lost"})
	require.ErrorContains(t, err, "injected", "the directory is still not durable: neither is the append")
	require.Len(t, j.Outbox(), 1, "a failed append is not applied")
	e2, err := j.AppendEvent(Event{Kind: "door_closed"})
	require.NoError(t, err)
	require.Zero(t, fails, "the append synced the directory first")
	require.NoError(t, j.Close())

	j2, recs, rec := open(t, dir)
	require.Zero(t, rec.TornBytes)
	var ids []string
	for _, e := range j2.Outbox() {
		ids = append(ids, e.ID)
	}
	require.Equal(t, []string{e1.ID, e2.ID}, ids)
	for _, r := range recs {
		require.NotEqual(t, "lost", kindOf(r), "a failed append does not come back")
	}
}

func kindOf(r Record) string {
	if r.Event == nil {
		return ""
	}
	return r.Event.Kind
}

// Damage found before the end stays reported (Unsettled) at every Open
// until SettleDamage: a power cut after the damaged records were cut, before
// the caller's response to the damage was durable, must not leave a
// clean-looking journal. The marker is durable before the cut.
func TestDamageUnsettledUntilSettled(t *testing.T) {
	dir := t.TempDir()
	p, b := threeEvents(t, dir)
	b[len(b)/2] ^= 0x40
	require.NoError(t, os.WriteFile(p, b, 0o600))

	// The marker's directory fsync fails: nothing is cut.
	calls := 0
	_, _, _, err := Open(Options{Dir: dir, DeviceID: "dev1", SyncDir: func(d string) error {
		calls++
		if calls == 2 {
			return fmt.Errorf("injected dir fsync failure")
		}
		return syncDir(d)
	}})
	require.Error(t, err)
	after, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, b, after, "nothing cut before the marker is durable")

	j, recs, rec := open(t, dir)
	require.Len(t, recs, 1)
	require.True(t, rec.Corrupt)
	require.True(t, rec.Unsettled)
	bad := filepath.Base(rec.BadFile)
	require.Contains(t, rec.Damage(), bad)
	require.NoError(t, j.Close())

	// Killed before the response: the next Open still reports the damage.
	j, _, rec = open(t, dir)
	require.False(t, rec.Corrupt)
	require.True(t, rec.Unsettled)
	require.Equal(t, bad, rec.BadFile)
	require.Contains(t, rec.Damage(), bad)
	require.NoError(t, j.SettleDamage())
	require.NoError(t, j.SettleDamage(), "settling twice is harmless")
	require.NoError(t, j.Close())

	j, _, rec = open(t, dir)
	require.False(t, rec.Unsettled)
	require.Empty(t, rec.Damage())
	require.NoError(t, j.Close())
}
