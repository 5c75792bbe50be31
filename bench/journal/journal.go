// Package journal is kluis-bench's "journal" subcommand: durable appends per
// second of kluisd's journal (controller/journal, group commit) against its
// floor, a raw write + fdatasync of the same record bytes to a file in the
// same directory, at 1, 4 and 16 concurrent writers.
//
// Each round runs every writer count twice, journal and raw, for -duration
// each, alternating which goes first, so both see the same machine; the
// figures are the medians over the rounds. Kluis's figure counts appends
// that returned (each durable: its fdatasync had completed); the floor
// counts write+fdatasync pairs, each writer issuing its own, as a program
// without a journal would. The goal (issue 14) is 0.6 of the floor at 4 and
// 16 writers.
package journal

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"kluis/bench"
	kj "kluis/controller/journal"
	"kluis/controller/wire"
)

// Goal is the ratio to the floor aimed for at 4 and more writers.
const Goal = 0.6

type options struct {
	writers  []int
	duration time.Duration
	rounds   int
	dir      string
}

func parse(args []string) (options, string, error) {
	fs := flag.NewFlagSet("journal", flag.ContinueOnError)
	ws := fs.String("writers", "1,4,16", "comma-separated writer counts")
	dur := fs.Duration("duration", 3*time.Second, "measured time of one phase")
	rounds := fs.Int("rounds", 3, "rounds (each runs every count, journal and raw, interleaved)")
	dir := fs.String("dir", os.TempDir(), "directory under which the journals and raw files are made (kluisd's journal_dir is on the same kind of disk)")
	if err := fs.Parse(args); err != nil {
		return options{}, "", err
	}
	o := options{duration: *dur, rounds: *rounds, dir: *dir}
	var err error
	if o.writers, err = bench.ParseCounts(*ws, 256); err != nil {
		return options{}, "", fmt.Errorf("journal: -writers: %w", err)
	}
	if o.rounds < 1 || o.duration < 100*time.Millisecond {
		return options{}, "", errors.New("journal: want -rounds >= 1, -duration >= 100ms")
	}
	cmd := fmt.Sprintf("go run ./cmd/kluis-bench journal -writers %s -duration %s -rounds %d", *ws, o.duration, o.rounds)
	if *dir != os.TempDir() {
		cmd += " -dir " + *dir
	}
	return o, cmd, nil
}

// phase is what one timed run measured.
type phase struct {
	ops  int64
	secs float64
	lat  []time.Duration // one per operation, merged over writers
	// syncs are the fdatasyncs issued (the journal's, or one per raw op).
	syncs uint64
	// cpu is the process's CPU time (user + system) during the phase.
	cpu time.Duration
}

// cpuTime is the process's CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (p phase) rate() float64 { return float64(p.ops) / p.secs }

// Run measures; see the package doc.
func Run(ctx context.Context, env bench.Env, args []string) (bench.Report, error) {
	o, cmd, err := parse(args)
	if err != nil {
		return bench.Report{}, err
	}
	if env.Out == nil {
		env.Out = io.Discard
	}
	ev := sampleEvent()
	line, err := recordLine(o.dir, ev)
	if err != nil {
		return bench.Report{}, err
	}
	type key struct {
		n   int
		raw bool
	}
	got := map[key][]phase{}
	for r := 0; r < o.rounds; r++ {
		for _, n := range o.writers {
			order := []bool{false, true}
			if (r+n)%2 == 1 {
				order = []bool{true, false}
			}
			for _, raw := range order {
				if err := ctx.Err(); err != nil {
					return bench.Report{}, err
				}
				var p phase
				if raw {
					p, err = runRaw(ctx, o.dir, n, o.duration, line)
				} else {
					p, err = runJournal(ctx, o.dir, n, o.duration, ev)
				}
				if err != nil {
					return bench.Report{}, err
				}
				got[key{n, raw}] = append(got[key{n, raw}], p)
				what := "journal"
				if raw {
					what = "raw"
				}
				fmt.Fprintf(env.Out, "journal: round %d, %d writers, %s: %.0f/s\n", r+1, n, what, p.rate())
			}
		}
	}
	rep := bench.Report{Name: "journal", Command: cmd,
		Params: map[string]any{"writers": o.writers, "duration": o.duration.String(), "rounds": o.rounds, "record_bytes": len(line)}}
	for _, n := range o.writers {
		js, rs := got[key{n, false}], got[key{n, true}]
		var jr, rr []float64
		var jl, rl []time.Duration
		var ratios []string
		var ops, syncs, rops uint64
		var jcpu, rcpu time.Duration
		for i := range js {
			ops, syncs = ops+uint64(js[i].ops), syncs+js[i].syncs
			rops, jcpu, rcpu = rops+uint64(rs[i].ops), jcpu+js[i].cpu, rcpu+rs[i].cpu
			jr, rr = append(jr, js[i].rate()), append(rr, rs[i].rate())
			jl, rl = append(jl, js[i].lat...), append(rl, rs[i].lat...)
			ratios = append(ratios, fmt.Sprintf("%.2f", js[i].rate()/rs[i].rate()))
		}
		f := bench.Figure{Name: fmt.Sprintf("journal durable appends/s, %d writers", n), Unit: "1/s",
			Value: bench.Median(jr), Floor: bench.Median(rr),
			Notes: fmt.Sprintf("median of %d rounds (ratio per round %s); %.2f appends per journal fdatasync; CPU per append %s, per raw write+fdatasync %s; append latency p50 %s p99 %s, raw p50 %s p99 %s",
				len(js), strings.Join(ratios, ", "), float64(ops)/float64(max(syncs, 1)),
				us(jcpu/time.Duration(max(ops, 1))), us(rcpu/time.Duration(max(rops, 1))),
				ms(bench.Percentile(jl, 50)), ms(bench.Percentile(jl, 99)),
				ms(bench.Percentile(rl, 50)), ms(bench.Percentile(rl, 99)))}
		if n >= 4 {
			f.Goal = Goal
		}
		rep.Figures = append(rep.Figures, f)
	}
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("record: a pickup_completed event of %d bytes as the journal writes it (CRC, JSON, newline); the floor writes the same bytes with O_APPEND and fdatasyncs after each write, every writer on its own", len(line)),
		"the journal's appends share fdatasyncs (group commit); each counted append had returned, so its record was durable")
	return rep, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// sampleEvent is a pickup_completed event as kluisd journals it.
func sampleEvent() kj.Event {
	now := time.Now().UTC()
	we := wire.Event{ID: wire.NewID(now), Kind: wire.EvPickupCompleted, At: now, DocumentID: wire.NewID(now),
		Addr: &wire.Address{Board: 0, Channel: 7}, Method: wire.MethodQR, Offline: true,
		CodeRef: "5B1g_gZs3Tc_JlqNwLDYT832Axi2peKvc3F_WZms2Yc"}
	payload, _ := json.Marshal(we)
	return kj.Event{ID: we.ID, Kind: string(we.Kind), At: now, Payload: payload}
}

// recordLine returns the bytes the journal writes for ev (appended to a
// scratch journal and read back).
func recordLine(parent string, ev kj.Event) ([]byte, error) {
	dir, err := os.MkdirTemp(parent, "kluis-bench-journal-")
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	defer os.RemoveAll(dir)
	j, _, _, err := kj.Open(kj.Options{Dir: dir, DeviceID: "bench", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	if _, err := j.AppendEvent(ev); err != nil {
		j.Close()
		return nil, err
	}
	if err := j.Close(); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, kj.FileName))
}

// workers runs n writers calling op until d has passed (or ctx ends) and
// returns what they did.
func workers(ctx context.Context, n int, d time.Duration, op func(w int, i int64) error) (phase, error) {
	var (
		ops   atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		lat   []time.Duration
		first error
	)
	start, cpu0 := time.Now(), cpuTime()
	deadline := start.Add(d)
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			for i := int64(0); ctx.Err() == nil; i++ {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				if err := op(w, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					break
				}
				mine = append(mine, time.Since(t0))
				ops.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return phase{ops: ops.Load(), secs: time.Since(start).Seconds(), lat: lat, cpu: cpuTime() - cpu0}, first
}

func runJournal(ctx context.Context, parent string, n int, d time.Duration, ev kj.Event) (phase, error) {
	dir, err := os.MkdirTemp(parent, "kluis-bench-journal-")
	if err != nil {
		return phase{}, fmt.Errorf("journal: %w", err)
	}
	defer os.RemoveAll(dir)
	j, _, _, err := kj.Open(kj.Options{Dir: dir, DeviceID: "bench", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return phase{}, err
	}
	defer j.Close()
	p, err := workers(ctx, n, d, func(w int, i int64) error {
		e := ev
		// Same length as ev.ID: the record stays the same size.
		e.ID = fmt.Sprintf("%0*x", len(ev.ID), uint64(w)<<40|uint64(i))
		_, err := j.AppendEvent(e)
		return err
	})
	if err != nil {
		return p, fmt.Errorf("journal: append: %w", err)
	}
	p.syncs = j.Syncs()
	return p, j.Close()
}

func runRaw(ctx context.Context, parent string, n int, d time.Duration, line []byte) (phase, error) {
	dir, err := os.MkdirTemp(parent, "kluis-bench-journal-")
	if err != nil {
		return phase{}, fmt.Errorf("journal: %w", err)
	}
	defer os.RemoveAll(dir)
	f, err := os.OpenFile(filepath.Join(dir, "raw.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return phase{}, fmt.Errorf("journal: raw: %w", err)
	}
	defer f.Close()
	fd := int(f.Fd())
	p, err := workers(ctx, n, d, func(int, int64) error {
		if _, err := unix.Write(fd, line); err != nil {
			return err
		}
		return unix.Fdatasync(fd)
	})
	if err != nil {
		return p, fmt.Errorf("journal: raw write+fdatasync: %w", err)
	}
	return p, nil
}
