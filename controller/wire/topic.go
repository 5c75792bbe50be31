package wire

import (
	"errors"
	"fmt"
	"strings"
)

// Root is the topic prefix of every device topic.
const Root = "kluis/v1/dev"

// BackendShareGroup is the shared-subscription group every backend replica
// joins.
const BackendShareGroup = "kluis-backend"

// Kind names one topic (and so one message type) below a device's root.
type Kind string

// The topic kinds.
const (
	KindPresence  Kind = "presence"
	KindHeartbeat Kind = "heartbeat"
	KindEvent     Kind = "event"
	KindAck       Kind = "ack"
	KindCommand   Kind = "cmd"
	KindCmdResult Kind = "cmdres"
	KindVerifyReq Kind = "verify/req"
	KindVerifyRes Kind = "verify/res"
	KindStaffReq  Kind = "staff/req"
	KindStaffRes  Kind = "staff/res"
)

// Kinds lists every topic kind.
func Kinds() []Kind {
	return []Kind{KindPresence, KindHeartbeat, KindEvent, KindAck, KindCommand,
		KindCmdResult, KindVerifyReq, KindVerifyRes, KindStaffReq, KindStaffRes}
}

// DeviceKinds lists the kinds a device publishes (and the backend
// subscribes to).
func DeviceKinds() []Kind {
	return []Kind{KindPresence, KindHeartbeat, KindEvent, KindCmdResult, KindVerifyReq, KindStaffReq}
}

// BackendKinds lists the kinds the backend publishes (and a device
// subscribes to).
func BackendKinds() []Kind {
	return []Kind{KindAck, KindCommand, KindVerifyRes, KindStaffRes}
}

// Valid reports whether k is one of the kinds above.
func (k Kind) Valid() bool {
	for _, x := range Kinds() {
		if x == k {
			return true
		}
	}
	return false
}

// FromDevice reports whether devices publish messages of this kind.
func (k Kind) FromDevice() bool {
	for _, x := range DeviceKinds() {
		if x == k {
			return true
		}
	}
	return false
}

// QoS is the MQTT quality of service messages of this kind are published
// with: 0 for heartbeats (the next one replaces a lost one), 1 otherwise.
func (k Kind) QoS() byte {
	if k == KindHeartbeat {
		return 0
	}
	return 1
}

// SubscribeQoS is the QoS a device subscribes to a kind of BackendKinds
// with, and so the QoS the broker delivers it at (the lower of the
// publisher's and the subscription's): 0 for the answers (verify/res,
// staff/res), 1 for acks and commands. An answer's PUBACK from the device
// protects nothing: neither broker ever sends a message to a device again
// (the embedded one keeps no session; Mosquitto drops a clean session's
// unacknowledged messages when its connection ends and resends none
// within one), and a lost answer is a timeout at the kiosk either way.
// The backend still publishes answers at QoS 1 (QoS), so its own hop to
// Mosquitto keeps paho's resend after a reconnect; and the request stays
// QoS 1: paho keeps it until the broker's PUBACK and publishes it again
// after a reconnect (kluisd, while it still waits for the answer), and
// the backend answers a repeated request id from its reply cache.
func (k Kind) SubscribeQoS() byte {
	if k == KindVerifyRes || k == KindStaffRes {
		return 0
	}
	return 1
}

// Retained reports whether messages of this kind are published retained
// (presence only, so a new subscriber learns every device's state).
func (k Kind) Retained() bool { return k == KindPresence }

// Topic is a parsed device topic.
type Topic struct {
	Device string
	Kind   Kind
}

// String formats the topic, "kluis/v1/dev/{device}/{kind}".
func (t Topic) String() string { return Root + "/" + t.Device + "/" + string(t.Kind) }

// ErrTopic is wrapped by every topic parsing or building error.
var ErrTopic = errors.New("wire: bad topic")

// MaxDeviceID is the longest device id.
const MaxDeviceID = 63

// ValidDeviceID reports whether id can be a device id: 1-63 characters of
// a-z, 0-9, '-' and '_', starting with a letter or digit (the same rule as
// the backend's devices table; safe as an MQTT user name and topic level).
func ValidDeviceID(id string) error {
	if id == "" || len(id) > MaxDeviceID {
		return fmt.Errorf("device id length %d not in 1-%d: %w", len(id), MaxDeviceID, ErrTopic)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_')
		if !ok {
			return fmt.Errorf("device id has character %q at %d: %w", c, i, ErrTopic)
		}
	}
	return nil
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// TopicFor returns the topic of kind for device. It panics never; an
// invalid device id or kind gives an error.
func TopicFor(device string, kind Kind) (string, error) {
	if err := ValidDeviceID(device); err != nil {
		return "", err
	}
	if !kind.Valid() {
		return "", fmt.Errorf("unknown kind %q: %w", kind, ErrTopic)
	}
	return Topic{Device: device, Kind: kind}.String(), nil
}

// ParseTopic splits a device topic into device id and kind.
func ParseTopic(topic string) (Topic, error) {
	rest, ok := strings.CutPrefix(topic, Root+"/")
	if !ok {
		return Topic{}, fmt.Errorf("topic outside %s: %w", Root, ErrTopic)
	}
	device, kind, ok := strings.Cut(rest, "/")
	if !ok {
		return Topic{}, fmt.Errorf("topic without kind: %w", ErrTopic)
	}
	if err := ValidDeviceID(device); err != nil {
		return Topic{}, err
	}
	if !Kind(kind).Valid() {
		return Topic{}, fmt.Errorf("unknown topic kind %q: %w", truncate(kind, 32), ErrTopic)
	}
	return Topic{Device: device, Kind: Kind(kind)}, nil
}

// Subscription returns the filter matching kind for every device,
// "kluis/v1/dev/+/{kind}".
func Subscription(kind Kind) string { return Root + "/+/" + string(kind) }

// SharedSubscription returns the shared-subscription filter of group for
// kind, "$share/{group}/kluis/v1/dev/+/{kind}".
func SharedSubscription(group string, kind Kind) string {
	return "$share/" + group + "/" + Subscription(kind)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
