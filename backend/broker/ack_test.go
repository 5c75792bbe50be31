package broker

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingConn counts the writes made to the connection it wraps.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// The PUBACK of a device's request goes with its answer, in one write and
// before it (kluisd drops a request its answer ended while paho still
// keeps it unacknowledged); it was written alone, after the handler that
// answered (so after the answer). A request nobody answers is still
// acknowledged, and PUBACKs keep the order of their PUBLISHes.
func TestRequestAckGoesWithItsAnswer(t *testing.T) {
	b, _ := start(t)
	require.NoError(t, b.Subscribe("kluis/v1/dev/+/verify/req", func(topic string, payload []byte) {
		if string(payload) == "answer me" {
			require.NoError(t, b.Publish("kluis/v1/dev/dev-a/verify/res", []byte("the answer"), false, 1))
		}
	}))
	require.NoError(t, b.Subscribe("kluis/v1/dev/+/event", func(string, []byte) {}))

	// The device's connection, served by the broker through a wrapper
	// that counts its writes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	served := make(chan *countingConn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		cc := &countingConn{Conn: c}
		served <- cc
		b.srv.serve(cc)
	}()
	rc := dialRaw(t, ln.Addr().String())
	cc := <-served
	rc.login("dev-a", "dev-a", "pw-dev-a", 30, "", "")
	rc.send(packet(pktSubscribe<<4|2, []byte{0, 1}, str("kluis/v1/dev/dev-a/verify/res"), []byte{0}))
	hdr, _ := rc.next()
	require.Equal(t, byte(pktSuback<<4), hdr)

	before := cc.writes.Load()
	rc.send(packet(pktPublish<<4|2, str("kluis/v1/dev/dev-a/verify/req"), []byte{0x01, 0x02}, []byte("answer me")))
	hdr, body := rc.next()
	assert.Equal(t, byte(pktPuback<<4), hdr, "the PUBACK first")
	assert.Equal(t, []byte{0x01, 0x02}, body)
	hdr, body = rc.next()
	assert.Equal(t, byte(pktPublish<<4), hdr, "then the answer, at QoS 0")
	assert.Equal(t, "the answer", string(body[len(body)-len("the answer"):]))
	assert.Equal(t, int32(1), cc.writes.Load()-before, "in one write")

	// Not answered: acknowledged all the same; then an event's PUBACK,
	// in order.
	rc.send(packet(pktPublish<<4|2, str("kluis/v1/dev/dev-a/verify/req"), []byte{0x01, 0x03}, []byte("no answer")))
	rc.send(packet(pktPublish<<4|2, str("kluis/v1/dev/dev-a/event"), []byte{0x01, 0x04}, []byte("an event")))
	for _, id := range [][]byte{{0x01, 0x03}, {0x01, 0x04}} {
		hdr, body = rc.next()
		assert.Equal(t, byte(pktPuback<<4), hdr)
		assert.Equal(t, id, body)
	}
	rc.send(packet(pktPublish<<4|2, str("kluis/v1/dev/dev-a/staff/req"), []byte{0x01, 0x05}, []byte("no answer")))
	hdr, body = rc.next()
	assert.Equal(t, byte(pktPuback<<4), hdr, "a staff request's too")
	assert.Equal(t, []byte{0x01, 0x05}, body)
}
