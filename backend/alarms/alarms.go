// Package alarms is what the backend knows of the alarms devices raise:
// which are open (read from alarm_latest, the latest alarm event of each
// device, kind and place, which a trigger keeps as backend/devicelink
// writes device_events) and who acknowledged them (alarm_acks, which this
// package alone writes).
//
// An alarm is the device event that raised it: for each device, alarm
// kind and place (compartment address or board), the latest alarm or
// alarm_cleared within Window decides; an alarm is open when that latest
// event is the alarm, and, for the kinds the device never clears
// (forced_door, pulse_uncertain, ...), while it is younger than OneShot.
// Its id is the raising event's id, so an alarm that clears and is raised
// again is a new alarm, not acknowledged. One the device clears that is
// raised again without a clearing in between (kluisd raises
// board_unreachable again when it restarts with the board still down)
// keeps the acknowledgement of the earlier raise; a kind the device never
// clears (forced_door) raised again is a new incident.
//
// Acknowledge records who acknowledged an open alarm, when, and an
// optional note (at most MaxNote characters), once: the row in alarm_acks
// and the audit record alarm.acknowledged are written in one
// transaction, and a second acknowledgement of the same alarm records
// nothing and answers the first. The staff console, the REST API and the
// metrics (kluis_device_alarms_open) read the same Open.
package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/audit"
	"kluis/backend/store"
	"kluis/backend/store/safetext"
	"kluis/controller/wire"
	"kluis/hardware"
)

// How long alarms stay open without a clearing event.
const (
	// OneShot is how long an alarm the device never clears stays open.
	OneShot = 24 * time.Hour
	// Window is how far back alarms are read: an alarm older than this
	// is no longer open, cleared or not.
	Window = 30 * 24 * time.Hour
	// MaxNote is the longest acknowledgement note, in characters.
	MaxNote = 200
)

// Errors of Acknowledge.
var (
	// ErrNotFound: the device raised no alarm with this id.
	ErrNotFound = errors.New("alarms: no such alarm on this device")
	// ErrNotOpen: the alarm is no longer open (cleared by the device,
	// superseded by a newer alarm of the same kind and place, or past
	// OneShot or Window); nothing was recorded.
	ErrNotOpen = errors.New("alarms: the alarm is no longer open")
	// ErrNote: the note is not one line of at most MaxNote characters
	// under the rule for text people read.
	ErrNote = errors.New("alarms: the note must be one line of at most 200 characters, without control, bidirectional-control or invisible format characters")
)

// clearable are the kinds the device clears (alarm_cleared); the others
// are open for OneShot.
var clearable = map[wire.AlarmKind]bool{wire.AlarmDoorLeftOpen: true, wire.AlarmBoardUnreachable: true,
	wire.AlarmBoardRebooting: true, wire.AlarmJournalFull: true, wire.AlarmOfflineCacheUntrusted: true}

// Clearable reports whether the device clears alarms of kind k.
func Clearable(k wire.AlarmKind) bool { return clearable[k] }

// Ack is an alarm's acknowledgement.
type Ack struct {
	// Actor is the audit actor, "user:<id>".
	Actor string `json:"-"`
	// By is the user name (the actor when the user is gone).
	By   string    `json:"by"`
	At   time.Time `json:"at"`
	Note string    `json:"note"`
}

// Alarm is an open alarm of a device.
type Alarm struct {
	// ID is the id of the event that raised it.
	ID     string            `json:"id"`
	Device string            `json:"device"`
	Kind   wire.AlarmKind    `json:"alarm"`
	Addr   *hardware.Address `json:"addr,omitempty"`
	Board  *int              `json:"board,omitempty"`
	// At is when the device raised it (its clock).
	At     time.Time `json:"at"`
	Detail string    `json:"detail,omitempty"`
	// Compartment is the number of the compartment at Addr (0: none or
	// not filled in; the staff console fills it in).
	Compartment int `json:"-"`
	// Ack is its acknowledgement; nil: not acknowledged.
	Ack *Ack `json:"acknowledged"`
}

// Acknowledged reports whether someone acknowledged the alarm.
func (a Alarm) Acknowledged() bool { return a.Ack != nil }

// CheckNote checks an acknowledgement note (already trimmed): empty, or
// one line of at most MaxNote characters without refused characters.
func CheckNote(note string) error {
	if err := safetext.Check(note, MaxNote); err != nil {
		return fmt.Errorf("%w (%w)", ErrNote, err)
	}
	return nil
}

// sameKey compares two device events' alarm kind and place (x and y are
// the aliases of their device_events rows).
func sameKey(x, y string) string {
	return x + `.device_id = ` + y + `.device_id AND ` + x + `.payload->>'alarm' = ` + y + `.payload->>'alarm'
		AND coalesce(` + x + `.payload->'addr', 'null'::jsonb) = coalesce(` + y + `.payload->'addr', 'null'::jsonb)
		AND coalesce(` + x + `.payload->'board', 'null'::jsonb) = coalesce(` + y + `.payload->'board', 'null'::jsonb)`
}

// ackJoin joins an alarm event l (event_id, device_id, payload, at,
// received_at) with its acknowledgement k (actor, acked_at, note) and the
// user u: the acknowledgement of l itself or, for the kinds the device
// clears (the text array $3), of an earlier raise of the same kind and
// place with no clearing in between (kluisd raises a board_unreachable
// again at a restart: the same alarm, still acknowledged). A clearing
// ends it: raised after one, it is a new alarm.
var ackJoin = `LEFT JOIN LATERAL (SELECT a.actor, a.acked_at, a.note FROM alarm_acks a JOIN device_events e ON e.event_id = a.event_id
		WHERE a.device_id = l.device_id AND (e.event_id = l.event_id OR (l.payload->>'alarm' = ANY($3::text[]) AND e.kind = 'alarm'
			AND ` + sameKey("e", "l") + `
			AND (e.at, e.received_at) < (l.at, l.received_at)
			AND NOT EXISTS (SELECT 1 FROM device_events c WHERE c.kind = 'alarm_cleared' AND ` + sameKey("c", "l") + `
				AND (c.at, c.received_at) > (e.at, e.received_at) AND (c.at, c.received_at) < (l.at, l.received_at))))
		ORDER BY a.acked_at LIMIT 1) k ON true
	LEFT JOIN auth_users u ON k.actor = 'user:' || u.id::text`

// openSQL selects the open alarms: the latest alarm or alarm_cleared of
// each device, alarm kind and place (alarm_latest, which a trigger on
// device_events keeps, migration 0203) when it is the alarm, raised
// within the window ($1) and, for the kinds the device never clears (not
// in $3), since $4 (OneShot), with its acknowledgement (ackJoin). Before
// alarm_latest, every read sorted the window's alarm events: about 7 s
// for a fleet of 19,000 devices (docs/performance.md, "Open alarms").
var openSQL = openQuery("($2 = '' OR x.device_id = $2)")

// openOfSQL is openSQL for the devices of $2 (a text array).
var openOfSQL = openQuery("x.device_id = ANY($2::text[])")

// openQuery is openSQL with devices, the condition on x.device_id.
func openQuery(devices string) string {
	return `SELECT l.event_id, l.device_id, l.kind, l.payload, l.at,
		k.actor, coalesce(u.username, ''), k.acked_at, k.note
	FROM (SELECT e.event_id, e.device_id, e.kind, e.payload, e.at, e.received_at
		FROM alarm_latest x JOIN device_events e ON e.event_id = x.event_id
		WHERE x.kind = 'alarm' AND x.at > $1 AND ` + devices + `
		  AND (x.alarm = ANY($3::text[]) OR x.at >= $4)) l
	` + ackJoin
}

// ackSQL reads one alarm event's acknowledgement (ackJoin).
var ackSQL = `SELECT k.actor, coalesce(u.username, ''), k.acked_at, k.note
	FROM (SELECT event_id, device_id, payload, at, received_at FROM device_events WHERE event_id = $1 AND device_id = $2) l
	` + ackJoin + `
	WHERE k.actor IS NOT NULL`

// ClearableKinds are the kinds the device clears, sorted (backend/devicelink's
// retention keeps their history since the last clearing while one is open:
// an earlier raise's acknowledgement counts for them, ackJoin).
// It is $3 of ackJoin.
func ClearableKinds() []string {
	out := make([]string, 0, len(clearable))
	for k := range clearable {
		out = append(out, string(k))
	}
	sort.Strings(out)
	return out
}

// Open reads the open alarms, per device (deviceID "": every device),
// each device's not acknowledged first, then the newest first. It reads
// alarm_latest (one row per device, alarm kind and place), not the
// history of alarm events.
func Open(ctx context.Context, db store.DB, now time.Time, deviceID string) (map[string][]Alarm, error) {
	return openWith(ctx, db, now, openSQL, deviceID)
}

// OpenOf is Open for the devices ids, in one query (a device without an
// open alarm has no entry).
func OpenOf(ctx context.Context, db store.DB, now time.Time, ids []string) (map[string][]Alarm, error) {
	if len(ids) == 0 {
		return map[string][]Alarm{}, nil
	}
	return openWith(ctx, db, now, openOfSQL, ids)
}

// openWith runs query (openSQL or openOfSQL, the devices devices) with
// JIT off when db can begin a transaction.
func openWith(ctx context.Context, db store.DB, now time.Time, query string, devices any) (map[string][]Alarm, error) {
	b, ok := db.(interface {
		Begin(context.Context) (pgx.Tx, error)
	})
	if !ok {
		return open(ctx, db, now, query, devices)
	}
	var out map[string][]Alarm
	err := pgx.BeginFunc(ctx, b, func(tx pgx.Tx) error {
		// The planner overestimates the acknowledgement join by far
		// (a cost of about 900,000 for 3,000 rows on a fleet of 19,000
		// devices) and compiles the query (JIT): 1.5 to 2.4 s of a 1.7
		// to 2.7 s read (docs/performance.md, "Open alarms").
		if _, err := tx.Exec(ctx, "SET LOCAL jit = off"); err != nil {
			return fmt.Errorf("alarms: open: %w", err)
		}
		var err error
		out, err = open(ctx, tx, now, query, devices)
		return err
	})
	return out, err
}

// open is openWith on db as it is.
func open(ctx context.Context, db store.DB, now time.Time, query string, devices any) (map[string][]Alarm, error) {
	rows, err := db.Query(ctx, query, now.Add(-Window), devices, ClearableKinds(), now.Add(-OneShot))
	if err != nil {
		return nil, fmt.Errorf("alarms: open: %w", err)
	}
	defer rows.Close()
	out := map[string][]Alarm{}
	for rows.Next() {
		var id, dev, kind, by string
		var payload []byte
		var at time.Time
		var actor, note *string
		var ackedAt *time.Time
		if err := rows.Scan(&id, &dev, &kind, &payload, &at, &actor, &by, &ackedAt, &note); err != nil {
			return nil, fmt.Errorf("alarms: open: %w", err)
		}
		a, ok := fromEvent(id, dev, payload, at, now)
		if !ok {
			continue
		}
		if actor != nil && ackedAt != nil && note != nil {
			a.Ack = &Ack{Actor: *actor, By: by, At: *ackedAt, Note: *note}
			if a.Ack.By == "" {
				a.Ack.By = *actor
			}
		}
		out[dev] = append(out[dev], a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alarms: open: %w", err)
	}
	for _, as := range out {
		Sort(as)
	}
	return out, nil
}

// Sort orders one device's alarms as the pages show them: not
// acknowledged first, then the newest first.
func Sort(as []Alarm) {
	sort.SliceStable(as, func(i, j int) bool {
		if ai, aj := as[i].Acknowledged(), as[j].Acknowledged(); ai != aj {
			return !ai
		}
		return as[i].At.After(as[j].At)
	})
}

// fromEvent decodes an alarm event; ok is false when it does not decode
// or is a one-shot alarm past OneShot.
func fromEvent(id, dev string, payload []byte, at, now time.Time) (Alarm, bool) {
	var ev wire.Event
	if err := json.Unmarshal(payload, &ev); err != nil || ev.Alarm == "" {
		return Alarm{}, false
	}
	if !clearable[ev.Alarm] && now.Sub(at) > OneShot {
		return Alarm{}, false
	}
	return Alarm{ID: id, Device: dev, Kind: ev.Alarm, Addr: ev.Addr, Board: ev.Board, At: at, Detail: ev.Detail}, true
}

// AckRequest is an acknowledgement to record.
type AckRequest struct {
	Device string
	// ID is the alarm's id (its raising event's).
	ID string
	// Actor is "user:<id>".
	Actor string
	// Note is optional; it is trimmed, then checked with CheckNote.
	Note string
	At   time.Time
}

// AckResult is what Acknowledge did.
type AckResult struct {
	// Alarm is the alarm with its acknowledgement: this one, or the
	// first one when it was acknowledged before.
	Alarm Alarm
	// Recorded is false when the alarm was acknowledged before: nothing
	// was written (the note given now is not kept).
	Recorded bool
}

// Acknowledge records r's acknowledgement of an open alarm and its audit
// record alarm.acknowledged (subject the device; details: the alarm kind,
// its id, its place and the note) in one transaction. An alarm
// acknowledged before answers its first acknowledgement with Recorded
// false, and nothing is written. Errors: ErrNote, ErrNotFound (no alarm
// event with this id on this device), ErrNotOpen (cleared, superseded or
// expired: nothing written).
func Acknowledge(ctx context.Context, pool *pgxpool.Pool, r AckRequest) (AckResult, error) {
	r.Note = strings.TrimSpace(r.Note)
	if err := CheckNote(r.Note); err != nil {
		return AckResult{}, err
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	var res AckResult
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var payload []byte
		var at time.Time
		err := tx.QueryRow(ctx, `SELECT payload, at FROM device_events
			WHERE event_id = $1 AND device_id = $2 AND kind = 'alarm'`, r.ID, r.Device).Scan(&payload, &at)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("alarms: read alarm: %w", err)
		}
		a, ok := fromEvent(r.ID, r.Device, payload, at, r.At)
		if !ok {
			if !json.Valid(payload) {
				return ErrNotFound
			}
			return ErrNotOpen
		}
		if r.At.Sub(at) > Window {
			return ErrNotOpen
		}
		// Open only while it is the latest alarm or alarm_cleared of its
		// kind and place: alarm_latest, what Open reads (a later event,
		// or a tie stored first, closes this one).
		var latest bool
		err = tx.QueryRow(ctx, `SELECT x.event_id = l.event_id FROM device_events l JOIN alarm_latest x
			ON x.device_id = l.device_id AND x.alarm = coalesce(l.payload->>'alarm', '')
			 AND x.addr = coalesce(l.payload->'addr', 'null'::jsonb) AND x.board = coalesce(l.payload->'board', 'null'::jsonb)
			WHERE l.event_id = $1 AND l.device_id = $2`, r.ID, r.Device).Scan(&latest)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("alarms: latest event: %w", err)
		}
		if !latest {
			return ErrNotOpen
		}
		// Acknowledged before: this raise, or an earlier one of the same
		// alarm (no clearing since). Nothing is written.
		ack := Ack{}
		readAck := func() error {
			return tx.QueryRow(ctx, ackSQL, r.ID, r.Device, ClearableKinds()).Scan(&ack.Actor, &ack.By, &ack.At, &ack.Note)
		}
		err = readAck()
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			tag, err := tx.Exec(ctx, `INSERT INTO alarm_acks (event_id, device_id, actor, acked_at, note)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING`, r.ID, r.Device, r.Actor, r.At.UTC(), r.Note)
			if err != nil {
				return fmt.Errorf("alarms: record acknowledgement: %w", err)
			}
			res.Recorded = tag.RowsAffected() == 1
			if res.Recorded {
				details := map[string]any{"alarm": string(a.Kind), "alarm_id": r.ID, "note": r.Note}
				if a.Addr != nil {
					details["board"], details["channel"] = a.Addr.Board, a.Addr.Channel
				} else if a.Board != nil {
					details["board"] = *a.Board
				}
				if _, err := audit.Append(ctx, tx, audit.Entry{At: r.At, Actor: r.Actor, Action: "alarm.acknowledged",
					Subject: "device:" + r.Device, Details: details}); err != nil {
					return fmt.Errorf("alarms: audit acknowledgement: %w", err)
				}
			}
			if err := readAck(); err != nil {
				return fmt.Errorf("alarms: read acknowledgement: %w", err)
			}
		case err != nil:
			return fmt.Errorf("alarms: read acknowledgement: %w", err)
		}
		if ack.By == "" {
			ack.By = ack.Actor
		}
		a.Ack = &ack
		res.Alarm = a
		return nil
	})
	if err != nil {
		return AckResult{}, err
	}
	return res, nil
}

// Metrics exports kluis_device_alarms_open{device, alarm, acknowledged}:
// the open alarms (Open) by device, kind and whether someone acknowledged
// them ("yes", "no"), read from the database at scrape time, so that
// every replica reports the whole fleet. Only counts above zero are
// series: the alert rules page on a device's alarm unless the backend
// knows it acknowledged and none of its kind unacknowledged.
type Metrics struct {
	pool    *pgxpool.Pool
	clock   func() time.Time
	timeout time.Duration
	log     *slog.Logger
	desc    *prometheus.Desc
}

// NewMetrics returns the collector; register it on the backend's
// registry. clock nil: time.Now; timeout bounds a scrape's query.
func NewMetrics(pool *pgxpool.Pool, clock func() time.Time, timeout time.Duration, log *slog.Logger) *Metrics {
	if clock == nil {
		clock = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Metrics{pool: pool, clock: clock, timeout: timeout, log: log.With("part", "alarms"),
		desc: prometheus.NewDesc("kluis_device_alarms_open",
			"Open alarms (as the dashboard shows them) by device, kind and whether a technician acknowledged them (yes, no); read from the database at scrape time, only counts above zero.",
			[]string{"device", "alarm", "acknowledged"}, nil)}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

// Collect implements prometheus.Collector. A database error is logged
// and the scrape carries no series.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	open, err := Open(ctx, m.pool, m.clock(), "")
	if err != nil {
		m.log.Warn("alarm metrics: read failed", "err", err)
		return
	}
	type key struct {
		dev  string
		kind wire.AlarmKind
		ack  string
	}
	n := map[key]int{}
	for dev, as := range open {
		for _, a := range as {
			k := key{dev, a.Kind, "no"}
			if a.Acknowledged() {
				k.ack = "yes"
			}
			n[k]++
		}
	}
	for k, v := range n {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, float64(v), k.dev, string(k.kind), k.ack)
	}
}

// Raised reports whether the device raised an alarm with this id (open
// or not).
func Raised(ctx context.Context, db store.DB, deviceID, id string) (bool, error) {
	var ok bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM device_events WHERE event_id = $1 AND device_id = $2 AND kind = 'alarm')`,
		id, deviceID).Scan(&ok); err != nil {
		return false, fmt.Errorf("alarms: raised: %w", err)
	}
	return ok, nil
}
