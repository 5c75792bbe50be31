package evqueue

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"kluis/hardware"
)

func ev(ch int) hardware.Event {
	return hardware.Event{Kind: hardware.DoorOpened, Addr: hardware.Address{Channel: ch}}
}

// within runs Watch in a goroutine and returns its result, failing after a
// generous bound.
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not return")
		return nil
	}
}

func TestOrderRedeliveryAndDrop(t *testing.T) {
	var drops atomic.Int64
	q := New("test", 3, func() { drops.Add(1) })
	for ch := range 5 {
		q.Push(ev(ch))
	}
	if q.Len() != 3 || drops.Load() != 2 {
		t.Fatalf("len %d drops %d, want 3 and 2 (oldest dropped)", q.Len(), drops.Load())
	}
	refuse := errors.New("refused")
	var got []int
	err := within(t, func() error {
		return q.Watch(context.Background(), func(e hardware.Event) error {
			if e.Addr.Channel == 3 {
				return refuse
			}
			got = append(got, e.Addr.Channel)
			return nil
		}, Poll{})
	})
	if !errors.Is(err, refuse) || len(got) != 1 || got[0] != 2 {
		t.Fatalf("err %v, got %v; want channel 2 then the refusal of 3", err, got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got = nil
	err = within(t, func() error {
		return q.Watch(ctx, func(e hardware.Event) error {
			got = append(got, e.Addr.Channel)
			if len(got) == 2 {
				cancel()
			}
			return nil
		}, Poll{})
	})
	if !errors.Is(err, context.Canceled) || len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Fatalf("err %v, got %v; want the refused 3 again, then 4", err, got)
	}
	if q.Len() != 0 {
		t.Fatalf("%d events left", q.Len())
	}
}

func TestOneWatchPollAndClose(t *testing.T) {
	q := New("test", 10, nil)
	polls := make(chan struct{}, 100)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- q.Watch(context.Background(), func(hardware.Event) error { return nil },
			Poll{Every: time.Millisecond, Poll: func(context.Context) {
				select {
				case polls <- struct{}{}:
				default:
				}
				select {
				case <-started:
				default:
					close(started)
				}
			}})
	}()
	<-started
	if err := q.Watch(context.Background(), func(hardware.Event) error { return nil }, Poll{}); !errors.Is(err, hardware.ErrBusy) {
		t.Fatalf("second watch: %v, want ErrBusy", err)
	}
	for range 3 { // the first poll at start, then ticks
		select {
		case <-polls:
		case <-time.After(10 * time.Second):
			t.Fatal("no poll")
		}
	}
	q.Close()
	select {
	case err := <-done:
		if !errors.Is(err, hardware.ErrHalted) {
			t.Fatalf("watch after close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("close did not end watch")
	}
	if err := q.Watch(context.Background(), nil, Poll{}); !errors.Is(err, hardware.ErrHalted) {
		t.Fatalf("watch on a closed queue: %v", err)
	}
}
