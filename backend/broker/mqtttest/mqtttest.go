// Package mqtttest has small paho helpers for tests against a real broker:
// connecting with bounded waits, subscribing and reading the granted QoS,
// and an Inbox that collects messages and waits for one with a deadline.
package mqtttest

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Wait bounds every wait of this package.
const Wait = 10 * time.Second

// Options returns paho options for one test client (MQTT 3.1.1, no
// automatic reconnect). url is like "tcp://127.0.0.1:1883".
func Options(url, clientID, user, pass string) *paho.ClientOptions {
	return paho.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(Wait).SetProtocolVersion(4).SetCleanSession(true)
}

// Connect connects or fails t; the client disconnects when t ends.
func Connect(t testing.TB, o *paho.ClientOptions) paho.Client {
	t.Helper()
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(Wait) {
		t.Fatal("mqtttest: connect timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("mqtttest: connect: %v", err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// ConnectErr tries to connect and returns the error (nil on success, after
// which it disconnects again).
func ConnectErr(o *paho.ClientOptions) error {
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(Wait) {
		return context.DeadlineExceeded
	}
	if tok.Error() == nil {
		c.Disconnect(100)
	}
	return tok.Error()
}

// Subscribe subscribes with QoS 1, delivering to in, and returns the
// granted QoS from the SUBACK (0x80: refused).
func Subscribe(t testing.TB, c paho.Client, filter string, in *Inbox) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, in.Handler)
	if !tok.WaitTimeout(Wait) {
		t.Fatal("mqtttest: subscribe timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("mqtttest: subscribe: %v", err)
	}
	res := tok.(*paho.SubscribeToken).Result() // keyed without any $share/group/ prefix
	if len(res) != 1 {
		t.Fatalf("mqtttest: suback for %d filters", len(res))
	}
	for _, code := range res {
		return code
	}
	return 0
}

// Publish publishes and waits for the broker's acknowledgement.
func Publish(t testing.TB, c paho.Client, topic string, qos byte, retained bool, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(Wait) {
		t.Fatal("mqtttest: publish timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("mqtttest: publish: %v", err)
	}
}

// Inbox collects the messages of its subscriptions as "topic payload".
type Inbox struct {
	mu   sync.Mutex
	msgs []string
	ch   chan struct{}
}

// NewInbox returns an empty inbox.
func NewInbox() *Inbox { return &Inbox{ch: make(chan struct{}, 1)} }

// Handler is the paho message handler; it never blocks.
func (in *Inbox) Handler(_ paho.Client, m paho.Message) {
	in.mu.Lock()
	in.msgs = append(in.msgs, m.Topic()+" "+string(m.Payload()))
	in.mu.Unlock()
	select {
	case in.ch <- struct{}{}:
	default:
	}
}

// WaitFor waits up to Wait for the message "topic payload" or fails t.
func (in *Inbox) WaitFor(t testing.TB, want string) {
	t.Helper()
	deadline := time.NewTimer(Wait)
	defer deadline.Stop()
	for !in.Has(want) {
		select {
		case <-in.ch:
		case <-deadline.C:
			t.Fatalf("mqtttest: never received %q; got %q", want, in.All())
		}
	}
}

// Has reports whether "topic payload" arrived.
func (in *Inbox) Has(want string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, m := range in.msgs {
		if m == want {
			return true
		}
	}
	return false
}

// All returns every message so far.
func (in *Inbox) All() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.msgs...)
}

// String is an MQTT UTF-8 string field: its length in two bytes, then s.
func String(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// Packet frames body (its parts joined) behind the fixed header's first
// byte hdr and the remaining length: a raw MQTT packet, for tests that
// speak to a broker by hand over a net.Conn.
func Packet(hdr byte, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	// The remaining length is an unsigned varint (7 bits a byte, low first).
	return append(binary.AppendUvarint([]byte{hdr}, uint64(len(b))), b...)
}
