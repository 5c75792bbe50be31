package wire

import (
	"fmt"
	"log/slog"
	"time"

	"kluis/hardware"
)

// Version is the payload version this package speaks; every payload carries
// it as "v".
const Version = 1

// Message is one decoded, valid payload: *Presence, *Heartbeat, *Event,
// *Ack, *Command, *CommandResult, *VerifyRequest, *VerifyResponse,
// *StaffRequest or *StaffResponse.
type Message interface {
	// MessageKind is the topic kind the message travels on.
	MessageKind() Kind
	// Validate reports the first rule the message breaks.
	Validate() error
	setVersion()
}

// Address is a compartment's lock address, as in package hardware: board
// and channel counted from 0. It is an alias, so values pass straight to a
// hardware.Driver.
type Address = hardware.Address

// PresenceState is "online" or "offline".
type PresenceState string

// Presence states.
const (
	Online  PresenceState = "online"
	Offline PresenceState = "offline"
)

// Presence is retained on the presence topic: "online" after connecting,
// "offline" as the last will and on a clean shutdown.
type Presence struct {
	V     int           `json:"v"`
	State PresenceState `json:"state"`
	// At is when the device published it; absent in the last will (which
	// is composed at connect time).
	At *time.Time `json:"at,omitempty"`
	// Software is the kluisd version.
	Software string `json:"software,omitempty"`
}

// Heartbeat is the periodic telemetry of a device.
type Heartbeat struct {
	V  int       `json:"v"`
	At time.Time `json:"at"`
	// UptimeS is seconds since kluisd started.
	UptimeS int64 `json:"uptime_s"`
	// Backlog is the number of journal events not yet acknowledged.
	Backlog int `json:"backlog"`
	// OfflineCache is the number of entries in the offline code cache and
	// CacheVersion the version of the last code sync applied.
	OfflineCache int   `json:"offline_cache"`
	CacheVersion int64 `json:"cache_version,omitempty"`
	// Boards is the health of every lock board.
	Boards []BoardHealth `json:"boards,omitempty"`
	// Doors is the state of every channel.
	Doors    []hardware.ChannelState `json:"doors,omitempty"`
	Software string                  `json:"software,omitempty"`
}

// BoardHealth is one board's health in a heartbeat.
type BoardHealth struct {
	Address  int    `json:"address"`
	Online   bool   `json:"online"`
	Firmware string `json:"firmware,omitempty"`
	// Errors counts failed exchanges with the board since kluisd started.
	Errors int64 `json:"errors"`
	// Reboots counts the board's restarts kluisd noticed (a new boot id)
	// and WatchdogRelocks the times the board's own watchdog relocked every
	// lock (kluisd was silent), both since kluisd started.
	Reboots         int64 `json:"reboots"`
	WatchdogRelocks int64 `json:"watchdog_relocks"`
}

// EventKind names what an Event reports.
type EventKind string

// The event kinds.
const (
	EvDoorOpened         EventKind = "door_opened"
	EvDoorClosed         EventKind = "door_closed"
	EvItemPlaced         EventKind = "item_placed"
	EvItemRemoved        EventKind = "item_removed"
	EvPickupCompleted    EventKind = "pickup_completed"     // the citizen took the document
	EvPickupNotCollected EventKind = "pickup_not_collected" // the door opened and closed, the item is still there
	EvOpenNotDetected    EventKind = "open_not_detected"    // unlocked, but the door never opened
	EvAlarm              EventKind = "alarm"
	EvAlarmCleared       EventKind = "alarm_cleared"
	EvLoaded             EventKind = "loaded"    // staff put a document in its compartment
	EvRetrieved          EventKind = "retrieved" // staff took a document back out
	// EvLockoutCleared: staff lifted the device's PIN lockout, at the
	// kiosk in staff mode (staff_id) or through the backend's
	// clear_lockout command (command_id); detail says whether PIN entry
	// was locked and whether the daily cap still holds. Audited by the
	// backend.
	EvLockoutCleared EventKind = "lockout_cleared"
	// EvCodeLocked: the device locked a code offline after too many
	// wrong dates of birth with its PIN (document_id, code_ref); the
	// backend locks it too, until the counter re-issues it.
	EvCodeLocked EventKind = "code_locked"
	// EvCommandRefused: the device refused a command (command_id) that
	// was unsigned, badly signed, signed for another device, expired or
	// already carried out (detail says which).
	EvCommandRefused EventKind = "command_refused"
	// EvResponseRefused: the device refused the backend's answer
	// (request_id) to its own verify or staff request because it was
	// unsigned, badly signed, signed for another device or request,
	// changed or expired (detail says which); it acted on nothing.
	EvResponseRefused EventKind = "response_refused"
	// EvBoardRebooted: a lock board restarted (board; detail: the boot
	// ids). Every lock was relocked and its unread events were lost.
	EvBoardRebooted EventKind = "board_rebooted"
	// EvBoardWatchdog: a lock board's own watchdog relocked every lock
	// because kluisd was silent for its timeout (board).
	EvBoardWatchdog EventKind = "board_watchdog"
	// EvOfflineCodeRefused: verifying offline, the device refused a
	// genuine code (document_id, addr, method, code_ref) because it
	// withdrew that code itself: its compartment was emptied, reloaded
	// or opened for no document at the device since the last sync, so
	// the device no longer knows that document to be behind the door.
	// Nothing opened; audited by the backend.
	EvOfflineCodeRefused EventKind = "offline_code_refused"
)

// EventKinds lists every event kind.
func EventKinds() []EventKind {
	return []EventKind{EvDoorOpened, EvDoorClosed, EvItemPlaced, EvItemRemoved,
		EvPickupCompleted, EvPickupNotCollected, EvOpenNotDetected, EvAlarm,
		EvAlarmCleared, EvLoaded, EvRetrieved, EvLockoutCleared, EvCodeLocked, EvCommandRefused,
		EvBoardRebooted, EvBoardWatchdog, EvResponseRefused, EvOfflineCodeRefused}
}

// Urgent reports whether events of kind go ahead of a device's backlog:
// alarms and their clearing (so that they keep their order). kluisd sends
// them first, at a pace of their own; kluis-backend counts them against a
// budget of their own (PeekEventKind), so a week's backlog of other
// events holds back no alarm.
func (k EventKind) Urgent() bool { return k == EvAlarm || k == EvAlarmCleared }

// AlarmKind names an alarm.
type AlarmKind string

// The alarm kinds.
const (
	AlarmDoorLeftOpen       AlarmKind = "door_left_open"
	AlarmForcedDoor         AlarmKind = "forced_door"
	AlarmBoardUnreachable   AlarmKind = "board_unreachable"
	AlarmSensorDisagreement AlarmKind = "sensor_disagreement"
	AlarmBruteForceLockout  AlarmKind = "brute_force_lockout"
	AlarmMechanismFault     AlarmKind = "mechanism_fault"
	// AlarmPulseUncertain: a pulse got no answer or was interrupted by a
	// restart, so the lock may or may not have been energised (addr).
	AlarmPulseUncertain AlarmKind = "pulse_uncertain"
	// AlarmJournalDamaged: start-up found a damaged journal record before
	// the end; the records after it were moved aside (no addr, no board).
	AlarmJournalDamaged AlarmKind = "journal_damaged"
	// AlarmBoardRebooting: a lock board restarted 3 times within an hour
	// (board); cleared after an hour without a restart.
	AlarmBoardRebooting AlarmKind = "board_rebooting"
	// AlarmJournalFull: the journal's disk is full; it gave up its reserve
	// of disk space (or could not make it at start-up), so no door
	// operation starts (no addr, no board); cleared when the reserve is
	// made again.
	AlarmJournalFull AlarmKind = "journal_full"
	// AlarmOfflineCacheUntrusted: start-up refused the offline cache
	// file (not the backend's signed code syncs for this device:
	// tampered, signed with another key, or the unsigned file of kluisd
	// before 2026-12-07); it was moved aside and no code opens offline
	// (no addr, no board). Cleared once a full signed code sync is
	// applied; raised again at each start until then.
	AlarmOfflineCacheUntrusted AlarmKind = "offline_cache_untrusted"
)

// AlarmKinds lists every alarm kind.
func AlarmKinds() []AlarmKind {
	return []AlarmKind{AlarmDoorLeftOpen, AlarmForcedDoor, AlarmBoardUnreachable,
		AlarmSensorDisagreement, AlarmBruteForceLockout, AlarmMechanismFault,
		AlarmPulseUncertain, AlarmJournalDamaged, AlarmBoardRebooting, AlarmJournalFull, AlarmOfflineCacheUntrusted}
}

// Method is how a citizen identified: "qr" or "pin".
type Method string

// Methods.
const (
	MethodQR  Method = "qr"
	MethodPIN Method = "pin"
)

// Event is something that happened at a device, kept in the device's
// journal until acknowledged. Which optional fields are required depends on
// Kind:
//
//	door_opened, door_closed, item_placed, item_removed, open_not_detected: addr
//	pickup_completed, pickup_not_collected: addr, document_id (method optional)
//	loaded, retrieved: addr, document_id, staff_id
//	alarm, alarm_cleared: alarm (addr for door alarms, board for board_unreachable)
//	lockout_cleared: staff_id or command_id
//	code_locked: document_id (code_ref optional)
//	command_refused: command_id
//	response_refused: request_id
//	offline_code_refused: addr, document_id (method, code_ref optional)
type Event struct {
	V    int       `json:"v"`
	ID   string    `json:"id"`
	Kind EventKind `json:"kind"`
	At   time.Time `json:"at"`
	// Addr is the compartment concerned.
	Addr *Address `json:"addr,omitempty"`
	// Board is the board concerned by a board-wide alarm.
	Board *int `json:"board,omitempty"`
	// Slot is an automaton's carousel slot, where one is concerned.
	Slot *int `json:"slot,omitempty"`
	// DocumentID is the backend's id of the document concerned.
	DocumentID string `json:"document_id,omitempty"`
	// Method is how the citizen identified (pickups).
	Method Method `json:"method,omitempty"`
	// Offline is true when the pickup was verified from the offline cache.
	Offline bool `json:"offline,omitempty"`
	// CodeRef names the code a device verified offline: the qr_hash of its
	// offline cache entry (pickupcode.QRHash of the code id; no secret).
	// On offline pickup events, code_locked and offline_code_refused.
	CodeRef string `json:"code_ref,omitempty"`
	// StaffID is the staff member (loaded, retrieved; from a staff login).
	StaffID string `json:"staff_id,omitempty"`
	// CommandID is the command that caused the event, if one did.
	CommandID string `json:"command_id,omitempty"`
	// RequestID is the device's verify or staff request whose answer was
	// refused (response_refused).
	RequestID string `json:"request_id,omitempty"`
	// Alarm is the alarm kind (alarm, alarm_cleared).
	Alarm AlarmKind `json:"alarm,omitempty"`
	// Detail is a short human text; never a secret.
	Detail string `json:"detail,omitempty"`
}

// Ack acknowledges events and command results at application level: each
// id named is an event the backend committed (now or before), which may
// leave the device's journal, or a command whose result the backend
// recorded (or had recorded, or does not know), which the device no longer
// sends again. A device ignores an id it does not hold.
type Ack struct {
	V   int      `json:"v"`
	IDs []string `json:"ids"`
}

// MaxAckIDs is the most ids one Ack carries.
const MaxAckIDs = 256

// CommandKind names a command.
type CommandKind string

// The command kinds.
const (
	CmdOpen     CommandKind = "open"      // remote open of addr (technician, support)
	CmdConfig   CommandKind = "config"    // settings to apply
	CmdCodeSync CommandKind = "code_sync" // offline verification material
	// CmdClearLockout lifts the device's own PIN lockout (the one it
	// journals), after staff lifted the backend's (reason and by: who and
	// why, audited by the backend); the device reports lockout_cleared
	// (docs/asyncapi.yaml).
	CmdClearLockout CommandKind = "clear_lockout"
)

// CommandKinds lists every command kind.
func CommandKinds() []CommandKind {
	return []CommandKind{CmdOpen, CmdConfig, CmdCodeSync, CmdClearLockout}
}

// Command is an order from the backend. A device carries out a command only
// when Sig is the backend's signature of it for this device (SignCommand,
// VerifyCommand), at most once (by ID) and only before Expires (within
// CommandSkew); otherwise it answers with a CommandResult of status
// "rejected", "duplicate" or "expired" and reports an event
// command_refused, which the backend audits.
type Command struct {
	V       int         `json:"v"`
	ID      string      `json:"id"`
	Kind    CommandKind `json:"kind"`
	Issued  time.Time   `json:"issued"`
	Expires time.Time   `json:"expires"`
	// Addr is the compartment to open (open).
	Addr *Address `json:"addr,omitempty"`
	// Reason is why (audited), e.g. the ticket of a remote open.
	Reason string `json:"reason,omitempty"`
	// By is the backend user who issued the command.
	By string `json:"by,omitempty"`
	// Settings are configuration keys and values (config).
	Settings map[string]string `json:"settings,omitempty"`
	// Codes is offline verification material (code_sync).
	Codes *CodeSync `json:"codes,omitempty"`
	// Sig is the backend's signature of the command for this device
	// (SignCommand, "KC1.<claims>.<signature>"). A device carries out no
	// command without a valid one (VerifyCommand).
	Sig string `json:"sig,omitempty"`
}

// CodeSync carries offline verification material. Hashes are opaque to
// this package (package backend/codes defines them); plain codes never
// travel in a CodeSync.
type CodeSync struct {
	// Version increases with every sync; a device ignores older ones.
	Version int64 `json:"version"`
	// Full replaces the whole cache; otherwise Entries are added or
	// replaced and Revoke removed.
	Full bool `json:"full"`
	// Entries may be empty (a full sync of nothing, or a revoke only).
	Entries []CodeEntry `json:"entries"`
	// Revoke lists document ids whose entries must go.
	Revoke []string `json:"revoke,omitempty"`
}

// CodeEntry is the offline material of one document.
type CodeEntry struct {
	DocumentID string    `json:"document_id"`
	Addr       Address   `json:"addr"`
	Expires    time.Time `json:"expires"`
	// QRHash and PINHash are keyed hashes; at least one is set.
	QRHash  string `json:"qr_hash,omitempty"`
	PINHash string `json:"pin_hash,omitempty"`
	// SecondFactor: a PIN pickup also needs the birth date.
	SecondFactor bool `json:"second_factor,omitempty"`
}

// CommandStatus is the outcome of a command.
type CommandStatus string

// Command outcomes.
const (
	StatusDone      CommandStatus = "done"
	StatusFailed    CommandStatus = "failed"
	StatusExpired   CommandStatus = "expired"
	StatusDuplicate CommandStatus = "duplicate"
	StatusRejected  CommandStatus = "rejected" // not valid for this device
	// StatusUncertain: kluisd stopped (a kill, a power cut) after it
	// journaled the command's id and before it journaled its result; at
	// its restart it cannot tell whether the command was carried out. The
	// door's own events (door_opened with the command's id) say what
	// happened to a remote open.
	StatusUncertain CommandStatus = "uncertain"
)

// CommandStatuses lists every command status.
func CommandStatuses() []CommandStatus {
	return []CommandStatus{StatusDone, StatusFailed, StatusExpired, StatusDuplicate, StatusRejected, StatusUncertain}
}

// CommandResult reports what became of a command.
type CommandResult struct {
	V      int           `json:"v"`
	ID     string        `json:"id"` // the command's id
	Status CommandStatus `json:"status"`
	At     time.Time     `json:"at"`
	Detail string        `json:"detail,omitempty"`
}

// VerifyRequest asks the backend whether a code opens a compartment of this
// device. ID is a correlation id the response repeats.
type VerifyRequest struct {
	V      int       `json:"v"`
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Method Method    `json:"method"`
	// Token is the scanned QR token (qr).
	Token string `json:"token,omitempty"`
	// PIN is the typed PIN (pin); BirthDate "YYYY-MM-DD" is the second
	// factor when asked for.
	PIN       string `json:"pin,omitempty"`
	BirthDate string `json:"birth_date,omitempty"`
}

// LogValue redacts the code, PIN and birth date.
func (r VerifyRequest) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("method", string(r.Method)),
		slog.Bool("birth_date", r.BirthDate != ""))
}

// VerifyResult is the outcome of a verification; every value except ok is
// safe to show at the kiosk.
type VerifyResult string

// Verification outcomes.
const (
	VerifyOK                   VerifyResult = "ok"
	VerifyWrongCode            VerifyResult = "wrong_code"
	VerifyExpired              VerifyResult = "expired"
	VerifyAlreadyCollected     VerifyResult = "already_collected"
	VerifyDeviceLockedOut      VerifyResult = "device_locked_out"
	VerifySecondFactorRequired VerifyResult = "second_factor_required"
	VerifyUnavailable          VerifyResult = "unavailable" // backend trouble; try again or use the cache
	// VerifyPending: the code was accepted before, but its document is
	// still in its compartment and the device has not reported on it
	// (kluisd may have died before opening the door); the backend gives
	// the code back after a few minutes. The kiosk says "try again in a
	// few minutes, or call 1777".
	VerifyPending VerifyResult = "pending"
)

// VerifyResults lists every verification outcome.
func VerifyResults() []VerifyResult {
	return []VerifyResult{VerifyOK, VerifyWrongCode, VerifyExpired, VerifyAlreadyCollected,
		VerifyDeviceLockedOut, VerifySecondFactorRequired, VerifyUnavailable, VerifyPending}
}

// VerifyResponse answers a VerifyRequest. With result ok, DocumentID and
// Addr (and Slot on an automaton) say what to open.
type VerifyResponse struct {
	V          int          `json:"v"`
	ID         string       `json:"id"`
	Result     VerifyResult `json:"result"`
	DocumentID string       `json:"document_id,omitempty"`
	Addr       *Address     `json:"addr,omitempty"`
	Slot       *int         `json:"slot,omitempty"`
	// RetryAfterS is how long a locked-out device should refuse codes.
	RetryAfterS int `json:"retry_after_s,omitempty"`
	// Sig is the backend's signature of this answer for this device and
	// request (SignResponse, "KR1.<claims>.<signature>", or
	// SignResponseGroup, "KR2.<claims>.<path>.<signature>"). kluisd acts on
	// no answer without a valid one (VerifyResponseSig).
	Sig string `json:"sig,omitempty"`
}

// StaffOp is a staff operation at the kiosk.
type StaffOp string

// Staff operations.
const (
	StaffLogin   StaffOp = "login"   // badge or staff PIN -> session
	StaffReserve StaffOp = "reserve" // session + document number -> compartment to load
	// StaffRetrieve: session + document number of a document in a
	// compartment of this device (loaded, notified or expired) -> its
	// compartment, to take the document back out.
	StaffRetrieve StaffOp = "retrieve"
	StaffLogout   StaffOp = "logout" // session ends
	// StaffTestOpen: session + addr of the compartment a technician wants
	// to test-open -> ok (technicians and admins; audited) or denied. The
	// device opens only after ok; without an answer it does not open.
	StaffTestOpen StaffOp = "test_open"
	// StaffClearLockout: session -> ok when the logged-in user (staff,
	// technician or admin) may lift the device's PIN lockout; the backend
	// lifts its own burst lock (audited device.pin_unlocked) and the
	// device then lifts its journaled one.
	StaffClearLockout StaffOp = "clear_lockout"
)

// StaffOps lists every staff operation.
func StaffOps() []StaffOp {
	return []StaffOp{StaffLogin, StaffReserve, StaffRetrieve, StaffLogout, StaffTestOpen, StaffClearLockout}
}

// StaffRequest is a staff operation the kiosk asks the backend for.
type StaffRequest struct {
	V  int       `json:"v"`
	ID string    `json:"id"`
	Op StaffOp   `json:"op"`
	At time.Time `json:"at"`
	// Badge or PIN identify the staff member (login).
	Badge string `json:"badge,omitempty"`
	PIN   string `json:"pin,omitempty"`
	// Session is the token from a login (reserve, logout).
	Session string `json:"session,omitempty"`
	// DocumentNumber is the number printed on the document (reserve).
	DocumentNumber string `json:"document_number,omitempty"`
	// Addr is the compartment of a test-open.
	Addr *Address `json:"addr,omitempty"`
}

// LogValue redacts the badge, PIN and session.
func (r StaffRequest) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("op", string(r.Op)))
}

// StaffRole is the role of a user logged in at a kiosk.
type StaffRole string

// Staff roles.
const (
	RoleStaff      StaffRole = "staff"
	RoleTechnician StaffRole = "technician"
	RoleAdmin      StaffRole = "admin"
)

// StaffResult is the outcome of a staff operation.
type StaffResult string

// Staff operation outcomes.
const (
	StaffOK             StaffResult = "ok"
	StaffDenied         StaffResult = "denied"          // unknown badge/PIN or not allowed
	StaffSessionExpired StaffResult = "session_expired" // log in again
	StaffNotFound       StaffResult = "not_found"       // no such document for this device
	StaffWrongState     StaffResult = "wrong_state"     // the document cannot be loaded (or retrieved) now
	StaffNoCompartment  StaffResult = "no_compartment"  // no free compartment fits
	StaffUnavailable    StaffResult = "unavailable"
)

// StaffResults lists every staff outcome.
func StaffResults() []StaffResult {
	return []StaffResult{StaffOK, StaffDenied, StaffSessionExpired, StaffNotFound,
		StaffWrongState, StaffNoCompartment, StaffUnavailable}
}

// StaffResponse answers a StaffRequest. A login that succeeds carries
// Session, StaffID, StaffName, Expires and Role; a login denied under a
// lock of the device's staff logins carries Expires, when the lock ends; a
// reserve or retrieve that succeeds carries DocumentID and Addr.
type StaffResponse struct {
	V         int         `json:"v"`
	ID        string      `json:"id"`
	Op        StaffOp     `json:"op"`
	Result    StaffResult `json:"result"`
	Session   string      `json:"session,omitempty"`
	StaffID   string      `json:"staff_id,omitempty"`
	StaffName string      `json:"staff_name,omitempty"`
	// Expires: on a login ok, when the session ends; on a login denied
	// because the device's staff logins are locked (too many failures),
	// when that lock ends. It is not a field of its own because decoding
	// is strict: an older kluisd, which ignores expires on a denial and
	// shows its plain refusal, would drop an answer with a new field.
	Expires    *time.Time `json:"expires,omitempty"`
	DocumentID string     `json:"document_id,omitempty"`
	Addr       *Address   `json:"addr,omitempty"`
	Slot       *int       `json:"slot,omitempty"`
	// Role is the logged-in user's role (staff, technician, admin), for
	// the kiosk to offer what the backend will allow: staff load and
	// retrieve, technicians test-open, admins both. The backend decides.
	Role StaffRole `json:"role,omitempty"`
	// Sig is the backend's signature of this answer, as on a
	// VerifyResponse.
	Sig string `json:"sig,omitempty"`
}

// LogValue redacts the session token.
func (r StaffResponse) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("op", string(r.Op)),
		slog.String("result", string(r.Result)))
}

// MessageKind implements Message.
func (*Presence) MessageKind() Kind { return KindPresence }

// MessageKind implements Message.
func (*Heartbeat) MessageKind() Kind { return KindHeartbeat }

// MessageKind implements Message.
func (*Event) MessageKind() Kind { return KindEvent }

// MessageKind implements Message.
func (*Ack) MessageKind() Kind { return KindAck }

// MessageKind implements Message.
func (*Command) MessageKind() Kind { return KindCommand }

// MessageKind implements Message.
func (*CommandResult) MessageKind() Kind { return KindCmdResult }

// MessageKind implements Message.
func (*VerifyRequest) MessageKind() Kind { return KindVerifyReq }

// MessageKind implements Message.
func (*VerifyResponse) MessageKind() Kind { return KindVerifyRes }

// MessageKind implements Message.
func (*StaffRequest) MessageKind() Kind { return KindStaffReq }

// MessageKind implements Message.
func (*StaffResponse) MessageKind() Kind { return KindStaffRes }

func (m *Presence) setVersion()       { m.V = Version }
func (m *Heartbeat) setVersion()      { m.V = Version }
func (m *Event) setVersion()          { m.V = Version }
func (m *Ack) setVersion()            { m.V = Version }
func (m *Command) setVersion()        { m.V = Version }
func (m *CommandResult) setVersion()  { m.V = Version }
func (m *VerifyRequest) setVersion()  { m.V = Version }
func (m *VerifyResponse) setVersion() { m.V = Version }
func (m *StaffRequest) setVersion()   { m.V = Version }
func (m *StaffResponse) setVersion()  { m.V = Version }

// newMessage returns an empty message of kind.
func newMessage(k Kind) (Message, error) {
	switch k {
	case KindPresence:
		return &Presence{}, nil
	case KindHeartbeat:
		return &Heartbeat{}, nil
	case KindEvent:
		return &Event{}, nil
	case KindAck:
		return &Ack{}, nil
	case KindCommand:
		return &Command{}, nil
	case KindCmdResult:
		return &CommandResult{}, nil
	case KindVerifyReq:
		return &VerifyRequest{}, nil
	case KindVerifyRes:
		return &VerifyResponse{}, nil
	case KindStaffReq:
		return &StaffRequest{}, nil
	case KindStaffRes:
		return &StaffResponse{}, nil
	}
	return nil, fmt.Errorf("unknown kind %q: %w", k, ErrTopic)
}
