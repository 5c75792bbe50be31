package link

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// A request the kiosk gave up on is not sent after the reconnection. paho
// keeps every QoS 1 PUBLISH without its PUBACK and sends it again once it
// has reconnected, whenever that is: a verify request published into a
// connection that had silently died (a cut uplink: paho notices after a
// keep-alive and a ping timeout, 40 s by default) reached the backend
// after the reconnection, long after the kiosk had fallen back offline and
// the citizen had been told; the backend claimed the code (single use) and
// answered a request nobody waited for, and the citizen's next try was
// told "pending" until the unfollowed-verification sweep gave the code
// back. A staff request ("reserve") the same. Now a request ended without
// an answer is dropped from paho's store; one still waiting at the
// reconnection is still sent again.
func TestAbandonedRequestNotSentAfterReconnection(t *testing.T) {
	dev := fmt.Sprintf("rq-%d", time.Now().UnixNano())
	b := startEmbedded(t, dev)
	var mu sync.Mutex
	seen := map[string]int{}
	for _, k := range []wire.Kind{wire.KindVerifyReq, wire.KindStaffReq} {
		require.NoError(t, b.Subscribe(wire.Root+"/"+dev+"/"+string(k), func(topic string, p []byte) {
			_, m, err := wire.Decode(topic, p)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch r := m.(type) {
			case *wire.VerifyRequest:
				seen[r.ID]++
			case *wire.StaffRequest:
				seen[r.ID]++
			}
		}))
	}
	count := func(id string) int { mu.Lock(); defer mu.Unlock(); return seen[id] }

	relay := newSilencer(t, b.Addr())
	var l *Link
	defer runLink(t, Options{URL: "tcp://" + relay.ln.Addr().String(), DeviceID: dev, Username: dev, Password: "pw-" + dev,
		KeepAlive: 2 * time.Second, PingTimeout: 2 * time.Second}, &l)()
	testenv.Eventually(t, "connected", func() bool { return l.Connected() })

	relay.cutOpen() // the uplink is cut; neither side knows yet (a new connection goes through)
	ask := func(id string, wait time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, err := l.Verify(ctx, wire.VerifyRequest{ID: id, At: time.Now().UTC(), Method: wire.MethodPIN, PIN: "123456"})
		return err
	}
	staff := func(id string, wait time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, err := l.Staff(ctx, wire.StaffRequest{ID: id, At: time.Now().UTC(), Op: wire.StaffLogin, PIN: "123456"})
		return err
	}
	abandoned, abandonedStaff := wire.NewID(time.Now()), wire.NewID(time.Now())
	require.True(t, errors.Is(ask(abandoned, 300*time.Millisecond), ErrUnavailable), "no answer through the cut uplink")
	require.True(t, errors.Is(staff(abandonedStaff, 300*time.Millisecond), ErrUnavailable), "no answer through the cut uplink")
	testenv.Eventually(t, "kluisd gives the silent connection up and connects again", func() bool {
		relay.mu.Lock()
		defer relay.mu.Unlock()
		return len(relay.cuts) >= 2 && l.Connected()
	})
	later := wire.NewID(time.Now())
	_ = ask(later, 200*time.Millisecond) // nobody answers; it reaches the broker
	testenv.Eventually(t, "a request after the reconnection reaches the broker", func() bool { return count(later) == 1 })
	time.Sleep(500 * time.Millisecond) // anything paho sends again went before it; a margin all the same
	assert.Zero(t, count(abandoned), "the verify request the kiosk gave up on")
	assert.Zero(t, count(abandonedStaff), "the staff request the kiosk gave up on")
}

// pahoIDsInUse is the number of packet ids paho holds (its messageIds
// index, read under its own lock): a QoS 1 PUBLISH's id is taken until
// its PUBACK (or PUBCOMP) frees it. paho offers no way to read it.
func pahoIDsInUse(t *testing.T, c mqtt.Client) int {
	v := reflect.ValueOf(c).Elem().FieldByName("messageIds")
	require.True(t, v.IsValid(), "paho's client has no messageIds any more")
	mu := (*sync.RWMutex)(unsafe.Pointer(v.FieldByName("mu").UnsafeAddr()))
	mu.RLock()
	defer mu.RUnlock()
	return v.FieldByName("index").Len()
}

// A request given up on in a dead connection gives its packet id back.
// forgetRequest took the PUBLISH out of paho's store (not sent again
// after the reconnection), but paho frees an id only on the broker's
// PUBACK, which no longer comes: every such request kept one of the
// 65,535 ids until kluisd stopped, and with them all taken paho refuses
// every QoS 1 publication ("no message IDs available": no event, no
// result, no request). Now the stored PUBLISH becomes a PUBREL of that id,
// which the broker answers PUBCOMP after the reconnection, and paho frees
// the id on it.
func TestAbandonedRequestsGiveTheirPacketIDsBack(t *testing.T) {
	dev := fmt.Sprintf("rid-%d", time.Now().UnixNano())
	b := startEmbedded(t, dev)
	var mu sync.Mutex
	seen := map[string]int{}
	require.NoError(t, b.Subscribe(wire.Root+"/"+dev+"/"+string(wire.KindVerifyReq), func(topic string, p []byte) {
		if _, m, err := wire.Decode(topic, p); err == nil {
			mu.Lock()
			seen[m.(*wire.VerifyRequest).ID]++
			mu.Unlock()
		}
	}))
	relay := newSilencer(t, b.Addr())
	var l *Link
	defer runLink(t, Options{URL: "tcp://" + relay.ln.Addr().String(), DeviceID: dev, Username: dev, Password: "pw-" + dev,
		KeepAlive: 2 * time.Second, PingTimeout: 2 * time.Second}, &l)()
	testenv.Eventually(t, "connected", func() bool { return l.Connected() })
	testenv.Eventually(t, "the presence acknowledged", func() bool { return pahoIDsInUse(t, l.client) == 0 })

	relay.cutOpen()
	const n = 40
	var ids []string
	for range n {
		id := wire.NewID(time.Now())
		ids = append(ids, id)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := l.Verify(ctx, wire.VerifyRequest{ID: id, At: time.Now().UTC(), Method: wire.MethodPIN, PIN: "123456"})
		cancel()
		require.ErrorIs(t, err, ErrUnavailable)
	}
	testenv.Eventually(t, "every request went into the dead connection", func() bool { return pahoIDsInUse(t, l.client) >= n })
	testenv.Eventually(t, "kluisd gives the silent connection up and connects again", func() bool {
		relay.mu.Lock()
		defer relay.mu.Unlock()
		return len(relay.cuts) >= 2 && l.Connected()
	})
	testenv.Eventually(t, "the packet ids of the abandoned requests are free again", func() bool {
		return pahoIDsInUse(t, l.client) == 0
	})
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		assert.Zero(t, seen[id], "an abandoned request reached the broker")
	}
}
