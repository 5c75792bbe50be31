package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"kluis/controller/offline"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// PickupRequest is what a citizen entered at the kiosk: a QR token, or a
// PIN (with the date of birth when asked).
type PickupRequest struct {
	QR        string `json:"qr,omitempty"`
	PIN       string `json:"pin,omitempty"`
	BirthDate string `json:"birth_date,omitempty"`
	Lang      string `json:"lang,omitempty"`
}

// ErrBadRequest is wrapped by Validate errors.
var ErrBadRequest = errors.New("engine: bad request")

// ErrStaffMode is returned by Pickup while a staff member is logged in at
// the kiosk: staff log out (or are logged out when idle) before a citizen's
// code is taken.
var ErrStaffMode = errors.New("engine: a staff member is logged in: log out before a citizen's code is taken")

// Validate checks the shape of the request (not the code).
func (r *PickupRequest) Validate() error {
	r.QR = strings.TrimSpace(r.QR)
	r.PIN = strings.TrimSpace(r.PIN)
	r.BirthDate = strings.TrimSpace(r.BirthDate)
	switch {
	case r.QR != "" && r.PIN != "":
		return fmt.Errorf("give a qr or a pin, not both: %w", ErrBadRequest)
	case r.QR == "" && r.PIN == "":
		return fmt.Errorf("give a qr or a pin: %w", ErrBadRequest)
	case len(r.QR) > 1024:
		return fmt.Errorf("qr longer than 1024 characters: %w", ErrBadRequest)
	case r.QR != "" && r.BirthDate != "":
		return fmt.Errorf("birth_date goes with a pin: %w", ErrBadRequest)
	}
	if r.PIN != "" {
		pin, err := pickupcode.NormalizePIN(r.PIN, len(digitsOf(r.PIN)))
		if err != nil || len(pin) < 4 || len(pin) > 12 {
			return fmt.Errorf("pin must be 4-12 digits: %w", ErrBadRequest)
		}
		r.PIN = pin
	}
	if r.BirthDate != "" {
		d, err := pickupcode.ParseBirthDate(r.BirthDate)
		if err != nil {
			return fmt.Errorf("birth_date must be YYYY-MM-DD: %w", ErrBadRequest)
		}
		r.BirthDate = d
	}
	for _, c := range r.QR {
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("qr has a character that is not printable ASCII: %w", ErrBadRequest)
		}
	}
	if r.Lang != "" && !ValidLang(r.Lang) {
		return fmt.Errorf("lang must be nl, fr, en or de: %w", ErrBadRequest)
	}
	return nil
}

func digitsOf(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// Pickup verifies a code (online, or offline when the backend does not
// answer) and starts opening its compartment. It returns the screen to show;
// the operation continues in the background (poll Screen or wait on
// Changed).
func (e *Engine) Pickup(ctx context.Context, r PickupRequest) (Screen, error) {
	if err := r.Validate(); err != nil {
		return Screen{}, err
	}
	if _, err := e.currentStaff(); err == nil {
		// Staff mode is one person's: the page takes no citizen's code
		// on its staff screens, and neither does the engine (the serial
		// scanner, a local process). Taken, it opened the citizen's door
		// and then showed the staff menu again, still logged in, to
		// whoever had given the code.
		return Screen{}, ErrStaffMode
	}
	lang := r.Lang
	if lang == "" {
		lang = e.cfg.Kiosk.DefaultLang
	}
	if e.journalLow() {
		// No door opens on a full disk: not verified (nothing asked of
		// the backend, no PIN attempt counted), the whole machine is
		// out of order (call 1777), not just one compartment.
		return e.setScreen(StateDeviceOutOfOrder, 0, lang), nil
	}
	method := wire.MethodQR
	if r.PIN != "" {
		method = wire.MethodPIN
		// One PIN attempt at a time, so that the limits are checked and
		// counted exactly. A PIN lockout refuses PINs only: a QR code
		// cannot be guessed and always opens its own door.
		e.pinMu.Lock()
		defer e.pinMu.Unlock()
		if !e.pinLockedUntil().IsZero() {
			e.m.verifications.WithLabelValues("locked_out", "local").Inc()
			return e.setScreen(StateLockedOut, 0, lang), nil
		}
	}
	e.setScreen(StateVerifying, 0, lang)
	var (
		res     wire.VerifyResponse
		err     error
		offl    bool
		offMiss error
		codeRef string
	)
	if e.o.Backend != nil {
		vctx, cancel := context.WithTimeout(ctx, e.cfg.Timeouts.Verify)
		res, err = e.o.Backend.Verify(vctx, wire.VerifyRequest{ID: wire.NewID(e.now()), At: e.now().UTC(), Method: method,
			Token: r.QR, PIN: r.PIN, BirthDate: r.BirthDate})
		cancel()
	} else {
		err = ErrBackendUnavailable
	}
	if err != nil || res.Result == wire.VerifyUnavailable {
		if ctx.Err() != nil {
			return e.setScreen(StateIdle, 0, lang), ctx.Err()
		}
		offl = true
		res, codeRef, offMiss = e.verifyOffline(r, method)
	}
	source := "online"
	if offl {
		source = "offline"
	}
	e.m.verifications.WithLabelValues(string(res.Result), source).Inc()
	switch res.Result {
	case wire.VerifyOK:
	case wire.VerifyWrongCode:
		e.m.wrongCodes.Inc()
		// Only PINs count: the backend does not count QR codes either,
		// and garbage held to the scanner must not lock anybody out.
		var lastTry time.Duration
		if method == wire.MethodPIN {
			if !e.pinFailed().IsZero() {
				return e.setScreen(StateLockedOut, 0, lang), nil
			}
			lastTry = e.pinLastTry()
		}
		return e.setWrongCode(method, lastTry, lang), nil
	case wire.VerifySecondFactorRequired:
		return e.setScreen(StateNeedBirthDate, 0, lang), nil
	case wire.VerifyExpired:
		return e.setScreen(StateExpired, 0, lang), nil
	case wire.VerifyAlreadyCollected:
		return e.setScreen(StateAlreadyCollected, 0, lang), nil
	case wire.VerifyPending:
		return e.setScreen(StatePending, 0, lang), nil
	case wire.VerifyDeviceLockedOut:
		e.followBackendLock(res.RetryAfterS)
		return e.setScreen(StateLockedOut, 0, lang), nil
	default:
		if errors.Is(offMiss, offline.ErrWithdrawn) {
			// A genuine code whose compartment changed here since the
			// last sync: the door stays shut, the citizen is sent to
			// the counter (reported offline_code_refused).
			return e.setScreen(StateOutOfOrder, 0, lang), nil
		}
		if offMiss != nil {
			e.log.Info("offline verification impossible", "err", offMiss)
		}
		return e.setScreen(StateError, 0, lang), nil
	}
	c := e.compFor(res.Addr, res.Slot)
	if c == nil {
		// Never open a door the configuration does not know.
		e.log.Error("verified code names a compartment this device does not have", "addr", fmt.Sprint(res.Addr), "source", source)
		return e.setScreen(StateOutOfOrder, 0, lang), nil
	}
	if e.usedNow(res.DocumentID) {
		return e.setScreen(StateAlreadyCollected, 0, lang), nil
	}
	o := &op{purpose: PurposePickup, comp: c, docID: res.DocumentID, method: method, offline: offl, lang: lang, codeRef: codeRef}
	restore := func() {}
	if offl {
		// Single use offline: spent before the door opens, released
		// again if it does not. Spent in memory now, so that no second
		// attempt gets past usedNow, and durably by the pulse intent,
		// which carries the mark (one fdatasync before the pulse, not
		// two): a crash before the intent pulsed nothing and spent
		// nothing.
		restore = e.holdPending(usedCode{Doc: res.DocumentID, Pending: true, CodeRef: codeRef})
	}
	if st := e.start(o); st != "" {
		restore()
		return e.setScreen(st, c.cfg.Number, lang), nil
	}
	return e.Screen(), nil
}

// verifyOffline checks the code against the offline cache under the same
// rules and maps the outcome to a verify response (with the code's
// reference for the backend). A PIN of a code locked offline, or whose
// code has seen too many wrong dates of birth, answers wrong_code.
func (e *Engine) verifyOffline(r PickupRequest, method wire.Method) (wire.VerifyResponse, string, error) {
	if e.o.Cache == nil {
		return wire.VerifyResponse{Result: wire.VerifyUnavailable}, "", offline.ErrNoMaterial
	}
	if !e.settleWithdrawal() {
		e.log.Warn("offline code refused: the offline codes' withdrawal after journal damage is not saved yet", "method", method)
		return wire.VerifyResponse{Result: wire.VerifyUnavailable}, "", errWithdrawalPending
	}
	var m offline.Match
	var err error
	if method == wire.MethodQR {
		m, err = e.o.Cache.VerifyQR(r.QR, e.now())
	} else {
		m, err = e.o.Cache.VerifyPIN(r.PIN, r.BirthDate, e.now())
	}
	wrong := wire.VerifyResponse{Result: wire.VerifyWrongCode}
	switch {
	case err == nil:
		if e.usedNow(m.DocumentID) {
			return wire.VerifyResponse{Result: wire.VerifyAlreadyCollected}, "", nil
		}
		if e.codeLocked(m.Key) {
			return wrong, "", nil
		}
		if method == wire.MethodPIN && m.NeedsDOB && e.wrongDOBs(m.PINTag) >= e.cfg.Lockout.Limits().CodeMaxFailures {
			// The right PIN and date of birth after too many wrong dates:
			// the code is locked, as online, and this attempt refused.
			e.lockCode(m)
			return wrong, "", nil
		}
		addr := m.Addr
		var slot *int
		if e.cfg.Kind == "automaton" {
			// The cache names an automaton slot by board and channel.
			slot = intPtr(m.Addr.Channel)
		}
		return wire.VerifyResponse{Result: wire.VerifyOK, DocumentID: m.DocumentID, Addr: &addr, Slot: slot}, m.CodeRef, nil
	case errors.Is(err, offline.ErrWithdrawn) && e.usedNow(m.DocumentID):
		// Spent here before its compartment changed: the truth.
		return wire.VerifyResponse{Result: wire.VerifyAlreadyCollected}, "", nil
	case errors.Is(err, offline.ErrWithdrawn):
		// The right code (not a guess: not counted), but the device
		// withdrew it: its compartment was emptied, reloaded or opened
		// for no document here, and may hold another citizen's document
		// now. Journaled and reported before the kiosk answers.
		addr := m.Addr
		e.emitKept(wire.Event{Kind: wire.EvOfflineCodeRefused, Addr: &addr, DocumentID: m.DocumentID, Method: method,
			CodeRef: m.CodeRef, Detail: "compartment emptied, reloaded or opened for no document at the device since the last code sync"})
		e.log.Warn("offline code refused: its compartment changed at the device since the last code sync",
			"document", m.DocumentID, "addr", addr.String(), "method", method)
		return wire.VerifyResponse{Result: wire.VerifyUnavailable}, "", err
	case errors.Is(err, pickupcode.ErrSecondFactorRequired):
		return wire.VerifyResponse{Result: wire.VerifySecondFactorRequired}, "", nil
	case errors.Is(err, pickupcode.ErrExpired):
		return wire.VerifyResponse{Result: wire.VerifyExpired}, "", nil
	case errors.Is(err, pickupcode.ErrWrongCode), errors.Is(err, pickupcode.ErrWrongDevice):
		if method == wire.MethodPIN {
			e.offlinePINFailed(m.PINTag)
		}
		return wrong, "", nil
	}
	return wire.VerifyResponse{Result: wire.VerifyUnavailable}, "", err
}
