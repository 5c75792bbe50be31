package tokenbucket

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)

func TestBurstThenRate(t *testing.T) {
	b := New(2, 3) // 2 a second, 3 at once
	if !b.Full(t0) || b.Available(t0) != 3 {
		t.Fatalf("a new bucket: full %t, %d available, want full with 3", b.Full(t0), b.Available(t0))
	}
	for i := range 3 {
		if !b.Take(t0) {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	if b.Take(t0) {
		t.Fatal("a fourth take at once granted")
	}
	if got := b.Until(t0); got != 500*time.Millisecond {
		t.Fatalf("until a token: %s, want 500ms", got)
	}
	if b.Take(t0.Add(499 * time.Millisecond)) {
		t.Fatal("granted before half a second (one token at 2 a second)")
	}
	if !b.Take(t0.Add(500 * time.Millisecond)) {
		t.Fatal("refused after half a second")
	}
	// Quiet for an hour: the burst again, no more.
	later := t0.Add(time.Hour)
	if got := b.Available(later); got != 3 {
		t.Fatalf("after an hour %d available, want the burst 3", got)
	}
	if !b.Full(later) {
		t.Fatal("not full after an hour")
	}
	if b.Until(later) != 0 {
		t.Fatalf("until a token with 3: %s, want 0", b.Until(later))
	}
}

// A clock set back earns nothing for the step and stalls nothing: the
// bucket earns again from the earlier time at once, and never goes below
// zero.
func TestClockSetBack(t *testing.T) {
	b := New(1, 2)
	b.Take(t0)
	b.Take(t0)
	back := t0.Add(-24 * time.Hour)
	if b.Take(back) {
		t.Fatal("a clock set back earned a token")
	}
	if got := b.Available(back); got != 0 {
		t.Fatalf("%d available after the step back, want 0", got)
	}
	if got := b.Until(back); got != time.Second {
		t.Fatalf("until a token after the step back: %s, want 1s (not the day the clock went back)", got)
	}
	if !b.Take(back.Add(time.Second)) {
		t.Fatal("a second after the step back: refused, the bucket stalls")
	}
	// Full again two seconds on, as if the clock had never jumped.
	if !b.Full(back.Add(3 * time.Second)) {
		t.Fatal("not full two seconds after its last take")
	}
	// The step forward again earns at most the burst.
	if got := b.Available(t0.Add(time.Hour)); got != 2 {
		t.Fatalf("%d available, want the burst 2", got)
	}
}

// Reserve borrows: after the burst each caller is given the next slot,
// 1/rate after the one before, and the debt is paid off at the rate.
func TestReserve(t *testing.T) {
	b := New(10, 2)
	var got []time.Duration
	for range 5 {
		got = append(got, b.Reserve(t0))
	}
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("reservations at once: %v, want %v", got, want)
		}
	}
	// At 300 ms the debt is paid: the next is 100 ms away.
	if d := b.Reserve(t0.Add(300 * time.Millisecond)); d != 100*time.Millisecond {
		t.Fatalf("after the debt: %s, want 100ms", d)
	}
	if b.Available(t0.Add(300*time.Millisecond)) != 0 || b.Take(t0.Add(300*time.Millisecond)) {
		t.Fatal("a borrowed bucket grants a take")
	}
	// A clock set back neither stalls the next reservation nor adds to
	// what was borrowed.
	if d := b.Reserve(t0.Add(-time.Hour)); d != 200*time.Millisecond {
		t.Fatalf("a reservation after the clock went back an hour: %s, want 200ms", d)
	}
}
