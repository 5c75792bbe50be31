// Package pahostore is a paho.mqtt.golang message store that keeps each
// packet encoded and hands out a fresh copy on every Get.
//
// paho's own MemoryStore returns the very packet the client is still
// writing: on a reconnect, resume() sets the DUP flag of a stored QoS 1
// PUBLISH while the outgoing goroutine may be encoding the same packet, a
// data race in the library (eclipse-paho/paho.mqtt.golang#703) that the race
// detector reports in tests where the broker goes away. paho's FileStore
// avoids it by encoding; this store does the same in memory. Kluis never
// relies on paho's store for durability (kluisd keeps every event in its
// journal until the backend acknowledges it), so a copy in memory is enough.
package pahostore

import (
	"bytes"
	"strconv"
	"sync"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Store implements mqtt.Store. The zero value is not usable; use New.
type Store struct {
	mu     sync.Mutex
	opened bool
	m      map[string][]byte
}

// New returns an empty, closed store (the client opens it).
func New() *Store { return &Store{m: map[string][]byte{}} }

// Open makes the store usable.
func (s *Store) Open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened = true
}

// Put keeps an encoded copy of m under key. A packet that cannot be encoded
// is not kept (paho then cannot resend it; kluisd's journal still holds it).
func (s *Store) Put(key string, m packets.ControlPacket) {
	var b bytes.Buffer
	if err := m.Write(&b); err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened {
		s.m[key] = b.Bytes()
	}
}

// Get returns a fresh copy of the packet under key, or nil.
func (s *Store) Get(key string) packets.ControlPacket {
	s.mu.Lock()
	b, ok := s.m[key]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	p, err := packets.ReadPacket(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	return p
}

// All returns every key.
func (s *Store) All() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		keys = append(keys, k)
	}
	return keys
}

// Del forgets key.
func (s *Store) Del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

// ForgetPublish takes the outbound PUBLISH kept under message id out of
// the store if it is still the one on topic with payload (once
// acknowledged, paho gives the id to later messages), so that paho does
// not send it again after a reconnection; it reports whether it did.
// kluisd's requests carry an id of their own in their payload, so the
// match is exact.
//
// The id stays paho's until the broker acknowledges it, and the PUBACK
// of a PUBLISH that went into a dead connection never comes: the id
// would stay taken until the client stopped (one of 65,535 per request
// given up in a dead connection; with them all taken paho refuses every
// QoS 1 publication). So the PUBLISH is not deleted but replaced, under
// the same key, by a PUBREL of its id: paho sends what its store holds
// after a reconnection, the broker answers a PUBREL with a PUBCOMP even
// for an id it does not know (MQTT 3.1.1, 4.3.3; Mosquitto and
// backend/broker do), and on that PUBCOMP paho frees the id and deletes
// the key. The request itself is never sent again. On a connection that
// still works, the PUBLISH's own PUBACK frees the id and deletes the key
// first.
func (s *Store) ForgetPublish(id uint16, topic string, payload []byte) bool {
	key := "o." + strconv.Itoa(int(id)) // paho's outbound key
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[key]
	if !ok {
		return false
	}
	p, err := packets.ReadPacket(bytes.NewReader(b))
	if err != nil {
		return false
	}
	pub, ok := p.(*packets.PublishPacket)
	if !ok || pub.TopicName != topic || !bytes.Equal(pub.Payload, payload) {
		return false
	}
	rel := packets.NewControlPacket(packets.Pubrel).(*packets.PubrelPacket)
	rel.MessageID = id
	var out bytes.Buffer
	if err := rel.Write(&out); err != nil {
		delete(s.m, key)
		return true
	}
	s.m[key] = out.Bytes()
	return true
}

// Close makes the store unusable and forgets everything.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened = false
	s.m = map[string][]byte{}
}

// Reset forgets everything.
func (s *Store) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = map[string][]byte{}
}
