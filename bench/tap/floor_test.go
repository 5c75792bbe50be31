package tap

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseStatFaults(t *testing.T) {
	// A command name with spaces and a parenthesis: fields are counted
	// after the last ')'.
	line := "4242 (kl (u) isd) S 1 4242 4242 0 -1 4194560 1187 3 2 0 12 5 0 0 20 0 9 0 100 1234 567\n"
	minflt, majflt, err := parseStatFaults(line)
	require.NoError(t, err)
	require.Equal(t, int64(1187), minflt)
	require.Equal(t, int64(2), majflt)

	_, _, err = parseStatFaults("4242 kluisd S 1")
	require.Error(t, err)
	_, _, err = parseStatFaults("4242 (kluisd) S 1 2")
	require.Error(t, err)

	// This process's own line parses, with at least one fault taken.
	minflt, _, err = procFaults(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, minflt)
}

func TestFaultTime(t *testing.T) {
	page := os.Getpagesize()
	c := faultCost{anon: 10 * time.Microsecond, file: 4 * time.Microsecond}
	// 100 anonymous pages resident, 150 faults: 100 anonymous, 50 file-backed.
	require.Equal(t, 100*10*time.Microsecond+50*4*time.Microsecond, faultTime(150, float64(100*page), c))
	// More anonymous pages than faults (pages the kernel filled without
	// a fault): every fault counted as anonymous, none negative.
	require.Equal(t, 20*10*time.Microsecond, faultTime(20, float64(100*page), c))
	require.Equal(t, time.Duration(0), perFault(time.Second, 0))
	require.Equal(t, 250*time.Millisecond, perFault(time.Second, 4))
}

func TestFloorFigures(t *testing.T) {
	page := float64(os.Getpagesize())
	c := faultCost{anon: 10 * time.Microsecond, file: 2 * time.Microsecond}
	mk := func(ready, version time.Duration, flt, vflt int64) startSample {
		return startSample{notified: ready, minflt: flt, anon: 500 * page, cost: c,
			empty:   execSample{wall: 4 * time.Millisecond, minflt: 170},
			version: execSample{wall: version, minflt: vflt}}
	}
	figs := floorFigures("", []startSample{
		mk(20*time.Millisecond, 10*time.Millisecond, 1000, 400),
		mk(30*time.Millisecond, 12*time.Millisecond, 1100, 420),
		mk(26*time.Millisecond, 11*time.Millisecond, 1050, 410),
	})
	require.Len(t, figs, 2)
	require.InDelta(t, 26.0, figs[0].Value, 1e-9)
	require.InDelta(t, 11.0, figs[0].Floor, 1e-9)
	require.InDelta(t, 11.0/26, figs[0].Ratio(), 1e-9)
	// The median start: 500 anonymous faults at 10 µs and 550 at 2 µs
	// = 6.1 ms of its 26 ms.
	require.Contains(t, figs[0].Notes, "empty Go program (exec and runtime start): median 4.00 ms")
	require.Contains(t, figs[0].Notes, "estimated page-fault time (below): median 19.90 ms")
	require.InDelta(t, 1050.0, figs[1].Value, 1e-9)
	require.InDelta(t, 410.0, figs[1].Floor, 1e-9)
	require.Contains(t, figs[1].Notes, "an empty Go program: 170")
	require.Contains(t, figs[1].Notes, "anonymous median 10.0 µs, file-backed 2.0 µs")
	require.Contains(t, figs[1].Notes, "took about 6.10 ms")
}

// The probe measures real faults: touching fresh pages takes at least
// one fault per anonymous page and some for the file's (this test's own
// binary).
func TestMeasureFaultCost(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	c, err := measureFaultCost(self, 64)
	require.NoError(t, err)
	require.Positive(t, c.anon)
	require.Positive(t, c.file)
}

// The empty program builds and runs; its faults are counted.
func TestEmptyGoFloor(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	out := filepath.Join(t.TempDir(), "empty-go")
	require.NoError(t, buildEmpty(context.Background(), out))
	s, err := execOnce(context.Background(), out)
	require.NoError(t, err)
	require.Positive(t, s.wall)
	require.Positive(t, s.minflt)
	// An exit status other than 0 is still measured (an old kluisd's
	// --version).
	s, err = execOnce(context.Background(), "/bin/false")
	require.NoError(t, err)
	require.Positive(t, s.wall)
}
