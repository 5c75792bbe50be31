package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/api"
	"kluis/backend/audit"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// This file is the glue between the device link (MQTT) and the use cases:
// code verification, device events turned into document transitions, and
// remote opening for the API.

// verifier answers kiosk code verifications with backend/codes.
type verifier struct {
	codes *codes.Service
	log   *slog.Logger
	now   func() time.Time
}

// Verify implements devicelink.Verifier.
func (v verifier) Verify(ctx context.Context, deviceID string, req wire.VerifyRequest) wire.VerifyResponse {
	a := codes.Attempt{DeviceID: deviceID}
	switch req.Method {
	case wire.MethodQR:
		a.QRToken = req.Token
	case wire.MethodPIN:
		a.PIN, a.BirthDate = req.PIN, req.BirthDate
	default:
		return wire.VerifyResponse{Result: wire.VerifyWrongCode}
	}
	res, err := v.codes.Verify(ctx, a)
	if err == nil {
		return wire.VerifyResponse{Result: wire.VerifyOK, DocumentID: res.DocumentID,
			Addr: &wire.Address{Board: res.Board, Channel: res.Channel}}
	}
	var d *codes.Denial
	if !errors.As(err, &d) {
		v.log.Warn("code verification failed", "device", deviceID, "err", err)
		return wire.VerifyResponse{Result: wire.VerifyUnavailable}
	}
	switch codes.Reason(err) {
	case codes.ReasonExpired:
		return wire.VerifyResponse{Result: wire.VerifyExpired}
	case codes.ReasonAlreadyCollected:
		return wire.VerifyResponse{Result: wire.VerifyAlreadyCollected}
	case codes.ReasonSecondFactorRequired:
		return wire.VerifyResponse{Result: wire.VerifySecondFactorRequired}
	case codes.ReasonDeviceLockedOut:
		secs := int(d.LockedUntil.Sub(v.now()).Seconds()) + 1
		return wire.VerifyResponse{Result: wire.VerifyDeviceLockedOut, RetryAfterS: max(secs, 1)}
	}
	// Wrong code, wrong device, locked code, invalid input: the kiosk shows
	// "wrong code" for all of them.
	return wire.VerifyResponse{Result: wire.VerifyWrongCode}
}

// events turns device events into document transitions and audit records.
type events struct {
	svc  *service.Service
	pool *pgxpool.Pool
	log  *slog.Logger
	// alarms counts alarm events by kind (a bounded wire enum).
	alarms *prometheus.CounterVec
}

func newAlarmCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kluis_device_alarms_total",
		Help: "Alarm events from devices by alarm kind (door_left_open, forced_door, board_unreachable, ...).",
	}, []string{"alarm"})
	for _, k := range wire.AlarmKinds() {
		c.WithLabelValues(string(k))
	}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("register alarm counter: %w", err)
	}
	return c, nil
}

// HandleEvent implements devicelink.EventHandler. Transitions run in the
// service's own transaction first; the device audit record is appended last
// in the link's transaction (audit appends serialise on a transaction lock,
// so it must not be held while the service appends).
func (h events) HandleEvent(ctx context.Context, tx pgx.Tx, deviceID string, ev wire.Event) error {
	actor := "device:" + deviceID
	var err error
	transition := true
	switch ev.Kind {
	case wire.EvPickupCompleted:
		err = h.atAddress(ctx, deviceID, ev, lifecycle.Collected, func(n int) error {
			_, err := h.svc.CollectAt(ctx, actor, deviceID, n)
			return err
		})
	case wire.EvLoaded:
		err = h.atAddress(ctx, deviceID, ev, lifecycle.Loaded, func(n int) error {
			_, err := h.svc.LoadAt(ctx, actor, deviceID, n)
			return err
		})
	case wire.EvRetrieved:
		if ev.DocumentID == "" {
			return fmt.Errorf("retrieved event without document id: %w", devicelink.ErrRejected)
		}
		_, err = h.svc.Retrieve(ctx, actor, ev.DocumentID)
		err = h.settled(ctx, err, ev.DocumentID, lifecycle.Retrieved)
	default:
		transition = false
	}
	if err != nil {
		return err
	}
	if transition {
		return nil // the service audited the transition
	}
	details := map[string]any{}
	if ev.Addr != nil {
		details["board"], details["channel"] = ev.Addr.Board, ev.Addr.Channel
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
	return nil
}

// atAddress resolves the event's compartment and runs fn with its number;
// a resend of an event already applied is accepted.
func (h events) atAddress(ctx context.Context, deviceID string, ev wire.Event, want lifecycle.State, fn func(number int) error) error {
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
func (h events) settled(ctx context.Context, err error, docID string, want lifecycle.State) error {
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

// opener sends remote-open commands and waits for the device's result.
type opener struct {
	link    *devicelink.Link
	pool    *pgxpool.Pool
	now     func() time.Time
	timeout time.Duration
	poll    time.Duration
}

// OpenCompartment implements api.Opener. The command expires with the
// wait, so a device that was offline never opens the door much later.
func (o opener) OpenCompartment(ctx context.Context, deviceID string, number int, reason, actor string) error {
	c, err := store.CompartmentByNumber(ctx, o.pool, deviceID, number)
	if err != nil {
		return err
	}
	now := o.now().UTC()
	id, err := o.link.SendCommand(ctx, deviceID, wire.Command{Kind: wire.CmdOpen, Issued: now, Expires: now.Add(o.timeout),
		Addr: &wire.Address{Board: c.Board, Channel: c.Channel}, Reason: reason, By: actor})
	if errors.Is(err, devicelink.ErrNotConnected) {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: "device_link_unavailable",
			Message: "the backend is not connected to the MQTT broker", Err: err}
	}
	if err != nil {
		return err
	}
	deadline := time.NewTimer(o.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(o.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("no answer from device %s within %s (the command expires unexecuted)", deviceID, o.timeout)
		case <-tick.C:
		}
		st, err := o.link.CommandStatus(ctx, id)
		if err != nil {
			return err
		}
		switch wire.CommandStatus(st.Status) {
		case wire.StatusDone, wire.StatusDuplicate:
			return nil
		case wire.StatusFailed, wire.StatusExpired, wire.StatusRejected:
			return fmt.Errorf("device %s answered %s: %s", deviceID, st.Status, st.Detail)
		}
	}
}
