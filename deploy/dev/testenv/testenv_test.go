package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeT records a failure instead of ending the test.
type fakeT struct {
	failed   string
	cleanups []func()
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Fatalf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }
func (f *fakeT) Cleanup(fn func())              { f.cleanups = append(f.cleanups, fn) }

func TestBrokerURL(t *testing.T) {
	t.Setenv("MQTT_URL", "")
	if got := BrokerURL(); got != DefaultBroker {
		t.Fatalf("BrokerURL() = %q, want %q", got, DefaultBroker)
	}
	t.Setenv("MQTT_URL", "tcp://10.0.0.1:1884")
	if got := BrokerURL(); got != "tcp://10.0.0.1:1884" {
		t.Fatalf("BrokerURL() = %q, want the environment's", got)
	}
}

func TestPickAddrIsFreeBelowTheEphemeralRangeAndNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		a, err := PickAddr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
		_, ps, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(ps)
		if p < lowest || p >= ephemeralLow() {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, ephemeralLow())
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("picked %s, but it cannot be bound: %v", a, err)
		}
		l.Close()
	}
}

func TestListenIsClosedWhenTheTestEnds(t *testing.T) {
	var ft fakeT
	l := Listen(&ft)
	if len(ft.cleanups) != 1 {
		t.Fatalf("%d cleanups registered", len(ft.cleanups))
	}
	ft.cleanups[0]()
	if _, err := l.Accept(); err == nil {
		t.Fatal("the listener still accepts after the cleanup")
	}
}

func TestEventually(t *testing.T) {
	var n atomic.Int32
	var ft fakeT
	Eventually(&ft, "three calls", func() bool { return n.Add(1) == 3 })
	if ft.failed != "" || n.Load() != 3 {
		t.Fatalf("failed %q after %d calls", ft.failed, n.Load())
	}
	EventuallyWithin(&ft, 50*time.Millisecond, "the impossible", func() bool { return false })
	if !strings.Contains(ft.failed, "the impossible") {
		t.Fatalf("failure %q does not name what was awaited", ft.failed)
	}
}

// Work that keeps moving is waited for however long it takes; work that
// stops fails after the stall bound, with where it stopped.
func TestEventuallyProgressing(t *testing.T) {
	var n atomic.Int32
	count := func() string { return fmt.Sprint(n.Load()) }
	go func() {
		for range 40 {
			time.Sleep(40 * time.Millisecond)
			n.Add(1)
		}
	}()
	var ft fakeT
	began := time.Now()
	EventuallyProgressing(&ft, time.Second, "forty steps", count, func() bool { return n.Load() == 40 })
	if ft.failed != "" || time.Since(began) < 1500*time.Millisecond {
		t.Fatalf("failed %q after %v; want the forty steps, longer than the stall bound in all", ft.failed, time.Since(began))
	}
	EventuallyProgressing(&ft, 50*time.Millisecond, "a 41st", count, func() bool { return n.Load() == 41 })
	if !strings.Contains(ft.failed, "a 41st") || !strings.Contains(ft.failed, "stuck at 40") {
		t.Fatalf("failure %q does not name what was awaited and where it stopped", ft.failed)
	}
}

func TestPollReportsTheLastObservationAndError(t *testing.T) {
	n := 0
	seen, err := Poll(context.Background(), 5*time.Second, "n reaches 2", func(context.Context) (bool, string, error) {
		n++
		return n == 2, fmt.Sprint("n=", n), nil
	})
	if err != nil || seen != "n=2" {
		t.Fatalf("Poll = %q, %v", seen, err)
	}
	_, err = Poll(context.Background(), 250*time.Millisecond, "the door opens", func(context.Context) (bool, string, error) {
		return false, "door shut", errors.New("sensor unreadable")
	})
	if err == nil || !strings.Contains(err.Error(), "the door opens") || !strings.Contains(err.Error(), "door shut") ||
		!strings.Contains(err.Error(), "sensor unreadable") {
		t.Fatalf("error %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, err := Poll(ctx, time.Minute, "anything", func(context.Context) (bool, string, error) { return false, "", nil }); err == nil {
		t.Fatal("Poll on an ended context succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Poll did not stop when its context ended")
	}
	var ft fakeT
	MustPoll(&ft, 150*time.Millisecond, "never", func(context.Context) (bool, string, error) { return false, "", nil })
	if !strings.Contains(ft.failed, "never") {
		t.Fatalf("MustPoll failure %q", ft.failed)
	}
}

func TestHTTPClientHasATimeout(t *testing.T) {
	if c := HTTPClient(); c.Timeout != HTTPTimeout || c.Timeout <= 0 {
		t.Fatalf("timeout %s", c.Timeout)
	}
}
