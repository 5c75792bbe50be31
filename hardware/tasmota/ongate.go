package tasmota

import (
	"bytes"
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

// The ON gate: a POWER<n> ON leaves on the broker connection only while
// the pulse that asked for it still waits for it, before that pulse's
// deadline. publishBy hands an ON to paho only while paho's hand-over
// (half of Options.Timeout) fits before the deadline, but that bound holds
// only if the pulse's goroutine runs on time: descheduled between the
// check and paho's Publish (a loaded machine stalled this process for
// 3.8 s, -race), or with paho's writer busy for longer (its hand-over
// goroutine holds the ON while the writer finishes an earlier write of up
// to half of Options.Timeout), the ON could be written after the caller had been
// told the pulse failed. The check is made where the bytes are written
// (abortConn.Write, on paho's writer), with the write's own deadline no
// later than the pulse's: past it the ON is withheld, and the pulse knows
// that nothing was sent. When in doubt, the door stays shut.

// onSend is one POWER<n> ON a pulse handed to paho.
type onSend struct {
	topic    string
	deadline time.Time
	state    onState // guarded by onGate.mu
}

type onState int

const (
	onPending  onState = iota // handed to paho, not yet written
	onWritten                 // written to the connection before its deadline (maybe in part)
	onWithheld                // never written: the deadline passed or the pulse gave up
)

// onGate holds the ONs handed to paho and not yet written, by topic in
// the order they were handed over.
type onGate struct {
	mu      sync.Mutex
	pending map[string][]*onSend
}

// add registers an ON about to be handed to paho.
func (g *onGate) add(topic string, deadline time.Time) *onSend {
	s := &onSend{topic: topic, deadline: deadline}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending == nil {
		g.pending = map[string][]*onSend{}
	}
	g.pending[topic] = append(g.pending[topic], s)
	return s
}

// take is the writer's: the first ON still pending for topic whose
// deadline has not passed, now marked written; nil when there is none
// (the ON is then withheld: no pulse waits for it). Pending ONs found past
// their deadline are withheld on the way.
func (g *onGate) take(topic string, now time.Time) *onSend {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.pending[topic]
	defer func() {
		if len(q) == 0 {
			delete(g.pending, topic)
		} else {
			g.pending[topic] = q
		}
	}()
	for len(q) > 0 {
		s := q[0]
		q = q[1:]
		if now.Before(s.deadline) {
			s.state = onWritten
			return s
		}
		s.state = onWithheld
	}
	return nil
}

// done is the pulse's, once its ON step is over (confirmed or not): an ON
// not yet written is withheld for good. It returns whether the ON was
// written.
func (g *onGate) done(s *onSend) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.state == onPending {
		s.state = onWithheld
		q := g.pending[s.topic]
		for i, p := range q {
			if p == s {
				q = append(q[:i:i], q[i+1:]...)
				break
			}
		}
		if len(q) == 0 {
			delete(g.pending, s.topic)
		} else {
			g.pending[s.topic] = q
		}
	}
	return s.state == onWritten
}

// onPublishTopic returns the topic of p when p is exactly one MQTT PUBLISH
// packet at QoS 0 of the payload "ON" to cmnd/<topic>/POWER<n>: what
// paho's writer writes, in one Write, for a relay ON of this driver.
func onPublishTopic(p []byte) (string, bool) {
	if len(p) < 2 || p[0]&0xf0 != 0x30 || p[0]&0x06 != 0 {
		return "", false
	}
	rem, n := 0, 1
	for shift := 0; ; shift += 7 {
		if n >= len(p) || shift > 21 {
			return "", false
		}
		b := p[n]
		n++
		rem |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
	}
	body := p[n:]
	if rem != len(body) || len(body) < 2 {
		return "", false
	}
	tl := int(binary.BigEndian.Uint16(body))
	if 2+tl > len(body) {
		return "", false
	}
	topic, payload := string(body[2:2+tl]), body[2+tl:]
	if !bytes.Equal(payload, []byte("ON")) || !strings.HasPrefix(topic, "cmnd/") {
		return "", false
	}
	i := strings.LastIndexByte(topic, '/')
	if _, ok := indexed(topic[i+1:], "POWER"); !ok {
		return "", false
	}
	return topic, true
}
