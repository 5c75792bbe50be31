package broker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kluis/controller/wire"
	"kluis/internal/loglimit"
)

// server is the MQTT 3.1.1 broker itself: one goroutine per connection
// reads and handles its packets; what is delivered to a client is written
// by the publishing goroutine under the client's write lock, with a write
// deadline, so that a client costs its goroutine, a small read buffer and
// its subscriptions, and no outbound queue.
type server struct {
	creds        CredentialsFunc
	checkTimeout time.Duration
	writeTimeout time.Duration
	maxPacket    int
	maxPerDevice int    // connections one device may hold (Options.MaxDeviceConnections)
	maxKeepAlive uint16 // seconds (Options.MaxKeepAlive)
	log          *slog.Logger
	warn         *loglimit.Limiter // what clients can cause at will
	m            *metrics

	rr atomic.Uint64 // round robin over shared subscriptions

	mu       sync.RWMutex
	closed   bool                 // close: connections end without their last wills
	draining bool                 // drain: no new connection; those that end send their wills
	active   sync.WaitGroup       // serving goroutines (added under mu while neither closed nor draining)
	clients  map[string]*client   // connected, by sessionKey
	devices  map[string]int       // connections held by each device (RoleDevice)
	gens     map[string]uint64    // each device's credential generation: closeDevice counts it up
	pending  map[*client]struct{} // not yet connected (before CONNACK)
	exact    map[string][]*sub    // subscriptions without wildcards, by filter
	wild     []*sub               // subscriptions with wildcards
	retained map[string]message   // by topic
}

// sub is one subscription: of a client (c) or in-process (fn).
type sub struct {
	filter string // without "$share/{group}/"
	group  string // the share group, "" if not shared
	qos    byte
	c      *client
	fn     func(topic string, payload []byte)
}

// client is one connection.
type client struct {
	s        *server
	conn     net.Conn
	id       string
	device   string
	gen      uint64 // the device's credential generation when its check began (server.gens)
	role     Role
	will     *message
	graceful bool                // it sent DISCONNECT (reader goroutine only)
	qos2     map[uint16]struct{} // QoS 2 ids received, not yet released (reader goroutine only)
	subs     []*sub              // guarded by s.mu
	replaced atomic.Bool         // a newer connection took its client id

	wlock   chan struct{} // the write lock (capacity 1); see lock
	writing atomic.Int64  // when the write under way began (Unix ns), 0 when none
	dead    bool          // a write failed; the connection is closed (under wlock)
	nextID  uint16        // of the last QoS 1 PUBLISH sent (under wlock)

	// acks are the PUBACKs of a device's requests (verify/req, staff/req)
	// not written yet: each goes out with the next packet written to the
	// client (its answer, as a rule: one write and one read where there
	// were two) or alone after ackDelay. Taken under wlock, in order.
	ackMu    sync.Mutex
	acks     []uint16
	ackTimer *time.Timer
	ackEnded bool // the connection's reader has ended: nothing more is deferred
}

// ackDelay bounds how long the PUBACK of a device's request waits for its
// answer to travel with. kluisd waits for the answer, not the PUBACK
// (controller/link); the PUBACK only ends paho's keeping the request to
// send it again after a reconnection, which the backend answers with its
// first answer (devicelink's reply cache) if it comes.
const ackDelay = 50 * time.Millisecond

// lockWait bounds the wait for a client's write lock. A write that holds
// it longer is stuck on a client that does not read: whoever has a message
// for that client then drops it (errCongested) instead of waiting for the
// write timeout behind it, so a client that floods requests and reads no
// answers holds one publisher, not every one that answers it.
const lockWait = time.Second

// errCongested: the client's write lock was not free within lockWait.
var errCongested = errors.New("broker: a write to the client has been stuck for over a second")

// lock takes c's write lock, or returns false when a write to c has been
// under way for lockWait already or does not end within it.
func (c *client) lock() bool {
	select {
	case c.wlock <- struct{}{}:
		return true
	default:
	}
	if since := c.writing.Load(); since != 0 && time.Since(time.Unix(0, since)) >= lockWait {
		return false
	}
	t := time.NewTimer(lockWait)
	defer t.Stop()
	select {
	case c.wlock <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (c *client) unlock() { <-c.wlock }

// maxConnectSize bounds the first packet, read before the client is
// authenticated.
const maxConnectSize = 64 << 10

// readBufferSize is each connection's bufio.Reader: the packets of a
// device are small; larger ones are read past it.
const readBufferSize = 512

// errDenied: a client published QoS > 0 where the ACL forbids it.
var errDenied = errors.New("broker: publish denied")

func newServer(creds CredentialsFunc, checkTimeout, writeTimeout time.Duration, maxPacket int, log *slog.Logger, m *metrics) *server {
	return &server{creds: creds, checkTimeout: checkTimeout, writeTimeout: writeTimeout, maxPacket: maxPacket,
		log: log, warn: loglimit.New(log, logBurst, logWindow, time.Now), m: m, clients: map[string]*client{}, devices: map[string]int{}, gens: map[string]uint64{}, pending: map[*client]struct{}{},
		exact: map[string][]*sub{}, retained: map[string]message{}}
}

// serve runs one connection until it ends.
func (s *server) serve(conn net.Conn) {
	c := &client{s: s, conn: conn, wlock: make(chan struct{}, 1)}
	defer conn.Close()
	s.mu.Lock()
	if s.closed || s.draining {
		s.mu.Unlock()
		return
	}
	s.pending[c] = struct{}{}
	s.active.Add(1)
	s.mu.Unlock()
	defer s.active.Done()
	defer func() {
		s.mu.Lock()
		delete(s.pending, c)
		s.mu.Unlock()
	}()
	r := bufio.NewReaderSize(conn, readBufferSize)
	hdr, body, err := readPacket(r, min(s.maxPacket, maxConnectSize))
	firstPacketRead(conn)
	if err != nil {
		s.ended(conn, err)
		return
	}
	if hdr>>4 != pktConnect {
		s.ended(conn, malformed("first packet of type %d, not CONNECT", hdr>>4))
		return
	}
	p, err := parseConnect(hdr, body)
	if err != nil {
		s.ended(conn, err)
		return
	}
	if p.unsupported {
		_ = c.write([]byte{pktConnack << 4, 2, 0, connBadVersion})
		return
	}
	if code := s.authenticate(c, &p); code != connAccepted {
		_ = c.write([]byte{pktConnack << 4, 2, 0, code})
		return
	}
	if code := s.attach(c); code != connAccepted {
		if code == connUnavailable || code == connBadCredentials {
			_ = c.write([]byte{pktConnack << 4, 2, 0, code})
		}
		return
	}
	s.m.connected.Inc()
	if err := c.write([]byte{pktConnack << 4, 2, 0, connAccepted}); err == nil {
		err = c.run(r, time.Duration(p.keepAlive)*time.Second*3/2)
		c.endAcks()
		s.ended(conn, err)
	}
	s.detach(c)
	s.m.connected.Dec()
}

// ended logs why a connection ended.
func (s *server) ended(conn net.Conn, err error) {
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.Is(err, errMalformed):
		s.warn.Warn("closing a connection: protocol violation", "err", err, "remote", conn.RemoteAddr().String())
	default:
		s.log.Debug("client connection ended", "err", err, "remote", conn.RemoteAddr().String())
	}
}

// authenticate checks a CONNECT and fills c's identity; it returns the
// CONNACK return code.
func (s *server) authenticate(c *client, p *connectPacket) byte {
	refuse := func(code byte, why string) byte {
		s.m.authFail.Inc()
		s.warn.Warn("connection refused", "reason", why, "user", safe(p.user), "remote", c.conn.RemoteAddr().String())
		return code
	}
	if p.clientID == "" && !p.clean {
		return refuse(connBadClientID, "empty client id without clean session")
	}
	if p.keepAlive == 0 || p.keepAlive > s.maxKeepAlive {
		return refuse(connBadClientID, "keep-alive 0 or over the maximum")
	}
	// The device's credential generation before the check: a new
	// password (closeDevice) between the check and attach must not let
	// in a connection the old password passed (attach compares).
	s.mu.RLock()
	gen := s.gens[p.user]
	s.mu.RUnlock()
	ctx, cancel := context.WithTimeout(withClientAddr(context.Background(), c.conn), s.checkTimeout)
	device, role, ok := s.creds(ctx, p.user, p.password)
	cancel()
	if !ok {
		return refuse(connBadCredentials, "bad credentials")
	}
	switch role {
	case RoleBackend:
	case RoleDevice:
		if device != p.user {
			return refuse(connNotAuthorized, "device id differs from user name")
		}
		if !ValidClientID(device, p.clientID) {
			return refuse(connNotAuthorized, "client id not the device's")
		}
		// Its own presence only (the contract's "offline"): a will on its
		// event topic, say, was one message in after DisconnectDevice.
		if p.will != nil && p.will.topic != (wire.Topic{Device: device, Kind: wire.KindPresence}).String() {
			return refuse(connNotAuthorized, "last will not on the device's presence topic")
		}
	default:
		return refuse(connNotAuthorized, "unknown role")
	}
	if p.clientID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		p.clientID = "auto-" + hex.EncodeToString(b[:])
	}
	c.id, c.device, c.role, c.will, c.gen = p.clientID, device, role, p.will, gen
	if c.will != nil {
		c.will.payload = bytes.Clone(c.will.payload)
	}
	return connAccepted
}

// sessionKey is what makes two connections the same session: the client
// id within the identity that authenticated it (the backend, or one
// device). A device's client id may be "kluisd-{device}", which is also
// the id of a device named "kluisd-{device}": keyed by client id alone,
// either device's credentials could close the other's connection (and
// spare its last will) by connecting with that id.
func (c *client) sessionKey() string {
	return string(c.role) + "\x00" + c.device + "\x00" + c.id
}

// attach makes c the connection of its client id, closing the one it
// replaces (a device reconnecting before its old connection was seen to
// go; the old one's last will is not sent). It returns connUnavailable
// when c's device holds its maximum of connections already (one it
// replaces does not count), connAccepted otherwise, and 0xff when the
// server is closed or draining.
func (s *server) attach(c *client) byte {
	s.mu.Lock()
	if s.closed || s.draining {
		s.mu.Unlock()
		return 0xff
	}
	if c.role == RoleDevice && s.gens[c.device] != c.gen {
		// The device's password changed after c's check began: the check
		// may have passed the old one, which closeDevice already shut
		// out. The device tries again (with the new one).
		s.mu.Unlock()
		s.m.authFail.Inc()
		s.warn.Warn("connection refused", "reason", "the device's password changed during the check",
			"device", c.device, "remote", c.conn.RemoteAddr().String())
		return connBadCredentials
	}
	old := s.clients[c.sessionKey()]
	if c.role == RoleDevice && old == nil {
		if s.devices[c.device] >= s.maxPerDevice {
			s.mu.Unlock()
			s.m.authFail.Inc()
			s.warn.Warn("connection refused", "reason", "the device holds its maximum of connections",
				"device", c.device, "max", s.maxPerDevice, "remote", c.conn.RemoteAddr().String())
			return connUnavailable
		}
		s.devices[c.device]++
	}
	s.clients[c.sessionKey()] = c
	delete(s.pending, c)
	s.mu.Unlock()
	if old != nil {
		old.replaced.Store(true)
		_ = old.conn.Close()
		s.log.Info("session taken over by a new connection", "client", safe(c.id))
	}
	return connAccepted
}

// closeDevice closes the connections of device (RoleDevice) and returns
// how many; each one's reader then detaches it. It counts the device's
// credential generation up, so that a CONNECT whose check began before
// (and may have passed the old password) is refused at attach: the
// password was changed before closeDevice is called.
func (s *server) closeDevice(device string) int {
	s.mu.Lock()
	s.gens[device]++
	var conns []net.Conn
	for _, c := range s.clients {
		if c.role == RoleDevice && c.device == device {
			conns = append(conns, c.conn)
		}
	}
	s.mu.Unlock()
	for _, conn := range conns {
		_ = conn.Close()
	}
	return len(conns)
}

// detach forgets c and its subscriptions, and sends its last will if it
// went without DISCONNECT and was not replaced, unless the broker is
// closing (the device did not go; the broker did). While the broker
// drains the wills are sent: the device is unreachable until it connects
// again (to this broker once it is back), and its will says so.
func (s *server) detach(c *client) {
	s.mu.Lock()
	closing := s.closed
	if s.clients[c.sessionKey()] == c {
		delete(s.clients, c.sessionKey())
		if c.role == RoleDevice {
			if s.devices[c.device]--; s.devices[c.device] <= 0 {
				delete(s.devices, c.device)
			}
		}
	}
	for _, sb := range c.subs {
		s.removeLocked(sb)
	}
	c.subs = nil
	s.mu.Unlock()
	if c.will != nil && !c.graceful && !c.replaced.Load() && !closing {
		w := *c.will
		s.publish(w)
	}
}

// run reads and handles c's packets until the connection ends or breaks
// the protocol. keepAlive (1.5 × the client's, 0 for none) bounds the
// wait for each packet.
func (c *client) run(r *bufio.Reader, keepAlive time.Duration) error {
	s := c.s
	for {
		var deadline time.Time
		if keepAlive > 0 {
			deadline = time.Now().Add(keepAlive)
		}
		if err := c.conn.SetReadDeadline(deadline); err != nil {
			return err
		}
		hdr, body, err := readPacket(r, s.maxPacket)
		if err != nil {
			return err
		}
		switch hdr >> 4 {
		case pktPublish:
			err = c.handlePublish(hdr, body)
		case pktPuback, pktPubcomp:
			if hdr&0x0f != 0 {
				return malformed("acknowledgement flags")
			}
			_, err = parseID(body) // QoS 1 deliveries are not resent within a connection
		case pktPubrel:
			if hdr != pktPubrel<<4|0x02 {
				return malformed("PUBREL flags")
			}
			var id uint16
			if id, err = parseID(body); err == nil {
				delete(c.qos2, id)
				err = c.write(appendAck(nil, pktPubcomp<<4, id))
			}
		case pktSubscribe:
			err = c.handleSubscribe(hdr, body)
		case pktUnsubscribe:
			var id uint16
			var filters []string
			if id, filters, err = parseUnsubscribe(hdr, body); err == nil {
				s.unsubscribe(c, filters)
				err = c.write(appendAck(nil, pktUnsuback<<4, id))
			}
		case pktPingreq:
			if hdr != pktPingreq<<4 || len(body) != 0 {
				return malformed("PINGREQ")
			}
			err = c.write([]byte{pktPingresp << 4, 0})
		case pktDisconnect:
			if hdr != pktDisconnect<<4 || len(body) != 0 {
				return malformed("DISCONNECT")
			}
			c.graceful = true
			return nil
		default:
			return malformed("packet type %d from a client", hdr>>4)
		}
		if err != nil {
			return err
		}
	}
}

func (c *client) handlePublish(hdr byte, body []byte) error {
	s := c.s
	p, err := parsePublish(hdr, body)
	if err != nil {
		return err
	}
	if !Allowed(c.role, c.device, p.topic, true) {
		s.m.denied.WithLabelValues("write").Inc()
		s.warn.Warn("acl denied", "client", safe(c.id), "device", c.device, "access", "write", "topic", safe(p.topic))
		if p.qos > 0 {
			return errDenied // MQTT 3.1.1 has no way to refuse it: the connection goes
		}
		return nil
	}
	switch p.qos {
	case 0:
		p.owned = true // the packet's body: readPacket's, read for it alone
		s.publish(p.message)
		return nil
	case 1:
		p.owned = true
		if c.role == RoleDevice && isRequest(p.topic) {
			// Deferred before the message is handed on, so that its answer
			// cannot be written before it: the PUBACK goes with the answer
			// (or before it, ackDelay at the latest).
			c.deferAck(p.id)
			s.publish(p.message)
			return nil
		}
		s.publish(p.message) // the in-process subscribers have it before the PUBACK
		return c.write(appendAck(nil, pktPuback<<4, p.id))
	default:
		if _, seen := c.qos2[p.id]; !seen {
			if c.qos2 == nil {
				c.qos2 = map[uint16]struct{}{}
			}
			if len(c.qos2) >= 1024 {
				return malformed("over 1,024 QoS 2 messages unreleased")
			}
			c.qos2[p.id] = struct{}{}
			p.owned = true
			s.publish(p.message)
		}
		return c.write(appendAck(nil, pktPubrec<<4, p.id))
	}
}

func (c *client) handleSubscribe(hdr byte, body []byte) error {
	s := c.s
	id, filters, err := parseSubscribe(hdr, body)
	if err != nil {
		return err
	}
	codes := make([]byte, len(filters))
	var added []*sub
	for i, f := range filters {
		filter, group, ok := splitShare(f.filter)
		if !ok || !validFilter(filter) {
			codes[i] = subackFailure
			continue
		}
		if !Allowed(c.role, c.device, f.filter, false) {
			s.m.denied.WithLabelValues("read").Inc()
			s.warn.Warn("acl denied", "client", safe(c.id), "device", c.device, "access", "read", "topic", safe(f.filter))
			codes[i] = subackFailure
			continue
		}
		codes[i] = min(f.qos, 1)
		sb := s.subscribe(&sub{filter: filter, group: group, qos: codes[i], c: c})
		if group == "" {
			added = append(added, sb)
		}
	}
	if err := c.write(appendSuback(nil, id, codes)); err != nil {
		return err
	}
	for _, sb := range added {
		for _, m := range s.retainedFor(sb.filter) {
			if err := c.deliver(m.topic, m.payload, min(m.qos, sb.qos), true); err != nil {
				return err
			}
		}
	}
	return nil
}

// splitShare splits "$share/{group}/{filter}" (ok false if malformed);
// other filters come back whole with group "".
func splitShare(f string) (filter, group string, ok bool) {
	rest, shared := strings.CutPrefix(f, "$share/")
	if !shared {
		return f, "", true
	}
	group, filter, ok = strings.Cut(rest, "/")
	if !ok || group == "" || strings.ContainsAny(group, "+#") {
		return "", "", false
	}
	return filter, group, true
}

// subscribe adds sb, replacing c's subscription with the same filter and
// group, and returns it.
func (s *server) subscribe(sb *sub) *sub {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sb.c != nil {
		replaced := false
		for i, o := range sb.c.subs {
			if o.filter == sb.filter && o.group == sb.group {
				s.removeLocked(o)
				sb.c.subs[i] = sb
				replaced = true
				break
			}
		}
		if !replaced {
			sb.c.subs = append(sb.c.subs, sb)
		}
	}
	if strings.ContainsAny(sb.filter, "+#") {
		s.wild = append(s.wild, sb)
	} else {
		s.exact[sb.filter] = append(s.exact[sb.filter], sb)
	}
	return sb
}

func (s *server) unsubscribe(c *client, filters []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range filters {
		filter, group, ok := splitShare(f)
		if !ok {
			continue
		}
		for i, sb := range c.subs {
			if sb.filter == filter && sb.group == group {
				s.removeLocked(sb)
				c.subs = append(c.subs[:i], c.subs[i+1:]...)
				break
			}
		}
	}
}

// removeLocked takes sb out of the index; s.mu is held.
func (s *server) removeLocked(sb *sub) {
	if strings.ContainsAny(sb.filter, "+#") {
		s.wild = without(s.wild, sb)
		return
	}
	if l := without(s.exact[sb.filter], sb); len(l) > 0 {
		s.exact[sb.filter] = l
	} else {
		delete(s.exact, sb.filter)
	}
}

func without(l []*sub, sb *sub) []*sub {
	for i, o := range l {
		if o == sb {
			n := make([]*sub, 0, len(l)-1)
			return append(append(n, l[:i]...), l[i+1:]...)
		}
	}
	return l
}

// retainedFor returns the retained messages matching filter.
func (s *server) retainedFor(filter string) []message {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !strings.ContainsAny(filter, "+#") {
		if m, ok := s.retained[filter]; ok {
			return []message{m}
		}
		return nil
	}
	var out []message
	for t, m := range s.retained {
		if matchTopic(filter, t) {
			out = append(out, m)
		}
	}
	return out
}

// publish routes m to every matching subscription: in-process handlers
// are called, in this goroutine, with a copy of the payload (or with the
// payload itself when it is owned and they are its only target: a
// device's message to devicelink, which keeps it; no copy per message);
// clients are written to. A retained message (an empty one deletes) is kept for later
// subscribers.
func (s *server) publish(m message) {
	var buf [8]*sub
	targets := buf[:0]
	if m.retain {
		s.mu.Lock()
		if len(m.payload) == 0 {
			delete(s.retained, m.topic)
		} else {
			s.retained[m.topic] = message{topic: m.topic, payload: bytes.Clone(m.payload), qos: m.qos, retain: true}
		}
		s.mu.Unlock()
	}
	s.mu.RLock()
	targets = append(targets, s.exact[m.topic]...)
	for _, w := range s.wild {
		if matchTopic(w.filter, m.topic) {
			targets = append(targets, w)
		}
	}
	s.mu.RUnlock()
	targets = s.pickShared(targets)
	for _, t := range targets {
		if t.fn != nil {
			if m.owned && len(targets) == 1 {
				t.fn(m.topic, m.payload)
				continue
			}
			t.fn(m.topic, bytes.Clone(m.payload))
			continue
		}
		if err := t.c.deliver(m.topic, m.payload, min(m.qos, t.qos), false); err != nil {
			s.m.dropped.Inc()
			if errors.Is(err, errCongested) {
				s.warn.Warn("message to a client dropped: a write to it is stuck (it does not read); it is disconnected when that write times out",
					"client", safe(t.c.id), "topic", safe(m.topic))
				continue
			}
			s.log.Warn("message to a client dropped: writing to it failed; it is disconnected",
				"client", safe(t.c.id), "topic", safe(m.topic), "err", err)
		}
	}
}

// pickShared keeps one subscription of each share group (by group and
// filter), in turn.
func (s *server) pickShared(targets []*sub) []*sub {
	shared := false
	for _, t := range targets {
		if t.group != "" {
			shared = true
			break
		}
	}
	if !shared {
		return targets
	}
	groups := map[string][]*sub{}
	out := targets[:0:0]
	for _, t := range targets {
		if t.group == "" {
			out = append(out, t)
			continue
		}
		k := t.group + "\x00" + t.filter
		groups[k] = append(groups[k], t)
	}
	n := s.rr.Add(1)
	for _, g := range groups {
		out = append(out, g[n%uint64(len(g))])
	}
	return out
}

// isRequest reports whether topic (a device's, allowed) is a request the
// backend answers: verify/req or staff/req.
func isRequest(topic string) bool {
	return strings.HasSuffix(topic, "/"+string(wire.KindVerifyReq)) || strings.HasSuffix(topic, "/"+string(wire.KindStaffReq))
}

// deferAck keeps the PUBACK of id for the next write to c (see acks).
func (c *client) deferAck(id uint16) {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	if c.ackEnded {
		return // the connection is gone: no PUBACK can reach it
	}
	c.acks = append(c.acks, id)
	if len(c.acks) > 1 {
		return // the timer runs for the first
	}
	if c.ackTimer == nil {
		c.ackTimer = time.AfterFunc(ackDelay, c.flushAcks)
	} else {
		c.ackTimer.Reset(ackDelay)
	}
}

// appendAcksLocked appends the deferred PUBACKs to b and forgets them;
// c's write lock is held, so they go out in the order their PUBLISHes
// came, before anything written after them.
func (c *client) appendAcksLocked(b []byte) []byte {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	for _, id := range c.acks {
		b = appendAck(b, pktPuback<<4, id)
	}
	c.acks = c.acks[:0]
	return b
}

// flushAcks writes the deferred PUBACKs that no answer took along
// (ackDelay after the first of them).
func (c *client) flushAcks() {
	if !c.lock() {
		return // a write to c is stuck: it is disconnected when that times out
	}
	defer c.unlock()
	bp := packetPool.Get().(*[]byte)
	defer packetPool.Put(bp)
	if *bp = c.appendAcksLocked((*bp)[:0]); len(*bp) > 0 {
		_ = c.writeLocked(*bp)
	}
}

// endAcks stops deferring: c's reader has ended.
func (c *client) endAcks() {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	c.ackEnded = true
	c.acks = nil
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
}

// deliver writes one PUBLISH to c, after the PUBACKs deferred so far.
func (c *client) deliver(topic string, payload []byte, qos byte, retain bool) error {
	if !c.lock() {
		return errCongested
	}
	defer c.unlock()
	bp := packetPool.Get().(*[]byte)
	defer packetPool.Put(bp)
	var id uint16
	if qos > 0 {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		id = c.nextID
	}
	*bp = appendPublish(c.appendAcksLocked((*bp)[:0]), topic, payload, qos, retain, false, id)
	return c.writeLocked(*bp)
}

// packetPool holds the buffers PUBLISH packets are encoded in.
var packetPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// write writes b to c, after the PUBACKs deferred so far.
func (c *client) write(b []byte) error {
	if !c.lock() {
		return errCongested
	}
	defer c.unlock()
	if acks := c.appendAcksLocked(nil); len(acks) > 0 {
		b = append(acks, b...)
	}
	return c.writeLocked(b)
}

func (c *client) writeLocked(b []byte) error {
	if c.dead {
		return net.ErrClosed
	}
	now := time.Now()
	_ = c.conn.SetWriteDeadline(now.Add(c.s.writeTimeout))
	c.writing.Store(now.UnixNano())
	_, err := c.conn.Write(b)
	c.writing.Store(0)
	if err != nil {
		c.dead = true
		_ = c.conn.Close()
		return err
	}
	return nil
}

// subscribeFunc adds an in-process subscription and hands it the retained
// messages matching filter.
func (s *server) subscribeFunc(f string, fn func(topic string, payload []byte)) error {
	filter, group, ok := splitShare(f)
	if !ok || !validFilter(filter) {
		return malformed("topic filter %q", f)
	}
	s.subscribe(&sub{filter: filter, group: group, qos: 2, fn: fn})
	for _, m := range s.retainedFor(filter) {
		fn(m.topic, bytes.Clone(m.payload))
	}
	return nil
}

// close closes every connection (their last wills are not sent).
func (s *server) close() { s.closeAll(&s.closed) }

// drain closes every connection and refuses new ones; the connections
// that end without DISCONNECT send their last wills (detach).
func (s *server) drain() { s.closeAll(&s.draining) }

// closeAll sets *flag and closes every connection.
func (s *server) closeAll(flag *bool) {
	s.mu.Lock()
	*flag = true
	conns := make([]net.Conn, 0, len(s.clients)+len(s.pending))
	for _, c := range s.clients {
		conns = append(conns, c.conn)
	}
	for c := range s.pending {
		conns = append(conns, c.conn)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
