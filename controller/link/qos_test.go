package link

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// answerBroker is where TestAnswersWithoutPUBACK runs: the broker's
// host:port, the link's user and password there, and how the test's
// backend publishes to the device (at the kind's QoS, as kluis-backend
// does); verify requests are answered (granted, signed) on it.
type answerBroker struct {
	name, addr, user, pass string
	publish                func(k wire.Kind, m wire.Message)
}

// An answer reaches kluisd at QoS 0 (it subscribes to verify/res and
// staff/res so: wire.Kind.SubscribeQoS) and costs it no PUBACK, though
// the backend publishes it at QoS 1; its request still goes at QoS 1 and
// the broker acknowledges it, and an ack (QoS 1) is still acknowledged by
// kluisd. On Mosquitto and on the embedded broker. The relay counts the
// packets each way.
func TestAnswersWithoutPUBACK(t *testing.T) {
	const pubAck = 4
	embedded := func(t *testing.T, dev string) answerBroker {
		b := startEmbedded(t, dev)
		publish := func(k wire.Kind, m wire.Message) {
			p, err := wire.Encode(m)
			require.NoError(t, err)
			tp, _ := wire.TopicFor(dev, k)
			require.NoError(t, b.Publish(tp, p, false, k.QoS()))
		}
		req, _ := wire.TopicFor(dev, wire.KindVerifyReq)
		require.NoError(t, b.Subscribe(req, func(_ string, p []byte) {
			m, err := wire.DecodeKind(wire.KindVerifyReq, p)
			if err != nil {
				return
			}
			res := &wire.VerifyResponse{ID: m.(*wire.VerifyRequest).ID, Result: wire.VerifyOK, DocumentID: "doc-1",
				Addr: &wire.Address{Channel: 3}}
			if err := wire.SignResponse(backendKey, dev, res, time.Now().Add(wire.ResponseTTL)); err == nil {
				go publish(wire.KindVerifyRes, res)
			}
		}))
		return answerBroker{name: "embedded", addr: b.Addr(), user: dev, pass: "pw-" + dev, publish: publish}
	}
	mosquitto := func(t *testing.T, dev string) answerBroker {
		r := newResponder(t, dev) // answers K1.good granted and signed, at QoS 1
		return answerBroker{name: "mosquitto", addr: testenv.BrokerURL()[len("tcp://"):], publish: r.pub}
	}
	for _, start := range []func(*testing.T, string) answerBroker{embedded, mosquitto} {
		dev := fmt.Sprintf("qa-%d", time.Now().UnixNano())
		b := start(t, dev)
		t.Run(b.name, func(t *testing.T) {
			relay := newSilencer(t, b.addr)
			var l *Link
			defer runLink(t, Options{URL: "tcp://" + relay.ln.Addr().String(), DeviceID: dev, Username: b.user, Password: b.pass,
				ResponseKey: backendKey.Public().(ed25519.PublicKey)}, &l)()
			testenv.Eventually(t, "connected", l.Connected)
			// The online presence's PUBACK: the link is connected once it has
			// published it, not once it is acknowledged (read before it came,
			// under load, it was counted as a request's).
			testenv.Eventually(t, "the presence acknowledged", func() bool { return relay.fromBroker[pubAck].Load() == 1 })
			acked := relay.fromBroker[pubAck].Load()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			const n = 3
			for range n {
				res, err := l.Verify(ctx, wire.VerifyRequest{ID: wire.NewID(time.Now()), At: time.Now().UTC(), Method: wire.MethodQR, Token: "K1.good"})
				require.NoError(t, err)
				require.Equal(t, wire.VerifyOK, res.Result)
			}
			require.Equal(t, acked+n, relay.fromBroker[pubAck].Load(), "the broker acknowledged each request")
			require.Zero(t, relay.fromClient[pubAck].Load(), "kluisd acknowledged no answer")

			// An ack of an event kluisd does not hold: delivered at QoS 1
			// and acknowledged.
			b.publish(wire.KindAck, &wire.Ack{IDs: []string{wire.NewID(time.Now())}})
			testenv.Eventually(t, "the ack acknowledged", func() bool { return relay.fromClient[pubAck].Load() == 1 })
		})
	}
}
