package deviceops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/api"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/controller/wire"
)

// LockoutsOptions configure NewLockouts.
type LockoutsOptions struct {
	// Codes holds the backend's PIN lockout (required).
	Codes *codes.Service
	// Pool is the database (required).
	Pool *pgxpool.Pool
	// Link sends the clear_lockout command to the device; nil: the
	// device is not told (its own lockout stays until it ends or staff
	// lift it at the kiosk).
	Link CommandLink
	// Clock gives the time; default time.Now.
	Clock func() time.Time
	// Timeout is how long the device has to answer, and when the command
	// expires (a late delivery must not lift a newer lockout); default
	// 15 s. Poll is how often the answer is looked for; default 100 ms.
	Timeout, Poll time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Lockouts lifts a device's PIN lockout for staff: the backend's burst
// lock (codes.ClearBurstLock, audited with who and why) and, through a
// clear_lockout command, the device's own journaled lockout. It implements
// api.LockoutClearer.
type Lockouts struct {
	o   LockoutsOptions
	log *slog.Logger
}

// NewLockouts returns a Lockouts.
func NewLockouts(o LockoutsOptions) (*Lockouts, error) {
	if o.Codes == nil || o.Pool == nil {
		return nil, errors.New("deviceops: lockouts need the codes service and a pool")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Lockouts{o: o, log: o.Logger.With("part", "lockouts")}, nil
}

// The device outcomes of ClearLockout besides the wire's command statuses
// (done, failed, expired, duplicate, rejected, uncertain).
const (
	// DeviceNotSent: no device link, or it is not connected to the broker.
	DeviceNotSent = "not_sent"
	// DeviceOffline: the device is not connected; nothing was sent (the
	// command would expire before it comes back).
	DeviceOffline = "device_offline"
	// DeviceNoAnswer: sent, no result within the timeout (the command
	// expires unexecuted or was carried out unreported).
	DeviceNoAnswer = "no_answer"
)

// ClearLockout implements api.LockoutClearer. The backend's lock is lifted
// (and audited) first, in any case; then the device is told. An error is
// returned only when the backend's lock could not be lifted.
func (l *Lockouts) ClearLockout(ctx context.Context, deviceID, reason, actor string) (api.LockoutCleared, error) {
	out := api.LockoutCleared{DeviceID: deviceID}
	err := pgx.BeginFunc(ctx, l.o.Pool, func(tx pgx.Tx) error {
		var err error
		out.WasLocked, err = l.o.Codes.ClearBurstLock(ctx, tx, deviceID, actor, reason)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("deviceops: clear lockout of %s: %w", deviceID, err)
	}
	if until, err := l.o.Codes.LockedUntil(ctx, deviceID); err != nil {
		l.log.Warn("lockout cleared, daily cap unknown", "device", deviceID, "err", err)
	} else if !until.IsZero() {
		out.LockedUntil = &until
	}
	l.log.Info("device PIN lockout cleared", "device", deviceID, "actor", actor, "was_locked", out.WasLocked)
	out.Device = l.tellDevice(ctx, deviceID, reason, actor)
	return out, nil
}

// tellDevice sends clear_lockout and waits for the device's answer.
func (l *Lockouts) tellDevice(ctx context.Context, deviceID, reason, actor string) api.DeviceCommandOutcome {
	if l.o.Link == nil {
		return api.DeviceCommandOutcome{Status: DeviceNotSent, Detail: "no device link on this server"}
	}
	p, err := l.o.Link.Presence(ctx, deviceID)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !p.Online) {
		return api.DeviceCommandOutcome{Status: DeviceOffline,
			Detail: "the device is not connected; its own lockout ends by itself or at the kiosk in staff mode"}
	}
	if err != nil {
		l.log.Warn("clear lockout: presence", "device", deviceID, "err", err)
		return api.DeviceCommandOutcome{Status: DeviceNotSent, Detail: "the device's connection state is unknown"}
	}
	now := l.o.Clock().UTC()
	id, err := l.o.Link.SendCommand(ctx, deviceID, wire.Command{Kind: wire.CmdClearLockout, Issued: now,
		Expires: now.Add(l.o.Timeout), Reason: reason, By: actor})
	if id == "" || errors.Is(err, devicelink.ErrNotConnected) {
		detail := "the backend is not connected to the MQTT broker"
		if err != nil && !errors.Is(err, devicelink.ErrNotConnected) {
			l.log.Warn("clear lockout: send", "device", deviceID, "err", err)
			detail = "the command could not be stored"
		}
		return api.DeviceCommandOutcome{Status: DeviceNotSent, Detail: detail}
	}
	if err != nil {
		// Stored but the publish failed: the command may still go out
		// with a retry of the link; its status tells.
		l.log.Warn("clear lockout: publish", "device", deviceID, "command", id, "err", err)
	}
	res := api.DeviceCommandOutcome{CommandID: id, Status: DeviceNoAnswer}
	deadline := time.NewTimer(l.o.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(l.o.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return res
		case <-deadline.C:
			return res
		case <-tick.C:
		}
		st, err := l.o.Link.CommandStatus(ctx, id)
		if err != nil {
			l.log.Warn("clear lockout: command status", "device", deviceID, "command", id, "err", err)
			continue
		}
		switch wire.CommandStatus(st.Status) {
		case wire.StatusDone, wire.StatusDuplicate, wire.StatusFailed, wire.StatusExpired, wire.StatusRejected,
			wire.StatusUncertain: // kluisd restarted while carrying it out
			res.Status, res.Detail = st.Status, st.Detail
			return res
		}
	}
}
