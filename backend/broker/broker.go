package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/controller/wire"
)

// CredentialsFunc checks a user name and password. It returns the device id
// (for RoleDevice; it must equal user) and the role, or ok false.
type CredentialsFunc func(ctx context.Context, user, password string) (deviceID string, role Role, ok bool)

// Options configure a Broker.
type Options struct {
	// Addr is the TCP listen address; default "127.0.0.1:1883". Use
	// "127.0.0.1:0" for a random port (see Broker.Addr).
	Addr string
	// TLS, when set, makes the listener speak TLS.
	TLS *tls.Config
	// Credentials checks every connecting client; required.
	Credentials CredentialsFunc
	// CheckTimeout bounds one Credentials call; default 5 s.
	CheckTimeout time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registry receives the broker's metrics; default a private registry.
	Registry prometheus.Registerer
	// MaxConnections caps the connections held open (authenticated or
	// not); the excess is refused with CONNACK "server unavailable".
	// Default: the process's open-file limit minus a reserve (1/32 of it,
	// 64 to 1,024) for the database, HTTP clients and files.
	MaxConnections int
	// ConnectTimeout is how long a new connection may take to send its
	// CONNECT; default 10 s.
	ConnectTimeout time.Duration
	// PendingWrites is the outbound queue of each client (packets waiting
	// to be written; a full queue drops the packet, counted in
	// kluis_broker_dropped_total). Default 256: a device receives few
	// messages, and mochi allocates the whole queue per client (8 bytes a
	// slot).
	PendingWrites int
}

// DefaultPendingWrites is Options.PendingWrites' default.
const DefaultPendingWrites = 256

// Broker is a running embedded MQTT broker.
type Broker struct {
	srv      *mqtt.Server
	listener *listener
	log      *slog.Logger
	hook     *aclHook
	mu       sync.Mutex
	subID    int // of the last inline subscription
}

// ErrNoCredentials: Options.Credentials is nil.
var ErrNoCredentials = errors.New("broker: no credentials function")

// New creates the broker and binds its listener; Start serves.
func New(opts Options) (*Broker, error) {
	if opts.Credentials == nil {
		return nil, ErrNoCredentials
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:1883"
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = int(descriptorCap())
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.PendingWrites <= 0 {
		opts.PendingWrites = DefaultPendingWrites
	}
	log := opts.Logger.With("part", "broker")
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = wire.MaxPayload + 64<<10
	caps.MaximumSessionExpiryInterval = 7 * 24 * 3600
	caps.MaximumClientWritesPending = int32(opts.PendingWrites)
	srv := mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetReadBufferSize:  1024, // bufio grows past it for larger packets
		ClientNetWriteBufferSize: 1024,
		Logger:                   log.With("lib", "mochi"),
		InlineClient:             true, // Subscribe and Publish
		SysTopicResendInterval:   60,
	})
	m := newMetrics(opts.Registry)
	h := &aclHook{
		creds:   opts.Credentials,
		timeout: opts.CheckTimeout,
		log:     log,
		ids:     map[string]identity{},
		m:       m,
	}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	l, err := newListener("kluis-tcp", opts.Addr, opts.TLS, int64(opts.MaxConnections), opts.ConnectTimeout, log, m)
	if err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w", opts.Addr, err)
	}
	if err := srv.AddListener(l); err != nil {
		_ = l.ln.Close()
		return nil, fmt.Errorf("broker: listen on %s: %w", opts.Addr, err)
	}
	return &Broker{srv: srv, listener: l, log: log, hook: h}, nil
}

// Healthy returns nil while the broker accepts connections; while
// accepting fails (out of file descriptors, ...) or after Close, an error
// saying so. It is part of kluis-backend's /readyz.
func (b *Broker) Healthy() error { return b.listener.Healthy() }

// Subscribe delivers every message published on filter (no shared
// subscriptions: there is one subscriber, in this process) to handler,
// with a copy of its payload. handler runs in the publishing client's
// goroutine before the broker reads that client's next packet: a handler
// that waits slows that one client down (back-pressure on its TCP
// connection) and nothing is queued or dropped for it. Retained messages
// matching filter are delivered at once. It is how kluis-backend's device
// link listens on its own embedded broker.
func (b *Broker) Subscribe(filter string, handler func(topic string, payload []byte)) error {
	b.mu.Lock()
	b.subID++
	id := b.subID
	b.mu.Unlock()
	err := b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		handler(pk.TopicName, bytes.Clone(pk.Payload))
	})
	if err != nil {
		return fmt.Errorf("broker: subscribe %s: %w", filter, err)
	}
	return nil
}

// Publish sends a message from the broker's own (inline) client, which no
// ACL restricts: kluis-backend's device link on its embedded broker.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if err := b.srv.Publish(topic, payload, retain, qos); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// Connections is the number of client connections held open.
func (b *Broker) Connections() int { return int(b.listener.Live()) }

// Addr is the address the broker listens on (with the real port when
// Options.Addr asked for port 0).
func (b *Broker) Addr() string { return b.listener.Address() }

// Start serves clients in the background.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.log.Info("embedded broker listening", "addr", b.Addr())
	return nil
}

// Close disconnects every client and stops listening.
func (b *Broker) Close() error { return b.srv.Close() }

type identity struct {
	device string
	role   Role
	cl     *mqtt.Client // the connection it was given to
}

type metrics struct {
	authFail     prometheus.Counter
	denied       *prometheus.CounterVec
	connected    prometheus.Gauge
	open         prometheus.Gauge
	acceptErrors prometheus.Counter
	refused      prometheus.Counter
	dropped      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		authFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kluis_broker_auth_failures_total", Help: "Connections refused by the embedded broker (bad credentials, client id or will)."}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kluis_broker_acl_denied_total", Help: "Publishes (write) and subscriptions or deliveries (read) refused by the ACL."}, []string{"access"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kluis_broker_clients_connected", Help: "Clients connected to the embedded broker."}),
	}
	m.open = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kluis_broker_connections_open", Help: "TCP connections held open by the embedded broker, authenticated or not."})
	m.acceptErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kluis_broker_accept_errors_total", Help: "Failed accepts of the embedded broker's listener (e.g. out of file descriptors); it backs off and accepts again."})
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kluis_broker_connections_refused_total", Help: "Connections refused because the embedded broker holds its maximum (Options.MaxConnections)."})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kluis_broker_dropped_total", Help: "Packets to a client dropped because its outbound queue was full."})
	reg.MustRegister(m.authFail, m.denied, m.connected, m.open, m.acceptErrors, m.refused, m.dropped)
	return m
}

// aclHook authenticates clients and enforces Allowed.
type aclHook struct {
	mqtt.HookBase
	creds   CredentialsFunc
	timeout time.Duration
	log     *slog.Logger
	m       *metrics

	mu  sync.Mutex
	ids map[string]identity // by client id
}

func (h *aclHook) ID() string { return "kluis-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired, mqtt.OnPublishDropped}, []byte{b})
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	device, role, ok := h.creds(ctx, user, string(pk.Connect.Password))
	refuse := func(why string) bool {
		h.m.authFail.Inc()
		h.log.Warn("connection refused", "reason", why, "user", safe(user), "remote", cl.Net.Remote)
		return false
	}
	if !ok {
		return refuse("bad credentials")
	}
	switch role {
	case RoleBackend:
	case RoleDevice:
		if device != user {
			return refuse("device id differs from user name")
		}
		if !ValidClientID(device, cl.ID) {
			return refuse("client id not the device's")
		}
		if pk.Connect.WillFlag && !Allowed(role, device, pk.Connect.WillTopic, true) {
			return refuse("last will on a foreign topic")
		}
	default:
		return refuse("unknown role")
	}
	h.mu.Lock()
	h.ids[cl.ID] = identity{device: device, role: role, cl: cl}
	h.mu.Unlock()
	return true
}

func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	h.mu.Lock()
	id, ok := h.ids[cl.ID]
	h.mu.Unlock()
	if ok && Allowed(id.role, id.device, topic, write) {
		return true
	}
	access := "read"
	if write {
		access = "write"
	}
	h.m.denied.WithLabelValues(access).Inc()
	h.log.Warn("acl denied", "client", safe(cl.ID), "device", id.device, "access", access, "topic", safe(topic))
	return false
}

func (h *aclHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) { h.m.connected.Inc() }

func (h *aclHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.m.connected.Dec()
	if expire && !cl.IsTakenOver() {
		h.forget(cl)
	}
}

func (h *aclHook) OnClientExpired(cl *mqtt.Client) { h.forget(cl) }

func (h *aclHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.m.dropped.Inc()
	h.log.Warn("packet to a client dropped: its outbound queue is full", "client", safe(cl.ID), "topic", safe(pk.TopicName))
}

// forget drops cl's identity, unless a newer connection with the same
// client id has replaced it (a device reconnecting before the broker
// noticed its old connection was gone: forgetting by client id alone
// left the new connection without an identity, its subscriptions
// refused).
func (h *aclHook) forget(cl *mqtt.Client) {
	h.mu.Lock()
	if id, ok := h.ids[cl.ID]; ok && id.cl == cl {
		delete(h.ids, cl.ID)
	}
	h.mu.Unlock()
}

// safe shortens and quotes untrusted text for a log line.
func safe(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Sprintf("%q", s)
}
