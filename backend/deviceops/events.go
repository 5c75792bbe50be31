package deviceops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/audit"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// EventsOptions configure NewEvents.
type EventsOptions struct {
	// Service runs the document transitions (required).
	Service *service.Service
	// Pool is the database (required).
	Pool *pgxpool.Pool
	// Codes re-arms a used code when the device reports the document still
	// in its compartment; nil: never.
	Codes *codes.Service
	// Grace bounds a pickup_not_collected re-arm (kluisd's timeouts.grace);
	// default DefaultGrace.
	Grace time.Duration
	// Clock gives the backend's time; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives kluis_device_alarms_total and
	// kluis_device_commands_refused_total; nil: not registered.
	Registerer prometheus.Registerer
	// CodesChanged is told the device whose open codes a re-arm changed
	// (e.g. to resend its offline cache soon; it is called before the
	// event's transaction commits); nil: nobody.
	CodesChanged func(deviceID string)
}

// DefaultGrace is kluisd's default timeouts.grace.
const DefaultGrace = 10 * time.Minute

// Events turns device events into document transitions and audit records;
// it implements devicelink.EventHandler.
type Events struct {
	svc   *service.Service
	pool  *pgxpool.Pool
	log   *slog.Logger
	codes *codes.Service
	grace time.Duration
	now   func() time.Time
	// changed is EventsOptions.CodesChanged (never nil).
	changed func(deviceID string)
	// alarms counts alarm events by kind (a bounded wire enum).
	alarms *prometheus.CounterVec
	// refused counts command_refused events by
	// wire.CommandRefusalReason (bounded; never the device's text).
	refused *prometheus.CounterVec
}

// NewEvents checks o and returns an Events handler.
func NewEvents(o EventsOptions) (*Events, error) {
	if o.Service == nil || o.Pool == nil {
		return nil, errors.New("deviceops: events need a service and a pool")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.CodesChanged == nil {
		o.CodesChanged = func(string) {}
	}
	h := &Events{svc: o.Service, pool: o.Pool, log: o.Logger.With("part", "device-events"), codes: o.Codes,
		grace: o.Grace, now: o.Clock, changed: o.CodesChanged}
	c, err := newAlarmCounter(o.Registerer)
	if err != nil {
		return nil, err
	}
	h.alarms = c
	if h.refused, err = newRefusedCounter(o.Registerer); err != nil {
		return nil, err
	}
	return h, nil
}

// newRefusedCounter is kluis_device_commands_refused_total{reason}, every
// reason from 0 so that an alert sees the first refusal. No device label
// (like kluis_device_alarms_total): the audit trail names the device.
func newRefusedCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kluis_device_commands_refused_total",
		Help: "Commands devices refused, by reason (command_refused events received: unsigned, bad_signature, other_device, expired, not_yet_valid, duplicate, other).",
	}, []string{"reason"})
	for _, r := range wire.CommandRefusalReasons() {
		c.WithLabelValues(r)
	}
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("register refused-command counter: %w", err)
	}
	return c, nil
}

func newAlarmCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kluis_device_alarms_total",
		Help: "Alarm events from devices by alarm kind (door_left_open, forced_door, board_unreachable, ...).",
	}, []string{"alarm"})
	for _, k := range wire.AlarmKinds() {
		c.WithLabelValues(string(k))
	}
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("register alarm counter: %w", err)
	}
	return c, nil
}

// HandleEvent implements devicelink.EventHandler. Transitions run in the
// service's own transaction first; the device audit record (with who did
// it at the kiosk: staff_id, or the citizen's method) is appended last in
// the link's transaction (audit appends serialise on a transaction lock, so
// it must not be held while the service appends).
func (h *Events) HandleEvent(ctx context.Context, tx pgx.Tx, deviceID string, ev wire.Event) error {
	actor := "device:" + deviceID
	var err error
	switch ev.Kind {
	case wire.EvPickupCompleted:
		err = h.atAddress(ctx, deviceID, ev, lifecycle.Collected, func(n int) error {
			_, err := h.svc.CollectAt(ctx, actor, deviceID, n)
			return err
		})
		if err == nil && ev.Offline {
			// After the collection's own transaction (which revoked the
			// open codes): the code the device spent offline is used.
			err = h.markOfflineUsed(ctx, tx, deviceID, ev)
		}
	case wire.EvLoaded:
		err = h.atAddress(ctx, deviceID, ev, lifecycle.Loaded, func(n int) error {
			_, err := h.svc.LoadAt(ctx, actor, deviceID, n)
			return err
		})
	case wire.EvRetrieved:
		if ev.DocumentID == "" {
			return fmt.Errorf("retrieved event without document id: %w", devicelink.ErrRejected)
		}
		// Only a document of this device: a device never moves another's.
		d, gerr := h.svc.GetDocument(ctx, ev.DocumentID)
		switch {
		case errors.Is(gerr, store.ErrNotFound):
			return fmt.Errorf("retrieved event for unknown document %s: %w", ev.DocumentID, devicelink.ErrRejected)
		case gerr != nil:
			return gerr
		case d.DeviceID != deviceID:
			h.log.Warn("device reports retrieving another device's document", "device", deviceID, "document", ev.DocumentID)
			return fmt.Errorf("retrieved event for document %s of another device: %w", ev.DocumentID, devicelink.ErrRejected)
		}
		_, err = h.svc.Retrieve(ctx, actor, ev.DocumentID)
		err = h.settled(ctx, err, ev.DocumentID, lifecycle.Retrieved)
	case wire.EvCodeLocked:
		// Before the device audit record, like a re-arm.
		if err := h.lockOffline(ctx, tx, deviceID, ev); err != nil {
			return err
		}
	case wire.EvPickupNotCollected, wire.EvOpenNotDetected:
		// Before the device audit record: the re-arm locks the document
		// first and appends to the audit log last, like a transition.
		if err := h.rearm(ctx, tx, deviceID, ev); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	details := map[string]any{}
	if ev.Addr != nil {
		details["board"], details["channel"] = ev.Addr.Board, ev.Addr.Channel
	} else if ev.Board != nil {
		// A board-wide alarm names its board (the timeline says which).
		details["board"] = *ev.Board
	}
	if ev.Alarm != "" {
		details["alarm"] = ev.Alarm
	}
	if ev.DocumentID != "" {
		details["document"] = ev.DocumentID
	}
	if ev.Detail != "" {
		details["detail"] = ev.Detail
	}
	if ev.StaffID != "" {
		details["staff_id"] = ev.StaffID
	}
	if ev.Method != "" {
		details["method"] = ev.Method
	}
	if ev.Offline {
		details["offline"] = true
	}
	if ev.CommandID != "" {
		details["command_id"] = ev.CommandID
	}
	if ev.RequestID != "" {
		details["request_id"] = ev.RequestID
	}
	details["event_id"] = ev.ID
	if _, err := audit.Append(ctx, tx, audit.Entry{At: ev.At, Actor: actor, Action: "device." + string(ev.Kind),
		Subject: "device:" + deviceID, Details: details}); err != nil {
		return fmt.Errorf("audit device event: %w", err)
	}
	if ev.Kind == wire.EvAlarm && h.alarms != nil {
		// Counted before the commit: a rolled-back event is resent and
		// counted again, which errs on the side of alerting.
		h.alarms.WithLabelValues(string(ev.Alarm)).Inc()
		h.log.Warn("device alarm", "device", deviceID, "alarm", ev.Alarm)
	}
	if ev.Kind == wire.EvCommandRefused && h.refused != nil {
		// Counted like an alarm, before the commit (a rolled-back event
		// is counted again when resent). The device's text stays in the
		// audit record and the log; the label is the bounded reason.
		reason := wire.CommandRefusalReason(ev.Detail)
		h.refused.WithLabelValues(reason).Inc()
		if reason != wire.RefusedDuplicate {
			h.log.Warn("device refused a command", "device", deviceID, "command", ev.CommandID, "reason", reason)
		}
	}
	return nil
}

// markOfflineUsed marks the code of an offline pickup used, so that a
// replay online answers already_collected (not counted) instead of
// wrong_code.
func (h *Events) markOfflineUsed(ctx context.Context, tx pgx.Tx, deviceID string, ev wire.Event) error {
	if h.codes == nil || ev.DocumentID == "" {
		return nil
	}
	_, err := h.codes.MarkOfflineUsed(ctx, tx, deviceID, ev.DocumentID, ev.CodeRef, ev.At)
	if errors.Is(err, pickupcode.ErrInvalid) {
		return fmt.Errorf("%s: %v: %w", ev.Kind, err, devicelink.ErrRejected)
	}
	return err
}

// lockOffline locks the code the device locked offline after too many
// wrong dates of birth, so that it opens nothing online either until
// re-issued, and resends the device's offline cache.
func (h *Events) lockOffline(ctx context.Context, tx pgx.Tx, deviceID string, ev wire.Event) error {
	if h.codes == nil {
		return nil
	}
	ok, err := h.codes.LockOffline(ctx, tx, deviceID, ev.DocumentID, ev.CodeRef)
	if errors.Is(err, pickupcode.ErrInvalid) {
		return fmt.Errorf("%s: %v: %w", ev.Kind, err, devicelink.ErrRejected)
	}
	if err != nil {
		return err
	}
	if ok {
		h.changed(deviceID)
	}
	return nil
}

// rearmWindow is how long before the event (or now, if later) a code must
// have been used to be the code of the pickup the event reports on.
const rearmWindow = time.Hour

// rearm gives the citizen's code back when the device reports the document
// still in its compartment: for a short grace period after
// pickup_not_collected, as before when the door did not open (kluisd does
// the same offline). Staff and remote opens (staff_id, command_id) never
// re-arm a code.
func (h *Events) rearm(ctx context.Context, tx pgx.Tx, deviceID string, ev wire.Event) error {
	if h.codes == nil || ev.DocumentID == "" || ev.StaffID != "" || ev.CommandID != "" {
		return nil
	}
	// The device's clock is not trusted to reach back further than ours.
	now := h.now()
	since := now
	if ev.At.After(now) {
		since = ev.At
	}
	r := codes.Rearm{DocumentID: ev.DocumentID, DeviceID: deviceID, UsedSince: since.Add(-rearmWindow)}
	if ev.Kind == wire.EvPickupNotCollected {
		r.Until = now.Add(h.grace)
		if at := ev.At.Add(h.grace); at.Before(r.Until) {
			r.Until = at // reported late: the grace counts from the device's event
		}
	}
	ok, err := h.codes.Rearm(ctx, tx, r)
	if errors.Is(err, pickupcode.ErrInvalid) {
		return fmt.Errorf("%s: %v: %w", ev.Kind, err, devicelink.ErrRejected)
	}
	if err != nil {
		return err
	}
	if ok {
		h.log.Info("code given back: the document is still in its compartment", "device", deviceID,
			"document", ev.DocumentID, "event", ev.Kind)
		h.changed(deviceID)
	}
	return nil
}

// atAddress resolves the event's compartment and runs fn with its number;
// a resend of an event already applied is accepted.
func (h *Events) atAddress(ctx context.Context, deviceID string, ev wire.Event, want lifecycle.State, fn func(number int) error) error {
	if ev.Addr == nil {
		return fmt.Errorf("%s event without addr: %w", ev.Kind, devicelink.ErrRejected)
	}
	c, err := store.CompartmentByAddress(ctx, h.pool, deviceID, ev.Addr.Board, ev.Addr.Channel)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s at unknown compartment %s of %s: %w", ev.Kind, ev.Addr, deviceID, devicelink.ErrRejected)
		}
		return err
	}
	if ev.DocumentID != "" {
		// The device names the document it handled: never move another one.
		occ, err := store.OccupantOf(ctx, h.pool, c.ID)
		switch {
		case err == nil && occ.ID != ev.DocumentID:
			h.log.Warn("device event names another document than the compartment holds",
				"device", deviceID, "kind", ev.Kind, "event_document", ev.DocumentID, "occupant", occ.ID)
			return fmt.Errorf("%s for %s but compartment %d holds %s: %w", ev.Kind, ev.DocumentID, c.Number, occ.ID, devicelink.ErrRejected)
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	return h.settled(ctx, fn(c.Number), ev.DocumentID, want)
}

// settled maps a transition error: nil when the document already is in the
// wanted state (the event was applied before), ErrRejected for refusals
// that a resend cannot fix, the error itself (retry) otherwise.
func (h *Events) settled(ctx context.Context, err error, docID string, want lifecycle.State) error {
	if err == nil {
		return nil
	}
	if docID != "" && (errors.Is(err, lifecycle.ErrForbiddenTransition) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict)) {
		if d, gerr := h.svc.GetDocument(ctx, docID); gerr == nil && d.State == want {
			return nil
		}
	}
	if errors.Is(err, lifecycle.ErrForbiddenTransition) || errors.Is(err, store.ErrNotFound) ||
		errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrInvalid) {
		h.log.Warn("device event refused", "err", err)
		return fmt.Errorf("%v: %w", err, devicelink.ErrRejected)
	}
	return err
}
