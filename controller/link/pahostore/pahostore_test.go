package pahostore

import (
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

var _ mqtt.Store = (*Store)(nil)

func TestGetReturnsACopyThatDoesNotAliasThePutPacket(t *testing.T) {
	s := New()
	s.Open()
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.MessageID, p.Payload = "kluis/v1/dev/d1/evt", 1, 7, []byte(`{"id":"e1"}`)
	s.Put("o.7", p)

	got := s.Get("o.7").(*packets.PublishPacket)
	if got == p {
		t.Fatal("Get returned the packet that was put, not a copy")
	}
	if got.TopicName != p.TopicName || got.MessageID != 7 || string(got.Payload) != `{"id":"e1"}` || got.Qos != 1 {
		t.Fatalf("copy differs: %+v", got)
	}
	// What paho's resume() does to a stored packet must not reach the one
	// the writer holds.
	got.Dup = true
	if p.Dup {
		t.Fatal("setting DUP on the copy changed the original")
	}
	if again := s.Get("o.7").(*packets.PublishPacket); again.Dup {
		t.Fatal("setting DUP on one copy changed the stored packet")
	}

	if keys := s.All(); len(keys) != 1 || keys[0] != "o.7" {
		t.Fatalf("All = %v", keys)
	}
	s.Del("o.7")
	if s.Get("o.7") != nil || len(s.All()) != 0 {
		t.Fatal("Del kept the packet")
	}
}

func TestClosedStoreKeepsNothing(t *testing.T) {
	s := New()
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.MessageID = "t", 1, 1
	s.Put("o.1", p)
	if s.Get("o.1") != nil {
		t.Fatal("a store not opened kept a packet")
	}
	s.Open()
	s.Put("o.1", p)
	s.Close()
	if s.Get("o.1") != nil {
		t.Fatal("Close kept a packet")
	}
}

// ForgetPublish drops a request's PUBLISH, and only while the id still
// holds that very message: after its PUBACK paho gives the id to another.
func TestForgetPublishOnlyTheSameMessage(t *testing.T) {
	s := New()
	s.Open()
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.MessageID, p.Payload = "kluis/v1/dev/d1/verify/req", 1, 9, []byte(`{"id":"r1"}`)
	s.Put("o.9", p)
	if s.ForgetPublish(9, "kluis/v1/dev/d1/verify/req", []byte(`{"id":"r2"}`)) ||
		s.ForgetPublish(9, "kluis/v1/dev/d1/staff/req", []byte(`{"id":"r1"}`)) ||
		s.ForgetPublish(8, "kluis/v1/dev/d1/verify/req", []byte(`{"id":"r1"}`)) {
		t.Fatal("forgot a message that is not the one asked")
	}
	if s.Get("o.9") == nil {
		t.Fatal("the message under id 9 is gone")
	}
	if !s.ForgetPublish(9, "kluis/v1/dev/d1/verify/req", []byte(`{"id":"r1"}`)) {
		t.Fatal("the request's PUBLISH was not forgotten")
	}
	// What paho sends after a reconnection is a PUBREL of the id (the
	// broker's PUBCOMP frees it), never the request again.
	rel, ok := s.Get("o.9").(*packets.PubrelPacket)
	if !ok || rel.MessageID != 9 || rel.Qos != 1 {
		t.Fatalf("o.9 holds %v, not a PUBREL of id 9", s.Get("o.9"))
	}
	if s.ForgetPublish(9, "kluis/v1/dev/d1/verify/req", []byte(`{"id":"r1"}`)) {
		t.Fatal("forgot it twice")
	}
}
