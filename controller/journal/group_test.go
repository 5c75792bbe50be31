package journal

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Concurrent writers (events, acks, pulse intents) with compactions in
// between: every append that returned is in the journal after a reopen,
// once, in sequence order, and the in-memory view agrees.
func TestConcurrentAppendsGroupCommit(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir)
	const writers, each = 16, 40
	var (
		mu      sync.Mutex
		events  = map[string]bool{}
		acked   = map[string]bool{}
		intents = map[uint32]bool{}
	)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				switch i % 4 {
				case 3:
					in, err := j.BeginPulse(Intent{Compartment: w, Slot: -1, Purpose: "test"})
					require.NoError(t, err)
					mu.Lock()
					require.False(t, intents[in.ID], "intent ids are unique")
					intents[in.ID] = true
					mu.Unlock()
				default:
					e, err := j.AppendEvent(Event{Kind: fmt.Sprintf("w%d-%d", w, i)})
					require.NoError(t, err)
					if i%4 == 1 {
						// Two callers ack the same event: one record.
						var ag sync.WaitGroup
						for k := 0; k < 2; k++ {
							ag.Add(1)
							go func() { defer ag.Done(); require.NoError(t, ackErr(j.Ack(e.ID))) }()
						}
						ag.Wait()
					}
					mu.Lock()
					events[e.ID] = true
					if i%4 == 1 {
						acked[e.ID] = true
					}
					mu.Unlock()
				}
			}
		}(w)
	}
	stop := make(chan struct{})
	compacted := make(chan int)
	go func() {
		n := 0
		defer func() { compacted <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				require.NoError(t, j.Compact())
				n++
			}
		}
	}()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(2 * time.Minute):
		t.Fatal("appends did not finish: a writer waits for an fsync that never covers it")
	}
	close(stop)
	require.Positive(t, <-compacted)
	out := j.Outbox()
	require.Len(t, out, len(events)-len(acked))
	require.NoError(t, j.Close())

	_, recs, rec := open(t, dir)
	require.False(t, rec.Corrupt)
	require.Zero(t, rec.TornBytes)
	var last uint64
	seenEv, seenAck := map[string]bool{}, map[string]int{}
	for _, r := range recs {
		if r.Type != TypeMeta {
			require.Greater(t, r.Seq, last, "sequence numbers increase in the file")
			last = r.Seq
		}
		switch r.Type {
		case TypeEvent:
			require.False(t, seenEv[r.Event.ID])
			seenEv[r.Event.ID] = true
		case TypeAck:
			seenAck[r.ID]++
		}
	}
	for id := range events {
		if !acked[id] {
			require.True(t, seenEv[id], "unacked event %s kept", id)
		}
	}
	for id, n := range seenAck {
		require.Equal(t, 1, n, "ack %s journaled once", id)
	}
}

// killChildEnv names the journal directory of the child process of
// TestKillDuringAppends.
const killChildEnv = "KLUIS_JOURNAL_KILL_CHILD"

// A real process appends from 8 goroutines (and compacts now and then) and
// prints the id of each event once its append returned; it is killed with
// SIGKILL at a different moment each round. Every id it printed is in the
// journal afterwards, which opens without corruption and keeps appending.
// (SIGKILL leaves the page cache, so this proves the ordering: nothing is
// reported before it is written whole, no compaction drops a pending
// record; the fdatasync before the report is what covers a power cut, and
// TestTornTailAtEveryByte what a power cut leaves.)
func TestKillDuringAppends(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	for round, after := range []int{1, 37, 150, 400} {
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, exe, "-test.run=^TestKillDuringAppends$", "-test.count=1")
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(stdout)
		var printed []string
		acking := map[string]bool{}
		read := func() {
			if id, ok := strings.CutPrefix(sc.Text(), "durable "); ok {
				printed = append(printed, id)
			}
			if id, ok := strings.CutPrefix(sc.Text(), "acking "); ok {
				acking[id] = true
			}
		}
		for len(printed) < after && sc.Scan() {
			read()
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		for sc.Scan() { // what it printed before it died
			read()
		}
		_ = cmd.Wait()
		cancel()
		require.GreaterOrEqual(t, len(printed), after, "round %d: the child appended", round)

		j, recs, rec, err := Open(Options{Dir: dir, DeviceID: "kill"})
		require.NoError(t, err)
		require.False(t, rec.Corrupt, "round %d", round)
		have := map[string]bool{}
		for _, r := range recs {
			if r.Type == TypeEvent {
				have[r.Event.ID] = true
			}
		}
		for _, id := range printed {
			if acking[id] {
				continue
			}
			require.True(t, have[id], "round %d: event %s was reported durable and is gone", round, id)
		}
		_, err = j.AppendEvent(Event{Kind: "after"})
		require.NoError(t, err)
		require.NoError(t, j.Close())
	}
}

func killChild(dir string) {
	j, _, _, err := Open(Options{Dir: dir, DeviceID: "kill"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; ; i++ {
				e, err := j.AppendEvent(Event{Kind: fmt.Sprintf("g%d", g)})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				out.Lock()
				fmt.Fprintf(w, "durable %s\n", e.ID)
				if i%5 == 0 {
					// Acked, then compacted away: the parent does
					// not look for it.
					fmt.Fprintf(w, "acking %s\n", e.ID)
				}
				_ = w.Flush()
				out.Unlock()
				if i%5 == 0 {
					_, _ = j.Ack(e.ID)
				}
			}
		}()
	}
	go func() {
		for {
			time.Sleep(3 * time.Millisecond)
			_ = j.Compact()
		}
	}()
	time.Sleep(30 * time.Second) // killed long before
	os.Exit(3)
}

// BenchmarkAppendParallel measures durable appends from many goroutines
// (kluis-bench journal compares them with raw write + fdatasync).
func BenchmarkAppendParallel(b *testing.B) {
	j, _, _, err := Open(Options{Dir: b.TempDir(), DeviceID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	payload := []byte(`{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","kind":"pickup_completed","at":"2026-12-06T03:24:38Z","document_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c","addr":{"board":0,"channel":7},"method":"qr","offline":true}`)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := j.AppendEvent(Event{Kind: "pickup_completed", Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A record encoded before its number is known (outside the lock) and
// numbered afterwards is byte for byte the record encoded with its number.
func TestEncodedBeforeNumbered(t *testing.T) {
	at := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	for _, r := range []Record{
		{Type: TypeEvent, At: at, Event: &Event{ID: "e1", Kind: "collected", At: at, Payload: []byte(`{"id":"e1"}`)}},
		{Type: TypeAck, At: at, ID: "e1"},
		{Type: "code_used", At: at, Data: []byte(`{"doc":"d"}`)},
	} {
		body, err := encodeBody(r)
		require.NoError(t, err)
		require.True(t, bytes.HasPrefix(body, seqZero))
		for _, seq := range []uint64{1, 42, 1 << 40} {
			r.Seq = seq
			want, err := encodeLine(r)
			require.NoError(t, err)
			require.Equal(t, string(want), string(frame(withSeq(body, seq))))
		}
	}
}

// Concurrent appends while the fdatasync path fails once (a compaction left
// the directory unsynced and its next fsync fails): every append either
// returns an error or is in the journal after a reopen, never both, never
// neither, and the journal goes on.
func TestConcurrentAppendsWithAFailedSync(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	fails := 0
	j, _, _, err := Open(Options{Dir: dir, DeviceID: "dev1", SyncDir: func(d string) error {
		mu.Lock()
		f := fails > 0
		if f {
			fails--
		}
		mu.Unlock()
		if f {
			return fmt.Errorf("injected fsync dir failure")
		}
		return syncDir(d)
	}})
	require.NoError(t, err)
	defer j.Close()
	_, err = j.AppendEvent(Event{Kind: "before"})
	require.NoError(t, err)
	mu.Lock()
	fails = 2 // the compaction's, then the first append fdatasync's
	mu.Unlock()
	require.Error(t, j.Compact())
	const writers = 8
	var wg sync.WaitGroup
	var rmu sync.Mutex
	ok, failed := map[string]bool{}, 0
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				_, err := j.AppendEvent(Event{ID: id, Kind: "k"})
				rmu.Lock()
				if err == nil {
					ok[id] = true
				} else {
					require.ErrorContains(t, err, "injected")
					failed++
				}
				rmu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Positive(t, failed, "the failed fdatasync failed its writers")
	require.Len(t, j.Outbox(), len(ok)+1, "failed appends are not applied")
	require.NoError(t, j.Close())
	_, recs, rec := open(t, dir)
	require.False(t, rec.Corrupt)
	have := map[string]bool{}
	for _, r := range recs {
		if r.Type == TypeEvent && r.Event.Kind == "k" {
			have[r.Event.ID] = true
		}
	}
	require.Equal(t, ok, have, "exactly the appends that returned without error")
}

// BenchmarkOpen measures opening (reading, checking and applying every
// record of) a journal grown to kluisd's compaction threshold (256 KiB since
// kluis-bench start; 4 MiB before), every event acknowledged as the
// backend does when online: the part of kluisd's start, and of its heap,
// that grows with the journal (kluis-bench start measures a fresh one).
func BenchmarkOpen(b *testing.B) {
	for _, size := range []int64{256 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			dir := b.TempDir()
			j, _, _, err := Open(Options{Dir: dir, DeviceID: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			payload := []byte(`{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","kind":"pickup_completed","at":"2026-12-06T03:24:38Z","document_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c","addr":{"board":0,"channel":7},"method":"qr","offline":true}`)
			var wg sync.WaitGroup
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j.Size() < size {
						e, err := j.AppendEvent(Event{Kind: "pickup_completed", Payload: payload})
						if err == nil {
							_, err = j.Ack(e.ID)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err := j.Close(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j, recs, _, err := Open(Options{Dir: dir, DeviceID: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					b.ReportMetric(float64(len(recs)), "records")
				}
				j.Close()
			}
		})
	}
}
