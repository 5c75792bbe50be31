package deviceops_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker/mqtttest"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/deviceops"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// fakeLink records the commands a CodeSync sends and answers their status
// and the devices' presence as the test sets them (the MQTT side is tested
// below on Mosquitto, and in backend/server).
type fakeLink struct {
	mu      sync.Mutex
	cmds    map[string][]wire.Command
	status  map[string]string // command id → status; absent: "sent"
	offline map[string]bool
	fail    bool
	n       int
}

func newFakeLink() *fakeLink {
	return &fakeLink{cmds: map[string][]wire.Command{}, status: map[string]string{}, offline: map[string]bool{}}
}

func (s *fakeLink) SendCommand(_ context.Context, device string, cmd wire.Command) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return "", errors.New("broker down")
	}
	s.n++
	cmd.ID = fmt.Sprintf("c%d", s.n)
	s.cmds[device] = append(s.cmds[device], cmd)
	return cmd.ID, nil
}

func (s *fakeLink) CommandStatus(_ context.Context, id string) (devicelink.CommandState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.status[id]
	if !ok {
		st = "sent"
	}
	return devicelink.CommandState{ID: id, Status: st}, nil
}

func (s *fakeLink) Presence(_ context.Context, device string) (devicelink.PresenceState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off, known := s.offline[device]; known {
		return devicelink.PresenceState{DeviceID: device, Online: !off}, nil
	}
	return devicelink.PresenceState{}, fmt.Errorf("presence of %s: %w", device, pgx.ErrNoRows)
}

func (s *fakeLink) to(device string) []wire.Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wire.Command(nil), s.cmds[device]...)
}

func (s *fakeLink) last(device string) wire.Command {
	c := s.to(device)
	return c[len(c)-1]
}

func (s *fakeLink) answer(id, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[id] = status
}

func (s *fakeLink) set(f func(*fakeLink)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// The code sync sends a device its offline material (hashes only) as a
// full code_sync, not again while unchanged and confirmed, again when it
// changed or got old, promptly after a mark, and to every device on the
// periodic check.
func TestCodeSyncSendsChangedBundles(t *testing.T) {
	e := newEnv(t)
	out := newFakeLink()
	reg := prometheus.NewRegistry()
	// No periodic check during the test (Every an hour): only the marks
	// made by the wrapped issuer may make Run sync a device below.
	cs, err := deviceops.NewCodeSync(deviceops.CodeSyncOptions{Codes: e.codes, Devices: e.svc, Link: out,
		Every: time.Hour, Pause: 10 * time.Millisecond, Clock: e.clock.Now,
		Logger: quietLog(), Registerer: reg})
	require.NoError(t, err)

	doc, cr := e.loaded(store.EID, "591-1234567-89", "k1")
	require.True(t, cs.Sync(e.ctx, "k1"))
	cmds := out.to("k1")
	require.Len(t, cmds, 1)
	c := cmds[0]
	require.Equal(t, wire.CmdCodeSync, c.Kind)
	require.True(t, c.Codes.Full)
	require.Equal(t, t0.UnixNano(), c.Codes.Version, "the version is the injected clock's")
	require.Len(t, c.Codes.Entries, 1)
	en := c.Codes.Entries[0]
	require.Equal(t, doc.ID, en.DocumentID)
	require.Equal(t, wire.Address{Board: 0, Channel: 0}, en.Addr)
	require.Equal(t, pickupcode.QRHash(cr.CodeID), en.QRHash)
	require.True(t, strings.HasPrefix(en.PINHash, "argon2id$t=1,m=64,p=1$"), en.PINHash)
	require.True(t, en.SecondFactor)
	require.NotContains(t, en.PINHash, cr.PIN)
	c.ID, c.Issued, c.Expires = "c1", t0, t0.Add(time.Minute) // as devicelink fills them in
	_, err = wire.Encode(&c)
	require.NoError(t, err, "the command is valid on the wire")

	require.False(t, cs.Sync(e.ctx, "k1"), "unchanged and awaiting the answer: not sent again")
	out.answer(c.ID, "done")
	require.False(t, cs.Sync(e.ctx, "k1"), "unchanged and confirmed: not sent again")
	require.Equal(t, 1.0, syncCount(t, reg, "delivered"))
	e.clock.Add(deviceops.DefaultCodeSyncRefresh)
	require.True(t, cs.Sync(e.ctx, "k1"), "unchanged but old: sent again")
	require.Greater(t, out.last("k1").Codes.Version, c.Codes.Version)
	out.answer(out.last("k1").ID, "done")

	// A failed send is retried by the next sync.
	_, _ = e.loaded(store.DrivingLicence, "B1234567", "k1")
	out.set(func(l *fakeLink) { l.fail = true })
	require.False(t, cs.Sync(e.ctx, "k1"))
	out.set(func(l *fakeLink) { l.fail = false })
	require.True(t, cs.Sync(e.ctx, "k1"))
	require.Len(t, out.last("k1").Codes.Entries, 2)
	require.Equal(t, 3.0, syncCount(t, reg, "sent"))
	require.Equal(t, 1.0, syncCount(t, reg, "failed"))

	// Issuing through the wrapped issuer marks the device; Run syncs it.
	iss := cs.Issuer(codes.Issuer{Service: e.codes})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- cs.Run(ctx) }()
	d2, _ := e.loaded(store.Passport, "EP1234567", "k2")
	require.Empty(t, out.to("k2"), "the plain issuer marks nothing")
	require.NoError(t, pgx.BeginFunc(e.ctx, e.st.Pool(), func(tx pgx.Tx) error {
		comp, err := store.GetCompartment(e.ctx, tx, d2.CompartmentID)
		if err != nil {
			return err
		}
		_, err = iss.Issue(e.ctx, tx, d2, comp, time.Time{})
		return err
	}))
	testenv.Eventually(t, "k2's sync", func() bool { return len(out.to("k2")) > 0 })
	require.Equal(t, d2.ID, out.to("k2")[0].Codes.Entries[0].DocumentID)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	_, err = deviceops.NewCodeSync(deviceops.CodeSyncOptions{Codes: e.codes, Devices: e.svc})
	require.Error(t, err, "a link is required")
}

// A code sync counts as delivered only when the device confirmed it: one
// it does not answer is sent again after the retry interval (doubling while
// unanswered), one it refuses (an older version than its cache) at once
// with a higher version, one its heartbeat reports is confirmed, one it
// lost (a heartbeat reports an older version) is sent again, and nothing is
// sent to a device known to be offline. Versions only increase, whatever
// the clock does.
func TestCodeSyncDeliveredOnlyWhenConfirmed(t *testing.T) {
	e := newEnv(t)
	out := newFakeLink()
	reg := prometheus.NewRegistry()
	retry := 30 * time.Second
	cs, err := deviceops.NewCodeSync(deviceops.CodeSyncOptions{Codes: e.codes, Devices: e.svc, Link: out,
		Retry: retry, Clock: e.clock.Now, Logger: quietLog(), Registerer: reg})
	require.NoError(t, err)
	e.loaded(store.EID, "591-1234567-89", "k1")

	// Lost: not answered.
	require.True(t, cs.Sync(e.ctx, "k1"))
	first := out.last("k1")
	e.clock.Add(retry - time.Second)
	require.False(t, cs.Sync(e.ctx, "k1"), "within the retry interval")
	e.clock.Add(time.Second)
	require.True(t, cs.Sync(e.ctx, "k1"), "unanswered: sent again")
	second := out.last("k1")
	require.Greater(t, second.Codes.Version, first.Codes.Version)
	require.Equal(t, first.Codes.Entries, second.Codes.Entries)
	require.Equal(t, 1.0, syncCount(t, reg, "unanswered"))
	e.clock.Add(retry)
	require.False(t, cs.Sync(e.ctx, "k1"), "the second wait is twice as long")
	e.clock.Add(retry)
	require.True(t, cs.Sync(e.ctx, "k1"))
	require.Len(t, out.to("k1"), 3)

	// A late answer to an earlier one changes nothing: the latest is awaited.
	out.answer(first.ID, "done")
	require.False(t, cs.Sync(e.ctx, "k1"))

	// Refused (another replica's newer version, say): sent again at once.
	out.answer(out.last("k1").ID, "rejected")
	require.True(t, cs.Sync(e.ctx, "k1"))
	require.Equal(t, 1.0, syncCount(t, reg, "refused"))
	require.Len(t, out.to("k1"), 4)
	// The clock is frozen, versions still increase.
	v := out.last("k1").Codes.Version
	require.Greater(t, v, out.to("k1")[2].Codes.Version)

	// Confirmed by the heartbeat that reports its version (the result was lost).
	cs.ObserveHeartbeat("k1", wire.Heartbeat{CacheVersion: v - 1}, e.clock.Now())
	require.False(t, cs.Sync(e.ctx, "k1"), "an older version confirms nothing")
	cs.ObserveHeartbeat("k1", wire.Heartbeat{CacheVersion: v}, e.clock.Now())
	require.Equal(t, 1.0, syncCount(t, reg, "delivered"))
	e.clock.Add(time.Hour / 2)
	out.answer(out.last("k1").ID, "done") // ignored: confirmed already
	e.clock.Add(-time.Hour / 2)
	require.False(t, cs.Sync(e.ctx, "k1"))
	require.Len(t, out.to("k1"), 4)

	// A device that lost its cache (restored from an old backup) gets it again.
	cs.ObserveHeartbeat("k1", wire.Heartbeat{}, e.clock.Now())
	require.True(t, cs.Sync(e.ctx, "k1"))
	require.Len(t, out.to("k1"), 5)
	// A heartbeat reporting a version above every one sent here (another
	// replica's) raises the next one above it.
	out.answer(out.last("k1").ID, "done")
	cs.ObserveHeartbeat("k1", wire.Heartbeat{CacheVersion: v + 1000}, e.clock.Now())

	// Offline: nothing is sent, whatever changes.
	out.set(func(l *fakeLink) { l.offline["k1"] = true })
	e.loaded(store.DrivingLicence, "B1234567", "k1")
	require.False(t, cs.Sync(e.ctx, "k1"))
	require.Len(t, out.to("k1"), 5)
	// Back online (the presence): sent at once by Run.
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- cs.Run(ctx) }()
	defer func() { cancel(); <-done }()
	out.set(func(l *fakeLink) { l.offline["k1"] = false })
	cs.ObservePresence("k1", wire.Presence{State: wire.Online}, e.clock.Now())
	testenv.Eventually(t, "the sync of the device back online", func() bool { return len(out.to("k1")) == 6 })
	require.Len(t, out.last("k1").Codes.Entries, 2)
	require.Greater(t, out.last("k1").Codes.Version, v+1000)
	// An offline presence sends nothing.
	cs.ObservePresence("k1", wire.Presence{State: wire.Offline}, e.clock.Now())

	// A duplicate of that presence (QoS 1) sends nothing more: the sync
	// went out after it.
	cs.ObservePresence("k1", wire.Presence{State: wire.Online}, e.clock.Now())
	// Back online again before answering: the unanswered sync is sent
	// again at once, not after the retry interval.
	e.clock.Add(time.Second)
	cs.ObservePresence("k1", wire.Presence{State: wire.Online}, e.clock.Now())
	testenv.Eventually(t, "the unanswered sync resent on reconnect", func() bool { return len(out.to("k1")) == 7 })
	out.answer(out.last("k1").ID, "done")
	// A confirmed device coming online gets nothing new.
	cs.ObservePresence("k1", wire.Presence{State: wire.Online}, e.clock.Now())
	cs.Mark("k2") // something to wait for behind it
	testenv.Eventually(t, "k2's sync", func() bool { return len(out.to("k2")) > 0 })
	require.Len(t, out.to("k1"), 7)
}

// The queue runs devices whose codes changed before devices synced for
// other reasons, once each however often they are marked, and Workers
// devices at a time at most Rate sends per second.
//
// What is asserted is the order in which the queue hands the devices out,
// not how long a sync takes: every send waits at a gate that the test
// opens only while both workers hold one, so that each send that arrives
// after the first two is the next device the queue handed out. (Without
// the gate, a worker whose bundle read waits for a new database
// connection, some 100 ms under load, is overtaken by the other worker's
// sends of lower priority: send order is not queue order.)
func TestCodeSyncPacedAndPrioritised(t *testing.T) {
	e := newEnv(t)
	out := &gateLink{fakeLink: newFakeLink(), open: make(chan struct{})}
	const workers, rate, pause = 2, 20, time.Millisecond
	cs, err := deviceops.NewCodeSync(deviceops.CodeSyncOptions{Codes: e.codes, Devices: e.svc, Link: out,
		Every: time.Hour, Pause: pause, Workers: workers, Rate: rate, Clock: e.clock.Now, Logger: quietLog()})
	require.NoError(t, err)
	// Twelve devices back online, then k2's codes change (twice).
	var devs []string
	for i := range 12 {
		devs = append(devs, fmt.Sprintf("p%02d", i))
	}
	for _, d := range devs {
		cs.ObservePresence(d, wire.Presence{State: wire.Online}, e.clock.Now())
		cs.ObservePresence(d, wire.Presence{State: wire.Online}, e.clock.Now()) // a QoS 1 duplicate
	}
	cs.Mark("k2")
	cs.Mark("k2")
	// k2 is ready once its pause is over: wait that out before the workers
	// start, so that it is ready for the first of them (a wait for a
	// condition of the monotonic clock, not on how fast anything runs).
	time.Sleep(pause)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- cs.Run(ctx) }()
	n := len(devs) + 1
	for opened := range n {
		// Both workers hold a device at the gate (the last one alone):
		// one more arrived since the last opening.
		want := min(opened+workers, n)
		testenv.Eventually(t, fmt.Sprintf("%d sends at the gate", want), func() bool { return out.arrivals() >= want })
		require.Equal(t, want, out.arrivals(), "no more than %d workers: %v", workers, out.order())
		out.open <- struct{}{}
	}
	took := time.Since(start)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	order := out.order()
	require.Len(t, order, n, "once each: %v", order)
	assert.ElementsMatch(t, []string{"k2", "p00"}, order[:2], "the changed codes first (the other worker takes the next): %v", order)
	assert.Equal(t, devs[1:], order[2:], "then the backlog, first come first served: %v", order)
	assert.Equal(t, workers, out.maxHeld(), "%d devices at once", workers)
	for _, d := range append(devs, "k2") {
		assert.Len(t, out.to(d), 1, "%s synced once", d)
	}
	// The pacer grants the first sends at once (a burst of workers, and
	// one), then one every 1/rate: 13 sends at 20/s cannot go out in less
	// than 10 intervals of 50 ms, however fast or slow the rest is (a lower
	// bound only; the exact schedule is TestPacer's).
	assert.GreaterOrEqual(t, took, time.Duration(n-workers-1)*time.Second/rate, "paced")
}

// gateLink is a fakeLink whose sends wait until the test opens the gate
// for one of them; it records the order in which they arrive and how many
// are held at once.
type gateLink struct {
	*fakeLink
	open      chan struct{}
	mu        sync.Mutex
	sends     []string
	held, top int
}

func (g *gateLink) SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error) {
	g.mu.Lock()
	g.held++
	g.top = max(g.top, g.held)
	g.sends = append(g.sends, device)
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.held--; g.mu.Unlock() }()
	select {
	case <-g.open:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return g.fakeLink.SendCommand(ctx, device, cmd)
}

func (g *gateLink) order() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.sends...)
}

func (g *gateLink) arrivals() int { return len(g.order()) }

func (g *gateLink) maxHeld() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.top
}

// lateLink is a device link bound after the code sync that observes it.
type lateLink struct{ l *devicelink.Link }

func (l *lateLink) SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error) {
	return l.l.SendCommand(ctx, device, cmd)
}

func (l *lateLink) CommandStatus(ctx context.Context, id string) (devicelink.CommandState, error) {
	return l.l.CommandStatus(ctx, id)
}

func (l *lateLink) Presence(ctx context.Context, device string) (devicelink.PresenceState, error) {
	return l.l.Presence(ctx, device)
}

// On Mosquitto, with the real device link: a device that is away while its
// codes change gets them as soon as it is back (its online presence), not
// after the refresh or check interval; a code sync whose publish is lost
// (the device silent) is sent again after the retry interval and counts as
// delivered once the device answers.
//
// The retry interval runs on a fake clock the test moves only once the
// device's answer is recorded: a slow round trip under load can neither
// make a sync count as unanswered nor send it again.
func TestCodeSyncReachesADeviceBackOnlineOverMQTT(t *testing.T) {
	e := newEnv(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dev := "cs-" + hex.EncodeToString(b)
	_, err := e.svc.CreateDevice(e.ctx, "user:admin", store.NewDevice{ID: dev, SiteID: "kortrijk", Kind: store.Locker,
		Compartments: []store.NewCompartment{{Channel: 0, Size: store.SizeM, HeightCM: 100}, {Channel: 1, Size: store.SizeM, HeightCM: 100},
			{Channel: 2, Size: store.SizeM, HeightCM: 100}}})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	ll := &lateLink{}
	// Ahead of the link's presence times, as a sync sent after a presence
	// is on a real clock: a duplicate presence sends nothing again.
	clock := storetest.NewClock(time.Now().Add(time.Hour))
	// Every and Refresh far beyond the test: only the presence and the
	// retry make it send.
	retry := 500 * time.Millisecond
	cs, err := deviceops.NewCodeSync(deviceops.CodeSyncOptions{Codes: e.codes, Devices: e.svc, Link: ll,
		Every: time.Hour, Refresh: time.Hour, Retry: retry, Pause: 10 * time.Millisecond, Clock: clock.Now,
		Logger: quietLog(), Registerer: reg})
	require.NoError(t, err)
	ll.l, err = devicelink.New(devicelink.Options{URL: testenv.BrokerURL(), ClientID: "kluis-backend-cs-" + dev, DeviceFilter: dev,
		Pool: e.st.Pool(), Registry: prometheus.NewRegistry(), Logger: quietLog(), Observer: cs})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- ll.l.Run(ctx) }()
	go func() { done <- cs.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	select {
	case <-ll.l.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("link never ready")
	}
	presence, _ := wire.TopicFor(dev, wire.KindPresence)
	announce := func(c paho.Client, state wire.PresenceState) {
		pb, err := wire.Encode(&wire.Presence{State: state, At: ptr(time.Now().UTC())})
		require.NoError(t, err)
		mqtttest.Publish(t, c, presence, 1, false, string(pb))
	}
	// The device's answer to cmd is recorded; after the retry interval
	// the code sync reads it.
	answered := func(cmd wire.Command, after time.Duration) {
		testenv.Eventually(t, "the answer recorded", func() bool {
			st, err := ll.l.CommandStatus(e.ctx, cmd.ID)
			return err == nil && st.Status == string(wire.StatusDone)
		})
		clock.Add(after)
	}
	syncsWith := func(d *commandDevice, doc string) []wire.Command {
		var out []wire.Command
		for _, c := range d.commands() {
			for _, en := range c.Codes.Entries {
				if en.DocumentID == doc {
					out = append(out, c)
				}
			}
		}
		return out
	}

	// Online: the presence brings the (empty) bundle; the answer makes it delivered.
	fake, client := connectCommandDevice(t, testenv.BrokerURL(), dev)
	fake.answer(wire.StatusDone)
	announce(client, wire.Online)
	testenv.Eventually(t, "the first code sync", func() bool { return len(fake.commands()) == 1 })
	require.Equal(t, wire.CmdCodeSync, fake.commands()[0].Kind)
	answered(fake.commands()[0], retry)
	testenv.Eventually(t, "delivered", func() bool { return syncCount(t, reg, "delivered") == 1 })

	// Away (its last will) while a document is loaded.
	announce(client, wire.Offline)
	client.Disconnect(100)
	testenv.Eventually(t, "the offline presence recorded", func() bool {
		p, err := ll.l.Presence(e.ctx, dev)
		return err == nil && !p.Online
	})
	doc, _ := e.loaded(store.EID, "591-1234567-89", dev)
	cs.Mark(dev)

	// Back: the document's code reaches it at once.
	fake, client = connectCommandDevice(t, testenv.BrokerURL(), dev)
	t.Cleanup(func() { client.Disconnect(100) })
	fake.answer(wire.StatusDone)
	announce(client, wire.Online)
	testenv.Eventually(t, "the code sync with the document after the reconnect", func() bool { return len(syncsWith(fake, doc.ID)) == 1 })
	answered(syncsWith(fake, doc.ID)[0], retry)
	testenv.Eventually(t, "delivered", func() bool { return syncCount(t, reg, "delivered") == 2 })
	require.Equal(t, 2.0, syncCount(t, reg, "sent"), "nothing was sent while it was away")

	// A lost publish (the device silent): sent again after the retry
	// interval, delivered once answered.
	fake.answer("")
	doc2, _ := e.loaded(store.DrivingLicence, "B1234567", dev)
	cs.Mark(dev)
	testenv.Eventually(t, "the code sync with the second document", func() bool { return len(syncsWith(fake, doc2.ID)) == 1 })
	fake.answer(wire.StatusDone)
	clock.Add(retry)
	testenv.Eventually(t, "sent again", func() bool { return len(syncsWith(fake, doc2.ID)) == 2 })
	again := syncsWith(fake, doc2.ID)
	answered(again[1], 2*retry) // the second wait is twice as long
	require.Greater(t, again[1].Codes.Version, again[0].Codes.Version)
	require.Len(t, again[1].Codes.Entries, 2)
	testenv.Eventually(t, "delivered", func() bool { return syncCount(t, reg, "delivered") == 3 })
	require.Equal(t, 1.0, syncCount(t, reg, "unanswered"))
	st, err := ll.l.CommandStatus(e.ctx, again[0].ID)
	require.NoError(t, err)
	require.Equal(t, "sent", st.Status, "the lost one stays unanswered")
}

func syncCount(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "kluis_code_syncs_total" && m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no kluis_code_syncs_total{result=%q}", result)
	return 0
}

// BenchmarkCodeSyncFleetReconnect: a whole fleet's online presences arrive
// at once (a broker restart): how long the code sync takes to read every
// device's bundle from PostgreSQL and send it (to a fake link), unpaced
// (Rate far above what it can do) with the default 4 workers, and how many
// commands went out per second. The default Rate (200/s) is the bound in
// production: 19,000 devices in about 95 s. 19,000 devices.
func BenchmarkCodeSyncFleetReconnect(b *testing.B) {
	e := newEnv(b)
	n := benchFleet
	for i := 0; i < b.N; i++ {
		out := newFakeLink()
		cs, err := deviceops.NewCodeSync(deviceops.CodeSyncOptions{Codes: e.codes, Devices: e.svc, Link: out,
			Every: time.Hour, Rate: 1e9, Clock: e.clock.Now, Logger: quietLog()})
		require.NoError(b, err)
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		start := time.Now()
		for d := range n {
			cs.ObservePresence(fmt.Sprintf("fleet-%05d", d), wire.Presence{State: wire.Online}, e.clock.Now())
		}
		go func() { done <- cs.Run(ctx) }()
		for {
			out.mu.Lock()
			sent := out.n
			out.mu.Unlock()
			if sent == n {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(start)
		cancel()
		<-done
		b.ReportMetric(float64(n)/took.Seconds(), "syncs/s")
		b.ReportMetric(took.Seconds(), "s/fleet")
	}
}

const benchFleet = 19000
