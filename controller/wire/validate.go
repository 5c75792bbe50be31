package wire

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"kluis/hardware"
)

// Lengths of free strings.
const (
	maxText     = 256
	maxToken    = 1024
	maxSecret   = 128
	maxSoftware = 64
	maxSetting  = 1024
	maxSlot     = 999
)

func invalid(k Kind, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", k, fmt.Sprintf(format, args...), ErrInvalid)
}

type checker struct {
	k   Kind
	err error
}

func (c *checker) fail(format string, args ...any) {
	if c.err == nil {
		c.err = invalid(c.k, format, args...)
	}
}

func (c *checker) version(v int) {
	if v != Version && c.err == nil {
		c.err = fmt.Errorf("%s: v=%d: %w", c.k, v, ErrVersion)
	}
}

func (c *checker) id(name, id string) {
	if err := ValidID(id); err != nil {
		c.fail("%s: %v", name, err)
	}
}

func (c *checker) optID(name, id string) {
	if id != "" {
		c.id(name, id)
	}
}

func (c *checker) time(name string, t time.Time) {
	if t.IsZero() {
		c.fail("missing %s", name)
	}
}

func (c *checker) text(name, s string, max int) {
	if len(s) > max {
		c.fail("%s longer than %d bytes", name, max)
	} else if !utf8.ValidString(s) {
		c.fail("%s is not UTF-8", name)
	} else if strings.IndexByte(s, 0) >= 0 {
		c.fail("%s contains NUL", name) // PostgreSQL text and jsonb refuse it
	}
}

func (c *checker) addr(name string, a *Address, need bool) {
	if a == nil {
		if need {
			c.fail("missing %s", name)
		}
		return
	}
	if err := a.Validate(); err != nil {
		c.fail("%s: %v", name, err)
	}
}

func (c *checker) slot(s *int) {
	if s != nil && (*s < 0 || *s > maxSlot) {
		c.fail("slot %d out of range 0-%d", *s, maxSlot)
	}
}

func oneOf[T comparable](c *checker, name string, v T, all []T) {
	if !slices.Contains(all, v) {
		c.fail("unknown %s %v", name, v)
	}
}

// Validate implements Message.
func (m *Presence) Validate() error {
	c := &checker{k: KindPresence}
	c.version(m.V)
	oneOf(c, "state", m.State, []PresenceState{Online, Offline})
	if m.At != nil {
		c.time("at", *m.At)
	}
	c.text("software", m.Software, maxSoftware)
	return c.err
}

// Validate implements Message.
func (m *Heartbeat) Validate() error {
	c := &checker{k: KindHeartbeat}
	c.version(m.V)
	c.time("at", m.At)
	if m.UptimeS < 0 || m.Backlog < 0 || m.OfflineCache < 0 || m.CacheVersion < 0 {
		c.fail("negative counter")
	}
	if len(m.Boards) > hardware.MaxBoards {
		c.fail("%d boards, at most %d", len(m.Boards), hardware.MaxBoards)
	}
	for _, b := range m.Boards {
		if b.Address < 0 || b.Address >= hardware.MaxBoards {
			c.fail("board address %d out of range", b.Address)
		}
		if b.Errors < 0 || b.Reboots < 0 || b.WatchdogRelocks < 0 {
			c.fail("negative board errors")
		}
		c.text("firmware", b.Firmware, maxSoftware)
	}
	if len(m.Doors) > MaxHeartbeat {
		c.fail("%d doors, at most %d", len(m.Doors), MaxHeartbeat)
	}
	for i := range m.Doors {
		c.addr("doors.addr", &m.Doors[i].Addr, true)
	}
	c.text("software", m.Software, maxSoftware)
	return c.err
}

// Validate implements Message.
func (m *Event) Validate() error {
	c := &checker{k: KindEvent}
	c.version(m.V)
	c.id("id", m.ID)
	oneOf(c, "event kind", m.Kind, EventKinds())
	c.time("at", m.At)
	c.addr("addr", m.Addr, false)
	c.slot(m.Slot)
	if m.Board != nil && (*m.Board < 0 || *m.Board >= hardware.MaxBoards) {
		c.fail("board %d out of range", *m.Board)
	}
	c.optID("document_id", m.DocumentID)
	c.optID("staff_id", m.StaffID)
	c.optID("command_id", m.CommandID)
	c.optID("request_id", m.RequestID)
	if m.Method != "" {
		oneOf(c, "method", m.Method, []Method{MethodQR, MethodPIN})
	}
	if m.Alarm != "" {
		oneOf(c, "alarm", m.Alarm, AlarmKinds())
	}
	c.text("detail", m.Detail, maxText)
	if m.CodeRef != "" && !codeRef(m.CodeRef) {
		c.fail("code_ref is not a base64url SHA-256")
	}
	switch m.Kind {
	case EvCodeLocked:
		c.id("document_id", m.DocumentID)
	case EvDoorOpened, EvDoorClosed, EvItemPlaced, EvItemRemoved, EvOpenNotDetected:
		c.addr("addr", m.Addr, true)
	case EvPickupCompleted, EvPickupNotCollected, EvOfflineCodeRefused:
		c.addr("addr", m.Addr, true)
		c.id("document_id", m.DocumentID)
	case EvLoaded, EvRetrieved:
		c.addr("addr", m.Addr, true)
		c.id("document_id", m.DocumentID)
		c.id("staff_id", m.StaffID)
	case EvLockoutCleared:
		if m.StaffID == "" && m.CommandID == "" {
			c.fail("lockout_cleared needs staff_id or command_id")
		}
	case EvCommandRefused:
		c.id("command_id", m.CommandID)
	case EvResponseRefused:
		c.id("request_id", m.RequestID)
	case EvBoardRebooted, EvBoardWatchdog:
		if m.Board == nil {
			c.fail("missing board")
		}
	case EvAlarm, EvAlarmCleared:
		if m.Alarm == "" {
			c.fail("missing alarm")
		}
		switch m.Alarm {
		case AlarmDoorLeftOpen, AlarmForcedDoor, AlarmSensorDisagreement, AlarmPulseUncertain:
			c.addr("addr", m.Addr, true)
		case AlarmBoardUnreachable, AlarmBoardRebooting:
			if m.Board == nil {
				c.fail("missing board")
			}
		}
	}
	if m.Kind != EvAlarm && m.Kind != EvAlarmCleared && m.Alarm != "" {
		c.fail("alarm on a %s event", m.Kind)
	}
	return c.err
}

// Validate implements Message.
func (m *Ack) Validate() error {
	c := &checker{k: KindAck}
	c.version(m.V)
	if len(m.IDs) == 0 || len(m.IDs) > MaxAckIDs {
		c.fail("%d ids, want 1-%d", len(m.IDs), MaxAckIDs)
	}
	for _, id := range m.IDs {
		c.id("ids", id)
	}
	return c.err
}

// Validate implements Message.
func (m *Command) Validate() error {
	c := &checker{k: KindCommand}
	c.version(m.V)
	c.id("id", m.ID)
	oneOf(c, "command kind", m.Kind, CommandKinds())
	c.time("issued", m.Issued)
	c.time("expires", m.Expires)
	if c.err == nil && !m.Expires.After(m.Issued) {
		c.fail("expires not after issued")
	}
	c.addr("addr", m.Addr, m.Kind == CmdOpen)
	c.text("reason", m.Reason, maxText)
	c.text("by", m.By, maxText)
	c.text("sig", m.Sig, MaxCommandSig)
	if len(m.Settings) > MaxSettings {
		c.fail("%d settings, at most %d", len(m.Settings), MaxSettings)
	}
	for k, v := range m.Settings {
		if ValidID(k) != nil {
			c.fail("bad setting name")
		}
		c.text("setting", v, maxSetting)
	}
	if m.Kind == CmdConfig && len(m.Settings) == 0 {
		c.fail("config without settings")
	}
	if m.Kind == CmdClearLockout {
		if m.Addr != nil || len(m.Settings) > 0 {
			c.fail("clear_lockout takes no addr or settings")
		}
		if m.By == "" || m.Reason == "" {
			c.fail("clear_lockout needs by and reason")
		}
	}
	if m.Kind == CmdCodeSync {
		if m.Codes == nil {
			c.fail("missing codes")
		} else {
			m.Codes.validate(c)
		}
	} else if m.Codes != nil {
		c.fail("codes on a %s command", m.Kind)
	}
	return c.err
}

func (s *CodeSync) validate(c *checker) {
	if s.Version < 0 {
		c.fail("negative codes version")
	}
	if len(s.Entries) > MaxCodeEntries || len(s.Revoke) > MaxCodeEntries {
		c.fail("more than %d code entries", MaxCodeEntries)
	}
	for i := range s.Entries {
		e := &s.Entries[i]
		c.id("codes.document_id", e.DocumentID)
		c.addr("codes.addr", &e.Addr, true)
		c.time("codes.expires", e.Expires)
		if e.QRHash == "" && e.PINHash == "" {
			c.fail("code entry without hash")
		}
		c.text("codes.qr_hash", e.QRHash, maxSecret)
		c.text("codes.pin_hash", e.PINHash, maxSecret)
	}
	for _, id := range s.Revoke {
		c.id("codes.revoke", id)
	}
}

// Validate implements Message.
func (m *CommandResult) Validate() error {
	c := &checker{k: KindCmdResult}
	c.version(m.V)
	c.id("id", m.ID)
	oneOf(c, "status", m.Status, CommandStatuses())
	c.time("at", m.At)
	c.text("detail", m.Detail, maxText)
	return c.err
}

// Validate implements Message.
func (m *VerifyRequest) Validate() error {
	c := &checker{k: KindVerifyReq}
	c.version(m.V)
	c.id("id", m.ID)
	c.time("at", m.At)
	oneOf(c, "method", m.Method, []Method{MethodQR, MethodPIN})
	c.text("token", m.Token, maxToken)
	switch m.Method {
	case MethodQR:
		if m.Token == "" || m.PIN != "" || m.BirthDate != "" {
			c.fail("qr needs token (and no pin)")
		}
	case MethodPIN:
		if m.Token != "" || !digits(m.PIN, 4, 12) {
			c.fail("pin needs 4-12 digits (and no token)")
		}
	}
	if m.BirthDate != "" {
		if _, err := time.Parse(time.DateOnly, m.BirthDate); err != nil {
			c.fail("birth_date is not YYYY-MM-DD")
		}
	}
	return c.err
}

// codeRef reports whether s looks like a pickupcode.QRHash: 43 base64url
// characters.
func codeRef(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func digits(s string, lo, hi int) bool {
	if len(s) < lo || len(s) > hi {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Validate implements Message.
func (m *VerifyResponse) Validate() error {
	c := &checker{k: KindVerifyRes}
	c.version(m.V)
	c.id("id", m.ID)
	oneOf(c, "result", m.Result, VerifyResults())
	c.addr("addr", m.Addr, m.Result == VerifyOK)
	c.slot(m.Slot)
	if m.Result == VerifyOK {
		c.id("document_id", m.DocumentID)
	} else if m.DocumentID != "" || m.Addr != nil || m.Slot != nil {
		c.fail("document on a %s result", m.Result)
	}
	if m.RetryAfterS < 0 {
		c.fail("negative retry_after_s")
	}
	c.text("sig", m.Sig, MaxResponseSig)
	return c.err
}

// Validate implements Message.
func (m *StaffRequest) Validate() error {
	c := &checker{k: KindStaffReq}
	c.version(m.V)
	c.id("id", m.ID)
	oneOf(c, "op", m.Op, StaffOps())
	c.time("at", m.At)
	c.text("badge", m.Badge, maxSecret)
	c.text("pin", m.PIN, maxSecret)
	c.text("session", m.Session, maxToken)
	c.text("document_number", m.DocumentNumber, MaxID)
	c.addr("addr", m.Addr, m.Op == StaffTestOpen)
	if m.Addr != nil && m.Op != StaffTestOpen {
		c.fail("addr on a %s request", m.Op)
	}
	switch m.Op {
	case StaffLogin:
		if (m.Badge == "") == (m.PIN == "") {
			c.fail("login needs a badge or a pin")
		}
		if m.PIN != "" && !digits(m.PIN, 4, 12) {
			c.fail("pin needs 4-12 digits")
		}
	case StaffReserve, StaffRetrieve:
		if m.Session == "" || m.DocumentNumber == "" {
			c.fail("%s needs session and document_number", m.Op)
		}
	case StaffLogout, StaffTestOpen, StaffClearLockout:
		if m.Session == "" {
			c.fail("%s needs session", m.Op)
		}
	}
	return c.err
}

// Validate implements Message.
func (m *StaffResponse) Validate() error {
	c := &checker{k: KindStaffRes}
	c.version(m.V)
	c.id("id", m.ID)
	oneOf(c, "op", m.Op, StaffOps())
	oneOf(c, "result", m.Result, StaffResults())
	c.text("session", m.Session, maxToken)
	c.text("staff_name", m.StaffName, maxText)
	c.optID("staff_id", m.StaffID)
	c.optID("document_id", m.DocumentID)
	if m.Role != "" {
		oneOf(c, "role", m.Role, []StaffRole{RoleStaff, RoleTechnician, RoleAdmin})
	}
	c.addr("addr", m.Addr, false)
	c.slot(m.Slot)
	c.text("sig", m.Sig, MaxResponseSig)
	if m.Expires != nil {
		c.time("expires", *m.Expires)
	}
	if m.Result == StaffOK {
		switch m.Op {
		case StaffLogin:
			if m.Session == "" || m.StaffID == "" || m.Expires == nil {
				c.fail("login ok needs session, staff_id and expires")
			}
		case StaffReserve, StaffRetrieve:
			c.id("document_id", m.DocumentID)
			c.addr("addr", m.Addr, true)
		}
	}
	return c.err
}
