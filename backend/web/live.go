package web

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/internal/periodic"
)

// Hub is the one poller behind every live page of a process: it looks for
// changes about once a second while a stream is open, and wakes the
// streams a change concerns (see the package documentation).
type Hub struct {
	o hubOptions

	mu   sync.Mutex
	subs map[*sub]struct{}

	fleet atomic.Pointer[fleetSnap]
	// open counts the streams, for the bound and the gauge.
	open atomic.Int64
}

type hubOptions struct {
	pool  *pgxpool.Pool
	every time.Duration
	clock func() time.Time
	log   *slog.Logger
}

// fleetSnap is the fleet as last read, with the sites' names.
type fleetSnap struct {
	at    time.Time
	rows  []health
	sites map[string]string
}

// sub is one open stream: device "" for the fleet page.
type sub struct {
	device string
	c      chan struct{}
	// fresh until its first wake-up, which comes on the next poll.
	fresh bool
}

// fullEvery refreshes the fleet and the device pages even without a
// change, so that overdue heartbeats show.
const fullEvery = 30 * time.Second

func newHub(o hubOptions) *Hub { return &Hub{o: o, subs: map[*sub]struct{}{}} }

func (h *Hub) subscribe(device string) *sub {
	s := &sub{device: device, c: make(chan struct{}, 1), fresh: true}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *Hub) unsubscribe(s *sub) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// wake tells s to render; a pending wake-up is enough.
func (s *sub) wake() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// snapshot is the fleet as last read (nil before the first poll).
func (h *Hub) snapshot() *fleetSnap { return h.fleet.Load() }

// Run polls every interval (the first after one) until ctx ends, and
// returns nil.
func (h *Hub) Run(ctx context.Context) error {
	var (
		lastSeq  int64 = -1
		lastPres map[string]string
		lastFull time.Time
	)
	_ = periodic.Loop{Every: h.o.every, Delayed: true}.Run(ctx, func(ctx context.Context) {
		h.mu.Lock()
		n := len(h.subs)
		h.mu.Unlock()
		if n == 0 {
			lastSeq, lastPres = -1, nil
			return
		}
		seq, pres, ok := h.poll(ctx, lastSeq, lastPres, &lastFull)
		if ok {
			lastSeq, lastPres = seq, pres
		}
	})
	return nil
}

// poll looks for changes since lastSeq and lastPres and wakes the streams
// concerned; ok is false when the database could not be read (the next
// poll tries again from the same point).
func (h *Hub) poll(ctx context.Context, lastSeq int64, lastPres map[string]string, lastFull *time.Time) (int64, map[string]string, bool) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	now := h.o.clock()
	seq, err := auditHead(qctx, h.o.pool)
	if err != nil {
		h.warn(ctx, err)
		return 0, nil, false
	}
	keys, err := presenceKeys(qctx, h.o.pool)
	if err != nil {
		h.warn(ctx, err)
		return 0, nil, false
	}
	all := lastSeq < 0
	changed := map[string]bool{}
	if !all && seq != lastSeq {
		var ok bool
		if changed, ok, err = changedDevices(qctx, h.o.pool, lastSeq, seq); err != nil {
			h.warn(ctx, err)
			return 0, nil, false
		} else if !ok {
			all, changed = true, map[string]bool{}
		}
	}
	for id, k := range keys {
		if lastPres != nil && lastPres[id] != k {
			changed[id] = true
		}
	}
	h.mu.Lock()
	subs := make([]*sub, 0, len(h.subs))
	freshFleet := false
	for s := range h.subs {
		subs = append(subs, s)
		if s.fresh && s.device == "" {
			freshFleet = true
		}
	}
	h.mu.Unlock()
	snap := h.fleet.Load()
	// due: fullEvery has passed. What the pages say can change with the
	// time alone (a device whose heartbeats stopped becomes late, "how
	// long ago"), with nothing in the database to say so: the device
	// pages are read again then too, as the fleet is, or a device's page
	// said "online" all night beside the fleet's "late".
	due := snap == nil || now.Sub(*lastFull) >= fullEvery
	readFleetNow := all || len(changed) > 0 || due || freshFleet
	if readFleetNow {
		rows, err := readFleet(qctx, h.o.pool, nil, now)
		if err != nil {
			h.warn(ctx, err)
			return 0, nil, false
		}
		sites, err := siteNames(qctx, h.o.pool)
		if err != nil {
			h.warn(ctx, err)
			return 0, nil, false
		}
		h.fleet.Store(&fleetSnap{at: now, rows: rows, sites: sites})
		*lastFull = now
	}
	h.mu.Lock()
	for _, s := range subs {
		if _, still := h.subs[s]; !still {
			continue
		}
		if s.fresh || (s.device == "" && readFleetNow) || (s.device != "" && (all || due || changed[s.device])) {
			s.fresh = false
			s.wake()
		}
	}
	h.mu.Unlock()
	return seq, keys, true
}

func (h *Hub) warn(ctx context.Context, err error) {
	if ctx.Err() == nil {
		h.o.log.Warn("live pages: poll failed", "err", err)
	}
}
