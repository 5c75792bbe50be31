package kluisproto

// Board-side helpers: the parts of firmware every board needs, so a board
// emulator (the simulator, tests) behaves exactly like the specification.

// IDCacheSize is how many accepted command ids a board remembers at least.
const IDCacheSize = 32

// IDCache remembers the replies to the most recently accepted UNLOCK and
// PRESENT commands, by command id, so a retransmission is answered with the
// same reply (Repeat set) and not carried out again. The zero value is
// ready; it holds IDCacheSize entries and forgets the oldest.
type IDCache struct {
	ids  [IDCacheSize]uint32
	msgs [IDCacheSize]Message
	next int
}

// Lookup returns the remembered reply for id, with Repeat set, or nil.
// reqCmd is the command of the retransmission: an id remembered for another
// command gives CodeBadArgument.
func (c *IDCache) Lookup(reqCmd byte, id uint32) (Message, error) {
	if id == 0 {
		return nil, nil
	}
	for i, v := range c.ids {
		if v != id || c.msgs[i] == nil {
			continue
		}
		switch m := c.msgs[i].(type) {
		case *UnlockReply:
			if reqCmd != CmdUnlock {
				return nil, CodeBadArgument
			}
			r := *m
			r.Repeat = true
			return &r, nil
		case *PresentReply:
			if reqCmd != CmdPresent {
				return nil, CodeBadArgument
			}
			r := *m
			r.Repeat = true
			return &r, nil
		}
	}
	return nil, nil
}

// Remember stores the reply to an accepted command (an *UnlockReply or
// *PresentReply).
func (c *IDCache) Remember(id uint32, reply Message) {
	c.ids[c.next] = id
	c.msgs[c.next] = reply
	c.next = (c.next + 1) % IDCacheSize
}

// Clear forgets everything (a reboot).
func (c *IDCache) Clear() { *c = IDCache{} }

// EventQueueSize is how many events a board queues at least.
const EventQueueSize = 64

// EventQueue is a board's event queue: sequence numbers from 1, oldest
// first, overflow flagged. The zero value is ready.
type EventQueue struct {
	events   []Event
	lastSeq  uint32
	overflow bool
	shown    bool // an EVENTS reply carried the overflow flag
}

// Push queues an event and returns its sequence number, or 0 when the queue
// is full (the event is lost and the overflow flag set).
func (q *EventQueue) Push(kind EventKind, channel, arg byte) uint32 {
	if len(q.events) >= EventQueueSize {
		q.overflow = true
		return 0
	}
	q.lastSeq++
	if q.lastSeq == 0 {
		q.lastSeq = 1
	}
	q.events = append(q.events, Event{Seq: q.lastSeq, Kind: kind, Channel: channel, Arg: arg})
	return q.lastSeq
}

// Reply builds the EVENTS reply: the oldest (up to 8) events, pending count
// and flags. The overflow flag shows until an Ack follows a reply that
// showed it.
func (q *EventQueue) Reply(bootID uint32) *EventsReply {
	n := min(len(q.events), MaxEventsPerReply)
	r := &EventsReply{BootID: bootID, Pending: uint8(min(len(q.events), 255))}
	if n > 0 {
		r.Events = append([]Event(nil), q.events[:n]...)
	}
	if q.overflow {
		r.Flags |= EvFlagOverflow
		q.shown = true
	}
	return r
}

// Overflowed reports whether the overflow flag is raised.
func (q *EventQueue) Overflowed() bool { return q.overflow }

// Ack removes every event with a sequence number up to and including seq
// (serial-number arithmetic, so it survives wrap-around) and returns how
// many remain. It lowers the overflow flag if a reply showed it. The caller
// checks the ACK's boot id first (NAK BOOT_MISMATCH).
func (q *EventQueue) Ack(seq uint32) int {
	if q.shown {
		q.overflow, q.shown = false, false
	}
	i := 0
	for i < len(q.events) && int32(q.events[i].Seq-seq) <= 0 {
		i++
	}
	q.events = append(q.events[:0], q.events[i:]...)
	return len(q.events)
}

// Len is the number of queued events.
func (q *EventQueue) Len() int { return len(q.events) }

// Clear empties the queue and restarts sequence numbers (a reboot).
func (q *EventQueue) Clear() { *q = EventQueue{} }
