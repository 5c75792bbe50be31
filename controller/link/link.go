// Package link is kluisd's side of the MQTT contract (controller/wire): it
// announces presence (retained, with an "offline" last will), publishes the
// journal's outbox with QoS 1 until the backend acknowledges each event
// (acks are journaled) a window at a time, paced under the backend's
// budget, alarms first (window.go), sends heartbeats, asks the backend to verify codes
// and staff credentials (request/response with correlation ids and a
// timeout), and hands commands to the engine, publishing their results
// until the backend acknowledges each (results.go).
//
// Every received payload goes through wire.Decode; an invalid one is
// counted, logged without its content and otherwise ignored. An answer to a
// request is handed over only when it carries the backend's signature for
// this device, that request and that very answer (wire.VerifyResponseSig);
// a refused one is counted and reported (Options.Refused) and the request
// goes on waiting for the genuine answer; without one in time it fails as
// unanswered (ErrResponseRefused).
package link

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"kluis/controller/journal"
	"kluis/controller/link/pahostore"
	"kluis/controller/promtext"
	"kluis/controller/wire"
	"kluis/internal/mqttconn"
)

// ErrUnavailable is returned by Verify and Staff without a connection or
// answer in time. The engine then falls back to offline verification.
var ErrUnavailable = errors.New("link: backend unavailable")

// ErrResponseRefused is wrapped (with ErrUnavailable) by Verify and Staff
// when no genuine answer came in time and an answer was refused: not
// signed by the backend for this device, this request and this answer, or
// expired. Nothing was done on it, as if the backend had not answered.
var ErrResponseRefused = errors.New("link: backend answer refused")

// DefaultKeepAlive is the MQTT keep-alive a Link asks for by default:
// the heartbeat's interval. Before it was 15 s, which had every idle
// device ping twice a heartbeat (about 1,270 PINGREQs a second for 19,000
// devices against 633 heartbeats); 30 s halves that and keeps a vanished
// device offline within 45 s at the backend, a silent broker noticed
// within 50 s (docs/kluisd.md, "Keep-alive and dead connections").
const DefaultKeepAlive = 30 * time.Second

// Options configure New.
type Options struct {
	// URL of the broker, e.g. tcp://127.0.0.1:1883.
	URL                string
	ClientID           string
	Username, Password string
	// TLS configures an ssl:// (tls, mqtts, wss) URL; nil: paho's default
	// (the system's CAs).
	TLS      *tls.Config
	DeviceID string
	Software string
	Journal  *journal.Journal
	// Command carries out a command and returns its result (the engine).
	Command func(ctx context.Context, c wire.Command) wire.CommandResult
	// Reported, when set, is told a command's id once its first result is
	// journaled (journal.HoldResult): the engine's CommandReported, so
	// that a restart does not report it interrupted.
	Reported func(id string)
	// ResponseKey is the backend's public key (offline.public_key_file):
	// only answers it signed for this device and the pending request are
	// handed over. Without one every answer is refused.
	ResponseKey ed25519.PublicKey
	// Refused, when set, is told of every refused answer (kind verify/res
	// or staff/res, the request id, why), for the engine to report it as a
	// response_refused event. It runs in the MQTT client's message
	// handler: keep it short.
	Refused func(kind wire.Kind, requestID, why string)
	// Heartbeat fills in a heartbeat's device fields (the engine's
	// diagnostics); At and UptimeS are set by the link.
	Heartbeat func(ctx context.Context) wire.Heartbeat
	// HeartbeatEvery; default 30s.
	HeartbeatEvery time.Duration
	// KeepAlive is the MQTT keep-alive asked for in CONNECT (whole
	// seconds); default DefaultKeepAlive. It is also paho's write
	// timeout: a packet the broker has not taken in that time ends the
	// connection (it reconnects). paho sends a PINGREQ when it has
	// sent or received nothing for a keep-alive (checked every 5 s; a
	// device that only publishes receives nothing, so it pings once a
	// keep-alive whatever it publishes) and gives the connection up when
	// no PINGRESP comes within PingTimeout: a silent broker is noticed at
	// most KeepAlive + PingTimeout + 10 s after it went silent. The broker
	// gives a silent device up 1.5 keep-alives after its last packet.
	KeepAlive time.Duration
	// PingTimeout is how long a PINGREQ may go unanswered; default 10s.
	PingTimeout time.Duration
	// ResendAfter republishes an event in flight not acknowledged this
	// long after it was published; default 30s.
	ResendAfter time.Duration
	// EventPace and AlarmPace bound the outbox's sending (window.go):
	// the alarm lane (Urgent events, the journal's urgent lane) goes
	// first; zero: DefaultEventPace, DefaultAlarmPace.
	EventPace, AlarmPace Pace
	Clock                func() time.Time
	Logger               *slog.Logger
	Registry             *promtext.Registry
}

// Link is the device's MQTT connection.
type Link struct {
	o       Options
	log     *slog.Logger
	client  mqtt.Client
	store   *pahostore.Store // paho's store of unacknowledged packets
	started time.Time
	cmds    chan wire.Command

	mu        sync.Mutex
	pending   map[string]*pendingReq
	win       *window
	results   heldResults
	connGen   int
	connected bool
	wake      chan struct{}
	// direct are the events published out of band (PublishNow), by id,
	// until the backend acknowledges them.
	direct map[string]*directEvent

	acks ackLog

	mPublished, mResent, mAcked, mInvalid *promtext.Counter
	mResultsResent                        *promtext.Counter
	mResultsGivenUp                       *promtext.CounterVec
	mConnected                            *promtext.Gauge
	mInFlight, mBacklog                   *promtext.GaugeVec
	mRefused                              *promtext.CounterVec
}

// pendingReq is a request waiting for its answer: ch gets the accepted
// answer; refused (under Link.mu) is why the last refused one was refused.
type pendingReq struct {
	ch      chan wire.Message
	refused error
}

// New prepares the link; Run connects.
func New(o Options) (*Link, error) {
	if o.URL == "" || o.DeviceID == "" || o.Journal == nil {
		return nil, errors.New("link: url, device id and journal are required")
	}
	if err := wire.ValidDeviceID(o.DeviceID); err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	if o.ClientID == "" {
		// The user name, as a broker with use_username_as_clientid
		// (deploy/mosquitto) takes it anyway.
		o.ClientID = o.Username
		if o.ClientID == "" {
			o.ClientID = o.DeviceID
		}
	}
	if o.HeartbeatEvery == 0 {
		o.HeartbeatEvery = 30 * time.Second
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.KeepAlive < time.Second || o.KeepAlive%time.Second != 0 {
		return nil, fmt.Errorf("link: keep-alive %v: want whole seconds, at least 1s", o.KeepAlive)
	}
	if o.PingTimeout == 0 {
		o.PingTimeout = 10 * time.Second
	}
	if o.ResendAfter == 0 {
		o.ResendAfter = 30 * time.Second
	}
	for _, p := range []struct {
		name string
		p    *Pace
		def  Pace
	}{{"EventPace", &o.EventPace, DefaultEventPace}, {"AlarmPace", &o.AlarmPace, DefaultAlarmPace}} {
		if *p.p == (Pace{}) {
			*p.p = p.def
		}
		if p.p.Window < 1 || !(p.p.Rate > 0) || p.p.Burst < 1 {
			return nil, fmt.Errorf("link: %s: want a window and a burst of at least 1 and a rate above 0, got %+v", p.name, *p.p)
		}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = promtext.NewRegistry()
	}
	if o.Command == nil {
		// Rejected; commandLoop stamps the result with the clock.
		o.Command = func(_ context.Context, c wire.Command) wire.CommandResult {
			return wire.CommandResult{ID: c.ID, Status: wire.StatusRejected}
		}
	}
	l := &Link{o: o, log: o.Logger.With("part", "link"), pending: map[string]*pendingReq{},
		win: newWindow(o.EventPace, o.AlarmPace, o.ResendAfter), cmds: make(chan wire.Command, 64), wake: make(chan struct{}, 1)}
	c := func(name, help string) *promtext.Counter {
		return promtext.NewCounter(promtext.CounterOpts{Namespace: "kluisd", Subsystem: "mqtt", Name: name, Help: help})
	}
	l.mPublished = c("events_published_total", "Event publications (including republications).")
	l.mResent = c("events_resent_total", "Event republications: in flight, not acknowledged within mqtt.resend_after.")
	l.mAcked = c("events_acked_total", "Event ids acknowledged by the backend.")
	l.mInvalid = c("invalid_messages_total", "Received payloads that failed wire validation.")
	l.mResultsResent = c("command_results_resent_total", "Command result republications: not acknowledged by the backend within mqtt.resend_after.")
	l.mConnected = promtext.NewGauge(promtext.GaugeOpts{Namespace: "kluisd", Subsystem: "mqtt", Name: "connected", Help: "1 while connected to the broker."})
	l.mRefused = promtext.NewCounterVec(promtext.CounterOpts{Namespace: "kluisd", Subsystem: "mqtt", Name: "responses_refused_total",
		Help: "Answers to this device's verify and staff requests refused: unsigned, badly signed, for another device or request, changed or expired."},
		[]string{"kind"})
	for _, k := range []wire.Kind{wire.KindVerifyRes, wire.KindStaffRes} {
		l.mRefused.WithLabelValues(string(k))
	}
	l.mResultsGivenUp = promtext.NewCounterVec(promtext.CounterOpts{Namespace: "kluisd", Subsystem: "mqtt", Name: "command_results_given_up_total",
		Help: "Command results no longer sent again without the backend's ack: count (more than 32 held, the oldest) or age (sent for an hour without an ack)."},
		[]string{"reason"})
	for _, r := range []string{givenUpCount, givenUpAge} {
		l.mResultsGivenUp.WithLabelValues(r)
	}
	held := promtext.NewGaugeFunc(promtext.GaugeOpts{Namespace: "kluisd", Subsystem: "mqtt", Name: "command_results_held",
		Help: "Command results journaled and not yet acknowledged by the backend (sent again every mqtt.resend_after)."},
		func() float64 { l.mu.Lock(); defer l.mu.Unlock(); return float64(l.results.count()) })
	cols := []promtext.Collector{l.mPublished, l.mResent, l.mAcked, l.mInvalid, l.mResultsResent, l.mResultsGivenUp, held, l.mConnected, l.mRefused}
	l.mInFlight = promtext.NewGaugeVec(promtext.GaugeOpts{Namespace: "kluisd", Subsystem: "mqtt", Name: "events_in_flight",
		Help: "Events published and not yet acknowledged, by lane (alarm: alarms and their clearing, sent first; event: the rest); at most the lane's window."},
		[]string{"lane"})
	l.mBacklog = promtext.NewGaugeVec(promtext.GaugeOpts{Namespace: "kluisd", Subsystem: "mqtt", Name: "events_backlog",
		Help: "Events not yet acknowledged, in flight or waiting for room in the window, by lane (as of the link's last look at the outbox: every append, ack and reconnection)."},
		[]string{"lane"})
	for i := range l.win.lanes {
		l.mInFlight.WithLabelValues(laneName(i))
		l.mBacklog.WithLabelValues(laneName(i))
	}
	cols = append(cols, l.mInFlight, l.mBacklog)
	for _, col := range cols {
		if err := o.Registry.Register(col); err != nil {
			return nil, err
		}
	}
	// The results a previous run journaled and the backend did not
	// acknowledge: sent once connected.
	rs := o.Journal.Results()
	for _, id := range l.results.load(rs) {
		l.givenUp(id, givenUpCount)
	}
	if len(rs) > 0 {
		l.log.Info("command results held from before the restart, sent again once connected", "results", l.results.count())
	}
	return l, nil
}

// givenUp stops sending the held result of command id (a bound, why:
// givenUpCount or givenUpAge): counted, logged, and no longer held by the
// journal either (its next compaction drops it).
func (l *Link) givenUp(id, why string) {
	l.mResultsGivenUp.WithLabelValues(why).Inc()
	l.o.Journal.ForgetResult(id)
	msg := "too many command results unacknowledged: the oldest no longer sent again"
	if why == givenUpAge {
		msg = "command result unacknowledged for an hour: no longer sent again"
	}
	l.log.Warn(msg, "id", id, "held_at_most", maxHeldResults, "resent_for", maxHoldResult)
}

func (l *Link) topic(k wire.Kind) string {
	t, _ := wire.TopicFor(l.o.DeviceID, k) // the device id was validated in New
	return t
}

// Connected reports whether the broker connection is up.
func (l *Link) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected
}

// Run connects (retrying), serves until ctx ends, then publishes presence
// "offline" and disconnects.
func (l *Link) Run(ctx context.Context) error {
	l.started = l.o.Clock()
	l.store = pahostore.New()
	will, err := wire.Encode(&wire.Presence{State: wire.Offline, Software: l.o.Software})
	if err != nil {
		return err
	}
	opts := mqtt.NewClientOptions().AddBroker(l.o.URL).SetClientID(l.o.ClientID).
		SetUsername(l.o.Username).SetPassword(l.o.Password).SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10*time.Second).SetKeepAlive(l.o.KeepAlive).SetPingTimeout(l.o.PingTimeout).SetOrderMatters(false).
		// A write the broker has not taken within a keep-alive ends the
		// connection: without a deadline paho's writer waited on a full
		// socket for ever (a cut uplink, a broker that stopped reading),
		// its pings behind it, so the dead connection went unnoticed.
		// It also bounds paho's Publish, which waits for its writer.
		SetWriteTimeout(l.o.KeepAlive).
		SetBinaryWill(l.topic(wire.KindPresence), will, 1, true).
		SetOnConnectHandler(l.onConnect).
		// paho's MemoryStore races with its own writer on reconnect (see pahostore).
		SetStore(l.store).
		// Read through a buffer (paho reads a fixed header byte by byte),
		// TLS included: internal/mqttconn.
		SetCustomOpenConnectionFn(mqttconn.Open).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			l.setConnected(false)
			l.log.Warn("broker connection lost", "err", err)
		})
	if l.o.TLS != nil {
		opts.SetTLSConfig(l.o.TLS)
	}
	l.client = mqtt.NewClient(opts)
	l.client.Connect() // retries in the background (SetConnectRetry)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.commandLoop(ctx) }()
	go func() { defer wg.Done(); l.pump(ctx) }()
	<-ctx.Done()
	wg.Wait()
	if l.Connected() {
		off, _ := wire.Encode(&wire.Presence{State: wire.Offline, At: ptr(l.o.Clock().UTC()), Software: l.o.Software})
		t := l.client.Publish(l.topic(wire.KindPresence), 1, true, off)
		t.WaitTimeout(2 * time.Second)
	}
	l.client.Disconnect(500)
	l.setConnected(false)
	return nil
}

func ptr[T any](v T) *T { return &v }

func (l *Link) setConnected(v bool) {
	l.mu.Lock()
	l.connected = v
	if v {
		l.connGen++
		l.win.reset() // everything unacked goes again, oldest first, at the pace
		l.results.reconnected()
		l.directReconnectedLocked()
	}
	l.mu.Unlock()
	if v {
		l.mConnected.Set(1)
		l.poke()
	} else {
		l.mConnected.Set(0)
	}
}

func (l *Link) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *Link) onConnect(c mqtt.Client) {
	subs := map[string]byte{}
	for _, k := range wire.BackendKinds() {
		subs[l.topic(k)] = k.SubscribeQoS()
	}
	// Subscribing can fail or time out (a slow broker, a session takeover
	// in progress): retry while the connection lasts, never give up
	// silently, so the link cannot stay "connected" without its topics.
	for attempt := 1; c.IsConnectionOpen(); attempt++ {
		t := c.SubscribeMultiple(subs, l.onMessage)
		if t.WaitTimeout(5*time.Second) && t.Error() == nil {
			break
		}
		l.log.Error("subscribe failed, retrying", "attempt", attempt, "err", t.Error())
		time.Sleep(min(time.Duration(attempt)*200*time.Millisecond, 2*time.Second))
	}
	if !c.IsConnectionOpen() {
		return
	}
	on, _ := wire.Encode(&wire.Presence{State: wire.Online, At: ptr(l.o.Clock().UTC()), Software: l.o.Software})
	c.Publish(l.topic(wire.KindPresence), 1, true, on)
	l.setConnected(true)
	l.log.Info("connected to broker", "url", l.o.URL)
}

// onMessage decodes and routes a message; it never blocks for long.
func (l *Link) onMessage(_ mqtt.Client, msg mqtt.Message) {
	tp, m, err := wire.Decode(msg.Topic(), msg.Payload())
	if err != nil || tp.Device != l.o.DeviceID {
		l.mInvalid.Inc()
		l.log.Warn("invalid message ignored", "topic", msg.Topic(), "bytes", len(msg.Payload()), "err", err)
		return
	}
	switch v := m.(type) {
	case *wire.Ack:
		for _, id := range v.IDs {
			l.mu.Lock()
			result := l.results.acked(id)
			delete(l.direct, id) // published out of band: received
			l.mu.Unlock()
			// An event's id or a command's (its result recorded by the
			// backend): the journal ends either.
			journaled, err := l.o.Journal.Ack(id)
			if err != nil {
				l.acks.failed(l.log, l.o.Clock(), err)
				if result {
					// Recorded by the backend all the same: at worst
					// sent once more after a restart.
					l.o.Journal.ForgetResult(id)
					continue
				}
				return
			}
			if journaled {
				// Only an ack written now shows that the journal takes
				// writes again: a repeated one writes nothing.
				l.acks.worked(l.log, l.o.Clock())
			}
			if result {
				continue
			}
			l.mAcked.Inc()
			l.mu.Lock()
			freed := l.win.acked(id)
			l.mu.Unlock()
			if freed {
				l.poke() // room in the window for the next event
			}
		}
	case *wire.Command:
		select {
		case l.cmds <- *v:
		default:
			l.log.Error("command queue full, command dropped (the backend retries)", "id", v.ID)
		}
	case *wire.VerifyResponse:
		l.deliver(v.ID, v)
	case *wire.StaffResponse:
		l.deliver(v.ID, v)
	}
}

// ackLogEvery is how often a journal that keeps refusing acks (a full
// disk: every ack batch of the night) is logged again.
const ackLogEvery = time.Minute

// ackLog throttles "journal ack failed": the first failure is logged at
// Error, then at most once every ackLogEvery with the number of failures
// left out since the last line, and "journal acks work again" at Info
// (with the failures left out) when an ack is journaled again.
type ackLog struct {
	mu         sync.Mutex
	failing    bool
	since      time.Time // the first failure
	logged     time.Time // the last line
	suppressed int
}

func (a *ackLog) failed(log *slog.Logger, now time.Time, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case !a.failing:
		a.failing, a.since, a.logged, a.suppressed = true, now, now, 0
		log.Error("journal ack failed", "err", err)
	case now.Sub(a.logged) >= ackLogEvery:
		log.Error("journal ack failed", "err", err, "suppressed", a.suppressed, "failing_since", a.since)
		a.logged, a.suppressed = now, 0
	default:
		a.suppressed++
	}
}

func (a *ackLog) worked(log *slog.Logger, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.failing {
		return
	}
	log.Info("journal acks work again", "suppressed", a.suppressed, "failing_for", now.Sub(a.since).Round(time.Second))
	a.failing, a.suppressed = false, 0
}

// deliver matches an answer to its pending request: the one place answers
// are accepted. The answer is handed over only when its signature verifies
// for this device, that request and this answer. A refused one is counted,
// logged and reported, and the request goes on waiting: a forgery can
// neither open a door nor push the genuine answer aside. A request that
// gets no genuine answer in time fails with ErrResponseRefused (the
// engine acts as if the backend had not answered). An answer without a
// pending request (late, repeated, or guessed) is dropped.
func (l *Link) deliver(id string, m wire.Message) {
	l.mu.Lock()
	p := l.pending[id]
	l.mu.Unlock()
	if p == nil {
		l.log.Warn("response without request (late or duplicate)", "id", id)
		return
	}
	if err := wire.VerifyResponseSig(l.o.ResponseKey, l.o.DeviceID, id, m, l.o.Clock()); err != nil {
		kind := m.MessageKind()
		l.mRefused.WithLabelValues(string(kind)).Inc()
		l.log.Warn("backend answer refused", "kind", kind, "id", id, "err", err)
		l.mu.Lock()
		p.refused = err
		l.mu.Unlock()
		if l.o.Refused != nil {
			l.o.Refused(kind, id, err.Error())
		}
		return
	}
	l.mu.Lock()
	mine := l.pending[id] == p
	if mine {
		delete(l.pending, id)
	}
	l.mu.Unlock()
	if mine { // a duplicate of the genuine answer is dropped
		p.ch <- m
	}
}

func (l *Link) commandLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-l.cmds:
			res := l.o.Command(ctx, c)
			res.ID = c.ID
			if res.At.IsZero() {
				res.At = l.o.Clock().UTC()
			}
			b, err := wire.Encode(&res)
			if err != nil {
				l.log.Error("command result does not encode", "err", err)
				continue
			}
			l.mu.Lock()
			first := !l.results.has(res.ID)
			if !first {
				// A command delivered twice (QoS 1): its first result
				// is held, and is the one the backend records; it goes
				// again now.
				l.results.again(res.ID)
			}
			l.mu.Unlock()
			if first {
				// Journaled before it is published, held until the
				// backend acknowledges it (results.go): a restart
				// sends it again.
				if err := l.o.Journal.HoldResult(res.ID, b); err != nil {
					l.log.Error("command result not journaled: held in memory only, lost if kluisd stops before the backend's ack", "id", res.ID, "err", err)
				} else if l.o.Reported != nil {
					l.o.Reported(res.ID)
				}
				l.mu.Lock()
				dropped := l.results.hold(res.ID, b, l.o.Clock())
				l.mu.Unlock()
				if dropped != "" {
					l.givenUp(dropped, givenUpCount)
				}
				l.client.Publish(l.topic(wire.KindCmdResult), 1, false, b)
			}
			l.poke() // the pump sends it again unless acknowledged
		}
	}
}

// pump publishes the outbox (window.go: a bounded window in flight,
// alarms first, paced under the backend's budget) and heartbeats.
func (l *Link) pump(ctx context.Context) {
	hb := time.NewTicker(l.o.HeartbeatEvery)
	defer hb.Stop()
	next := time.NewTimer(time.Hour)
	defer next.Stop()
	for {
		changed := l.o.Journal.Changed()
		wait := l.publishOutbox()
		if wait <= 0 {
			wait = time.Hour // until an ack, an event or a reconnection
		}
		next.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-l.wake:
		case <-next.C:
		case <-hb.C:
			l.heartbeat(ctx)
		}
	}
}

// publishOutbox publishes what the window lets out now and returns how
// long until it has more to do (0: nothing but an ack, a new event or a
// reconnection).
func (l *Link) publishOutbox() time.Duration {
	defer l.gauges()
	if !l.Connected() {
		return 0
	}
	now := l.o.Clock()
	l.mu.Lock()
	sends, wait := l.win.plan(now, l.o.Journal)
	again, expired, until := l.results.due(now, l.o.ResendAfter)
	direct, dwait := l.directDueLocked(now)
	l.mu.Unlock()
	if until > 0 { // 0: no held result due (shorter takes a 0 b as "now")
		wait = shorter(wait, until)
	}
	if dwait > 0 {
		wait = shorter(wait, dwait)
	}
	for _, b := range direct {
		l.client.Publish(l.topic(wire.KindEvent), 1, false, b)
		l.mPublished.Inc()
	}
	for _, id := range expired {
		l.givenUp(id, givenUpAge)
	}
	for _, b := range again {
		l.client.Publish(l.topic(wire.KindCmdResult), 1, false, b)
		l.mResultsResent.Inc()
	}
	for _, s := range sends {
		l.client.Publish(l.topic(wire.KindEvent), 1, false, []byte(s.ev.Payload))
		l.mPublished.Inc()
		if s.resend {
			l.mResent.Inc()
		}
	}
	return wait
}

// gauges sets the window's gauges (in flight, backlog: O(1) each).
func (l *Link) gauges() {
	l.mu.Lock()
	ev, al := l.win.inFlight(laneEvent), l.win.inFlight(laneAlarm)
	l.mu.Unlock()
	l.mInFlight.WithLabelValues(laneName(laneEvent)).Set(float64(ev))
	l.mInFlight.WithLabelValues(laneName(laneAlarm)).Set(float64(al))
	u := l.o.Journal.OutboxUrgent()
	l.mBacklog.WithLabelValues(laneName(laneAlarm)).Set(float64(u))
	l.mBacklog.WithLabelValues(laneName(laneEvent)).Set(float64(l.o.Journal.OutboxLen() - u))
}

func (l *Link) heartbeat(ctx context.Context) {
	if !l.Connected() {
		return
	}
	var h wire.Heartbeat
	if l.o.Heartbeat != nil {
		h = l.o.Heartbeat(ctx)
	}
	h.At = l.o.Clock().UTC()
	h.UptimeS = int64(l.o.Clock().Sub(l.started) / time.Second)
	h.Backlog = l.o.Journal.OutboxLen()
	h.Software = l.o.Software
	if len(h.Doors) > wire.MaxHeartbeat {
		h.Doors = h.Doors[:wire.MaxHeartbeat]
	}
	b, err := wire.Encode(&h)
	if err != nil {
		l.log.Error("heartbeat does not encode", "err", err)
		return
	}
	l.client.Publish(l.topic(wire.KindHeartbeat), 0, false, b)
}

// request publishes m and waits for the response with the same id.
func (l *Link) request(ctx context.Context, kind wire.Kind, id string, m wire.Message) (wire.Message, error) {
	if !l.Connected() {
		return nil, ErrUnavailable
	}
	b, err := wire.Encode(m)
	if err != nil {
		return nil, err
	}
	p := &pendingReq{ch: make(chan wire.Message, 1)}
	l.mu.Lock()
	l.pending[id] = p
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, id)
		l.mu.Unlock()
	}()
	// paho's Publish waits for its writer (up to a keep-alive when the
	// connection has stopped taking bytes): the kiosk waits for ctx only.
	sent := make(chan mqtt.Token, 1)
	go func() { sent <- l.client.Publish(l.topic(kind), 1, false, b) }()
	defer func() {
		select {
		case tok := <-sent:
			l.forgetRequest(tok, kind, b)
		default:
			go func() { l.forgetRequest(<-sent, kind, b) }()
		}
	}()
	select {
	case r := <-p.ch:
		return r, nil
	case <-ctx.Done():
		l.mu.Lock()
		refused := p.refused
		l.mu.Unlock()
		if refused != nil {
			return nil, fmt.Errorf("%w: %w: %w (%v)", ErrUnavailable, ErrResponseRefused, refused, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// forgetRequest drops a request that has ended from paho's store, where it
// waits unacknowledged when it went into a connection that had died (a
// cut uplink: paho notices only after a keep-alive and a ping timeout):
// paho would send it once it has reconnected, whenever that is, and the
// backend would act on a request nobody waits for any more, claiming a
// single-use code for a kiosk that has fallen back offline and told the
// citizen (the next try was told "pending" until the backend's sweep gave
// the code back), or reserving a compartment for a staff member who has
// walked away. A request still waiting at a reconnection is sent again.
// Its packet id is given back after the reconnection (pahostore's
// ForgetPublish leaves a PUBREL of it, which the broker's PUBCOMP
// answers); it used to stay taken until kluisd stopped, one of 65,535 per
// request given up in a dead connection.
func (l *Link) forgetRequest(tok mqtt.Token, kind wire.Kind, payload []byte) {
	pt, ok := tok.(*mqtt.PublishToken)
	if !ok || pt.MessageID() == 0 {
		return
	}
	if l.store.ForgetPublish(pt.MessageID(), l.topic(kind), payload) {
		l.log.Info("request ended unacknowledged by the broker: not sent again after a reconnection",
			"kind", kind, "message_id", pt.MessageID())
	}
}

// Verify asks the backend to verify a code (engine.Backend).
func (l *Link) Verify(ctx context.Context, req wire.VerifyRequest) (wire.VerifyResponse, error) {
	m, err := l.request(ctx, wire.KindVerifyReq, req.ID, &req)
	if err != nil {
		return wire.VerifyResponse{}, err
	}
	r, ok := m.(*wire.VerifyResponse)
	if !ok {
		return wire.VerifyResponse{}, fmt.Errorf("link: unexpected %s: %w", m.MessageKind(), ErrUnavailable)
	}
	return *r, nil
}

// Staff runs a staff operation with the backend (engine.Backend).
func (l *Link) Staff(ctx context.Context, req wire.StaffRequest) (wire.StaffResponse, error) {
	m, err := l.request(ctx, wire.KindStaffReq, req.ID, &req)
	if err != nil {
		return wire.StaffResponse{}, err
	}
	r, ok := m.(*wire.StaffResponse)
	if !ok || r.Op != req.Op {
		return wire.StaffResponse{}, fmt.Errorf("link: unexpected staff answer: %w", ErrUnavailable)
	}
	return *r, nil
}
