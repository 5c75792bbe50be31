package devicelink

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/controller/wire"
)

// EventHandler applies a device's event to the backend's state, inside the
// transaction that records the event (commit happens after it returns
// nil). It is called once per event id. Return an error wrapping
// ErrRejected to refuse the event for good (recorded and acknowledged);
// any other error is retried when the device resends.
type EventHandler interface {
	HandleEvent(ctx context.Context, tx pgx.Tx, deviceID string, ev wire.Event) error
}

// Verifier answers a code verification request of a device. The response's
// ID is set by the Link; an invalid response is replaced by "unavailable".
type Verifier interface {
	Verify(ctx context.Context, deviceID string, req wire.VerifyRequest) wire.VerifyResponse
}

// StaffHandler answers a staff operation request of a device, like
// Verifier.
type StaffHandler interface {
	HandleStaff(ctx context.Context, deviceID string, req wire.StaffRequest) wire.StaffResponse
}

// EventHandlerFunc adapts a function to EventHandler.
type EventHandlerFunc func(ctx context.Context, tx pgx.Tx, deviceID string, ev wire.Event) error

// HandleEvent calls f.
func (f EventHandlerFunc) HandleEvent(ctx context.Context, tx pgx.Tx, deviceID string, ev wire.Event) error {
	return f(ctx, tx, deviceID, ev)
}

// StaffHandlerFunc adapts a function to StaffHandler.
type StaffHandlerFunc func(ctx context.Context, deviceID string, req wire.StaffRequest) wire.StaffResponse

// HandleStaff calls f.
func (f StaffHandlerFunc) HandleStaff(ctx context.Context, deviceID string, req wire.StaffRequest) wire.StaffResponse {
	return f(ctx, deviceID, req)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, deviceID string, req wire.VerifyRequest) wire.VerifyResponse

// Verify calls f.
func (f VerifierFunc) Verify(ctx context.Context, deviceID string, req wire.VerifyRequest) wire.VerifyResponse {
	return f(ctx, deviceID, req)
}

// PresenceObserver is told of every presence and heartbeat once it is
// recorded (in arrival order per device, with the time the link received
// it). It runs in the presence writer's goroutine: it must not block.
// deviceops.CodeSync uses it to send a device that comes back online its
// offline codes at once and to learn which code sync a device holds.
type PresenceObserver interface {
	ObservePresence(device string, p wire.Presence, at time.Time)
	ObserveHeartbeat(device string, hb wire.Heartbeat, at time.Time)
}

// Errors.
var (
	// ErrRejected is wrapped by an EventHandler that refuses an event for
	// good.
	ErrRejected = errors.New("devicelink: event rejected")
	// ErrNotConnected: SendCommand while the link has no broker connection.
	ErrNotConnected = errors.New("devicelink: not connected to the broker")
)

// Embedded is a broker in this process that the link uses directly,
// without an MQTT connection: kluis-backend's embedded broker
// (backend/broker.Broker). Its Subscribe handler runs in the publishing
// device's goroutine, so a full queue holds back that device alone and
// nothing waits in a broker queue (where it could be dropped).
type Embedded interface {
	Subscribe(filter string, handler func(topic string, payload []byte)) error
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Options configure a Link.
type Options struct {
	// Embedded, when set, is used instead of an MQTT connection (URL,
	// ClientID, Username, Password, TLS and ShareGroup are then unused).
	Embedded Embedded
	// URL is the broker, e.g. "tcp://127.0.0.1:1883" (the default) or
	// "ssl://broker:8883".
	URL string
	// ClientID defaults to "kluis-backend-" and a random suffix; every
	// replica needs its own.
	ClientID string
	// Username and Password log in to the broker (user "kluis-backend").
	Username, Password string
	// TLS for an ssl:// URL.
	TLS *tls.Config
	// ShareGroup defaults to wire.BackendShareGroup.
	ShareGroup string
	// DeviceFilter is the device level of the subscriptions, default "+"
	// (every device). Tests on a shared broker set their device id.
	DeviceFilter string
	// Pool is the database (migrated by backend/store); required.
	Pool *pgxpool.Pool
	// Events applies events; nil records them only.
	Events EventHandler
	// Verifier answers verify/req; nil answers "unavailable".
	Verifier Verifier
	// Staff answers staff/req; nil answers "unavailable".
	Staff StaffHandler
	// Observer, when set, is told of every presence and heartbeat this
	// link recorded (another replica's share is told to its own).
	Observer PresenceObserver
	// Workers process events and command results; default 4.
	// QueueSize bounds the messages waiting for them (default 1024): when
	// it is full, reading from the broker waits (back-pressure), at most
	// Timeout: then the message is dropped unacknowledged ("busy") and its
	// device sends it again.
	Workers   int
	QueueSize int
	// RequestWorkers answer verify and staff requests, from a queue of
	// their own (QueueSize too), so that a kiosk's question never waits
	// behind events; default 64. A worker mostly waits (a verification
	// waits for its batch's transaction, backend/codes): as many
	// verifications as workers can share one transaction.
	RequestWorkers int
	// PresenceBatch is how many devices' presence and heartbeat are
	// recorded in one round trip; default 500. Presence and heartbeats are
	// never queued behind events: the latest of each per device waits,
	// an older one still waiting is replaced (coalesced).
	PresenceBatch int
	// OnlineRefresh is how often kluis_devicelink_devices_online is
	// recounted from the database after a presence change (and every 30
	// times that without one, for other replicas' changes); default 1 s.
	OnlineRefresh time.Duration
	// CommandTTL is the expiry SendCommand gives a command without one;
	// default 5 minutes.
	CommandTTL time.Duration
	// Timeout bounds one handler call, database transaction or publish;
	// default 10 s.
	Timeout time.Duration
	// ReplyCache is how long a verify or staff answer is kept for a
	// repeated request id; default 2 minutes.
	ReplyCache time.Duration
	// VerifyBudget bounds each device's verify and staff requests
	// together (a token bucket per device); zero: DefaultVerifyBudget. A
	// request over budget is answered "unavailable" (signed with
	// SignAnswer), not put to the Verifier or StaffHandler.
	VerifyBudget Budget
	// EventBudget bounds each device's events; zero: DefaultEventBudget.
	// An event over budget is not stored nor acknowledged: the device
	// keeps it in its journal and sends it again (kluisd after
	// mqtt.resend_after, 30 s by default).
	EventBudget Budget
	// AlarmBudget bounds each device's alarms and their clearing (the
	// events of a wire.EventKind.Urgent kind, told apart before decoding
	// by wire.PeekEventKind) instead of EventBudget, so that a backlog
	// over the event budget holds back no alarm; zero:
	// DefaultAlarmBudget. An event that spent it and decodes as another
	// kind is refused as malformed (neither stored nor acknowledged).
	AlarmBudget Budget
	// ResultBudget bounds each device's command results; zero:
	// DefaultResultBudget. A result over budget is neither recorded nor
	// acknowledged: the device sends it again (kluisd after
	// mqtt.resend_after).
	ResultBudget Budget
	// ThrottleQuiet ends a device's episode over a budget: a refusal after
	// this long without one is a new episode (a new warning and
	// device.throttled audit record); default DefaultThrottleQuiet.
	ThrottleQuiet time.Duration
	// SignAnswer signs an answer the link makes itself (a request over
	// budget answered "unavailable") as the Verifier's and StaffHandler's
	// answers are signed (deviceops.AnswerSigner.Sign); nil: sent
	// unsigned (kluisd then refuses it and waits for its timeout).
	SignAnswer func(device string, m wire.Message) error
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the metrics; default a private registry.
	Registry prometheus.Registerer
}

// Link is the backend's MQTT connection to the devices.
type Link struct {
	o      Options
	log    *slog.Logger
	m      *metrics
	queue  chan inbound
	reqs   chan inbound // verify and staff requests
	ready  chan struct{}
	readyO sync.Once

	mu      sync.Mutex
	client  paho.Client
	replies *replyCache
	co      *coalescer
	budgets *budgets
	// episodes are the devices' episodes over budget not yet audited.
	episodes *episodeLog
	stop     chan struct{} // closed when Run's context ends
	changed  chan struct{} // a presence change was recorded (cap 1)
}

type inbound struct {
	topic   string
	payload []byte
	// overBudget: a request over its device's budget, answered
	// "unavailable" without asking the Verifier or StaffHandler.
	overBudget bool
	// alarm: an event that spent the alarm budget (its payload's kind
	// peeked as urgent); it must decode as such.
	alarm bool
}

type reply struct {
	done    chan struct{}
	topic   string
	payload []byte
	at      time.Time
}

type metrics struct {
	messages  *prometheus.CounterVec
	episodes  *prometheus.CounterVec
	online    prometheus.Gauge
	connected prometheus.Gauge
}

// New checks opts and fills defaults; Run connects.
func New(opts Options) (*Link, error) {
	if opts.Pool == nil {
		return nil, errors.New("devicelink: Options.Pool is required")
	}
	if opts.URL == "" {
		opts.URL = "tcp://127.0.0.1:1883"
	}
	if opts.ClientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		opts.ClientID = "kluis-backend-" + hex.EncodeToString(b[:])
	}
	if opts.ShareGroup == "" {
		opts.ShareGroup = wire.BackendShareGroup
	}
	if opts.DeviceFilter == "" {
		opts.DeviceFilter = "+"
	}
	if opts.DeviceFilter != "+" {
		if err := wire.ValidDeviceID(opts.DeviceFilter); err != nil {
			return nil, fmt.Errorf("devicelink: DeviceFilter: %w", err)
		}
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.RequestWorkers <= 0 {
		opts.RequestWorkers = 64
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1024
	}
	if opts.CommandTTL <= 0 {
		opts.CommandTTL = 5 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.ReplyCache <= 0 {
		opts.ReplyCache = 2 * time.Minute
	}
	if opts.PresenceBatch <= 0 {
		opts.PresenceBatch = 500
	}
	if opts.OnlineRefresh <= 0 {
		opts.OnlineRefresh = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ThrottleQuiet <= 0 {
		opts.ThrottleQuiet = DefaultThrottleQuiet
	}
	for _, b := range []struct {
		name string
		b    *Budget
		def  Budget
	}{{"VerifyBudget", &opts.VerifyBudget, DefaultVerifyBudget()}, {"EventBudget", &opts.EventBudget, DefaultEventBudget()},
		{"AlarmBudget", &opts.AlarmBudget, DefaultAlarmBudget()}, {"ResultBudget", &opts.ResultBudget, DefaultResultBudget()}} {
		if *b.b == (Budget{}) {
			*b.b = b.def
		}
		if !(b.b.Rate > 0) || b.b.Burst < 1 {
			return nil, fmt.Errorf("devicelink: Options.%s: want a rate above 0 and a burst of at least 1, got %v and %d", b.name, b.b.Rate, b.b.Burst)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kluis_devicelink_messages_total",
			Help: "Messages from devices by topic kind and outcome (ok, duplicate, rejected, malformed, unknown, error; coalesced: a presence or heartbeat replaced by a newer one of the same device before it was recorded; throttled: over the device's budget, an event not acknowledged, a request answered unavailable; busy: no room in the full queue within Options.Timeout, dropped unacknowledged, the device sends it again).",
		}, []string{"kind", "outcome"}),
		episodes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kluis_devicelink_throttle_episodes_total",
			Help: "Episodes of a device over its budget (verify: verify and staff requests; event: events but alarms; alarm: alarms and their clearing; cmdres: command results); the log and the audit trail (device.throttled) name the device.",
		}, []string{"budget"}),
		online: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kluis_devicelink_devices_online", Help: "Devices whose last presence is online."}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kluis_devicelink_broker_connected", Help: "1 while this replica is connected to the broker."}),
	}
	bud := newBudgets([budgetKinds]Budget{budgetVerify: opts.VerifyBudget, budgetEvent: opts.EventBudget,
		budgetAlarm: opts.AlarmBudget, budgetResult: opts.ResultBudget}, opts.ThrottleQuiet)
	cs := []prometheus.Collector{m.messages, m.episodes, m.online, m.connected,
		newPresenceMetrics(opts.Pool, opts.DeviceFilter, opts.Timeout, opts.Logger.With("part", "devicelink"))}
	for k := range budgetKinds {
		m.episodes.WithLabelValues(k.String())
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "kluis_devicelink_devices_throttled",
			Help:        "Devices in an episode over their budget (refused within Options.ThrottleQuiet), by budget.",
			ConstLabels: prometheus.Labels{"budget": k.String()},
		}, func() float64 { return float64(bud.throttled(k, opts.Now())) }))
	}
	if err := registerAll(opts.Registry, cs...); err != nil {
		return nil, fmt.Errorf("devicelink: metrics: %w", err)
	}
	return &Link{
		budgets:  bud,
		episodes: newEpisodeLog(),
		o:        opts,
		log:      opts.Logger.With("part", "devicelink"),
		m:        m,
		queue:    make(chan inbound, opts.QueueSize),
		reqs:     make(chan inbound, opts.QueueSize),
		ready:    make(chan struct{}),
		replies:  newReplyCache(opts.ReplyCache, replyCacheMax, replyCacheMax/16),
		co:       newCoalescer(),
		stop:     make(chan struct{}),
		changed:  make(chan struct{}, 1),
	}, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Ready is closed once the link is connected and subscribed for the first
// time.
func (l *Link) Ready() <-chan struct{} { return l.ready }

// Run connects (retrying until the broker answers), serves until ctx ends,
// then disconnects and waits for its workers.
func (l *Link) Run(ctx context.Context) error {
	if l.o.Embedded != nil {
		return l.runEmbedded(ctx)
	}
	co := paho.NewClientOptions().AddBroker(l.o.URL).SetClientID(l.o.ClientID).
		SetUsername(l.o.Username).SetPassword(l.o.Password).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(500 * time.Millisecond).SetMaxReconnectInterval(2 * time.Second).
		SetKeepAlive(30 * time.Second).SetPingTimeout(10 * time.Second).
		SetConnectTimeout(l.o.Timeout).SetWriteTimeout(l.o.Timeout).
		SetOnConnectHandler(l.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			l.m.connected.Set(0)
			l.log.Warn("broker connection lost", "err", err)
		})
	if l.o.TLS != nil {
		co.SetTLSConfig(l.o.TLS)
	}
	c := paho.NewClient(co)
	l.mu.Lock()
	l.client = c
	l.mu.Unlock()
	c.Connect() // with ConnectRetry the token completes only on success; OnConnect does the rest
	wait := l.work(ctx)
	<-ctx.Done()
	close(l.stop)
	c.Disconnect(250)
	l.m.connected.Set(0)
	wait()
	return ctx.Err()
}

// runEmbedded is Run on an Embedded broker: it subscribes once (the
// subscriptions live as long as the broker) and serves until ctx ends.
func (l *Link) runEmbedded(ctx context.Context) error {
	wait := l.work(ctx)
	for _, k := range wire.DeviceKinds() {
		filter := wire.Root + "/" + l.o.DeviceFilter + "/" + string(k)
		if err := l.o.Embedded.Subscribe(filter, l.receive); err != nil {
			close(l.stop)
			wait()
			return fmt.Errorf("devicelink: %w", err)
		}
	}
	l.m.connected.Set(1)
	l.log.Info("subscribed on the embedded broker")
	l.readyO.Do(func() { close(l.ready) })
	<-ctx.Done()
	close(l.stop)
	l.m.connected.Set(0)
	wait()
	return ctx.Err()
}

// work starts the workers, the presence writer and the online counter
// until ctx ends; the returned function waits for them.
//
// On an Embedded broker, which has stopped taking messages from devices
// when ctx ends (kluis-backend's stop: broker.Broker.Shutdown first), the
// event workers then process what is queued, within Timeout after the
// end (and one under way as ctx ends is finished, not cancelled): an
// event the broker acknowledged is recorded now rather than sent again by
// its device after the restart. What is left is not
// acknowledged; the device keeps it and sends it again.
func (l *Link) work(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); l.recordPresence(ctx) }()
	go func() { defer wg.Done(); l.countOnline(ctx) }()
	go func() { defer wg.Done(); l.recordEpisodes(ctx) }()
	drain, endDrain := context.WithCancel(context.WithoutCancel(ctx))
	stopTimer := context.AfterFunc(ctx, func() { time.AfterFunc(l.o.Timeout, endDrain) })
	serve := func(q chan inbound, drains bool) {
		defer wg.Done()
		pctx := ctx
		if drains {
			pctx = drain // an event under way when ctx ends is finished too
		}
		for {
			select {
			case <-ctx.Done():
				for drains && drain.Err() == nil {
					select {
					case msg := <-q:
						l.process(drain, msg)
					default:
						return
					}
				}
				return
			case msg := <-q:
				if drains && pctx.Err() != nil {
					return // not acknowledged: sent again
				}
				l.process(pctx, msg)
			}
		}
	}
	for range l.o.Workers {
		wg.Add(1)
		go serve(l.queue, l.o.Embedded != nil)
	}
	for range l.o.RequestWorkers {
		wg.Add(1)
		go serve(l.reqs, false)
	}
	return func() {
		wg.Wait()
		stopTimer()
		endDrain()
	}
}

func (l *Link) onConnect(c paho.Client) {
	filters := map[string]byte{}
	for _, k := range wire.DeviceKinds() {
		filters["$share/"+l.o.ShareGroup+"/"+wire.Root+"/"+l.o.DeviceFilter+"/"+string(k)] = 1
	}
	// paho runs this handler in its own goroutine; waiting here is fine.
	for attempt := 1; attempt <= 10 && c.IsConnectionOpen(); attempt++ {
		tok := c.SubscribeMultiple(filters, l.onMessage)
		if !tok.WaitTimeout(l.o.Timeout) || tok.Error() != nil {
			l.log.Error("subscribe failed", "attempt", attempt, "err", tok.Error())
			time.Sleep(time.Second)
			continue
		}
		for f, code := range tok.(*paho.SubscribeToken).Result() {
			if code == 0x80 {
				l.log.Error("subscription refused by the broker", "filter", f)
			}
		}
		l.m.connected.Set(1)
		l.log.Info("connected and subscribed", "url", l.o.URL, "client", l.o.ClientID, "group", l.o.ShareGroup)
		l.readyO.Do(func() { close(l.ready) })
		return
	}
}

// onMessage hands a presence or heartbeat to the coalescer (never
// blocking) and queues a copy of any other message, waiting while the
// queue is full (at most Timeout, see receive): back-pressure on the
// broker connection.
func (l *Link) onMessage(_ paho.Client, m paho.Message) {
	l.receive(m.Topic(), bytes.Clone(m.Payload()))
}

// receive is onMessage's work, for a payload the link may keep.
func (l *Link) receive(topic string, payload []byte) {
	msg := inbound{topic: topic, payload: payload}
	q := l.queue
	if t, err := wire.ParseTopic(msg.topic); err == nil {
		switch t.Kind {
		case wire.KindPresence, wire.KindHeartbeat:
			if l.co.add(t.Device, t.Kind == wire.KindHeartbeat, msg.payload, l.now()) {
				l.m.messages.WithLabelValues(string(t.Kind), "coalesced").Inc()
			}
			return
		case wire.KindVerifyReq, wire.KindStaffReq:
			q = l.reqs
			// Queued all the same: it is answered "unavailable", or
			// with its first answer when it repeats an answered id.
			msg.overBudget = !l.allow(t.Device, budgetVerify)
		case wire.KindEvent:
			b := budgetEvent
			if k, ok := wire.PeekEventKind(payload); ok && k.Urgent() {
				b, msg.alarm = budgetAlarm, true
			}
			if !l.allow(t.Device, b) {
				// Not stored, not acknowledged: the device keeps it
				// and sends it again later. Nothing is lost.
				l.m.messages.WithLabelValues(string(t.Kind), "throttled").Inc()
				return
			}
		case wire.KindCmdResult:
			if !l.allow(t.Device, budgetResult) {
				l.m.messages.WithLabelValues(string(t.Kind), "throttled").Inc()
				return
			}
		}
	}
	select {
	case q <- msg:
		return
	default:
	}
	// The queue is full: wait for room, but not past Timeout. On the
	// embedded broker this is the device's connection goroutine; kluisd,
	// its pings unread meanwhile, reconnects after its ping timeout, and
	// each connection it leaves would wait here too for as long as the
	// queue stays full (a database that hangs): a goroutine per device
	// per reconnection. What is not queued is not acknowledged: the
	// device sends it again (a request goes unanswered; the kiosk's own
	// wait ends first).
	t := time.NewTimer(l.o.Timeout)
	defer t.Stop()
	select {
	case q <- msg:
	case <-l.stop:
	case <-t.C:
		l.count(msg.topic, "busy")
	}
}

func (l *Link) count(topic, outcome string) {
	kind := "unknown"
	if t, err := wire.ParseTopic(topic); err == nil {
		kind = string(t.Kind)
	}
	l.m.messages.WithLabelValues(kind, outcome).Inc()
}

// panicAttrs describes a recovered panic for the log by its type and the
// stack: its value may quote the device's payload (a code, an event).
func panicAttrs(p any) slog.Attr {
	return slog.Group("panic", "type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
}

func (l *Link) process(ctx context.Context, msg inbound) {
	defer func() {
		if r := recover(); r != nil {
			l.count(msg.topic, "error")
			l.log.Error("panic while handling a message", "topic", truncate(msg.topic), panicAttrs(r))
		}
	}()
	t, m, err := wire.Decode(msg.topic, msg.payload)
	if err != nil {
		l.count(msg.topic, "malformed")
		l.log.Warn("malformed message ignored", "topic", truncate(msg.topic), "bytes", len(msg.payload), "err", err)
		return
	}
	if !t.Kind.FromDevice() {
		l.count(msg.topic, "malformed")
		l.log.Warn("message of a backend kind from a device topic ignored", "topic", msg.topic)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	var outcome string
	switch m := m.(type) {
	case *wire.Event:
		if msg.alarm && !m.Kind.Urgent() {
			// Let in on the alarm budget by a first "kind" the decoded
			// event does not have: no honest device sends that.
			l.count(msg.topic, "malformed")
			l.log.Warn("event let in as an alarm is none: ignored", "device", t.Device, "kind", m.Kind)
			return
		}
		outcome = l.handleEvent(ctx, t.Device, m, msg.payload)
	case *wire.CommandResult:
		outcome = l.handleResult(ctx, t.Device, m)
	case *wire.VerifyRequest:
		unavailable := &wire.VerifyResponse{ID: m.ID, Result: wire.VerifyUnavailable}
		stale := false
		outcome = l.handleRequest(ctx, t.Device, m.ID, wire.KindVerifyRes, unavailable, func(ctx context.Context) wire.Message {
			if msg.overBudget {
				return l.unavailable(t.Device, unavailable)
			}
			if stale = l.staleVerify(t.Device, m); stale {
				return l.unavailable(t.Device, unavailable)
			}
			return l.verify(ctx, t.Device, m)
		})
		if stale && outcome == "ok" {
			outcome = "stale"
		}
	case *wire.StaffRequest:
		unavailable := &wire.StaffResponse{ID: m.ID, Op: m.Op, Result: wire.StaffUnavailable}
		outcome = l.handleRequest(ctx, t.Device, m.ID, wire.KindStaffRes, unavailable, func(ctx context.Context) wire.Message {
			if msg.overBudget {
				return l.unavailable(t.Device, unavailable)
			}
			return l.staff(ctx, t.Device, m)
		})
	default:
		outcome = "unknown"
	}
	if outcome == "ok" && msg.overBudget {
		outcome = "throttled" // answered unavailable; a repeated id keeps its first answer
	}
	l.m.messages.WithLabelValues(string(t.Kind), outcome).Inc()
}

// allow spends one token of device's kind budget; over budget it warns
// (once when an episode begins, then at most every minute with the
// refusals since), counts the episode and queues its audit record.
func (l *Link) allow(device string, kind budgetKind) bool {
	now := l.now()
	v := l.budgets.spend(device, kind, now)
	if v.ok {
		return true
	}
	b := l.budgets.of[kind]
	what := "verify and staff requests answered unavailable"
	switch kind {
	case budgetEvent, budgetAlarm:
		what = kind.String() + "s not acknowledged (the device sends them again later)"
	case budgetResult:
		what = "command results not recorded"
	}
	switch {
	case v.started:
		l.m.episodes.WithLabelValues(kind.String()).Inc()
		l.log.Warn("device over its budget: "+what, "device", device, "budget", kind.String(),
			"rate_per_s", b.Rate, "burst", b.Burst)
		if l.episodes.add(episode{device: device, kind: kind, at: now, budget: b}) {
			l.log.Warn("too many episodes over budget waiting to be audited; the oldest dropped")
		}
	case v.report:
		l.log.Warn("device still over its budget: "+what, "device", device, "budget", kind.String(),
			"refused", v.refused, "since", v.since)
	}
	return false
}

// unavailable is the link's own answer to a request over budget or whose
// handler failed, signed like the handlers' answers.
func (l *Link) unavailable(device string, m wire.Message) wire.Message {
	if l.o.SignAnswer != nil {
		if err := l.o.SignAnswer(device, m); err != nil {
			l.log.Error("unavailable answer not signed", "device", device, "kind", m.MessageKind(), "err", err)
		}
	}
	return m
}

func (l *Link) now() time.Time { return l.o.Now().UTC() }

// handleEvent records and applies ev once, then acknowledges it.
func (l *Link) handleEvent(ctx context.Context, device string, ev *wire.Event, payload []byte) string {
	outcome := "ok"
	var owner string
	received := l.now()
	ev.At = l.deviceTime(device, "event", ev.ID, ev.At, received)
	err := pgx.BeginFunc(ctx, l.o.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload)
			VALUES ($1, $2, $3, $4, $5, 'applied', $6) ON CONFLICT (event_id) DO NOTHING`,
			ev.ID, device, string(ev.Kind), ev.At, received, json.RawMessage(payload))
		if err != nil {
			return fmt.Errorf("insert event: %w", err)
		}
		if tag.RowsAffected() == 0 {
			outcome = "duplicate"
			return tx.QueryRow(ctx, `SELECT device_id FROM device_events WHERE event_id = $1`, ev.ID).Scan(&owner)
		}
		if l.o.Events != nil {
			return l.o.Events.HandleEvent(ctx, tx, device, *ev)
		}
		return nil
	})
	switch {
	case err == nil:
	case errors.Is(err, ErrRejected):
		outcome = "rejected"
		l.log.Warn("event rejected", "device", device, "event", ev.ID, "kind", ev.Kind, "err", err)
		if _, err := l.o.Pool.Exec(ctx, `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, detail, payload)
			VALUES ($1, $2, $3, $4, $5, 'rejected', $6, $7) ON CONFLICT (event_id) DO NOTHING`,
			ev.ID, device, string(ev.Kind), ev.At, l.now(), truncate(err.Error()), json.RawMessage(payload)); err != nil {
			l.log.Error("recording a rejected event failed; not acknowledged", "device", device, "event", ev.ID, "err", err)
			return "error"
		}
	default:
		l.log.Error("event not applied; not acknowledged", "device", device, "event", ev.ID, "kind", ev.Kind, "err", err)
		return "error"
	}
	if outcome == "duplicate" && owner != device {
		l.log.Warn("event id already used by another device", "device", device, "owner", owner, "event", ev.ID)
	}
	l.reply(device, &wire.Ack{IDs: []string{ev.ID}})
	return outcome
}

// deviceTime is the time a device gave a message (what) that arrived at
// received. A device's clock may reach back (events journaled offline),
// not ahead: a time more than wire.CommandSkew after received would be
// recorded, audited and ordered (the fleet page's latest alarm of a
// kind and place) at that date, so it counts from the arrival instead;
// the stored payload keeps the device's word.
func (l *Link) deviceTime(device, what, id string, at, received time.Time) time.Time {
	if !at.After(received.Add(wire.CommandSkew)) {
		return at
	}
	l.log.Warn("device time ahead of the backend's clock; taken as the arrival", "device", device,
		"what", what, "id", id, "at", at, "received", received)
	return received
}

// handleResult records a command's first result, then acknowledges it
// on the device's ack topic (its command id), as it does a repeated one
// and one of a command it does not know (sending it again would not
// help); a result it could not record is not acknowledged, and the device
// sends it again.
func (l *Link) handleResult(ctx context.Context, device string, r *wire.CommandResult) string {
	r.At = l.deviceTime(device, "command result", r.ID, r.At, l.now())
	tag, err := l.o.Pool.Exec(ctx, `UPDATE device_commands SET status = $3, result_at = $4, result_detail = $5
		WHERE command_id = $1 AND device_id = $2 AND status IN ('pending', 'sent')`,
		r.ID, device, string(r.Status), r.At, r.Detail)
	if err != nil {
		l.log.Error("recording a command result failed; not acknowledged", "device", device, "command", r.ID, "err", err)
		return "error"
	}
	outcome := "ok"
	if tag.RowsAffected() == 1 && r.Status == wire.StatusUncertain {
		l.log.Warn("command result uncertain: the device restarted while carrying it out", "device", device, "command", r.ID, "detail", r.Detail)
	} else if tag.RowsAffected() == 1 {
		l.log.Info("command result", "device", device, "command", r.ID, "status", r.Status)
	} else {
		var n int
		if err := l.o.Pool.QueryRow(ctx, `SELECT count(*) FROM device_commands WHERE command_id = $1 AND device_id = $2`, r.ID, device).Scan(&n); err != nil {
			l.log.Error("looking up a command result failed; not acknowledged", "device", device, "command", r.ID, "err", err)
			return "error"
		}
		outcome = "duplicate"
		if n == 0 {
			outcome = "unknown"
			l.log.Warn("result of an unknown command", "device", device, "command", r.ID)
		}
	}
	l.reply(device, &wire.Ack{IDs: []string{r.ID}})
	return outcome
}

// handleRequest answers a request once per (device, id): a repeated id
// gets the first answer again. unavailable is the answer when answer
// panics or its answer does not encode.
func (l *Link) handleRequest(ctx context.Context, device, id string, kind wire.Kind, unavailable wire.Message, answer func(context.Context) wire.Message) string {
	key := device + "\x00" + string(kind) + "\x00" + id
	r, seen := l.replies.get(key, l.now())
	outcome := "ok"
	if seen {
		outcome = "duplicate"
		select {
		case <-r.done:
		case <-ctx.Done():
			return "error"
		}
	} else {
		r.payload = l.answerOnce(ctx, device, unavailable, answer)
		close(r.done)
	}
	if r.payload == nil {
		return "error"
	}
	topic, _ := wire.TopicFor(device, kind)
	l.send(topic, kind, r.payload)
	return outcome
}

// answerOnce is the encoded answer to a first request; a handler that
// panics or answers what does not encode gets the kiosk an unavailable
// answer instead (never a wait, nor a reply-cache entry left open for its
// repeats to wait on). The panic's value is not logged: it may hold the
// request's code.
func (l *Link) answerOnce(ctx context.Context, device string, unavailable wire.Message, answer func(context.Context) wire.Message) (b []byte) {
	var m wire.Message
	func() {
		defer func() {
			if p := recover(); p != nil {
				l.log.Error("panic while answering a request: answered unavailable", "device", device,
					"kind", unavailable.MessageKind(), panicAttrs(p))
				m = nil
			}
		}()
		m = answer(ctx)
	}()
	var err error
	if m != nil {
		if b, err = wire.Encode(m); err == nil {
			return b
		}
		l.log.Error("invalid answer replaced by unavailable", "device", device, "kind", unavailable.MessageKind(), "err", err)
	}
	b, err = wire.Encode(l.unavailable(device, unavailable))
	if err != nil {
		l.log.Error("cannot encode unavailable answer", "err", err)
	}
	return b
}

// staleVerify reports whether req was made longer than wire.MaxVerifyAge
// ago by its "at": no kiosk waits for its answer any more (it checked
// the code offline or gave up), so checking it would only claim the
// citizen's code for nobody (the citizen's next try "pending"). Such a
// request is answered unavailable unchecked and logged (never its code).
func (l *Link) staleVerify(device string, req *wire.VerifyRequest) bool {
	received := l.now()
	age := received.Sub(req.At)
	if age <= wire.MaxVerifyAge {
		return false
	}
	l.log.Warn("verify request older than any kiosk waits: answered unavailable, not checked", "device", device,
		"id", req.ID, "at", req.At, "received", received, "age", age.Round(time.Second))
	return true
}

func (l *Link) verify(ctx context.Context, device string, req *wire.VerifyRequest) wire.Message {
	if l.o.Verifier == nil {
		return &wire.VerifyResponse{ID: req.ID, Result: wire.VerifyUnavailable}
	}
	res := l.o.Verifier.Verify(ctx, device, *req)
	res.ID = req.ID
	// Every answer but ok is logged at info: what an operator looks for
	// (a denial, the backend unavailable). An ok is logged at debug only
	// (KLUIS_LOG_LEVEL=debug): its audit row code.used (device, method,
	// document, code id) records it, as kluis_codes_verifications_total
	// {reason="ok"} and kluis_devicelink_messages_total{kind="verify/req",
	// outcome="ok"} count it, and the line cost about a twentieth of the
	// process's CPU per claim in kluis-bench verify (docs/performance.md,
	// "Sixteenth pass").
	level := slog.LevelInfo
	if res.Result == wire.VerifyOK {
		level = slog.LevelDebug
	}
	if l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, "verification", "device", device, "req", *req, "result", res.Result)
	}
	return &res
}

func (l *Link) staff(ctx context.Context, device string, req *wire.StaffRequest) wire.Message {
	if l.o.Staff == nil {
		return &wire.StaffResponse{ID: req.ID, Op: req.Op, Result: wire.StaffUnavailable}
	}
	res := l.o.Staff.HandleStaff(ctx, device, *req)
	res.ID = req.ID
	res.Op = req.Op
	l.log.Info("staff operation", "device", device, "req", *req, "result", res.Result)
	return &res
}

// reply encodes and sends an answer to device (an ack, a verify or staff
// response) without waiting for the broker's acknowledgement: a worker
// must not wait for it, since reading from the broker (and with it that
// acknowledgement) may itself be waiting for a worker while the queue is
// full. paho keeps and resends a QoS 1 message until acknowledged; a lost
// one is asked for again by the device.
func (l *Link) reply(device string, m wire.Message) {
	b, err := wire.Encode(m)
	if err != nil {
		l.log.Error("answer does not encode", "device", device, "kind", m.MessageKind(), "err", err)
		return
	}
	topic, err := wire.TopicFor(device, m.MessageKind())
	if err != nil {
		l.log.Error("no topic for answer", "device", device, "err", err)
		return
	}
	l.send(topic, m.MessageKind(), b)
}

// send publishes without waiting (see reply).
func (l *Link) send(topic string, kind wire.Kind, payload []byte) {
	if l.o.Embedded != nil {
		if err := l.o.Embedded.Publish(topic, payload, kind.Retained(), kind.QoS()); err != nil {
			l.log.Warn("publish failed", "topic", topic, "err", err)
		}
		return
	}
	l.mu.Lock()
	c := l.client
	l.mu.Unlock()
	if c == nil || !c.IsConnectionOpen() {
		l.log.Warn("not connected; message not sent", "topic", topic)
		return
	}
	c.Publish(topic, kind.QoS(), kind.Retained(), payload)
}

func (l *Link) publishRaw(ctx context.Context, topic string, kind wire.Kind, payload []byte) error {
	if l.o.Embedded != nil {
		if err := l.o.Embedded.Publish(topic, payload, kind.Retained(), kind.QoS()); err != nil {
			return fmt.Errorf("devicelink: publish %s: %w", topic, err)
		}
		return nil
	}
	l.mu.Lock()
	c := l.client
	l.mu.Unlock()
	if c == nil || !c.IsConnectionOpen() {
		l.log.Warn("not connected; message not sent", "topic", topic)
		return ErrNotConnected
	}
	tok := c.Publish(topic, kind.QoS(), kind.Retained(), payload)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		l.log.Warn("publish failed", "topic", topic, "err", err)
		return fmt.Errorf("devicelink: publish %s: %w", topic, err)
	}
	return nil
}

// SendCommand stores cmd for device and publishes it. An empty ID gets
// wire.NewID, a zero Issued now and a zero Expires Issued+CommandTTL. It
// returns the command id; the result arrives later on cmdres (see
// CommandStatus).
func (l *Link) SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error) {
	now := l.now()
	if cmd.ID == "" {
		cmd.ID = wire.NewID(now)
	}
	if cmd.Issued.IsZero() {
		cmd.Issued = now
	}
	if cmd.Expires.IsZero() {
		cmd.Expires = cmd.Issued.Add(l.o.CommandTTL)
	}
	payload, err := wire.Encode(&cmd)
	if err != nil {
		return "", fmt.Errorf("devicelink: command: %w", err)
	}
	topic, err := wire.TopicFor(device, wire.KindCommand)
	if err != nil {
		return "", fmt.Errorf("devicelink: command: %w", err)
	}
	if _, err := l.o.Pool.Exec(ctx, `INSERT INTO device_commands (command_id, device_id, kind, issued_at, expires_at, issued_by, payload)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		cmd.ID, device, string(cmd.Kind), cmd.Issued, cmd.Expires, cmd.By, json.RawMessage(payload)); err != nil {
		return "", fmt.Errorf("devicelink: store command: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	if err := l.publishRaw(ctx, topic, wire.KindCommand, payload); err != nil {
		return cmd.ID, err
	}
	if _, err := l.o.Pool.Exec(ctx, `UPDATE device_commands SET status = 'sent' WHERE command_id = $1 AND status = 'pending'`, cmd.ID); err != nil {
		return cmd.ID, fmt.Errorf("devicelink: mark command sent: %w", err)
	}
	l.log.Info("command sent", "device", device, "command", cmd.ID, "kind", cmd.Kind, "expires", cmd.Expires)
	return cmd.ID, nil
}

// CommandState is a command's stored status.
type CommandState struct {
	ID       string
	DeviceID string
	Kind     wire.CommandKind
	// Status is "pending" (stored, not yet published), "sent", or the
	// device's wire.CommandStatus.
	Status   string
	Expires  time.Time
	ResultAt *time.Time
	Detail   string
}

// CommandStatus reads the stored state of a command.
func (l *Link) CommandStatus(ctx context.Context, id string) (CommandState, error) {
	var s CommandState
	var kind string
	err := l.o.Pool.QueryRow(ctx, `SELECT command_id, device_id, kind, status, expires_at, result_at, result_detail
		FROM device_commands WHERE command_id = $1`, id).
		Scan(&s.ID, &s.DeviceID, &kind, &s.Status, &s.Expires, &s.ResultAt, &s.Detail)
	if err != nil {
		return CommandState{}, fmt.Errorf("devicelink: command %s: %w", truncate(id), err)
	}
	s.Kind = wire.CommandKind(kind)
	return s, nil
}

// PresenceState is a device's stored presence.
type PresenceState struct {
	DeviceID        string
	Online          bool
	Changed         time.Time
	Software        string
	LastHeartbeatAt *time.Time
}

// Presence reads the stored presence of device (pgx.ErrNoRows wrapped when
// it never connected).
func (l *Link) Presence(ctx context.Context, device string) (PresenceState, error) {
	var p PresenceState
	var state string
	err := l.o.Pool.QueryRow(ctx, `SELECT device_id, state, changed_at, software, last_heartbeat_at
		FROM device_presence WHERE device_id = $1`, device).
		Scan(&p.DeviceID, &state, &p.Changed, &p.Software, &p.LastHeartbeatAt)
	if err != nil {
		return PresenceState{}, fmt.Errorf("devicelink: presence of %s: %w", truncate(device), err)
	}
	p.Online = state == string(wire.Online)
	return p, nil
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
