package engine

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kluis/controller/config"
	"kluis/controller/journal"
	"kluis/controller/offline"
	"kluis/controller/pickupcode"
	"kluis/controller/promtext"
	"kluis/controller/wire"
	"kluis/hardware"
)

// Kiosk screen states (GET /kiosk/v1/session "state").
const (
	StateIdle             = "idle"
	StateVerifying        = "verifying"
	StateNeedBirthDate    = "need_birth_date"
	StatePresenting       = "presenting"
	StateOpen             = "open"
	StateDone             = "done"
	StateNotCollected     = "not_collected"
	StateNotOpened        = "not_opened"
	StateWrongCode        = "wrong_code"
	StateExpired          = "expired"
	StateAlreadyCollected = "already_collected"
	StateLockedOut        = "locked_out"
	StateOutOfOrder       = "out_of_order"
	// StateDeviceOutOfOrder: no door of the device opens (its disk is
	// full: the journal gave up its reserve), not just this compartment's.
	StateDeviceOutOfOrder = "device_out_of_order"
	StateBusy             = "busy"
	StateStaff            = "staff"
	StateStaffDenied      = "staff_denied"
	// StateStaffLocked: a staff login refused because the device's staff
	// logins are locked after repeated failures (the backend's 15-minute
	// lock); StateStaffLockedToday: by the daily cap.
	StateStaffLocked      = "staff_locked"
	StateStaffLockedToday = "staff_locked_today"
	// StateLookupsEnded: the backend ended the staff session after too
	// many document lookups that found nothing; StateLookupsPaused: it
	// paused the device's document lookups (until Screen.Until).
	StateLookupsEnded  = "lookups_ended"
	StateLookupsPaused = "lookups_paused"
	StateLoading       = "loading"
	StateLoaded        = "loaded"
	StateLoadEmpty     = "load_empty"
	StateRetrieving    = "retrieving"
	StateRetrieved     = "retrieved"
	StateStillThere    = "still_there"
	StateNotFound      = "not_found"
	// StateWrongState: the backend found the document, but in a state
	// this operation cannot act on (not yet loaded for a retrieve, already
	// loaded for a load): the number is right, so staff are not sent to
	// check it (the backend counts it as a miss all the same).
	StateWrongState    = "wrong_state"
	StateNoCompartment = "no_compartment"
	StateTestOpen      = "test_open"
	// StateTestOccupied: the backend refused a technician's test-open
	// because it records a citizen's document in the compartment (the
	// item sensor read empty: a sensor_disagreement alarm is raised).
	StateTestOccupied = "test_occupied"
	StateError        = "error"
	// StateLockoutCleared: staff lifted the PIN lockout; StateLockoutCapped:
	// lifted, but the daily cap still locks PIN entry (retry_after_s).
	StateLockoutCleared = "lockout_cleared"
	StateLockoutCapped  = "lockout_capped"
	// StatePending: the code was accepted before but the document is
	// still there, not yet opened for (the backend answered pending).
	StatePending = "pending"
)

// Operation purposes (journal intents).
const (
	PurposePickup   = "pickup"
	PurposeLoad     = "load"
	PurposeRetrieve = "retrieve"
	PurposeTest     = "test"
	PurposeRemote   = "remote"
)

// Journal record types the engine adds.
const (
	recCodeUsed = "code_used" // offline single use: {doc, grace_until}
	recCommand  = "command"   // {id, expires, kind}: before the command is carried out
	// recCommandReported {id, expires}: the command's result is journaled
	// (held for the backend); a command without it was interrupted.
	recCommandReported = "command_reported"
)

// usedRetention is how long single-use marks survive compaction: longer than
// any pickup code is valid.
const usedRetention = 120 * 24 * time.Hour

// ErrBackendUnavailable is what a Backend returns when it cannot answer
// (not connected, timeout); the engine then verifies offline.
var ErrBackendUnavailable = errors.New("engine: backend unavailable")

// Backend is the online side of verification and staff operations
// (implemented by controller/link over MQTT).
type Backend interface {
	// Verify asks the backend about a code; an error means no answer.
	Verify(ctx context.Context, req wire.VerifyRequest) (wire.VerifyResponse, error)
	// Staff runs a staff operation; an error means no answer.
	Staff(ctx context.Context, req wire.StaffRequest) (wire.StaffResponse, error)
}

// Options configure New.
type Options struct {
	Config  *config.Config
	Driver  hardware.Driver
	Journal *journal.Journal
	// Replay are the records Open returned, to rebuild single-use marks,
	// lockouts and command ids.
	Replay []journal.Record
	// Backend may be nil (offline only).
	Backend Backend
	// Cache is the offline code cache; may be nil.
	Cache *offline.Cache
	// CommandKey is the backend's public key (offline.public_key_file):
	// only commands it signed for this device are carried out. Without
	// one every command is refused.
	CommandKey ed25519.PublicKey
	// StartupHalt is when kluisd's start-up relocked every lock (the
	// daemon halts a fresh driver before the engine starts); zero when it
	// did not. A pulse journaled shortly before it may have been cut short
	// by it (see reconcile).
	StartupHalt time.Time
	// JournalDamaged, when not empty, says what start-up found damaged in
	// the journal (records moved aside): raised as alarm journal_damaged,
	// and every code the offline cache holds is withdrawn; once that is
	// durable the journal's damage is settled (journal.SettleDamage). Set
	// it while journal.Recovery.Unsettled (Recovery.Damage), not only when
	// Open found the damage itself.
	JournalDamaged string
	// CacheDamaged, when not empty, says what start-up found wrong with
	// the offline cache file (damaged or unreadable: see offline.Open,
	// which empties it itself, ErrDamaged): raised as alarm
	// journal_damaged too (one alarm with JournalDamaged's detail when
	// both), without withdrawing codes (offline.Open marks the next syncs
	// withdrawn itself).
	CacheDamaged string
	// CacheUntrusted, when not empty, says why start-up refused the
	// offline cache file (offline.ErrUntrusted: not the backend's signed
	// code syncs for this device, moved aside, every offline code refused
	// until the next full sync): raised as alarm offline_cache_untrusted,
	// which the engine clears once a full sync is applied (or at a start
	// that finds the cache trusted again), without withdrawing codes: a
	// refused cache's withdrawals would take every code of the backend's
	// next full sync.
	CacheUntrusted string
	// OutOfBand, when set, publishes an event to the backend at once,
	// without the journal (the link's PublishNow): the engine hands it
	// a journal_full alarm or clear the journal cannot take now, which
	// stays kept in memory and is journaled, with the same id, once the
	// journal takes writes again (see emitKept).
	OutOfBand func(id string, payload []byte)
	// Clock; default time.Now.
	Clock    func() time.Time
	Logger   *slog.Logger
	Registry *promtext.Registry
}

// Screen is what the kiosk shows.
type Screen struct {
	State string `json:"state"`
	// Compartment as people count (from 1), 0 when none.
	Compartment int    `json:"compartment,omitempty"`
	Lang        string `json:"lang"`
	Message     string `json:"message"`
	// Messages has the message in every language.
	Messages map[string]string `json:"messages"`
	// Staff is the logged-in staff member's name.
	Staff string `json:"staff,omitempty"`
	// StaffRole is the logged-in staff member's role (staff, technician,
	// admin), for the screen to offer only what that role may do; the
	// backend decides every operation anyway.
	StaffRole wire.StaffRole `json:"staff_role,omitempty"`
	// RetryAfterS is set while locked out.
	RetryAfterS int `json:"retry_after_s,omitempty"`
	// Until is when the lock the screen tells of ends (staff_locked,
	// staff_locked_today: the backend's lock of the device's staff
	// logins; lookups_paused: its pause of the device's document
	// lookups); the messages say it in the device's local time.
	Until *time.Time `json:"until,omitempty"`
	// Method is how the citizen gave the code that was refused ("qr" or
	// "pin"), set on wrong_code only: the screen offers to try the same way
	// again, and the other way after a refused QR code.
	Method wire.Method `json:"method,omitempty"`
	// LastTryLockS is set on wrong_code after a wrong PIN when one more
	// wrong PIN would lock PIN entry: for how long (seconds), so that the
	// screen warns before the last try. It depends on the device's count
	// of wrong PINs alone, never on the code.
	LastTryLockS int `json:"last_try_lock_s,omitempty"`
	// Seq increases with every change.
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	// IdleUntil is when kluisd brings this screen back to idle
	// (timeouts.session after it came or after the last activity the
	// screen reported, Touch, at most SessionCap after it came); set on
	// every screen but idle and staff.
	IdleUntil *time.Time `json:"idle_until,omitempty"`
	// IdleFinal: no activity puts IdleUntil off any more (SessionCap).
	IdleFinal bool `json:"idle_final,omitempty"`
}

// SessionCap bounds how long reported activity (Touch) keeps one kiosk
// screen from its idle return: a stuck touch or a forgotten tablet must
// not hold a citizen's screen for ever. timeouts.session when longer.
const SessionCap = 10 * time.Minute

// comp is one configured compartment.
type comp struct {
	cfg  config.Compartment
	lock hardware.Address // the lock to pulse (the hatch on an automaton)
	slot int              // -1 on a locker
}

// op is one running door operation.
type op struct {
	purpose   string
	comp      *comp
	docID     string
	method    wire.Method
	offline   bool
	staffID   string
	commandID string
	lang      string
	// codeRef names the code of an offline pickup (wire.Event.CodeRef).
	codeRef string
	intent  journal.Intent
	resumed bool
	// pulseRecorded: a resumed operation's journal held its pulse's done
	// or uncertain record (on an automaton: the slot had been presented
	// and the hatch pulsed, or tried).
	pulseRecorded bool
	events        chan hardware.Event
}

type staffSession struct {
	token, id, name string
	role            wire.StaffRole
	expires         time.Time
}

// usedCode is a single-use mark: spent, spent after GraceUntil (an item not
// taken), or Released (the door never opened). Pending marks an offline
// code spent before its door opens: the operation's outcome replaces it. It
// is journaled by the operation's pulse intent (journal.Intent.Offline),
// held in memory until then; a pending code_used record (journals written
// before intents carried the mark) that a restart finds without an
// unfinished operation (kluisd died before journaling the pulse intent) is
// released, as nothing was pulsed.
type usedCode struct {
	Doc string `json:"doc"`
	// CodeRef names the code an offline pickup used (offline.Match), for
	// the outcome event of an operation resumed after a restart.
	CodeRef    string    `json:"code_ref,omitempty"`
	GraceUntil time.Time `json:"grace_until,omitempty"`
	Released   bool      `json:"released,omitempty"`
	Pending    bool      `json:"pending,omitempty"`
}

// Engine is kluisd's brain: pickups, staff and technician operations,
// hardware events and alarms. See doc.go.
type Engine struct {
	o     Options
	cfg   *config.Config
	log   *slog.Logger
	now   func() time.Time
	drv   hardware.Driver
	mech  hardware.Mechanism
	j     *journal.Journal
	m     *metrics
	comps []*comp

	// withdrawPending: a damaged journal's withdrawal of the offline
	// codes is not durable yet (settleWithdrawal); withdrawMu serializes
	// its attempts.
	withdrawPending atomic.Bool
	withdrawMu      sync.Mutex

	mu        sync.Mutex
	caps      hardware.Capabilities
	info      hardware.Info
	boardDown map[int]bool
	// boardErrs counts failed exchanges per board (heartbeat BoardHealth.Errors).
	boardErrs map[int]int64
	active    map[hardware.Address]*op
	screen    Screen
	// touched is when activity was last reported on the screen (Touch).
	touched  time.Time
	changed  chan struct{}
	used     map[string]usedCode
	commands map[string]time.Time // command id -> expiry
	reported map[string]bool      // command ids whose result is journaled
	// commandsPruned is when pruneCommandsLocked last ran.
	commandsPruned time.Time
	staff          *staffSession
	ready          bool
	readyC         chan struct{} // closed when ready becomes true
	wg             sync.WaitGroup
	runCtx         context.Context

	// pin holds the PIN attempt limits; pinMu makes PIN attempts one at a
	// time (see limits.go).
	pin   pinLimits
	pinMu sync.Mutex
	// dobFails and codeLocks are the offline second-factor rule (dob.go;
	// under mu).
	dobFails  []dobFailure
	codeLocks map[string]codeLock
	// alarms are the most recent alarms, newest last (Diagnostics).
	alarms []AlarmNote

	// boardGen changes whenever a board goes offline or comes back, so a
	// pending board_unreachable debounce knows it is void; boardAlarmed
	// marks boards whose board_unreachable alarm is raised.
	boardGen     map[int]int
	boardAlarmed map[int]bool
	// boardRebootN and boardWatchdogN count restarts and watchdog relocks
	// (heartbeat); boardRebootAt keeps the restarts of the last hour and
	// rebootAlarm the boards whose board_rebooting alarm is raised.
	boardRebootN, boardWatchdogN map[int]int64
	boardRebootAt                map[int][]time.Time
	rebootAlarm                  map[int]bool
	// refusedAt and refusedN limit command_refused and response_refused
	// events per minute.
	refusedAt time.Time
	refusedN  int

	// kept are journal writes the journal refused (a full disk) that must
	// not be forgotten (an operation's outcome event, then its end),
	// oldest first; keepLoop writes them as soon as the journal takes
	// writes again (see emitKept). Under keptMu, which is held across a
	// write so that they go out in order.
	keptMu   sync.Mutex
	kept     []keptWrite
	keptWake chan struct{}

	// fullAlarm: journal_full is raised (space.go; under mu).
	fullAlarm bool
	// cacheAlarm: offline_cache_untrusted is raised (cachealarm.go;
	// under mu).
	cacheAlarm bool
	// cacheMu orders the raising and clearing of offline_cache_untrusted
	// (start-up and a code sync may come at once); cacheRaised: this
	// run raised Options.CacheUntrusted's alarm (under cacheMu).
	cacheMu     sync.Mutex
	cacheRaised bool
	// cacheMark is the latest cache_version record (cachealarm.go):
	// the version of the last code sync applied, and its sequence number.
	cacheMark struct {
		version atomic.Int64
		seq     atomic.Uint64
	}
	// withdrawnKeys are the cache_withdrawn records' keys the replay
	// found, for the cache (keepWithdrawn).
	withdrawnKeys []offline.WithdrawnKey
	// writeFail: a journal write failed for another reason than a full
	// disk (an I/O error) and none has succeeded since; no door operation
	// starts meanwhile (space.go; under mu).
	writeFail bool
	// holdErrs is the journal's WriteErrors when the hold of a write
	// failure began (space.go, journalWorks; under mu).
	holdErrs uint64
}

// keptWrite is a journal write kept for later.
type keptWrite struct {
	what  string
	write func() error
}

// New builds an engine; Run starts it.
func New(o Options) (*Engine, error) {
	if o.Config == nil || o.Driver == nil || o.Journal == nil {
		return nil, errors.New("engine: config, driver and journal are required")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = promtext.NewRegistry()
	}
	e := &Engine{o: o, cfg: o.Config, log: o.Logger.With("part", "engine"), now: o.Clock, drv: o.Driver, j: o.Journal,
		keptWake: make(chan struct{}, 1), boardDown: map[int]bool{}, boardErrs: map[int]int64{}, boardGen: map[int]int{}, boardAlarmed: map[int]bool{},
		boardRebootN: map[int]int64{}, boardWatchdogN: map[int]int64{}, boardRebootAt: map[int][]time.Time{}, rebootAlarm: map[int]bool{},
		active: map[hardware.Address]*op{}, changed: make(chan struct{}), readyC: make(chan struct{}),
		used: map[string]usedCode{}, commands: map[string]time.Time{}, reported: map[string]bool{}, codeLocks: map[string]codeLock{}}
	e.pin.lim.Store(pickupcode.NewLimiter(o.Config.Lockout.Limits(), pickupcode.LimiterState{}))
	e.pin.clock.Store(&pinClock{base: e.now(), mono: time.Now()}) // until startPINClock
	e.mech, _ = o.Driver.(hardware.Mechanism)
	for _, c := range o.Config.Compartments {
		cp := &comp{cfg: c, lock: c.Addr(), slot: -1}
		if o.Config.Kind == config.KindAutomaton {
			cp.lock = hardware.Address{Board: c.Board, Channel: o.Config.Hardware.HatchChannel}
			cp.slot = c.Slot
		}
		e.comps = append(e.comps, cp)
	}
	m, err := newMetrics(o.Registry, o.Config.Hardware.Boards,
		func() float64 { return float64(e.j.OutboxLen()) },
		func() float64 {
			if !e.pinLockedUntil().IsZero() {
				return 1
			}
			return 0
		},
		func() float64 {
			if e.journalLow() {
				return 1
			}
			return 0
		})
	if err != nil {
		return nil, err
	}
	e.m = m
	e.replay(o.Replay)
	e.floorCache()
	e.keepWithdrawn()
	e.startPINClock()
	e.setScreenLocked(StateIdle, 0, o.Config.Kiosk.DefaultLang)
	return e, nil
}

// replay rebuilds single-use marks, PIN limits and seen commands.
func (e *Engine) replay(recs []journal.Record) {
	for _, r := range recs {
		switch r.Type {
		case recJournalFull:
			e.replayJournalFull(r)
		case journal.TypeEvent:
			e.replayJournalFullEvent(r)
			e.replayCacheUntrusted(r)
		case recCacheUntrusted:
			e.replayCacheUntrusted(r)
		case recCacheVersion:
			e.replayCacheVersion(r)
		case recCacheWithdrawn:
			e.replayCacheWithdrawn(r)
		case recCodeUsed:
			var u usedCode
			if json.Unmarshal(r.Data, &u) == nil && u.Doc != "" {
				e.used[u.Doc] = u
			}
		case journal.TypeIntent:
			// An offline pickup's intent is its code's single-use mark
			// (journal.Intent.Offline); the marks journaled after it
			// (outcome, release) replace it.
			if in := r.Intent; in != nil && in.Offline && in.Purpose == PurposePickup && in.Ref != "" {
				e.used[in.Ref] = usedCode{Doc: in.Ref, Pending: true, CodeRef: in.CodeRef}
			}
		case recPINLimits, recLockout, recPINClock:
			e.replayPINLimits(r)
		case recDOBFailure, recCodeLocked:
			e.replayDOB(r)
		case recCommand:
			var c struct {
				ID      string    `json:"id"`
				Expires time.Time `json:"expires"`
			}
			if json.Unmarshal(r.Data, &c) == nil && c.ID != "" {
				e.commands[c.ID] = c.Expires
			}
		case recCommandReported:
			var c struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(r.Data, &c) == nil && c.ID != "" {
				e.reported[c.ID] = true
			}
		}
	}
}

// Keep is the journal's compaction rule for the engine's own records; pass
// it as journal.Options.Keep (through a closure, as the journal is opened
// before the engine exists).
func (e *Engine) Keep(r journal.Record) bool {
	now := e.now()
	switch r.Type {
	case recCodeUsed:
		var u usedCode
		if json.Unmarshal(r.Data, &u) != nil {
			return false
		}
		if now.Sub(r.At) > usedRetention {
			return false // long past any code's validity
		}
		e.mu.Lock()
		cur, ok := e.used[u.Doc]
		e.mu.Unlock()
		// Only the latest mark of a document matters.
		return ok && cur.Released == u.Released && cur.Pending == u.Pending && cur.GraceUntil.Equal(u.GraceUntil)
	case recPINLimits, recLockout, recPINClock:
		return e.keepPINLimits(r)
	case recDOBFailure, recCodeLocked:
		return e.keepDOB(r)
	case recJournalFull:
		return e.keepJournalFull(r)
	case recCacheUntrusted:
		return e.keepRaised(r, &e.cacheAlarm)
	case recCacheVersion:
		return r.Seq >= e.cacheMark.seq.Load()
	case recCacheWithdrawn:
		return e.keepCacheWithdrawn(r)
	case recCommand, recCommandReported:
		var c struct {
			Expires time.Time `json:"expires"`
		}
		return json.Unmarshal(r.Data, &c) == nil && now.Before(c.Expires.Add(commandRetention))
	}
	return false
}

func (e *Engine) compByLock(a hardware.Address) *comp {
	for _, c := range e.comps {
		if c.lock == a && c.slot < 0 {
			return c
		}
	}
	return nil
}

// compFor finds the compartment the backend or cache named: by address on
// a locker, by board and slot on an automaton.
func (e *Engine) compFor(addr *wire.Address, slot *int) *comp {
	if addr == nil {
		return nil
	}
	for _, c := range e.comps {
		if e.cfg.Kind == config.KindAutomaton {
			// The backend names an automaton's compartment {board,
			// channel: slot}; an explicit slot wins.
			s := addr.Channel
			if slot != nil {
				s = *slot
			}
			if c.cfg.Board == addr.Board && s == c.slot {
				return c
			}
			continue
		}
		if c.lock == *addr {
			return c
		}
	}
	return nil
}

// boardError counts a failed exchange with board b.
func (e *Engine) boardError(b int) {
	e.mu.Lock()
	e.boardErrs[b]++
	e.mu.Unlock()
	e.m.boardErrs.WithLabelValues(strconv.Itoa(b)).Inc()
}

// wireAddr is the compartment's address as the backend knows it: the lock
// on a locker, {board, channel: slot} on an automaton (as in code_sync
// entries and verify and staff answers).
func (c *comp) wireAddr() hardware.Address {
	if c.slot >= 0 {
		return hardware.Address{Board: c.cfg.Board, Channel: c.slot}
	}
	return c.lock
}

func (e *Engine) compByNumber(n int) *comp {
	for _, c := range e.comps {
		if c.cfg.Number == n {
			return c
		}
	}
	return nil
}

// Changed returns a channel closed at the next screen change.
func (e *Engine) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

// Screen returns what the kiosk shows now.
func (e *Engine) Screen() Screen {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.screen
	if e.staff != nil && e.now().After(e.staff.expires) {
		e.staff = nil
	}
	if e.staff != nil {
		s.Staff, s.StaffRole = e.staff.name, e.staff.role
	}
	if s.State != StateIdle && s.State != StateStaff {
		until, final := e.idleUntilLocked()
		if e.now().After(until) && !e.busyLocked() {
			st := StateIdle
			if e.staff != nil {
				st = StateStaff
			}
			e.setScreenLocked(st, 0, e.cfg.Kiosk.DefaultLang)
			s = e.screen
		} else {
			u := until.UTC()
			s.IdleUntil, s.IdleFinal = &u, final
		}
	}
	return s
}

// idleUntilLocked is when the screen goes back to idle: timeouts.session
// after it came or after the last activity reported on it, at most
// SessionCap (or timeouts.session when longer) after it came; final when
// that bound is reached.
func (e *Engine) idleUntilLocked() (until time.Time, final bool) {
	last := e.screen.At
	if e.touched.After(last) {
		last = e.touched
	}
	until = last.Add(e.cfg.Timeouts.Session)
	limit := e.screen.At.Add(max(SessionCap, e.cfg.Timeouts.Session))
	if !until.Before(limit) {
		return limit, true
	}
	return until, false
}

// Touch reports activity on the kiosk screen seq (someone taps its
// keypad, or "I am still here"): its idle return is put off to
// timeouts.session from now, at most SessionCap after the screen came.
// Activity on a screen that is no longer shown (another seq), on idle or
// staff screens, or past the screen's deadline changes nothing. It
// returns the screen (Screen).
func (e *Engine) Touch(seq uint64) Screen {
	s := e.Screen() // applies timeouts.session first
	if s.Seq == seq && s.State != StateIdle && s.State != StateStaff {
		e.mu.Lock()
		if e.screen.Seq == seq {
			e.touched = e.now()
		}
		e.mu.Unlock()
		s = e.Screen()
	}
	return s
}

func (e *Engine) busyLocked() bool { return len(e.active) > 0 }

// Operations is the number of door operations under way (Diagnostics'
// busy compartments, counted): kluisd's /healthz says it without naming
// the compartments.
func (e *Engine) Operations() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.active)
}

func (e *Engine) setScreen(state string, n int, lang string) Screen {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.setScreenLocked(state, n, lang)
}

// setWrongCode shows wrong_code with the way the refused code was given
// and, after a PIN, how long one more wrong PIN would lock PIN entry
// (lastTry, 0: it would not).
func (e *Engine) setWrongCode(method wire.Method, lastTry time.Duration, lang string) Screen {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.setScreenLocked(StateWrongCode, 0, lang)
	e.screen.Method = method
	if lastTry > 0 {
		e.screen.LastTryLockS = int(math.Ceil(lastTry.Seconds()))
	}
	return e.screen
}

// setScreenUntil shows state, whose messages say when a lock ends: at
// until ({t}, UntilText).
func (e *Engine) setScreenUntil(state string, until time.Time, lang string) Screen {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.setScreenLocked(state, 0, lang)
	now := e.now().In(time.Local) // the device's local time
	for l, m := range e.screen.Messages {
		e.screen.Messages[l] = strings.ReplaceAll(m, "{t}", UntilText(l, until, now))
	}
	e.screen.Message = e.screen.Messages[e.screen.Lang]
	u := until.UTC()
	e.screen.Until = &u
	return e.screen
}

func (e *Engine) setScreenLocked(state string, n int, lang string) Screen {
	if !ValidLang(lang) {
		lang = e.cfg.Kiosk.DefaultLang
	}
	mins := int(e.cfg.Timeouts.Grace / time.Minute)
	msgs := map[string]string{}
	for _, l := range langs {
		msgs[l] = Message(state, l, n, mins)
	}
	e.screen = Screen{State: state, Compartment: n, Lang: lang, Message: msgs[lang], Messages: msgs,
		Seq: e.screen.Seq + 1, At: e.now().UTC()}
	e.touched = time.Time{}
	if state == StateLockedOut || state == StateLockoutCapped {
		if until := e.pinLockedUntil(); !until.IsZero() {
			e.screen.RetryAfterS = int(until.Sub(e.pinNow()).Seconds()) + 1
		}
	}
	if e.staff != nil {
		e.screen.Staff, e.screen.StaffRole = e.staff.name, e.staff.role
	}
	close(e.changed)
	e.changed = make(chan struct{})
	return e.screen
}

// emit journals a wire event durably (and so queues it for the backend).
// A journal failure is returned: the caller keeps what the event reports
// (the driver delivers a hardware event again). Events that nobody would
// report again go through emitKept. While journal writes are kept, emit
// refuses (errJournalBehind) so that nothing is journaled before them.
func (e *Engine) emit(ev wire.Event) error {
	ev, b, err := e.stamp(ev)
	if err != nil {
		return err
	}
	e.keptMu.Lock()
	defer e.keptMu.Unlock()
	if n := len(e.kept); n > 0 {
		return fmt.Errorf("engine: %s waits for %d kept journal writes: %w", ev.Kind, n, errJournalBehind)
	}
	if err := e.journalEvent(ev, b); err != nil {
		e.log.Error("journal append failed", "kind", ev.Kind, "err", err)
		e.m.journalErrors.Inc()
		return err
	}
	return nil
}

// stamp gives ev its id and time and encodes it.
func (e *Engine) stamp(ev wire.Event) (wire.Event, []byte, error) {
	ev.ID = wire.NewID(e.now())
	ev.At = e.now().UTC()
	b, err := wire.Encode(&ev)
	if err != nil {
		e.log.Error("event does not encode", "kind", ev.Kind, "err", err)
		return ev, nil, fmt.Errorf("engine: %w", err)
	}
	return ev, b, nil
}

// errJournalBehind is emit's answer while earlier journal writes are
// kept in memory (a full disk): the event is journaled after them.
var errJournalBehind = errors.New("earlier journal writes are kept in memory")

// maxKept bounds the journal writes kept in memory while the journal
// refuses writes; beyond it an event is lost (logged).
const maxKept = 10000

// emitKept journals ev like emit, but an event the journal refuses (a
// full disk) is kept in memory, with its id and time, and journaled (and
// so sent) as soon as the journal takes writes again, after the writes
// kept before it: an operation's outcome is decided once and nobody
// reports it again, so it must not be dropped. Found by the gauntlet
// (bench/chaos, seed 303, disk_full): a pickup whose intent still fitted
// on the full disk lost its pickup_completed, and the backend kept the
// taken document waiting. A kluisd killed meanwhile loses the kept
// events, but then the operation's intent is still open (its end is kept
// after them) and the restart decides the operation again.
//
// An alarm about the journal itself (journal_full, or its clear) that
// the journal does not take now would wait in memory, and so not reach
// the backend, for as long as the journal fails (the outbox is the
// journal): it is also published out of band (Options.OutOfBand), with
// the id it is journaled with later, so the backend records it once.
func (e *Engine) emitKept(ev wire.Event) {
	ev, b, err := e.stamp(ev)
	if err != nil {
		return
	}
	written := e.keep(string(ev.Kind), func() error { return e.journalEvent(ev, b) })
	if written {
		return
	}
	if ev.Kind == wire.EvAlarm || ev.Kind == wire.EvAlarmCleared {
		// Raised (or cleared) all the same: the technician's screen
		// shows it now, not once it is journaled (journalEvent notes
		// an alarm once: by its id; a clearing marks it once).
		e.noteAlarm(ev)
	}
	if ev.Alarm == wire.AlarmJournalFull && e.o.OutOfBand != nil {
		e.o.OutOfBand(ev.ID, b)
	}
}

// keep runs write now, unless earlier writes are kept (it goes after
// them), and keeps it for keepLoop when the journal refuses it; it
// reports whether write was done now.
func (e *Engine) keep(what string, write func() error) (written bool) {
	written, err := e.keepLocked(what, write)
	if err != nil {
		e.journalFailed(err) // not under keptMu: it raises an alarm
	}
	return written
}

// keepLocked is keep under keptMu; it returns the journal's error when
// write was tried and failed.
func (e *Engine) keepLocked(what string, write func() error) (written bool, failed error) {
	e.keptMu.Lock()
	defer e.keptMu.Unlock()
	if len(e.kept) == 0 {
		err := write()
		if err == nil {
			return true, nil
		}
		e.log.Error("journal write failed: kept in memory until the journal takes writes again", "what", what, "err", err)
		e.m.journalErrors.Inc()
		failed = err
	}
	if len(e.kept) >= maxKept {
		e.log.Error("journal write lost: too many kept writes", "what", what, "kept", len(e.kept))
		return false, failed
	}
	e.kept = append(e.kept, keptWrite{what: what, write: write})
	e.wakeKeep()
	return false, failed
}

func (e *Engine) wakeKeep() {
	select {
	case e.keptWake <- struct{}{}:
	default:
	}
}

// flushKept writes the kept journal writes in order until one fails; it
// reports whether none is left.
func (e *Engine) flushKept() bool {
	e.keptMu.Lock()
	defer e.keptMu.Unlock()
	n := 0
	for len(e.kept) > 0 {
		if err := e.kept[0].write(); err != nil {
			break
		}
		e.kept = e.kept[1:]
		n++
	}
	if n > 0 {
		e.log.Warn("kept journal writes written", "written", n, "still_kept", len(e.kept))
	}
	return len(e.kept) == 0
}

// keepLoop retries the kept journal writes every keepRetry until ctx
// ends. It waits on one timer of its own (stopped on the way out), like
// the engine's other waits, so that a test's synctest bubble drives it:
// the engine's Clock tells the time, it makes no timers.
func (e *Engine) keepLoop(ctx context.Context) {
	retry := time.NewTimer(keepRetry)
	retry.Stop()
	defer retry.Stop()
	hold := time.NewTimer(journalHold)
	hold.Stop()
	defer hold.Stop()
	for {
		select {
		case <-ctx.Done():
			e.keptMu.Lock()
			if n := len(e.kept); n > 0 {
				e.log.Error("stopping with journal writes kept in memory: lost (unfinished operations are decided again at the next start)", "kept", n)
			}
			e.keptMu.Unlock()
			return
		case <-hold.C:
			if e.journalHeld() {
				hold.Reset(journalHold)
			}
			continue
		case <-e.keptWake:
		}
		for !e.flushKept() {
			retry.Reset(keepRetry)
			select {
			case <-ctx.Done():
			case <-retry.C:
			}
			if ctx.Err() != nil {
				break
			}
		}
		if ctx.Err() == nil && e.journalWorks() {
			hold.Reset(journalHold) // from now: a failure meanwhile began it again
		}
	}
}

// keepRetry is how often kept journal writes are tried again.
const keepRetry = 500 * time.Millisecond

// KeptWrites is how many journal writes wait in memory for the journal to
// take writes again (a full disk); 0 normally.
func (e *Engine) KeptWrites() int {
	e.keptMu.Lock()
	defer e.keptMu.Unlock()
	return len(e.kept)
}

// journalEvent appends an encoded event to the journal and counts it.
func (e *Engine) journalEvent(ev wire.Event, b []byte) error {
	if _, err := e.j.AppendEvent(journal.Event{ID: ev.ID, Kind: string(ev.Kind), At: ev.At, Payload: b}); err != nil {
		return err
	}
	e.m.events.WithLabelValues(string(ev.Kind)).Inc()
	if ev.Kind == wire.EvAlarm {
		e.m.alarms.WithLabelValues(string(ev.Alarm)).Inc()
		e.log.Warn("alarm", "alarm", ev.Alarm, "detail", ev.Detail)
		e.noteAlarm(ev)
	}
	if ev.Kind == wire.EvAlarmCleared {
		e.noteAlarm(ev)
	}
	return nil
}

func (e *Engine) alarm(kind wire.AlarmKind, addr *hardware.Address, board *int, detail string) {
	e.emitKept(wire.Event{Kind: wire.EvAlarm, Alarm: kind, Addr: addr, Board: board, Detail: cutText(detail, maxEventDetail)})
}

// maxEventDetail is the longest detail an event may carry (wire), in bytes.
const maxEventDetail = 256

// cutText cuts s to at most n bytes, on a character boundary: a longer
// detail would make its event invalid, and the event (an alarm!) lost.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

func (e *Engine) appendData(typ string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = e.j.Append(journal.Record{Type: typ, Data: b})
	return err
}

func addrPtr(a hardware.Address) *hardware.Address { return &a }
func intPtr(i int) *int                            { return &i }

// maxAlarmNotes is how many recent alarms Diagnostics shows.
const maxAlarmNotes = 10

// AlarmNote is one alarm the engine raised since it started, as the
// technician's screen shows it (the detail text stays in the event).
type AlarmNote struct {
	Alarm wire.AlarmKind `json:"alarm"`
	// Compartment as people count, 0 when the alarm is not about one.
	Compartment int `json:"compartment,omitempty"`
	// Board, when the alarm is about a board.
	Board *int      `json:"board,omitempty"`
	At    time.Time `json:"at"`
	// Cleared is when the device cleared it (alarm_cleared of the same
	// kind and place), nil while it holds or for a kind never cleared.
	Cleared *time.Time `json:"cleared,omitempty"`
	// id is the alarm event's: an alarm kept in memory is noted when
	// raised and not again when journaled.
	id string
}

// noteAlarm keeps ev (an alarm) in the recent alarms, or marks the notes
// of the alarm ev (an alarm_cleared) clears as cleared: the technician's
// screen must not list an alarm the device cleared as if it held.
func (e *Engine) noteAlarm(ev wire.Event) {
	n := AlarmNote{Alarm: ev.Alarm, Board: ev.Board, At: ev.At, id: ev.ID}
	if ev.Addr != nil {
		for _, c := range e.comps {
			if c.lock == *ev.Addr && c.slot < 0 {
				n.Compartment = c.cfg.Number
			}
		}
		if n.Compartment == 0 && n.Board == nil {
			n.Board = intPtr(ev.Addr.Board)
		}
	}
	e.mu.Lock()
	if ev.Kind == wire.EvAlarmCleared {
		at := ev.At
		for i := range e.alarms {
			o := &e.alarms[i]
			if o.Cleared == nil && !o.At.After(at) && o.Alarm == n.Alarm && o.Compartment == n.Compartment &&
				(o.Board == nil) == (n.Board == nil) && (o.Board == nil || *o.Board == *n.Board) {
				o.Cleared = &at
			}
		}
		e.mu.Unlock()
		return
	}
	for _, o := range e.alarms {
		if n.id != "" && o.id == n.id {
			e.mu.Unlock()
			return // noted when it was kept (emitKept)
		}
	}
	e.alarms = append(e.alarms, n)
	if len(e.alarms) > maxAlarmNotes {
		e.alarms = append([]AlarmNote(nil), e.alarms[len(e.alarms)-maxAlarmNotes:]...)
	}
	e.mu.Unlock()
}
