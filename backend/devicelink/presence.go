package devicelink

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kluis/backend/internal/periodic"
	"kluis/controller/wire"
)

// The statements recording a presence and a heartbeat. A heartbeat marks
// its device online (changed_at moves only when it was not) and keeps its
// payload in device_diagnostics; neither touches an indexed column when
// the state stays the same, so both are HOT updates (see migration 0120).
const (
	sqlPresence = `INSERT INTO device_presence (device_id, state, changed_at, software)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (device_id) DO UPDATE SET state = $2, changed_at = $3,
			software = CASE WHEN $4 <> '' THEN $4 ELSE device_presence.software END`
	sqlHeartbeat = `WITH p AS (
		INSERT INTO device_presence (device_id, state, changed_at, software, last_heartbeat_at)
		VALUES ($1, 'online', $2, $3, $2)
		ON CONFLICT (device_id) DO UPDATE SET state = 'online',
			changed_at = CASE WHEN device_presence.state <> 'online' THEN $2 ELSE device_presence.changed_at END,
			software = CASE WHEN $3 <> '' THEN $3 ELSE device_presence.software END,
			last_heartbeat_at = $2)
		INSERT INTO device_diagnostics (device_id, at, heartbeat) VALUES ($1, $2, $4)
		ON CONFLICT (device_id) DO UPDATE SET at = $2, heartbeat = $4`
)

// recordPresence writes the coalesced presence and heartbeats, up to
// PresenceBatch devices per round trip, until ctx ends; then it writes
// what is pending, the batch the end cut short included, within Timeout.
// A batch that fails is retried (a database outage loses nothing); a
// statement the database refuses for good is logged, counted as an error
// and skipped. Only what the database could not take in Timeout after the
// end is lost: logged and counted as errors.
func (l *Link) recordPresence(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.o.Timeout)
			defer cancel()
			for l.co.len() > 0 && fctx.Err() == nil {
				l.flushPresence(fctx)
			}
			if left := l.co.take(l.co.len()); len(left) > 0 {
				l.log.Error("recording presence stopped at shutdown; not recorded", "devices", len(left), "err", fctx.Err())
				for _, p := range left {
					if p.presence != nil {
						l.m.messages.WithLabelValues(string(wire.KindPresence), "error").Inc()
					}
					if p.heartbeat != nil {
						l.m.messages.WithLabelValues(string(wire.KindHeartbeat), "error").Inc()
					}
				}
			}
			return
		case <-l.co.wake:
		}
		for l.co.len() > 0 && ctx.Err() == nil {
			l.flushPresence(ctx)
		}
	}
}

// presenceOp is one statement of a flush.
type presenceOp struct {
	kind   wire.Kind
	device string
	sql    string
	args   []any
	at     time.Time    // when the link received it
	msg    wire.Message // the decoded presence or heartbeat, for the Observer
}

// flushPresence records one batch, retrying while the database is
// unreachable and ctx lasts.
func (l *Link) flushPresence(ctx context.Context) {
	var ops []presenceOp
	taken := l.co.take(l.o.PresenceBatch)
	for _, p := range taken {
		hb := l.heartbeatOp(p)
		pr := l.presenceOp(p)
		if hb == nil {
			p.heartbeat = nil // none, or malformed (counted once)
		}
		if pr == nil {
			p.presence = nil
		}
		// In arrival order: an offline presence after the last heartbeat
		// must win, and a heartbeat after an offline presence too.
		if p.beatSeq > p.presenceSeq {
			hb, pr = pr, hb
		}
		for _, op := range []*presenceOp{hb, pr} {
			if op != nil {
				ops = append(ops, *op)
			}
		}
	}
	if len(ops) == 0 {
		return
	}
	for attempt := 0; ; attempt++ {
		err := l.execBatch(ctx, ops)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			// Cut short by the end (the shutdown, or its drain's time
			// limit), whatever the error says (PostgreSQL may answer
			// "canceling statement", not a refusal): back to the
			// coalescer, for the drain (or its account of what is left).
			l.co.putBack(taken)
			return
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			// One statement is refused: run them one by one, so that
			// only that one is lost.
			l.log.Warn("recording presence: batch refused, statements run one by one", "err", err)
			l.execEach(ctx, ops)
			l.presenceChanged()
			return
		}
		l.log.Error("recording presence failed; retrying", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second)):
		}
	}
	for _, op := range ops {
		l.m.messages.WithLabelValues(string(op.kind), "ok").Inc()
		l.observe(op)
	}
	l.presenceChanged()
}

// observe tells the Observer of a recorded presence or heartbeat.
func (l *Link) observe(op presenceOp) {
	if l.o.Observer == nil {
		return
	}
	switch m := op.msg.(type) {
	case *wire.Presence:
		l.o.Observer.ObservePresence(op.device, *m, op.at)
	case *wire.Heartbeat:
		l.o.Observer.ObserveHeartbeat(op.device, *m, op.at)
	}
}

// presenceChanged tells countOnline to recount.
func (l *Link) presenceChanged() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// execBatch runs ops in one transaction and round trip.
func (l *Link) execBatch(ctx context.Context, ops []presenceOp) error {
	ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	return pgx.BeginFunc(ctx, l.o.Pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, op := range ops {
			b.Queue(op.sql, op.args...)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// execEach runs ops one by one; a refused one is counted as an error.
func (l *Link) execEach(ctx context.Context, ops []presenceOp) {
	for _, op := range ops {
		ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
		_, err := l.o.Pool.Exec(ctx, op.sql, op.args...)
		cancel()
		if err != nil {
			l.log.Error("recording presence failed", "device", op.device, "kind", op.kind, "err", err)
			l.m.messages.WithLabelValues(string(op.kind), "error").Inc()
			continue
		}
		l.m.messages.WithLabelValues(string(op.kind), "ok").Inc()
		l.observe(op)
	}
}

// presenceOp decodes p's presence into its statement (nil: none, or
// malformed, counted).
func (l *Link) presenceOp(p *latest) *presenceOp {
	if p.presence == nil {
		return nil
	}
	topic, _ := wire.TopicFor(p.device, wire.KindPresence)
	_, m, err := wire.Decode(topic, p.presence)
	pr, ok := m.(*wire.Presence)
	if err != nil || !ok {
		l.m.messages.WithLabelValues(string(wire.KindPresence), "malformed").Inc()
		l.log.Warn("malformed message ignored", "topic", topic, "bytes", len(p.presence), "err", err)
		return nil
	}
	if pr.State == wire.Offline {
		l.log.Info("device presence", "device", p.device, "state", pr.State)
	}
	return &presenceOp{kind: wire.KindPresence, device: p.device, sql: sqlPresence,
		args: []any{p.device, string(pr.State), p.presenceAt, pr.Software}, at: p.presenceAt, msg: pr}
}

// heartbeatOp is presenceOp for p's heartbeat.
func (l *Link) heartbeatOp(p *latest) *presenceOp {
	if p.heartbeat == nil {
		return nil
	}
	topic, _ := wire.TopicFor(p.device, wire.KindHeartbeat)
	_, m, err := wire.Decode(topic, p.heartbeat)
	h, ok := m.(*wire.Heartbeat)
	if err != nil || !ok {
		l.m.messages.WithLabelValues(string(wire.KindHeartbeat), "malformed").Inc()
		l.log.Warn("malformed message ignored", "topic", topic, "bytes", len(p.heartbeat), "err", err)
		return nil
	}
	return &presenceOp{kind: wire.KindHeartbeat, device: p.device, sql: sqlHeartbeat,
		args: []any{p.device, p.heartbeatAt, h.Software, json.RawMessage(p.heartbeat)}, at: p.heartbeatAt, msg: h}
}

// countOnline keeps kluis_devicelink_devices_online: every OnlineRefresh
// (the first after one) it recounts if this link recorded presence since
// the last count (l.changed), and every 30 OnlineRefresh anyway (other
// replicas record presence too). The count reads the partial index of
// online devices.
func (l *Link) countOnline(ctx context.Context) {
	dirty, idle := true, 0
	_ = periodic.Loop{Every: l.o.OnlineRefresh, Delayed: true}.Run(ctx, func(ctx context.Context) {
		select {
		case <-l.changed:
			dirty = true
		default:
		}
		idle++
		if !dirty && idle < 30 {
			return
		}
		var n int
		qctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
		err := l.o.Pool.QueryRow(qctx, `SELECT count(*) FROM device_presence WHERE state = 'online'`).Scan(&n)
		cancel()
		if err != nil {
			l.log.Warn("counting online devices failed", "err", err)
			return
		}
		l.m.online.Set(float64(n))
		dirty, idle = false, 0
	})
}
