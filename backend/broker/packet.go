package broker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// MQTT 3.1.1 control packet types (the high nibble of the fixed header).
const (
	pktConnect     = 1
	pktConnack     = 2
	pktPublish     = 3
	pktPuback      = 4
	pktPubrec      = 5
	pktPubrel      = 6
	pktPubcomp     = 7
	pktSubscribe   = 8
	pktSuback      = 9
	pktUnsubscribe = 10
	pktUnsuback    = 11
	pktPingreq     = 12
	pktPingresp    = 13
	pktDisconnect  = 14
)

// CONNACK return codes (MQTT 3.1.1 section 3.2.2.3).
const (
	connAccepted            = 0
	connBadVersion          = 1
	connBadClientID         = 2
	connUnavailable         = 3
	connBadCredentials      = 4
	connNotAuthorized       = 5
	subackFailure      byte = 0x80
)

// errMalformed wraps every protocol violation: the connection is closed.
var errMalformed = errors.New("broker: malformed packet")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, a...))
}

// readPacket reads one packet: its fixed header's first byte and its body
// (the remaining length's bytes). A body longer than max is refused
// before it is read. The body is freshly allocated.
func readPacket(r *bufio.Reader, max int) (byte, []byte, error) {
	hdr, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, malformed("remaining length over 4 bytes")
		}
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, unexpected(err)
		}
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		mult *= 128
	}
	if n > max {
		return 0, nil, malformed("packet of %d bytes over the limit of %d", n, max)
	}
	if n <= eagerBody {
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return 0, nil, unexpected(err)
		}
		return hdr, body, nil
	}
	// A remaining length is a promise, not bytes: the body grows with what
	// arrives, so that a client announcing the limit and sending nothing
	// more costs what it sent (at most twice over), not the limit.
	var buf bytes.Buffer
	buf.Grow(eagerBody)
	got, err := io.CopyN(&buf, r, int64(n))
	if got < int64(n) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, unexpected(err)
	}
	return hdr, buf.Bytes(), nil
}

// eagerBody: a body up to this size is allocated whole before it is read
// (every packet of a device but a code sync's result or a large event);
// a larger one grows as it arrives.
const eagerBody = 4 << 10

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decoder reads the fields of a packet's body.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = malformed("%s", what)
	}
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(what + " missing")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint16(what string) uint16 {
	if d.err != nil || len(d.b) < 2 {
		d.fail(what + " missing")
		return 0
	}
	v := uint16(d.b[0])<<8 | uint16(d.b[1])
	d.b = d.b[2:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := int(d.uint16(what))
	if d.err != nil || len(d.b) < n {
		d.fail(what + " cut short")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// str is a UTF-8 string field, refused if not valid UTF-8 or holding NUL
// (MQTT 3.1.1 section 1.5.3).
func (d *decoder) str(what string) string {
	b := d.bytes(what)
	if d.err != nil {
		return ""
	}
	if !utf8.Valid(b) || strings.IndexByte(string(b), 0) >= 0 {
		d.fail(what + " not valid UTF-8")
		return ""
	}
	return string(b)
}

// connectPacket is a decoded CONNECT.
type connectPacket struct {
	level       byte
	clientID    string
	clean       bool
	keepAlive   uint16
	user        string
	password    string
	hasUser     bool
	will        *message
	unsupported bool // a protocol level this broker does not speak
}

// message is an application message.
type message struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
	// owned: payload is the broker's own (the body of a packet just read,
	// which nothing else holds): publish may hand it to its only
	// in-process subscriber instead of a copy.
	owned bool
}

func parseConnect(hdr byte, body []byte) (connectPacket, error) {
	var p connectPacket
	if hdr != pktConnect<<4 {
		return p, malformed("CONNECT flags")
	}
	d := &decoder{b: body}
	name := d.str("protocol name")
	p.level = d.byte1("protocol level")
	if d.err != nil {
		return p, d.err
	}
	switch {
	case name == "MQTT" && p.level == 4, name == "MQIsdp" && p.level == 3:
	case name == "MQTT" || name == "MQIsdp":
		p.unsupported = true
		return p, nil
	default:
		return p, malformed("protocol name %q", name)
	}
	flags := d.byte1("connect flags")
	p.keepAlive = d.uint16("keep alive")
	p.clientID = d.str("client id")
	if d.err != nil {
		return p, d.err
	}
	if flags&0x01 != 0 {
		return p, malformed("reserved connect flag")
	}
	p.clean = flags&0x02 != 0
	willQoS := flags >> 3 & 3
	if flags&0x04 != 0 {
		if willQoS > 2 {
			return p, malformed("will QoS 3")
		}
		w := &message{qos: willQoS, retain: flags&0x20 != 0}
		w.topic = d.str("will topic")
		w.payload = d.bytes("will message")
		if d.err == nil && !validTopicName(w.topic) {
			return p, malformed("will topic")
		}
		p.will = w
	} else if willQoS != 0 || flags&0x20 != 0 {
		return p, malformed("will QoS or retain without a will")
	}
	if flags&0x80 != 0 {
		p.hasUser = true
		p.user = d.str("user name")
	}
	if flags&0x40 != 0 {
		if flags&0x80 == 0 {
			return p, malformed("password without user name")
		}
		p.password = string(d.bytes("password"))
	}
	if d.err != nil {
		return p, d.err
	}
	if len(d.b) != 0 {
		return p, malformed("CONNECT: %d bytes too many", len(d.b))
	}
	return p, nil
}

// publishPacket is a decoded PUBLISH.
type publishPacket struct {
	message
	id  uint16
	dup bool
}

func parsePublish(hdr byte, body []byte) (publishPacket, error) {
	p := publishPacket{dup: hdr&0x08 != 0}
	p.qos = hdr >> 1 & 3
	p.retain = hdr&0x01 != 0
	if p.qos == 3 {
		return p, malformed("PUBLISH QoS 3")
	}
	d := &decoder{b: body}
	p.topic = d.str("topic")
	if p.qos > 0 {
		p.id = d.uint16("packet id")
		if d.err == nil && p.id == 0 {
			return p, malformed("packet id 0")
		}
	}
	if d.err != nil {
		return p, d.err
	}
	if !validTopicName(p.topic) {
		return p, malformed("topic name %q", p.topic)
	}
	p.payload = d.b
	return p, nil
}

// filterQoS is one entry of a SUBSCRIBE.
type filterQoS struct {
	filter string
	qos    byte
}

func parseSubscribe(hdr byte, body []byte) (uint16, []filterQoS, error) {
	if hdr != pktSubscribe<<4|0x02 {
		return 0, nil, malformed("SUBSCRIBE flags")
	}
	d := &decoder{b: body}
	id := d.uint16("packet id")
	var fs []filterQoS
	for d.err == nil && len(d.b) > 0 {
		f := d.str("topic filter")
		q := d.byte1("requested QoS")
		if d.err == nil && (q > 2) {
			return 0, nil, malformed("requested QoS %d", q)
		}
		fs = append(fs, filterQoS{f, q})
	}
	if d.err != nil {
		return 0, nil, d.err
	}
	if id == 0 || len(fs) == 0 {
		return 0, nil, malformed("SUBSCRIBE without packet id or filter")
	}
	return id, fs, nil
}

func parseUnsubscribe(hdr byte, body []byte) (uint16, []string, error) {
	if hdr != pktUnsubscribe<<4|0x02 {
		return 0, nil, malformed("UNSUBSCRIBE flags")
	}
	d := &decoder{b: body}
	id := d.uint16("packet id")
	var fs []string
	for d.err == nil && len(d.b) > 0 {
		fs = append(fs, d.str("topic filter"))
	}
	if d.err != nil {
		return 0, nil, d.err
	}
	if id == 0 || len(fs) == 0 {
		return 0, nil, malformed("UNSUBSCRIBE without packet id or filter")
	}
	return id, fs, nil
}

// parseID decodes a body that is only a packet id (PUBACK, PUBREL, ...).
func parseID(body []byte) (uint16, error) {
	if len(body) != 2 {
		return 0, malformed("%d bytes where a packet id was expected", len(body))
	}
	return uint16(body[0])<<8 | uint16(body[1]), nil
}

// validTopicName: a PUBLISH topic, not empty and without wildcards.
func validTopicName(t string) bool {
	return t != "" && !strings.ContainsAny(t, "+#")
}

// validFilter: a topic filter, '+' and '#' only as whole levels and '#'
// only last.
func validFilter(f string) bool {
	if f == "" {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) != 1 {
			return false
		}
		if l == "#" && i != len(levels)-1 {
			return false
		}
	}
	return true
}

// matchTopic reports whether topic matches filter (no $share prefix).
// Topics starting with '$' match no filter starting with a wildcard.
func matchTopic(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			return fmore == tmore || (!tmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}

// appendLength appends an MQTT remaining length.
func appendLength(b []byte, n int) []byte {
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	return append(append(b, byte(len(s)>>8), byte(len(s))), s...)
}

// appendPublish appends a PUBLISH packet.
func appendPublish(b []byte, topic string, payload []byte, qos byte, retain, dup bool, id uint16) []byte {
	h := byte(pktPublish<<4) | qos<<1
	if retain {
		h |= 0x01
	}
	if dup {
		h |= 0x08
	}
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	b = appendLength(append(b, h), n)
	b = appendString(b, topic)
	if qos > 0 {
		b = append(b, byte(id>>8), byte(id))
	}
	return append(b, payload...)
}

// appendAck appends a packet made of a fixed header and a packet id
// (PUBACK, PUBREC, PUBCOMP, UNSUBACK).
func appendAck(b []byte, hdr byte, id uint16) []byte {
	return append(b, hdr, 2, byte(id>>8), byte(id))
}

func appendSuback(b []byte, id uint16, codes []byte) []byte {
	b = appendLength(append(b, pktSuback<<4), 2+len(codes))
	b = append(b, byte(id>>8), byte(id))
	return append(b, codes...)
}
