package journal

import "container/list"

// outboxIndex is the journal's in-memory index of its unacknowledged
// events, made from the records as they are applied (at Open, at every
// durable append, after a compaction): two lanes, the urgent events
// (Options.Urgent) and the others, each oldest first, and every event's
// place by id. An ack takes its event out in O(1), the length is a map's,
// and the oldest events of a lane are read without walking the journal's
// records. It is never written: the journal file stays the truth.
type outboxIndex struct {
	lanes [2]list.List // 0: the others, 1: urgent; of *queued
	at    map[string]*list.Element
}

// queued is one unacknowledged event and the sequence number of its
// record (the order of the file).
type queued struct {
	seq    uint64
	urgent bool
	ev     Event
}

func newOutboxIndex() outboxIndex {
	return outboxIndex{at: map[string]*list.Element{}}
}

func lane(urgent bool) int {
	if urgent {
		return 1
	}
	return 0
}

// add queues ev (its record's seq) unless its id is already queued.
func (x *outboxIndex) add(seq uint64, ev Event, urgent bool) {
	if _, ok := x.at[ev.ID]; ok {
		return
	}
	x.at[ev.ID] = x.lanes[lane(urgent)].PushBack(&queued{seq: seq, urgent: urgent, ev: ev})
}

// remove takes event id out (acknowledged); unknown ids are ignored.
func (x *outboxIndex) remove(id string) {
	el, ok := x.at[id]
	if !ok {
		return
	}
	x.lanes[lane(el.Value.(*queued).urgent)].Remove(el)
	delete(x.at, id)
}

// all is every queued event in file order (the two lanes merged).
func (x *outboxIndex) all() []Event {
	if len(x.at) == 0 {
		return nil
	}
	out := make([]Event, 0, len(x.at))
	a, b := x.lanes[0].Front(), x.lanes[1].Front()
	for a != nil || b != nil {
		if b == nil || a != nil && a.Value.(*queued).seq < b.Value.(*queued).seq {
			out = append(out, a.Value.(*queued).ev)
			a = a.Next()
		} else {
			out = append(out, b.Value.(*queued).ev)
			b = b.Next()
		}
	}
	return out
}

// next is up to n events of a lane, oldest first, that skip does not
// leave out.
func (x *outboxIndex) next(urgent bool, n int, skip func(string) bool) []Event {
	var out []Event
	for el := x.lanes[lane(urgent)].Front(); el != nil && len(out) < n; el = el.Next() {
		q := el.Value.(*queued)
		if skip != nil && skip(q.ev.ID) {
			continue
		}
		out = append(out, q.ev)
	}
	return out
}
