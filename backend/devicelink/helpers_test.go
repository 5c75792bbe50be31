package devicelink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/backend/store/storetest"
	"kluis/controller/wire"
)

const wait = 20 * time.Second

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newPool(t *testing.T) *pgxpool.Pool { return storetest.New(t).Pool() }

// recorder is an EventHandler counting calls per event id.
type recorder struct {
	mu    sync.Mutex
	calls map[string]int
	fail  map[string]error // returned once for that id
}

func newRecorder() *recorder { return &recorder{calls: map[string]int{}, fail: map[string]error{}} }

func (r *recorder) HandleEvent(ctx context.Context, tx pgx.Tx, device string, ev wire.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err, ok := r.fail[ev.ID]; ok {
		delete(r.fail, ev.ID)
		return err
	}
	r.calls[ev.ID]++
	return nil
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += c
	}
	return n
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[id]
}

type linkSetup struct {
	url, group, device string
	pool               *pgxpool.Pool
	events             EventHandler
	verifier           Verifier
	staff              StaffHandler
	observer           PresenceObserver
	reg                *prometheus.Registry
}

// startLink runs a Link until the test ends.
func startLink(t *testing.T, s linkSetup) *Link {
	t.Helper()
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	return runLink(t, Options{URL: s.url, ClientID: "kluis-backend-test-" + randHex(4), ShareGroup: s.group,
		DeviceFilter: s.device, Pool: s.pool, Events: s.events, Verifier: s.verifier, Staff: s.staff,
		Observer: s.observer, Logger: quiet(), Registry: s.reg, Workers: 3})
}

// runLink runs a Link with o until the test ends, once it is ready.
func runLink(t *testing.T, o Options) *Link {
	t.Helper()
	l, err := New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("link did not stop")
		}
	})
	select {
	case <-l.Ready():
	case <-time.After(wait):
		t.Fatal("link never became ready")
	}
	return l
}

// device is a test stand-in for kluisd's outbox: it keeps every event until
// an ack names it and resends the unacknowledged ones every 200 ms.
type device struct {
	t      *testing.T
	id     string
	client paho.Client
	stop   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending map[string][]byte
	acks    map[string]int
	inbox   map[wire.Kind][][]byte
}

func newDevice(t *testing.T, url, id string) *device {
	t.Helper()
	return newDeviceAuth(t, url, id, "")
}

// resendEvery is how often a test device publishes again the events not
// yet acknowledged, by default: soon, for the tests of what a device does
// after a cut.
const resendEvery = 200 * time.Millisecond

// newDeviceAuth is newDevice logging in as user id with password.
func newDeviceAuth(t *testing.T, url, id, password string) *device {
	t.Helper()
	return newDeviceResending(t, url, id, password, resendEvery)
}

// newDeviceResending is newDeviceAuth publishing again the events not yet
// acknowledged every resend (kluisd waits mqtt.resend_after, 30 s by
// default, for each).
func newDeviceResending(t *testing.T, url, id, password string, resend time.Duration) *device {
	t.Helper()
	d := &device{t: t, id: id, stop: make(chan struct{}), pending: map[string][]byte{},
		acks: map[string]int{}, inbox: map[wire.Kind][][]byte{}}
	subscribed := make(chan struct{}, 1)
	o := paho.NewClientOptions().AddBroker(url).SetClientID("kluisd-" + id).SetCleanSession(true).
		SetUsername(id).SetPassword(password).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetMaxReconnectInterval(time.Second).SetConnectTimeout(5 * time.Second).
		SetOnConnectHandler(func(c paho.Client) {
			filters := map[string]byte{}
			for _, k := range wire.BackendKinds() {
				topic, _ := wire.TopicFor(id, k)
				filters[topic] = 1
			}
			tok := c.SubscribeMultiple(filters, d.onMessage)
			if tok.WaitTimeout(wait) && tok.Error() == nil {
				select {
				case subscribed <- struct{}{}:
				default:
				}
			}
		})
	d.client = paho.NewClient(o)
	d.client.Connect()
	select {
	case <-subscribed:
	case <-time.After(wait):
		t.Fatal("test device never subscribed")
	}
	d.wg.Add(1)
	go d.resendLoop(resend)
	t.Cleanup(d.close)
	return d
}

func (d *device) close() {
	select {
	case <-d.stop:
		return
	default:
	}
	close(d.stop)
	d.wg.Wait()
	d.client.Disconnect(100)
}

func (d *device) onMessage(_ paho.Client, m paho.Message) {
	tp, msg, err := wire.Decode(m.Topic(), m.Payload())
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inbox[tp.Kind] = append(d.inbox[tp.Kind], append([]byte(nil), m.Payload()...))
	if a, ok := msg.(*wire.Ack); ok {
		for _, id := range a.IDs {
			d.acks[id]++
			delete(d.pending, id)
		}
	}
}

func (d *device) resendLoop(every time.Duration) {
	defer d.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-tick.C:
		}
		d.mu.Lock()
		var out [][]byte
		for _, p := range d.pending {
			out = append(out, p)
		}
		d.mu.Unlock()
		for _, p := range out {
			if d.client.IsConnectionOpen() {
				d.client.Publish(d.topic(wire.KindEvent), 1, false, p)
			}
		}
	}
}

func (d *device) topic(k wire.Kind) string {
	s, err := wire.TopicFor(d.id, k)
	require.NoError(d.t, err)
	return s
}

// event makes a valid door_opened event.
func (d *device) event(at time.Time) *wire.Event {
	return &wire.Event{ID: wire.NewID(at), Kind: wire.EvDoorOpened, At: at, Addr: &wire.Address{Board: 0, Channel: 2}}
}

// send keeps ev until acknowledged and publishes it once now.
func (d *device) send(ev *wire.Event) {
	b, err := wire.Encode(ev)
	require.NoError(d.t, err)
	d.mu.Lock()
	d.pending[ev.ID] = b
	d.mu.Unlock()
	if d.client.IsConnectionOpen() {
		d.client.Publish(d.topic(wire.KindEvent), 1, false, b)
	}
}

// raw publishes a payload once and waits for the broker's PUBACK.
func (d *device) raw(k wire.Kind, payload []byte) {
	tok := d.client.Publish(d.topic(k), 1, false, payload)
	require.True(d.t, tok.WaitTimeout(wait))
	require.NoError(d.t, tok.Error())
}

func (d *device) ackCount(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acks[id]
}

func (d *device) unacked() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

func (d *device) received(k wire.Kind) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.inbox[k]...)
}

func countRows(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func metricValue(t *testing.T, reg *prometheus.Registry, family string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

var errTransient = errors.New("database hiccup")
