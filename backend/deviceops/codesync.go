package deviceops

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/internal/periodic"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/internal/tokenbucket"
)

// Defaults of CodeSyncOptions.
const (
	// DefaultCodeSyncEvery is how often every device's bundle is checked.
	DefaultCodeSyncEvery = time.Minute
	// DefaultCodeSyncRefresh resends an unchanged, delivered bundle after
	// this long.
	DefaultCodeSyncRefresh = 30 * time.Minute
	// DefaultCodeSyncPause is how long a marked device waits, so that the
	// transaction that changed its codes has committed and several changes
	// go out in one command.
	DefaultCodeSyncPause = 300 * time.Millisecond
	// DefaultCodeSyncRetry is how long a code sync the device has not
	// answered waits before it is sent again (doubling after every
	// unanswered one, up to the refresh interval).
	DefaultCodeSyncRetry = 30 * time.Second
	// DefaultCodeSyncWorkers is how many devices are synced at once.
	DefaultCodeSyncWorkers = 4
	// DefaultCodeSyncRate is how many code syncs are sent per second at
	// most (a whole fleet reconnecting after an outage is paced: 19,000
	// devices in about 95 s).
	DefaultCodeSyncRate = 200
)

// CommandSender sends a command to a device (devicelink.Link).
type CommandSender interface {
	SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error)
}

// DeviceLister lists the devices (service.Service).
type DeviceLister interface {
	ListDevices(ctx context.Context, siteID string) ([]store.Device, error)
}

// CodeSyncOptions configure NewCodeSync.
type CodeSyncOptions struct {
	// Codes gives the offline bundles (required).
	Codes *codes.Service
	// Devices lists the devices to check periodically (required).
	Devices DeviceLister
	// Link sends the code_sync commands and reads their results and the
	// devices' presence (required; it may be bound late, but before Run).
	Link CommandLink
	// Every is the interval of the check of all devices; default
	// DefaultCodeSyncEvery.
	Every time.Duration
	// Refresh resends an unchanged, delivered bundle after this long;
	// default DefaultCodeSyncRefresh.
	Refresh time.Duration
	// Pause delays the sync of a marked device; default DefaultCodeSyncPause.
	Pause time.Duration
	// Retry is how long an unanswered code sync waits before it is sent
	// again to a device not known to be offline, doubled after every
	// unanswered one up to Refresh; default DefaultCodeSyncRetry.
	Retry time.Duration
	// Workers sync that many devices at once; default
	// DefaultCodeSyncWorkers.
	Workers int
	// Rate bounds the code syncs sent per second; default
	// DefaultCodeSyncRate.
	Rate float64
	// Clock gives the time (the command's version); default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives kluis_code_syncs_total; nil: not registered.
	Registerer prometheus.Registerer
}

// CodeSync keeps every device's offline code cache current: it sends a full
// code_sync command (the device's [codes.Service.OfflineBundle] in the wire
// form of controller/offline) to a device soon after its codes changed
// ([CodeSync.Mark]), at once when the device comes back online
// ([CodeSync.ObservePresence]), and checks every device periodically.
//
// A bundle counts as delivered only once the device confirmed it: its
// result for that command is "done" (device_commands, whichever replica
// recorded it), or its heartbeat reports that command's version as its
// cache version. A sync the device has not answered is sent again after
// Retry (doubling, to a device not known to be offline), one it answered
// otherwise (a version older than its cache, a failed write) at once, and
// one a device lost (its heartbeat reports an older version than the one it
// confirmed) too. Commands are sent by Workers at most Rate per second,
// the devices whose codes changed first, then devices back online and
// retries, then the periodic check. The cache never receives a plain PIN
// or token.
type CodeSync struct {
	codes   *codes.Service
	devices DeviceLister
	link    CommandLink
	every   time.Duration
	refresh time.Duration
	pause   time.Duration
	retry   time.Duration
	workers int
	pace    *pacer
	now     func() time.Time
	log     *slog.Logger
	syncs   *prometheus.CounterVec

	mu    sync.Mutex
	state map[string]*deviceSync
	q     syncQueue
	wake  chan struct{} // closed and replaced when work is queued or done
}

// deviceSync is what this replica knows of a device's offline cache.
type deviceSync struct {
	digest    [32]byte  // of the entries last sent
	version   int64     // of the last code sync sent
	command   string    // its id; "" when none is awaited or known
	sentAt    time.Time // when it was sent
	unanswer  int       // code syncs sent in a row without an answer
	delivered bool      // the device confirmed command (version)
	// reported is the highest cache version the device's heartbeats
	// reported (a new version is above it); versioned: it reported one.
	reported  int64
	versioned bool
}

// Sync priorities (lower first).
const (
	prioChanged  = iota // the device's codes changed
	prioDevice          // back online, a lost cache, a retry
	prioPeriodic        // the periodic check
	nPrio
)

// Why a device is synced: the priority, and when it came online (not
// zero: a sync it has not answered that was sent before is sent again
// without waiting).
type reason struct {
	prio     int
	onlineAt time.Time
}

// NewCodeSync checks o and returns a CodeSync.
func NewCodeSync(o CodeSyncOptions) (*CodeSync, error) {
	if o.Codes == nil || o.Devices == nil || o.Link == nil {
		return nil, errors.New("deviceops: code sync needs codes, devices and a link")
	}
	if o.Every <= 0 {
		o.Every = DefaultCodeSyncEvery
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultCodeSyncRefresh
	}
	if o.Pause <= 0 {
		o.Pause = DefaultCodeSyncPause
	}
	if o.Retry <= 0 {
		o.Retry = DefaultCodeSyncRetry
	}
	if o.Workers <= 0 {
		o.Workers = DefaultCodeSyncWorkers
	}
	if o.Rate <= 0 {
		o.Rate = DefaultCodeSyncRate
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &CodeSync{codes: o.Codes, devices: o.Devices, link: o.Link, every: o.Every, refresh: o.Refresh,
		pause: o.Pause, retry: o.Retry, workers: o.Workers, pace: newPacer(o.Rate, o.Workers, time.Now),
		now: o.Clock, log: o.Logger.With("part", "code-sync"),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kluis_code_syncs_total",
			Help: "Offline code bundles: sent to a device, not sent after an error (failed), confirmed by the device (delivered), " +
				"answered otherwise than done (refused) or not answered in time (unanswered), both sent again."}, []string{"result"}),
		state: map[string]*deviceSync{}, q: newSyncQueue(), wake: make(chan struct{})}
	for _, r := range []string{"sent", "failed", "delivered", "refused", "unanswered"} {
		s.syncs.WithLabelValues(r)
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.syncs); err != nil {
			return nil, fmt.Errorf("deviceops: code sync metrics: %w", err)
		}
	}
	return s, nil
}

// Mark asks for a prompt sync of a device whose codes changed, after the
// pause; it never blocks.
func (s *CodeSync) Mark(deviceID string) {
	s.enqueue(deviceID, reason{prio: prioChanged}, time.Now().Add(s.pause))
}

// ObservePresence implements devicelink.PresenceObserver: a device that
// comes online gets its current bundle at once (unless it confirmed it
// already), without waiting for an unanswered one's retry: a command
// published while it was away is lost (clean sessions).
func (s *CodeSync) ObservePresence(device string, p wire.Presence, at time.Time) {
	if p.State != wire.Online {
		return
	}
	s.mu.Lock()
	if st := s.state[device]; st != nil {
		st.unanswer = 0
	}
	s.mu.Unlock()
	s.enqueue(device, reason{prio: prioDevice, onlineAt: at}, time.Time{})
}

// ObserveHeartbeat implements devicelink.PresenceObserver: a heartbeat
// reporting the version of the code sync awaited confirms it (its result
// may have been lost); one reporting a version older than a confirmed one
// shows a device that lost its cache (restored, replaced), which gets the
// bundle again.
func (s *CodeSync) ObserveHeartbeat(device string, hb wire.Heartbeat, _ time.Time) {
	s.mu.Lock()
	st := s.state[device]
	if st == nil {
		st = &deviceSync{}
		s.state[device] = st
	}
	st.reported = max(st.reported, hb.CacheVersion)
	st.versioned = st.versioned || hb.CacheVersion > 0
	lost := false
	switch {
	case st.command == "" || !st.versioned: // (a kluisd that reports no version)
	case !st.delivered && hb.CacheVersion == st.version:
		st.delivered, st.unanswer = true, 0
		s.syncs.WithLabelValues("delivered").Inc()
	case st.delivered && hb.CacheVersion < st.version:
		st.delivered, st.command = false, ""
		lost = true
	}
	s.mu.Unlock()
	if lost {
		s.log.Warn("device reports an older offline cache than it confirmed; sending it again", "device", device,
			"reported_version", hb.CacheVersion)
		s.enqueue(device, reason{prio: prioDevice}, time.Time{})
	}
}

// enqueue queues a sync of device at r's priority, ready at ready.
func (s *CodeSync) enqueue(device string, r reason, ready time.Time) {
	if device == "" {
		return
	}
	s.mu.Lock()
	if s.q.add(device, r, ready) {
		s.wakeLocked()
	}
	s.mu.Unlock()
}

func (s *CodeSync) wakeLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// Run syncs queued devices with Workers, checks every device every
// interval and resends unanswered syncs, until ctx ends; it returns ctx's
// error.
func (s *CodeSync) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for range s.workers {
		wg.Go(func() { s.work(ctx) })
	}
	// Unanswered syncs are looked at a few times per retry interval.
	wg.Go(func() {
		_ = periodic.Loop{Every: max(s.retry/4, 10*time.Millisecond), Delayed: true}.Run(ctx, func(context.Context) { s.queueRetries() })
	})
	return periodic.Loop{Every: s.every, Delayed: true}.Run(ctx, s.queueAll)
}

// queueAll queues every device for a periodic check.
func (s *CodeSync) queueAll(ctx context.Context) {
	devs, err := s.devices.ListDevices(ctx, "")
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("list devices", "err", err)
		}
		return
	}
	for _, d := range devs {
		s.enqueue(d.ID, reason{prio: prioPeriodic}, time.Time{})
	}
}

// queueRetries queues the devices whose code sync has waited for an answer
// longer than its retry interval.
func (s *CodeSync) queueRetries() {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	queued := false
	for dev, st := range s.state {
		if st.command != "" && !st.delivered && now.Sub(st.sentAt) >= s.retryAfter(st) {
			queued = s.q.add(dev, reason{prio: prioDevice}, time.Time{}) || queued
		}
	}
	if queued {
		s.wakeLocked()
	}
}

// retryAfter is how long st's unanswered sync waits: Retry, doubled for
// every earlier unanswered one, at most Refresh.
func (s *CodeSync) retryAfter(st *deviceSync) time.Duration {
	d := s.retry
	for i := 1; i < st.unanswer && d < s.refresh; i++ {
		d *= 2
	}
	return min(d, s.refresh)
}

// work syncs queued devices until ctx ends.
func (s *CodeSync) work(ctx context.Context) {
	for {
		s.mu.Lock()
		dev, r, wait, ok := s.q.take(time.Now())
		wake := s.wake
		s.mu.Unlock()
		if ok {
			s.sync(ctx, dev, r)
			s.mu.Lock()
			s.q.done(dev)
			s.wakeLocked()
			s.mu.Unlock()
			continue
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// bundle is the device's offline material in wire form.
func (s *CodeSync) bundle(ctx context.Context, deviceID string) ([]wire.CodeEntry, error) {
	entries, err := s.codes.OfflineBundle(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	out := make([]wire.CodeEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, wire.CodeEntry{
			DocumentID:   e.DocumentID,
			Addr:         wire.Address{Board: e.Board, Channel: e.Channel},
			Expires:      e.ExpiresAt.UTC(),
			QRHash:       pickupcode.QRHash(e.CodeID),
			PINHash:      e.PINHash(),
			SecondFactor: e.NeedsDOB,
		})
	}
	return out, nil
}

// Sync brings the device's offline cache up to date now, as the periodic
// check does, and reports whether it sent a code sync. Failures are logged
// (a later check retries).
func (s *CodeSync) Sync(ctx context.Context, deviceID string) bool {
	return s.sync(ctx, deviceID, reason{prio: prioPeriodic})
}

// sync learns what became of the device's last code sync, then sends the
// current bundle unless the device confirmed it (within the refresh
// interval) or is still to answer it (within its retry interval, and not
// just back online), or is known to be offline.
func (s *CodeSync) sync(ctx context.Context, deviceID string, r reason) bool {
	s.mu.Lock()
	st := s.state[deviceID]
	if st == nil {
		st = &deviceSync{}
		s.state[deviceID] = st
	}
	cur := *st
	s.mu.Unlock()

	awaited := cur.command != "" && !cur.delivered
	if awaited {
		before := cur
		cs, err := s.link.CommandStatus(ctx, cur.command)
		switch {
		case err != nil:
			s.log.Warn("reading a code sync's result", "device", deviceID, "command", cur.command, "err", err)
		case cs.Status == string(wire.StatusDone):
			cur.delivered, cur.unanswer = true, 0
			s.syncs.WithLabelValues("delivered").Inc()
		case cs.Status == "pending" || cs.Status == "sent":
		default: // rejected (an older version than its cache), failed, expired, duplicate
			s.syncs.WithLabelValues("refused").Inc()
			s.log.Info("code sync not applied by the device; sending the current bundle again", "device", deviceID,
				"command", cur.command, "status", cs.Status, "detail", cs.Detail)
			cur.command = ""
		}
		if !s.swap(st, before, cur) {
			// A heartbeat changed it meanwhile (confirmed, or lost):
			// decide on that.
			s.mu.Lock()
			cur = *st
			s.mu.Unlock()
		}
	}

	entries, err := s.bundle(ctx, deviceID)
	if err != nil {
		s.syncs.WithLabelValues("failed").Inc()
		s.log.Warn("offline bundle", "device", deviceID, "err", err)
		return false
	}
	js, _ := json.Marshal(entries)
	digest := sha256.Sum256(js)
	now := s.now()
	same := cur.command != "" && cur.digest == digest
	switch {
	case same && cur.delivered && now.Sub(cur.sentAt) < s.refresh:
		return false // the device holds it
	case same && !cur.delivered && !cur.sentAt.Before(r.onlineAt) && now.Sub(cur.sentAt) < s.retryAfter(&cur):
		return false // awaiting its answer (sent while it was online)
	}
	unanswered := same && !cur.delivered
	online := !r.onlineAt.IsZero()
	if !online {
		// A command published to a device that is away is lost: it gets
		// the bundle when it comes back (ObservePresence).
		if p, err := s.link.Presence(ctx, deviceID); err == nil && !p.Online {
			s.log.Debug("code sync deferred: device offline", "device", deviceID)
			return false
		}
	}
	if unanswered {
		s.syncs.WithLabelValues("unanswered").Inc()
		s.log.Info("code sync not answered; sending it again", "device", deviceID, "command", cur.command,
			"sent", cur.sentAt, "online_again", online)
	}
	if err := s.pace.wait(ctx); err != nil {
		return false
	}
	// The version increases for this device whatever the clock does, and
	// lies above what the device reported (another replica's sync).
	version := max(now.UnixNano(), cur.version+1, cur.reported+1)
	cmd := wire.Command{Kind: wire.CmdCodeSync, By: "system",
		Codes: &wire.CodeSync{Version: version, Full: true, Entries: entries}}
	id, err := s.link.SendCommand(ctx, deviceID, cmd)
	if err != nil {
		s.syncs.WithLabelValues("failed").Inc()
		s.log.Warn("send code sync", "device", deviceID, "err", err)
		if id == "" {
			return false
		}
		// Stored but not published: awaited like a sent one, so that it
		// is retried after the retry interval.
	}
	// The backoff grows while syncs go unanswered or refused.
	next := deviceSync{digest: digest, version: version, command: id, sentAt: now, unanswer: 1}
	if awaited && !cur.delivered {
		next.unanswer = cur.unanswer + 1
	}
	s.mu.Lock()
	next.reported, next.versioned = max(st.reported, cur.reported), st.versioned
	*st = next
	s.mu.Unlock()
	if err != nil {
		return false
	}
	s.syncs.WithLabelValues("sent").Inc()
	s.log.Debug("code sync sent", "device", deviceID, "command", id, "version", version, "entries", len(entries))
	return true
}

// swap stores next as st when st is still old (but for what heartbeats
// reported meanwhile) and reports whether it did.
func (s *CodeSync) swap(st *deviceSync, old, next deviceSync) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := *st
	now.reported, now.versioned = old.reported, old.versioned
	if now != old {
		return false
	}
	next.reported, next.versioned = st.reported, st.versioned
	*st = next
	return true
}

// syncQueue holds the devices to sync, once each, in FIFO order per
// priority; a device being synced is not handed out again until done (a
// mark meanwhile syncs it once more afterwards).
type syncQueue struct {
	lists  [nPrio][]string
	queued map[string]queued
	busy   map[string]bool
}

type queued struct {
	r     reason
	ready time.Time
}

func newSyncQueue() syncQueue {
	return syncQueue{queued: map[string]queued{}, busy: map[string]bool{}}
}

// add queues device (raising its priority when queued lower) and reports
// whether anything changed.
func (q *syncQueue) add(device string, r reason, ready time.Time) bool {
	if cur, ok := q.queued[device]; ok {
		if cur.r.prio <= r.prio {
			if r.onlineAt.After(cur.r.onlineAt) {
				cur.r.onlineAt = r.onlineAt
				q.queued[device] = cur
			}
			return false
		}
		if cur.r.onlineAt.After(r.onlineAt) {
			r.onlineAt = cur.r.onlineAt
		}
	}
	q.queued[device] = queued{r: r, ready: ready}
	q.lists[r.prio] = append(q.lists[r.prio], device)
	return true
}

// take hands out the first ready device not being synced, highest priority
// first; without one it returns how long until the next is ready (0:
// nothing waits for a time).
func (q *syncQueue) take(now time.Time) (device string, r reason, wait time.Duration, ok bool) {
	for p := range q.lists {
		l := q.lists[p]
		for i := 0; i < len(l); i++ {
			dev := l[i]
			e, in := q.queued[dev]
			if !in || e.r.prio != p {
				l = remove(l, i) // moved to another priority
				i--
				continue
			}
			if q.busy[dev] {
				continue
			}
			if e.ready.After(now) {
				if w := e.ready.Sub(now); wait == 0 || w < wait {
					wait = w
				}
				if p == prioChanged {
					break // ready in FIFO order: the rest waits longer
				}
				continue
			}
			q.lists[p] = remove(l, i)
			delete(q.queued, dev)
			q.busy[dev] = true
			return dev, e.r, 0, true
		}
		q.lists[p] = l
	}
	return "", reason{}, wait, false
}

// remove drops l[i]: from the head without copying (the common case),
// elsewhere (past devices being synced) by copying the rest.
func remove(l []string, i int) []string {
	if i == 0 {
		return l[1:]
	}
	return append(l[:i], l[i+1:]...)
}

// done ends device's sync.
func (q *syncQueue) done(device string) { delete(q.busy, device) }

// pacer spaces sends to at most rate per second after a burst: a token
// bucket (internal/tokenbucket) that callers reserve from, each waiting
// for its own token. It paces real sends, so it waits on its own clock
// (time.Now in CodeSync: line timing, not the commands' versions).
type pacer struct {
	mu  sync.Mutex
	now func() time.Time
	b   tokenbucket.Bucket
}

// newPacer paces at rate sends a second, burst+1 at once (a burst for
// each worker, and one).
func newPacer(rate float64, burst int, now func() time.Time) *pacer {
	return &pacer{now: now, b: tokenbucket.New(rate, burst+1)}
}

// wait returns when the next send may go (or ctx's error).
func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	d := p.b.Reserve(p.now())
	p.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Issuer wraps a code issuer so that issuing or revoking codes marks the
// device for a sync.
func (s *CodeSync) Issuer(i service.CodeIssuer) service.CodeIssuer { return syncingIssuer{i, s} }

// Notifier wraps a notifier so that a transition that notifies (it runs
// after the commit) marks the document's device for a sync.
func (s *CodeSync) Notifier(n service.Notifier) service.Notifier { return syncingNotifier{n, s} }

type syncingIssuer struct {
	service.CodeIssuer
	sync *CodeSync
}

// Issue implements service.CodeIssuer.
func (i syncingIssuer) Issue(ctx context.Context, tx pgx.Tx, doc store.Document, comp store.Compartment, at time.Time) (any, error) {
	secret, err := i.CodeIssuer.Issue(ctx, tx, doc, comp, at)
	if err == nil {
		i.sync.Mark(comp.DeviceID)
	}
	return secret, err
}

// Revoke implements service.CodeIssuer.
func (i syncingIssuer) Revoke(ctx context.Context, tx pgx.Tx, documentID string) error {
	if err := i.CodeIssuer.Revoke(ctx, tx, documentID); err != nil {
		return err
	}
	if d, err := store.GetDocument(ctx, tx, documentID); err == nil {
		i.sync.Mark(d.DeviceID)
	}
	return nil
}

type syncingNotifier struct {
	service.Notifier
	sync *CodeSync
}

// Notify implements service.Notifier.
func (n syncingNotifier) Notify(ctx context.Context, note service.Notification) error {
	n.sync.Mark(note.Document.DeviceID)
	return n.Notifier.Notify(ctx, note)
}

var _ devicelink.PresenceObserver = (*CodeSync)(nil)
