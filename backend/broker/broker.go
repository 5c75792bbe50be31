package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/controller/wire"
)

// CredentialsFunc checks a user name and password. It returns the device id
// (for RoleDevice; it must equal user) and the role, or ok false. The
// broker's ctx carries the connecting client's address ([ClientAddr]).
type CredentialsFunc func(ctx context.Context, user, password string) (deviceID string, role Role, ok bool)

type clientAddrKey struct{}

// withClientAddr returns ctx carrying the address of the client conn
// comes from.
func withClientAddr(ctx context.Context, conn net.Conn) context.Context {
	ap, err := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, clientAddrKey{}, ap.Addr().Unmap())
}

// ClientAddr is the address of the client whose CONNECT a CredentialsFunc
// is checking (ok false outside one, or for a client that is not on TCP).
func ClientAddr(ctx context.Context) (netip.Addr, bool) {
	a, ok := ctx.Value(clientAddrKey{}).(netip.Addr)
	return a, ok
}

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
	// MaxPendingPerAddress caps the connections one client address (IPv6:
	// its /64) holds that have not sent their first packet (the CONNECT)
	// within 2 s of being accepted; past it such a connection is closed
	// (at 2 s instead of ConnectTimeout) and counted in
	// kluis_broker_pending_refused_total. A device sends CONNECT as soon as
	// it is connected, so a fleet reconnecting at once from one address (a
	// NAT, kluis-bench on 127.0.0.1) is not held to it, while idle
	// connections from one address can no longer take every place for
	// ConnectTimeout each. A connection whose bytes arrived but the broker
	// has not read yet, or whose first bytes it is still working on (a
	// busy machine in a storm, a TLS handshake), is not overdue: its grace
	// is extended (kluis_broker_pending_extended_total), so the broker's
	// own delay never closes a device's connection. Default 1,024 (at
	// most MaxConnections).
	MaxPendingPerAddress int
	// WriteTimeout bounds writing one packet to a client (there is no
	// outbound queue: the publisher writes); a client that does not take
	// it in time is disconnected and the packet dropped, counted in
	// kluis_broker_dropped_total. Default 10 s.
	WriteTimeout time.Duration
	// MaxDeviceConnections caps the connections one device's credentials
	// hold at once (each client id a session of its own: "{device}",
	// "kluisd-{device}", "{device}.{anything}"); the next is refused with
	// CONNACK "server unavailable". Taking over a session of the device's
	// own (the same client id) is not a new one. Default 8; a kluisd holds
	// one.
	MaxDeviceConnections int
	// MaxKeepAlive is the longest keep-alive a client may ask for, in
	// seconds; a CONNECT with a longer one, or with 0 (never time out), is
	// refused with CONNACK "identifier rejected", as Mosquitto's
	// max_keepalive does (deploy/mosquitto/mosquitto.conf). Default 300.
	MaxKeepAlive uint16
}

// Defaults of Options.
const (
	defaultMaxDeviceConnections = 8
	defaultMaxKeepAlive         = 300
	defaultMaxPendingPerAddress = 1024
)

// Broker is a running embedded MQTT broker.
type Broker struct {
	srv      *server
	listener *listener
	log      *slog.Logger
	started  atomic.Bool
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
	if opts.MaxPendingPerAddress <= 0 {
		opts.MaxPendingPerAddress = min(defaultMaxPendingPerAddress, opts.MaxConnections)
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.MaxDeviceConnections <= 0 {
		opts.MaxDeviceConnections = defaultMaxDeviceConnections
	}
	if opts.MaxKeepAlive == 0 {
		opts.MaxKeepAlive = defaultMaxKeepAlive
	}
	log := opts.Logger.With("part", "broker")
	m := newMetrics(opts.Registry)
	srv := newServer(opts.Credentials, opts.CheckTimeout, opts.WriteTimeout, wire.MaxPayload+64<<10, log, m)
	srv.maxPerDevice, srv.maxKeepAlive = opts.MaxDeviceConnections, opts.MaxKeepAlive
	l, err := newListener("kluis-tcp", opts.Addr, opts.TLS, int64(opts.MaxConnections), int64(opts.MaxPendingPerAddress), opts.ConnectTimeout, log, m)
	if err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w", opts.Addr, err)
	}
	b := &Broker{srv: srv, listener: l, log: log}
	if err := opts.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kluis_broker_full",
		Help: "1 while the embedded broker holds its maximum of connections (Options.MaxConnections): a new connection is refused until one closes; /readyz says \"broker\": \"full\" and stays ready."},
		func() float64 {
			if b.Full() {
				return 1
			}
			return 0
		})); err != nil {
		_ = l.ln.Close()
		return nil, fmt.Errorf("broker: metrics: %w", err)
	}
	return b, nil
}

// Full reports whether the broker holds its maximum of connections
// (Options.MaxConnections, authenticated or not): a new connection is
// refused (CONNACK "server unavailable") until one closes. It is not a
// failed readiness (see kluis-backend's /readyz in docs/operations.md):
// the broker still accepts and refuses cleanly, and the replica's HTTP
// side serves as before.
func (b *Broker) Full() bool { return b.listener.Live() >= b.listener.max }

// Healthy returns nil while the broker accepts connections; while
// accepting fails (out of file descriptors, ...) or after Close, an error
// saying so. It is part of kluis-backend's /readyz.
func (b *Broker) Healthy() error { return b.listener.Healthy() }

// Subscribe delivers every message published on filter (a shared
// subscription, "$share/{group}/{filter}", shares with the clients of
// that group) to handler, with a payload of its own that it may keep (a
// copy; or, when handler is the message's only target, the body of the
// packet just read, which nothing else holds). handler runs in the
// publishing client's goroutine before the broker reads that client's
// next packet (and before it acknowledges a QoS 1 message; a device's
// request's PUBACK, which travels with its answer, may go out while the
// handler runs, see doc.go): a handler
// that waits slows that one client down (back-pressure on its TCP
// connection) and nothing is queued or dropped for it. Retained messages
// matching filter are delivered at once. It is how kluis-backend's device
// link listens on its own embedded broker.
func (b *Broker) Subscribe(filter string, handler func(topic string, payload []byte)) error {
	if err := b.srv.subscribeFunc(filter, handler); err != nil {
		return fmt.Errorf("broker: subscribe %s: %w", filter, err)
	}
	return nil
}

// Publish sends a message from the broker itself, which no ACL restricts:
// kluis-backend's device link on its embedded broker. It returns once the
// message is written to every subscribed client (each write bounded by
// Options.WriteTimeout; a client whose write fails is disconnected).
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if !validTopicName(topic) || qos > 2 {
		return fmt.Errorf("broker: publish %q: invalid topic or QoS %d", topic, qos)
	}
	b.srv.publish(message{topic: topic, payload: payload, qos: qos, retain: retain})
	return nil
}

// DisconnectDevice closes every connection device holds (a password is
// checked at CONNECT only: after a new password, or a disabled
// credential, the connections made with the old one must go). Their last
// wills are sent, as for any connection that ends without DISCONNECT.
// Call it after the credential changed: a CONNECT whose check began
// before the call (and may have passed the old password) is refused
// "bad credentials" instead of joining after the close. It returns how
// many it closed.
func (b *Broker) DisconnectDevice(device string) int {
	n := b.srv.closeDevice(device)
	if n > 0 {
		b.log.Warn("device connections closed: its credential changed", "device", safe(device), "connections", n)
	}
	return n
}

// Connections is the number of client connections held open.
func (b *Broker) Connections() int { return int(b.listener.Live()) }

// Addr is the address the broker listens on (with the real port when
// Options.Addr asked for port 0).
func (b *Broker) Addr() string { return b.listener.Address() }

// Start serves clients in the background.
func (b *Broker) Start() error {
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("broker: already started")
	}
	go b.listener.Serve(b.srv.serve)
	b.log.Info("embedded broker listening", "addr", b.Addr())
	return nil
}

// Shutdown stops accepting connections and closes every client's; a
// connection that ends without DISCONNECT sends its last will (a device's
// offline presence: until it connects again, to the broker that comes
// back, it is unreachable), so the in-process subscribers have it. It
// returns once every connection's goroutine has ended: every message a
// client published (and every PUBACK it got) was handed to the
// in-process subscribers before, and none comes after. Or it returns
// ctx's error when connections still run as ctx ends. Subscribe and
// Publish keep working (Publish reaches no client); /readyz's Healthy
// says "closed". Close ends the broker.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.listener.Close(b.srv.drain)
	done := make(chan struct{})
	go func() { b.srv.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("broker: shutdown: %d connections still open: %w", b.listener.Live(), ctx.Err())
	}
}

// Close disconnects every client (without their last wills: the device
// did not go, the broker did) and stops listening.
func (b *Broker) Close() error {
	b.listener.Close(b.srv.close)
	b.srv.close() // after Shutdown the listener no longer calls it
	return nil
}

type metrics struct {
	authFail     prometheus.Counter
	denied       *prometheus.CounterVec
	connected    prometheus.Gauge
	open         prometheus.Gauge
	acceptErrors prometheus.Counter
	refused      prometheus.Counter
	pendRefused  prometheus.Counter
	pendExtended prometheus.Counter
	dropped      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		authFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kluis_broker_auth_failures_total", Help: "Connections refused by the embedded broker (bad credentials, client id, will or keep-alive, or a device holding its maximum of connections)."}),
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
	m.pendRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kluis_broker_pending_refused_total", Help: "Connections refused because their client address (IPv6: its /64) held its maximum of connections that had not sent CONNECT yet (Options.MaxPendingPerAddress)."})
	m.pendExtended = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kluis_broker_pending_extended_total", Help: "Graces for a connection's first packet extended because the embedded broker, not the client, was behind: the client's bytes waited unread, or the broker was busy with what it had read (a storm on a busy machine)."})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kluis_broker_dropped_total", Help: "Messages to a client dropped because writing to it failed or timed out (it is disconnected)."})
	reg.MustRegister(m.authFail, m.denied, m.connected, m.open, m.acceptErrors, m.refused, m.pendRefused, m.pendExtended, m.dropped)
	return m
}

// safe shortens and quotes untrusted text for a log line.
func safe(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Sprintf("%q", s)
}
