package journal

import (
	"encoding/json"
	"errors"
	"sort"
	"time"
)

// TypeResult is a command's result held until the backend acknowledges
// it: ID is the command's id, Data the encoded result (wire.CommandResult,
// what is published on cmdres). An ack record (TypeAck) naming the
// command's id ends it, as it ends an event: the backend acknowledges
// both on the device's one ack topic.
const TypeResult = "result"

// Result is a command's result held for the backend's ack (HoldResult).
type Result struct {
	// ID is the command's id.
	ID string
	// Payload is what is published on cmdres.
	Payload json.RawMessage
	// At is when the result was journaled.
	At  time.Time
	seq uint64
}

// HoldResult journals the result of command id (payload, published on
// cmdres), durably, until Ack(id) or ForgetResult(id): a restart finds it
// in Results and sends it again. A second result of the same id replaces
// the first (the caller keeps the first; see controller/link).
//
// On a full disk results follow the rule of acks: once half of the
// reserve's room is used they are refused (ErrNoSpace), the rest of the
// room being for the outcomes and alarms of the operations under way; the
// caller then holds the result in memory only.
func (j *Journal) HoldResult(id string, payload []byte) error {
	if id == "" || !json.Valid(payload) {
		return errors.New("journal: a result needs an id and a JSON payload")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.ackRoomLocked() {
		return ErrNoSpace
	}
	_, err := j.appendLocked(Record{Type: TypeResult, ID: id, Data: payload})
	return err
}

// Results returns the held results (journaled, neither acknowledged nor
// forgotten), oldest first.
func (j *Journal) Results() []Result {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Result, 0, len(j.results))
	for _, r := range j.results {
		out = append(out, *r)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].seq < out[b].seq })
	return out
}

// ForgetResult stops holding the result of command id without writing
// anything: the next compaction drops it. A restart before that compaction
// finds it again (the caller's bounds give it up again). For results the
// caller gives up (too many held, held too long) and for those the backend
// acknowledged when the ack could not be journaled (a full disk): at worst
// sent once more after a restart, which the backend acknowledges again.
func (j *Journal) ForgetResult(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.results, id)
}

// applyResult updates the held results for r (TypeResult). j.mu held (or
// not yet shared).
func (j *Journal) applyResult(r Record) {
	if r.ID == "" {
		return
	}
	j.results[r.ID] = &Result{ID: r.ID, Payload: r.Data, At: r.At, seq: r.Seq}
}

// liveResult reports whether result record r survives compaction: still
// held, and the latest record of its id. j.mu held.
func (j *Journal) liveResult(r Record) bool {
	h := j.results[r.ID]
	return h != nil && h.seq == r.Seq
}
