package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"kluis/controller/wire"
)

// ErrNoStaff is returned by staff and technician operations without a
// staff login.
var ErrNoStaff = errors.New("engine: no staff member logged in")

// StaffLogin verifies a staff badge or staff PIN with the backend and, when
// accepted, starts staff mode on the kiosk.
func (e *Engine) StaffLogin(ctx context.Context, badge, pin, lang string) (Screen, error) {
	badge, pin = strings.TrimSpace(badge), strings.TrimSpace(pin)
	if (badge == "") == (pin == "") || len(badge) > 128 || len(pin) > 12 {
		return Screen{}, fmt.Errorf("give a badge or a pin: %w", ErrBadRequest)
	}
	if pin != "" && (len(pin) < 4 || digitsOf(pin) != pin) {
		return Screen{}, fmt.Errorf("staff pin must be 4-12 digits: %w", ErrBadRequest)
	}
	// Staff may log in during a citizens' lockout (to help); staff login
	// failures are throttled by the backend, per device, not here.
	res, err := e.staffCall(ctx, wire.StaffRequest{Op: wire.StaffLogin, Badge: badge, PIN: pin})
	if err != nil {
		return e.setScreen(StateError, 0, lang), nil
	}
	if res.Result != wire.StaffOK || res.Expires == nil {
		if st := staffRefusal(res, e.now()); st != StateStaffDenied {
			return e.setScreenUntil(st, *res.Expires, lang), nil
		}
		return e.setScreen(StateStaffDenied, 0, lang), nil
	}
	role := res.Role
	if role == "" {
		// A backend that names no role gets the least: counter staff.
		role = wire.RoleStaff
	}
	e.mu.Lock()
	prev := e.staff
	e.staff = &staffSession{token: res.Session, id: res.StaffID, name: res.StaffName, role: role, expires: *res.Expires}
	e.mu.Unlock()
	e.log.Info("staff login", "staff_id", res.StaffID, "role", role)
	if prev != nil && prev.token != res.Session {
		// The session this login replaces is ended at the backend too:
		// kept only here, it would stay valid there, held by nobody.
		_, _ = e.staffCall(ctx, wire.StaffRequest{Op: wire.StaffLogout, Session: prev.token})
	}
	return e.setScreen(StateStaff, 0, lang), nil
}

// staffLockBurstMax is the longest the backend's burst lock of a device's
// staff logins lasts (15 minutes) and a minute for the clocks' skew: a
// lock that ends later is the daily cap.
//
// The distance is the only signal the contract has: a field or result of
// its own would make an older kluisd drop the whole answer (decoding is
// strict), and every existing field means something else on a denial
// (result unavailable is "cannot check now"). Both screens say the lock's
// actual end ({t}); the distance picks only the advice (wait, or use the
// staff console), so a daily cap that ends within 16 minutes showing the
// burst lock's text is still true.
const staffLockBurstMax = 16 * time.Minute

// staffRefusal is the screen of a refused staff login: staff_locked or
// staff_locked_today when the backend's denial says when a lock of the
// device's staff logins ends (expires, docs/asyncapi.yaml StaffResponse),
// staff_denied for any other refusal, from a backend that says nothing
// more too.
func staffRefusal(res wire.StaffResponse, now time.Time) string {
	if res.Result != wire.StaffDenied || res.Expires == nil || !res.Expires.After(now) {
		return StateStaffDenied
	}
	if res.Expires.Sub(now) > staffLockBurstMax {
		return StateStaffLockedToday
	}
	return StateStaffLocked
}

// StaffLogout ends staff mode.
func (e *Engine) StaffLogout(ctx context.Context) Screen {
	e.mu.Lock()
	s := e.staff
	e.staff = nil
	e.mu.Unlock()
	if s != nil && e.o.Backend != nil {
		_, _ = e.staffCall(ctx, wire.StaffRequest{Op: wire.StaffLogout, Session: s.token})
	}
	return e.setScreen(StateIdle, 0, "")
}

func (e *Engine) staffCall(ctx context.Context, req wire.StaffRequest) (wire.StaffResponse, error) {
	if e.o.Backend == nil {
		return wire.StaffResponse{}, ErrBackendUnavailable
	}
	req.ID, req.At = wire.NewID(e.now()), e.now().UTC()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeouts.Verify)
	defer cancel()
	res, err := e.o.Backend.Staff(ctx, req)
	if err != nil {
		e.log.Warn("staff request failed", "op", req.Op, "err", err)
		return res, err
	}
	return res, nil
}

func (e *Engine) currentStaff() (*staffSession, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.staff == nil || !e.now().Before(e.staff.expires) {
		e.staff = nil
		return nil, ErrNoStaff
	}
	s := *e.staff
	return &s, nil
}

// StaffLoad asks the backend for the compartment of the document with this
// number and opens it to load the document ("loaded" once the door closes
// with the item inside).
func (e *Engine) StaffLoad(ctx context.Context, documentNumber, lang string) (Screen, error) {
	return e.staffDoor(ctx, documentNumber, lang, PurposeLoad)
}

// StaffRetrieve opens the compartment of an (expired) document to take it
// back ("retrieved" once the door closes with the compartment empty). It
// asks the backend's retrieve operation for the document's compartment.
func (e *Engine) StaffRetrieve(ctx context.Context, documentNumber, lang string) (Screen, error) {
	return e.staffDoor(ctx, documentNumber, lang, PurposeRetrieve)
}

func (e *Engine) staffDoor(ctx context.Context, number, lang, purpose string) (Screen, error) {
	number = strings.TrimSpace(number)
	if err := wire.ValidID(number); err != nil {
		return Screen{}, fmt.Errorf("document number: %w", ErrBadRequest)
	}
	s, err := e.currentStaff()
	if err != nil {
		return Screen{}, err
	}
	sop := wire.StaffReserve
	if purpose == PurposeRetrieve {
		sop = wire.StaffRetrieve
	}
	res, err := e.staffCall(ctx, wire.StaffRequest{Op: sop, Session: s.token, DocumentNumber: number})
	if err != nil {
		return e.setScreen(StateError, 0, lang), nil
	}
	switch res.Result {
	case wire.StaffOK:
	case wire.StaffSessionExpired:
		e.mu.Lock()
		e.staff = nil
		e.mu.Unlock()
		if res.Expires != nil {
			// Ended by the backend after too many lookups that found
			// nothing (docs/asyncapi.yaml StaffResponse).
			e.log.Warn("staff session ended by the backend: too many document numbers not found", "staff_id", s.id)
			return e.setScreen(StateLookupsEnded, 0, lang), nil
		}
		return e.setScreen(StateStaffDenied, 0, lang), nil
	case wire.StaffNotFound:
		return e.setScreen(StateNotFound, 0, lang), nil
	case wire.StaffWrongState:
		return e.setScreen(StateWrongState, 0, lang), nil
	case wire.StaffNoCompartment:
		return e.setScreen(StateNoCompartment, 0, lang), nil
	case wire.StaffDenied:
		if res.Expires != nil && res.Expires.After(e.now()) {
			// The device's lookups paused until expires.
			return e.setScreenUntil(StateLookupsPaused, *res.Expires, lang), nil
		}
		return e.setScreen(StateStaffDenied, 0, lang), nil
	default:
		return e.setScreen(StateError, 0, lang), nil
	}
	c := e.compFor(res.Addr, res.Slot)
	if c == nil {
		e.log.Error("backend reserved a compartment this device does not have", "addr", fmt.Sprint(res.Addr))
		return e.setScreen(StateOutOfOrder, 0, lang), nil
	}
	o := &op{purpose: purpose, comp: c, docID: res.DocumentID, staffID: s.id, lang: lang}
	if st := e.start(o); st != "" {
		return e.setScreen(st, c.cfg.Number, lang), nil
	}
	return e.Screen(), nil
}

// TestOpen opens a free compartment for a technician. The backend decides
// who may (staff/req test_open: technicians and admins, audited there;
// counter staff are denied): the door opens only after its ok. Without an
// answer (offline, timeout) the test-open is refused: the role is the
// backend's to decide, and a test-open can wait for the link. The door
// events carry the staff id and "technician test-open" so the backend's
// audit trail records who opened what. A compartment with an item, or
// whose emptiness cannot be sensed, is refused before the backend is asked.
// The backend refuses a technician a compartment it knows holds a document
// (its denial carries the compartment's addr): test_occupied, and a
// sensor_disagreement alarm, as the item sensor read empty.
func (e *Engine) TestOpen(ctx context.Context, number int, lang string) (Screen, error) {
	s, err := e.currentStaff()
	if err != nil {
		return Screen{}, err
	}
	c := e.compByNumber(number)
	if c == nil {
		return Screen{}, fmt.Errorf("no compartment %d: %w", number, ErrBadRequest)
	}
	o := &op{purpose: PurposeTest, comp: c, staffID: s.id, lang: lang}
	present, _, known := e.itemState(ctx, o)
	if !known || present {
		return Screen{}, fmt.Errorf("compartment %d is not known to be empty: %w", number, ErrNotFree)
	}
	res, err := e.staffCall(ctx, wire.StaffRequest{Op: wire.StaffTestOpen, Session: s.token, Addr: addrPtr(c.wireAddr())})
	if err != nil {
		e.log.Warn("test-open refused: the backend did not answer", "compartment", number)
		return e.setScreen(StateError, c.cfg.Number, lang), nil
	}
	switch res.Result {
	case wire.StaffOK:
	case wire.StaffSessionExpired:
		e.mu.Lock()
		e.staff = nil
		e.mu.Unlock()
		return e.setScreen(StateStaffDenied, 0, lang), nil
	case wire.StaffDenied:
		if res.Addr != nil && *res.Addr == c.wireAddr() {
			// The backend records a citizen's document in it (the
			// denial names the compartment), while the item sensor
			// read empty just now (asked only then): a thin card
			// the sensor misses, or a sensor or record gone wrong.
			// A technician should look.
			e.log.Warn("test-open refused: the backend records a document in a compartment whose item sensor reads empty",
				"compartment", number, "staff_id", s.id)
			e.alarm(wire.AlarmSensorDisagreement, addrPtr(c.lock), nil,
				fmt.Sprintf("compartment %d: item sensor reads empty but the backend records a document (test-open refused)", number))
			return e.setScreen(StateTestOccupied, c.cfg.Number, lang), nil
		}
		e.log.Info("test-open denied by the backend", "compartment", number, "staff_id", s.id)
		return e.setScreen(StateStaffDenied, c.cfg.Number, lang), nil
	case wire.StaffNotFound:
		return e.setScreen(StateNotFound, c.cfg.Number, lang), nil
	default:
		return e.setScreen(StateError, c.cfg.Number, lang), nil
	}
	if st := e.start(o); st != "" {
		return e.setScreen(st, c.cfg.Number, lang), nil
	}
	return e.Screen(), nil
}

// ErrNotFree refuses a test-open of a compartment that may hold a document.
var ErrNotFree = errors.New("engine: compartment not free")
