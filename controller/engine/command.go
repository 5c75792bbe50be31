package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"kluis/controller/journal"
	"kluis/controller/offline"
	"kluis/controller/wire"
)

// HandleCommand carries out a backend command only when it is signed by the
// backend for this device (Options.CommandKey, wire.VerifyCommand), at most
// once (by id, journaled) and only before it expires, and returns the result
// to publish. A refusal (unsigned, badly signed, for another device, expired,
// a replay) is also reported as a command_refused event, which the backend
// audits.
func (e *Engine) HandleCommand(ctx context.Context, c wire.Command) wire.CommandResult {
	now := e.now()
	res := wire.CommandResult{ID: c.ID, At: now.UTC()}
	if err := wire.VerifyCommand(e.o.CommandKey, e.cfg.DeviceID, c, now); err != nil {
		res.Status, res.Detail = wire.StatusRejected, "refused: "+err.Error()
		if errors.Is(err, wire.ErrCommandExpired) {
			res.Status = wire.StatusExpired
		}
		e.refuseCommand(c, res, err.Error())
		return res
	}
	// The backend signed it at c.Issued: the PIN limits' clock may move
	// on that far (docs/security.md).
	e.backendTime(c.Issued)
	// Check and claim the id in one step, so that two deliveries of one
	// command handled at once cannot both act.
	e.mu.Lock()
	e.pruneCommandsLocked(now)
	_, seen := e.commands[c.ID]
	if !seen {
		e.commands[c.ID] = c.Expires
	}
	e.mu.Unlock()
	if seen {
		res.Status, res.Detail = wire.StatusDuplicate, "already carried out"
		e.refuseCommand(c, res, wire.CommandDuplicateWhy)
		return res
	}
	// Journal the id before acting so a restart never repeats it (Keep
	// holds it until an hour after its expiry, beyond the skew tolerated).
	if err := e.appendData(recCommand, map[string]any{"id": c.ID, "expires": c.Expires, "kind": c.Kind}); err != nil {
		e.mu.Lock()
		delete(e.commands, c.ID)
		e.mu.Unlock()
		res.Status, res.Detail = wire.StatusFailed, "journal unavailable"
		return res
	}
	res.Status = wire.StatusDone
	switch c.Kind {
	case wire.CmdCodeSync:
		if e.o.Cache == nil || c.Codes == nil {
			res.Status, res.Detail = wire.StatusRejected, "no offline cache"
			break
		}
		if err := e.o.Cache.ApplyAt(c, e.now()); err != nil {
			res.Status, res.Detail = wire.StatusFailed, err.Error()
			if errors.Is(err, offline.ErrStale) || errors.Is(err, offline.ErrUntrusted) {
				// (A partial sync the cache cannot take: the backend
				// sends its whole bundle.)
				res.Status = wire.StatusRejected
			}
		} else {
			e.markCacheVersion(c.Codes.Version)
			if c.Codes.Full {
				e.cacheTrusted() // a full sync ends a refusal (offline.Cache.ApplyAt)
			}
		}
		e.m.cacheSize.Set(float64(e.o.Cache.Len()))
	case wire.CmdOpen:
		comp := e.compFor(c.Addr, nil)
		if comp == nil || comp.slot >= 0 {
			res.Status, res.Detail = wire.StatusRejected, "no such locker compartment on this device"
			break
		}
		o := &op{purpose: PurposeRemote, comp: comp, commandID: c.ID, staffID: optID(c.By), lang: e.cfg.Kiosk.DefaultLang}
		if st := e.start(o); st != "" {
			res.Status, res.Detail = wire.StatusFailed, "compartment "+st
			if st == StateDeviceOutOfOrder {
				res.Detail = e.outOfOrderDetail()
			}
		}
		e.log.Info("remote open", "id", c.ID, "compartment", comp.cfg.Number, "reason", c.Reason, "status", res.Status)
	case wire.CmdClearLockout:
		res.Status, res.Detail = e.clearLockoutCommand(c)
	default:
		res.Status, res.Detail = wire.StatusRejected, "not supported by kluisd: edit the configuration file"
	}
	e.m.commands.WithLabelValues(string(c.Kind), string(res.Status)).Inc()
	_ = ctx
	return res
}

// commandRetention is how long past its expiry a command's id is kept, in
// memory and in the journal (Keep): beyond wire.CommandSkew, so a replay
// is refused as a duplicate while it could still pass as unexpired, and
// as expired after.
const commandRetention = time.Hour

// pruneCommandsLocked forgets the ids of commands past their retention, at
// most once a minute, so that a device running for months does not hold
// every command it ever got (a code sync every few minutes). e.mu is held.
func (e *Engine) pruneCommandsLocked(now time.Time) {
	if now.Sub(e.commandsPruned) < time.Minute {
		return
	}
	e.commandsPruned = now
	for id, exp := range e.commands {
		if !now.Before(exp.Add(commandRetention)) {
			delete(e.commands, id)
			delete(e.reported, id)
		}
	}
}

// refusedEventsPerMinute bounds the command_refused and response_refused
// events (together) a flood of bad commands or answers can put in the
// journal; the metrics count every refusal.
const refusedEventsPerMinute = 10

// refuseCommand counts, logs and (within refusedEventsPerMinute) reports a
// refused command as an event for the backend's audit trail.
func (e *Engine) refuseCommand(c wire.Command, res wire.CommandResult, why string) {
	e.m.commands.WithLabelValues(string(c.Kind), string(res.Status)).Inc()
	e.log.Warn("command refused", "id", c.ID, "kind", c.Kind, "status", res.Status, "why", why)
	if !e.reportRefusal() {
		return
	}
	e.emitKept(wire.Event{Kind: wire.EvCommandRefused, CommandID: c.ID, Detail: refusalDetail(string(c.Kind), why)})
}

// RefuseResponse reports (within refusedEventsPerMinute) an answer to this
// device's own verify or staff request that was refused (kind verify/res or
// staff/res, the request's id, why) as a response_refused event for the
// backend's audit trail. The link refused it before anything was done on
// it (controller/link counts every one); nothing is opened.
func (e *Engine) RefuseResponse(kind wire.Kind, requestID, why string) {
	if wire.ValidID(requestID) != nil || !e.reportRefusal() {
		return
	}
	e.emitKept(wire.Event{Kind: wire.EvResponseRefused, RequestID: requestID, Detail: refusalDetail(string(kind), why)})
}

// reportRefusal reports whether another refusal event fits in this
// minute's budget, and counts it.
func (e *Engine) reportRefusal() bool {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if now.Sub(e.refusedAt) >= time.Minute {
		e.refusedAt, e.refusedN = now, 0
	}
	e.refusedN++
	return e.refusedN <= refusedEventsPerMinute
}

func refusalDetail(what, why string) string {
	return cutText(what+": "+why, 200)
}

func optID(s string) string {
	if wire.ValidID(s) != nil {
		return ""
	}
	return s
}

// CommandReported journals that command id's result is journaled (the
// link's journal.HoldResult): from then on a restart does not report the
// command as interrupted (HoldInterrupted), even once the backend
// acknowledged the result and a compaction dropped it. Commands refused
// before they were journaled (unsigned, expired) and repeated results are
// ignored.
func (e *Engine) CommandReported(id string) {
	e.mu.Lock()
	exp, ok := e.commands[id]
	done := e.reported[id]
	if ok {
		e.reported[id] = true
	}
	e.mu.Unlock()
	if !ok || done {
		return
	}
	if err := e.appendData(recCommandReported, map[string]any{"id": id, "expires": exp}); err != nil {
		e.log.Warn("journaling that a command's result is kept failed: a restart reports it uncertain", "id", id, "err", err)
	}
}

// HoldInterrupted finds the commands recs (the journal's records at start)
// shows carried out or under way with no result journaled (kluisd stopped
// between journaling the command's id, before acting, and journaling its
// result, after) and journals an uncertain result for each
// (journal.HoldResult, then the command_reported record), so that the
// link sends them to the backend once connected instead of leaving the
// backend's command waiting for ever. Call it before link.New (which
// loads the held results) and before New. It returns the ids.
func HoldInterrupted(j *journal.Journal, recs []journal.Record, now time.Time) ([]string, error) {
	type intent struct {
		id      string
		expires time.Time
		kind    string
	}
	var order []intent
	seen := map[string]bool{}
	resolved := map[string]bool{}
	for _, r := range recs {
		switch r.Type {
		case recCommand:
			var c struct {
				ID      string    `json:"id"`
				Expires time.Time `json:"expires"`
				Kind    string    `json:"kind"`
			}
			if json.Unmarshal(r.Data, &c) == nil && c.ID != "" && !seen[c.ID] {
				seen[c.ID] = true
				order = append(order, intent{c.ID, c.Expires, c.Kind})
			}
		case recCommandReported:
			var c struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(r.Data, &c) == nil {
				resolved[c.ID] = true
			}
		case journal.TypeResult, journal.TypeAck:
			resolved[r.ID] = true
		}
	}
	var ids []string
	for _, in := range order {
		if resolved[in.id] {
			continue
		}
		res := wire.CommandResult{ID: in.id, Status: wire.StatusUncertain, At: now.UTC(),
			Detail: "kluisd stopped while carrying out this " + in.kind + " command, before journaling its result: it may or may not have been carried out"}
		b, err := wire.Encode(&res)
		if err != nil {
			return ids, fmt.Errorf("engine: uncertain result of %s: %w", in.id, err)
		}
		if err := j.HoldResult(in.id, b); err != nil {
			return ids, fmt.Errorf("engine: uncertain result of %s: %w", in.id, err)
		}
		d, _ := json.Marshal(map[string]any{"id": in.id, "expires": in.expires})
		if _, err := j.Append(journal.Record{Type: recCommandReported, Data: d}); err != nil {
			return ids, fmt.Errorf("engine: uncertain result of %s: %w", in.id, err)
		}
		ids = append(ids, in.id)
	}
	return ids, nil
}
