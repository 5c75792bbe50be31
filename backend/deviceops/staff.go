package deviceops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// StaffOptions configure NewStaff.
type StaffOptions struct {
	// Auth checks kiosk credentials and sessions (required).
	Auth *auth.Service
	// Service runs the reservations (required).
	Service *service.Service
	// Pool is the database (required).
	Pool *pgxpool.Pool
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Clock gives the time; default time.Now.
	Clock func() time.Time
	// Codes lifts the device's PIN lockout for clear_lockout; nil: that
	// operation answers unavailable.
	Codes *codes.Service
}

// Staff answers the kiosk's staff operations: log in with a staff PIN or
// badge, reserve a compartment for a scanned document, retrieve one,
// authorise a test-open, log out. It implements devicelink.StaffHandler.
//
// What each role may do at a kiosk is decided here, server-side: staff and
// admins load (reserve) and retrieve documents; technicians and admins
// test-open compartments (technicians never see documents, which hold
// personal data). A refusal answers denied and is audited.
type Staff struct {
	codes    *codes.Service
	auth     *auth.Service
	svc      *service.Service
	pool     *pgxpool.Pool
	log      *slog.Logger
	now      func() time.Time
	throttle *deviceThrottle
	lookups  *lookupThrottle
}

// NewStaff returns a Staff handler.
func NewStaff(o StaffOptions) *Staff {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Staff{codes: o.Codes, auth: o.Auth, svc: o.Service, pool: o.Pool, log: o.Logger.With("part", "kiosk-staff"), now: o.Clock,
		throttle: newDeviceThrottle(o.Pool), lookups: newLookupThrottle(o.Pool)}
}

// HandleStaff implements devicelink.StaffHandler.
func (h *Staff) HandleStaff(ctx context.Context, deviceID string, req wire.StaffRequest) wire.StaffResponse {
	resp := wire.StaffResponse{Op: req.Op}
	switch req.Op {
	case wire.StaffLogin:
		resp.Result = h.login(ctx, deviceID, req, &resp)
	case wire.StaffReserve:
		resp.Result = h.reserve(ctx, deviceID, req, &resp)
	case wire.StaffRetrieve:
		resp.Result = h.retrieve(ctx, deviceID, req, &resp)
	case wire.StaffTestOpen:
		resp.Result = h.testOpen(ctx, deviceID, req, &resp)
	case wire.StaffClearLockout:
		resp.Result = h.clearLockout(ctx, deviceID, req)
	case wire.StaffLogout:
		// Only the device's own session: another device ends none.
		if p, err := h.auth.Authenticate(ctx, req.Session); err == nil && p.TokenKind == "kiosk" && p.TokenName == deviceID {
			if err := h.auth.Revoke(ctx, p.ID, p.TokenID); err != nil {
				h.log.Warn("kiosk logout", "device", deviceID, "err", err)
			}
		}
		resp.Result = wire.StaffOK
	default:
		resp.Result = wire.StaffDenied
	}
	return resp
}

func (h *Staff) audit(ctx context.Context, actor, action, deviceID string, details map[string]any) {
	if _, err := h.svc.RecordEvent(ctx, audit.Entry{Actor: actor, Action: action, Subject: "device:" + deviceID, Details: details}); err != nil {
		h.log.Warn("audit kiosk staff operation", "action", action, "err", err)
	}
}

func (h *Staff) login(ctx context.Context, deviceID string, req wire.StaffRequest, resp *wire.StaffResponse) wire.StaffResult {
	now := h.now()
	lock, attempt, err := h.throttle.begin(ctx, deviceID, now)
	if err != nil {
		h.log.Error("kiosk staff login limits unavailable: login refused", "device", deviceID, "err", err)
		return wire.StaffUnavailable
	}
	method := "pin"
	if req.PIN == "" {
		method = "badge"
	}
	if lock.locked() {
		// Untried, but a denied attempt: audited once (never the
		// credential).
		tellLock(resp, lock)
		h.audit(ctx, "device:"+deviceID, "kiosk.login_refused", deviceID, map[string]any{"method": method,
			"until": lock.until.UTC().Format(time.RFC3339), "daily_cap": lock.daily})
		return wire.StaffDenied
	}
	iss, err := h.auth.KioskLoginAt(ctx, deviceID, req.PIN, req.Badge)
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		if lock := h.throttle.lockedNow(ctx, deviceID, now); lock.locked() {
			h.log.Warn("kiosk staff logins locked on device after repeated failures", "device", deviceID,
				"daily_cap", lock.daily, "until", lock.until)
			tellLock(resp, lock)
		}
		h.audit(ctx, "device:"+deviceID, "kiosk.login_failed", deviceID, map[string]any{"method": method})
		return wire.StaffDenied
	case err != nil:
		h.log.Warn("kiosk login", "device", deviceID, "err", err)
		return wire.StaffUnavailable
	}
	if err := h.throttle.succeed(ctx, deviceID, attempt); err != nil {
		h.log.Warn("kiosk staff login limits: success not recorded", "device", deviceID, "err", err)
	}
	actor := "user:" + strconv.FormatInt(iss.User.ID, 10)
	h.audit(ctx, actor, "kiosk.login", deviceID, map[string]any{"method": method, "token_id": iss.ID})
	// The staff id on the wire is the numeric user id (wire ids allow no ':').
	resp.Session, resp.StaffID, resp.StaffName, resp.Expires = iss.Token, strconv.FormatInt(iss.User.ID, 10), iss.User.Username, iss.ExpiresAt
	resp.Role = wire.StaffRole(iss.User.Role)
	return wire.StaffOK
}

// tellLock puts the end of the device's staff login lock in a denied
// login's expires, for the kiosk to say which lock holds and when it ends
// (docs/asyncapi.yaml, StaffResponse). It is a field every kluisd knows: one
// that does not read it on a denial still shows its plain refusal (wire
// decoding is strict, so a new field would make an older kluisd drop the
// whole answer). The lock is the device's, whatever the credential: it
// tells nothing about a PIN, badge or user.
func tellLock(resp *wire.StaffResponse, lock kioskLock) { tellUntil(resp, lock.until) }

// tellUntil puts the end of a lock or pause in a refusal's expires, in
// whole seconds, never early.
func tellUntil(resp *wire.StaffResponse, end time.Time) {
	until := end.Add(time.Second - 1).Truncate(time.Second)
	resp.Expires = &until
}

// kioskSession checks the kiosk session of req and whether its user's
// role may do op at the kiosk (a refusal is audited kiosk.denied).
func (h *Staff) kioskSession(ctx context.Context, op, deviceID string, req wire.StaffRequest, may ...auth.Role) (actor string, res wire.StaffResult) {
	_, actor, res = h.kioskPrincipal(ctx, op, deviceID, req, may...)
	return actor, res
}

// kioskPrincipal is kioskSession with the session's principal.
func (h *Staff) kioskPrincipal(ctx context.Context, op, deviceID string, req wire.StaffRequest, may ...auth.Role) (p auth.Principal, actor string, res wire.StaffResult) {
	p, err := h.auth.Authenticate(ctx, req.Session)
	if err != nil || p.TokenKind != "kiosk" {
		return p, "", wire.StaffSessionExpired
	}
	actor = "user:" + strconv.FormatInt(p.ID, 10)
	if p.TokenName != deviceID {
		// A session is handed to the device it was issued at (its
		// staff/res) and works there only: another device holding it
		// (one that kept it, or whoever read the first one's answers)
		// acts nowhere else.
		h.log.Warn("kiosk session of another device refused", "device", deviceID, "session_device", p.TokenName, "op", op)
		h.audit(ctx, actor, "kiosk.denied", deviceID, map[string]any{"op": op, "reason": "other_device", "session_device": p.TokenName})
		return p, "", wire.StaffSessionExpired
	}
	for _, r := range may {
		if p.Role == r {
			return p, actor, wire.StaffOK
		}
	}
	h.log.Info("kiosk operation refused for the role", "device", deviceID, "op", op, "role", p.Role)
	h.audit(ctx, actor, "kiosk.denied", deviceID, map[string]any{"op": op, "role": string(p.Role)})
	return p, actor, wire.StaffDenied
}

// testOpen authorises a technician's test-open of the compartment at
// req.Addr (technicians and admins; counter staff are denied), audited;
// a compartment holding a document (loaded, notified, expired) opens for
// an admin only, a technician is denied (audited kiosk.denied, reason
// occupied, with the document) and the denial carries the compartment's
// address (addr), so the kiosk can say why (a denial for the role carries
// none; an older kluisd ignores addr on a denial and shows its plain
// refusal: decoding is strict, a field of its own would drop the answer).
// The device opens only after ok.
func (h *Staff) testOpen(ctx context.Context, deviceID string, req wire.StaffRequest, resp *wire.StaffResponse) wire.StaffResult {
	p, actor, res := h.kioskPrincipal(ctx, "test_open", deviceID, req, auth.RoleTechnician, auth.RoleAdmin)
	if res != wire.StaffOK {
		return res
	}
	if req.Addr == nil {
		return wire.StaffNotFound
	}
	c, err := store.CompartmentByAddress(ctx, h.pool, deviceID, req.Addr.Board, req.Addr.Channel)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return wire.StaffNotFound
	case err != nil:
		h.log.Warn("kiosk test-open: compartment", "device", deviceID, "err", err)
		return wire.StaffUnavailable
	}
	details := map[string]any{"compartment": c.Number}
	// A citizen's document behind the door: for an admin only, as a
	// remote open over the API (api.RemoteOpen); a technician tests
	// empty compartments, and kluisd's item sensor (its own check) may
	// miss a thin card.
	doc, err := store.OccupantOf(ctx, h.pool, c.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		h.log.Warn("kiosk test-open: occupant", "device", deviceID, "err", err)
		return wire.StaffUnavailable
	case doc.State.InCompartment():
		if p.Role != auth.RoleAdmin {
			h.log.Info("kiosk test-open of an occupied compartment refused", "device", deviceID, "compartment", c.Number, "role", p.Role)
			h.audit(ctx, actor, "kiosk.denied", deviceID, map[string]any{"op": "test_open", "role": string(p.Role),
				"reason": "occupied", "compartment": c.Number, "document": doc.ID})
			resp.Addr = &wire.Address{Board: c.Board, Channel: c.Channel}
			return wire.StaffDenied
		}
		details["occupied"], details["document"] = true, doc.ID
	}
	h.audit(ctx, actor, "kiosk.test_open", deviceID, details)
	return wire.StaffOK
}

// KioskUnlockReason is the reason audited when staff lift a device's PIN
// lockout at its kiosk.
const KioskUnlockReason = "kiosk staff mode"

// clearLockout lifts the device's PIN burst lock at the backend for a
// logged-in staff member, technician or admin (audited device.pin_unlocked
// by codes.ClearBurstLock, with the user and KioskUnlockReason); the device
// lifts its own after ok. The daily cap stays.
func (h *Staff) clearLockout(ctx context.Context, deviceID string, req wire.StaffRequest) wire.StaffResult {
	actor, res := h.kioskSession(ctx, "clear_lockout", deviceID, req, auth.RoleStaff, auth.RoleTechnician, auth.RoleAdmin)
	if res != wire.StaffOK {
		return res
	}
	if h.codes == nil {
		return wire.StaffUnavailable
	}
	var was bool
	err := pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		var err error
		was, err = h.codes.ClearBurstLock(ctx, tx, deviceID, actor, KioskUnlockReason)
		return err
	})
	if err != nil {
		h.log.Warn("kiosk clear lockout", "device", deviceID, "err", err)
		return wire.StaffUnavailable
	}
	h.log.Info("device PIN lockout cleared at the kiosk", "device", deviceID, "actor", actor, "was_locked", was)
	return wire.StaffOK
}

// scanned checks the kiosk session of req and finds the document with the
// scanned number at the device's site, which may says the session may act
// on (lookupFound), or not (lookupWrongState: it exists in another state;
// lookupNotFound: the session is not to see it). A result other than
// StaffOK ends the operation. The lookups are bounded (lookupThrottle):
// under the device's pause none is made (denied, with the pause's end in
// expires, audited kiosk.lookup_refused), nor after the session's last
// miss (session_expired); a lookup that does not find a document the
// session may act on is a miss, audited kiosk.lookup_miss and counted, and
// may end the session or pause the device (lookupMiss). The pause check,
// the lookup and the count are one transaction under the device's lock.
func (h *Staff) scanned(ctx context.Context, op, deviceID string, req wire.StaffRequest, resp *wire.StaffResponse,
	may func(store.Document) lookupOutcome) (actor string, doc store.Document, res wire.StaffResult) {
	// Documents are for counter staff (and admins), not technicians.
	p, actor, res := h.kioskPrincipal(ctx, op, deviceID, req, auth.RoleStaff, auth.RoleAdmin)
	if res != wire.StaffOK {
		return "", doc, res
	}
	now := h.now()
	v, err := h.lookups.lookup(ctx, deviceID, p.TokenID, now, func(tx pgx.Tx) (lookupOutcome, error) {
		dev, err := store.GetDevice(ctx, tx, deviceID)
		if err != nil {
			return lookupFound, fmt.Errorf("device: %w", err)
		}
		doc, err = store.FindActiveByNumber(ctx, tx, req.DocumentNumber, dev.SiteID)
		switch {
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
			return lookupNotFound, nil
		case errors.Is(err, store.ErrConflict):
			return lookupWrongState, nil // documents of several kinds share the number
		case err != nil:
			return lookupFound, fmt.Errorf("find: %w", err)
		}
		return may(doc), nil
	})
	switch {
	case err != nil:
		h.log.Warn("kiosk "+op+": lookup limits unavailable: refused", "device", deviceID, "err", err)
		if v.outcome != lookupFound {
			h.audit(ctx, actor, "kiosk.lookup_miss", deviceID, map[string]any{"op": op, "outcome": v.outcome.String()})
		}
		return "", doc, wire.StaffUnavailable
	case v.refused:
		h.audit(ctx, actor, "kiosk.lookup_refused", deviceID, map[string]any{"op": op, "paused_until": v.pausedUntil})
		tellUntil(resp, v.pausedUntil)
		return "", doc, wire.StaffDenied
	case v.sessionOver:
		return "", doc, wire.StaffSessionExpired
	case v.outcome == lookupFound:
		return actor, doc, wire.StaffOK
	}
	return "", doc, h.lookupMiss(ctx, op, deviceID, actor, p, v, now, resp)
}

// lookupMiss audits a lookup of session p that did not find a document
// it may act on, counted in v (kiosk.lookup_miss, with the outcome,
// not_found or wrong_state, and the session's and the device's count; not
// the number typed, which may be someone's document) and answers it:
// session_expired with expires (when the session ended) for the session's
// last miss, whose session is revoked (audited kiosk.session_ended);
// denied with expires (when the pause ends) for the miss that pauses the
// device's lookups; else not_found, or wrong_state for a document that
// exists (the staff member typed a real number: the kiosk need not send
// them checking it). An older kluisd, which reads neither expires, shows
// its plain refusal (and for session_expired logs the staff member out).
func (h *Staff) lookupMiss(ctx context.Context, op, deviceID, actor string, p auth.Principal, v lookupVerdict, now time.Time,
	resp *wire.StaffResponse) wire.StaffResult {
	h.audit(ctx, actor, "kiosk.lookup_miss", deviceID, map[string]any{"op": op, "outcome": v.outcome.String(),
		"session_misses": v.sessionMisses, "device_misses": v.deviceMisses})
	switch {
	case v.sessionEnded:
		if err := h.auth.Revoke(ctx, p.ID, p.TokenID); err != nil {
			h.log.Error("kiosk session not ended after too many lookup misses", "device", deviceID, "err", err)
			return wire.StaffUnavailable
		}
		h.log.Warn("kiosk staff session ended after too many document lookups that found nothing", "device", deviceID,
			"actor", actor, "misses", v.sessionMisses)
		h.audit(ctx, actor, "kiosk.session_ended", deviceID, map[string]any{"reason": "lookup_misses", "misses": v.sessionMisses})
		ended := now.UTC().Truncate(time.Second)
		resp.Expires = &ended
		return wire.StaffSessionExpired
	case !v.pausedUntil.IsZero():
		h.log.Warn("kiosk document lookups paused on device after too many that found nothing", "device", deviceID,
			"misses", v.deviceMisses, "until", v.pausedUntil)
		tellUntil(resp, v.pausedUntil)
		return wire.StaffDenied
	case v.outcome == lookupWrongState:
		return wire.StaffWrongState
	}
	return wire.StaffNotFound
}

// reserveMay is what a reserve may act on at device: a registered
// document, or one already reserved there (a repeated scan).
func reserveMay(deviceID string) func(store.Document) lookupOutcome {
	return func(doc store.Document) lookupOutcome {
		if doc.State == lifecycle.Registered || doc.State == lifecycle.Reserved && doc.DeviceID == deviceID {
			return lookupFound
		}
		return lookupWrongState
	}
}

// retrieveMay is what a retrieve may act on at device: a loaded, notified
// or expired document in it. One in another device is not for this
// kiosk's session to see (not found).
func retrieveMay(deviceID string) func(store.Document) lookupOutcome {
	return func(doc store.Document) lookupOutcome {
		if !doc.State.InCompartment() {
			return lookupWrongState
		}
		if doc.DeviceID != deviceID {
			return lookupNotFound
		}
		return lookupFound
	}
}

func (h *Staff) reserve(ctx context.Context, deviceID string, req wire.StaffRequest, resp *wire.StaffResponse) wire.StaffResult {
	actor, doc, res := h.scanned(ctx, "reserve", deviceID, req, resp, reserveMay(deviceID))
	if res != wire.StaffOK {
		return res
	}
	var err error
	switch {
	case doc.State == lifecycle.Reserved && doc.DeviceID == deviceID:
		// Already reserved here (a repeated scan): the same compartment.
	case doc.State == lifecycle.Registered:
		doc, err = h.svc.Reserve(ctx, actor, doc.ID, service.ReserveOptions{DeviceID: deviceID})
		switch {
		case errors.Is(err, service.ErrNoCompartment):
			return wire.StaffNoCompartment
		case errors.Is(err, lifecycle.ErrForbiddenTransition), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrInvalid):
			return wire.StaffWrongState
		case err != nil:
			h.log.Warn("kiosk reserve", "device", deviceID, "err", err)
			return wire.StaffUnavailable
		}
	default:
		return wire.StaffWrongState
	}
	c, err := store.GetCompartment(ctx, h.pool, doc.CompartmentID)
	if err != nil {
		h.log.Warn("kiosk reserve: compartment", "device", deviceID, "err", err)
		return wire.StaffUnavailable
	}
	resp.DocumentID = doc.ID
	resp.Addr = &wire.Address{Board: c.Board, Channel: c.Channel}
	return wire.StaffOK
}

// retrieve answers the compartment of a loaded, notified or expired
// document of this device, for staff to take it back out. Nothing changes
// state here: the device's retrieved event (the compartment empty after the
// door closed) does the transition.
func (h *Staff) retrieve(ctx context.Context, deviceID string, req wire.StaffRequest, resp *wire.StaffResponse) wire.StaffResult {
	actor, doc, res := h.scanned(ctx, "retrieve", deviceID, req, resp, retrieveMay(deviceID))
	if res != wire.StaffOK {
		return res
	}
	c, err := store.GetCompartment(ctx, h.pool, doc.CompartmentID)
	if err != nil {
		h.log.Warn("kiosk retrieve: compartment", "device", deviceID, "err", err)
		return wire.StaffUnavailable
	}
	h.audit(ctx, actor, "kiosk.retrieve", deviceID, map[string]any{"document": doc.ID, "compartment": c.Number})
	resp.DocumentID = doc.ID
	resp.Addr = &wire.Address{Board: c.Board, Channel: c.Channel}
	return wire.StaffOK
}
