package web

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/alarms"
	"kluis/backend/audit"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/safetext"
	"kluis/controller/wire"
	"kluis/hardware"
)

// presenceRow is a device's stored presence and last heartbeat.
type presenceRow struct {
	Online        bool
	Since         time.Time
	Software      string
	LastHeartbeat *time.Time
	// Heartbeat is the last heartbeat's payload (nil: none yet).
	Heartbeat []byte
}

// presenceRows reads every device's presence and last heartbeat. It and
// presenceKeys are the console's only places that know where the device
// link stores them: the presence in device_presence, the last heartbeat's
// payload in device_diagnostics (migration 0120). Whether one device may
// be opened remotely is api.RefuseNeverConnected's (the same test: no
// presence row).
func presenceRows(ctx context.Context, db store.DB) (map[string]presenceRow, error) {
	rows, err := db.Query(ctx, `SELECT p.device_id, p.state, p.changed_at, p.software, p.last_heartbeat_at, d.heartbeat
		FROM device_presence p LEFT JOIN device_diagnostics d ON d.device_id = p.device_id`)
	if err != nil {
		return nil, fmt.Errorf("web: presence: %w", err)
	}
	defer rows.Close()
	out := map[string]presenceRow{}
	for rows.Next() {
		var id, state string
		var p presenceRow
		if err := rows.Scan(&id, &state, &p.Since, &p.Software, &p.LastHeartbeat, &p.Heartbeat); err != nil {
			return nil, fmt.Errorf("web: presence: %w", err)
		}
		p.Online = state == string(wire.Online)
		out[id] = p
	}
	return out, rows.Err()
}

// presenceKeys reads, per device, what makes its presence different for
// the live pages (state, since when, software, last heartbeat), without the
// heartbeats themselves: the poller's cheap question "did anything change?".
func presenceKeys(ctx context.Context, db store.DB) (map[string]string, error) {
	rows, err := db.Query(ctx, `SELECT device_id, state, changed_at, software, last_heartbeat_at FROM device_presence`)
	if err != nil {
		return nil, fmt.Errorf("web: presence: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, state, software string
		var since time.Time
		var hb *time.Time
		if err := rows.Scan(&id, &state, &since, &software, &hb); err != nil {
			return nil, fmt.Errorf("web: presence: %w", err)
		}
		k := state + "|" + since.UTC().Format(time.RFC3339Nano) + "|" + software
		if hb != nil {
			k += "|" + hb.UTC().Format(time.RFC3339Nano)
		}
		out[id] = k
	}
	return out, rows.Err()
}

// alarm is an open alarm of a device, with its acknowledgement.
type alarm = alarms.Alarm

// activeAlarms reads the open alarms per device (backend/alarms: the
// latest alarm or alarm_cleared of each device, kind and place), each
// device's in the pages' order (bySeverity).
func activeAlarms(ctx context.Context, db store.DB, now time.Time, deviceID string) (map[string][]alarm, error) {
	out, err := alarms.Open(ctx, db, now, deviceID)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	for _, as := range out {
		bySeverity(as)
	}
	return out, nil
}

// bySeverity orders one device's open alarms as the technician's pages
// list them and say what to do about them: not acknowledged first, then
// the most severe first (alarmSeverity, as the fleet's order), then the
// newest. By time alone, the sensors disagreeing at 02:05 came before
// the door forced at 02:00 that caused it, in the list and in "what to
// do": the visit that cannot wait would read as the second thing.
func bySeverity(as []alarm) {
	rank := func(a alarm) int {
		if s, ok := alarmSeverity[a.Kind]; ok {
			return s
		}
		return len(alarmSeverity)
	}
	sort.SliceStable(as, func(i, j int) bool {
		if ai, aj := as[i].Acknowledged(), as[j].Acknowledged(); ai != aj {
			return !ai
		}
		if ri, rj := rank(as[i]), rank(as[j]); ri != rj {
			return ri < rj
		}
		return as[i].At.After(as[j].At)
	})
}

// health is one device as the fleet page shows it.
type health struct {
	store.Device
	// Known is false when the device never connected.
	Known    bool
	Online   bool
	Since    time.Time
	Software string
	// LastHeartbeat is the last telemetry; Late when it and coming
	// online are both older than service.LateAfter while online
	// (service.Late, the automatic choice's rule).
	LastHeartbeat *time.Time
	Late          bool
	// From the last heartbeat (HasHeartbeat false: none).
	HasHeartbeat  bool
	Boards        []boardHealth
	BoardErrors   int64
	BoardsOffline int
	// BoardReboots and WatchdogRelocks add up the boards' restarts and
	// watchdog relocks since kluisd started.
	BoardReboots, WatchdogRelocks int64
	Doors                         []hardware.ChannelState
	DoorsOpen                     int
	Backlog                       int
	UpSince                       *time.Time
	Firmware                      string
	Alarms                        []alarm
}

// DoorsKnown reports whether the last heartbeat tells how the doors are
// now: the device is online and its heartbeat is not overdue. Offline or
// late, the doors may have changed since (a door forced while the network
// is down): the pages say "unknown" and what was last reported.
func (h health) DoorsKnown() bool {
	return h.Known && h.Online && !h.Late && h.HasHeartbeat
}

// DoorsText is how many doors stand open, as far as the device reports
// it now: "unknown" with what was last reported when it is offline or
// late, and the doors of an offline board said to be unknown.
func (h health) DoorsText(t *tr) string {
	switch {
	case h.DoorsKnown() && h.BoardsOffline > 0:
		return strconv.Itoa(h.DoorsOpen) + " · " + t.S("devices.doors_board_offline")
	case h.DoorsKnown():
		return strconv.Itoa(h.DoorsOpen)
	case h.HasHeartbeat && h.LastHeartbeat != nil:
		return t.F("devices.doors_last", "n", h.DoorsOpen, "time", t.TimeP(h.LastHeartbeat))
	}
	return t.S("unknown")
}

// boardHealth is a lock board as the last heartbeat reported it, with
// its open board_unreachable alarm.
type boardHealth struct {
	wire.BoardHealth
	// Alarm is the board's open board_unreachable alarm (nil: none).
	Alarm *alarm
	// AlarmNotCleared: the heartbeat, newer than Alarm, has the board
	// online again, and the device has not cleared the alarm yet.
	AlarmNotCleared bool
	// NotReported: the last heartbeat does not list the board (or there
	// is none); it is known from its open board_unreachable alarm only,
	// so its firmware and counters are unknown.
	NotReported bool
}

// boardWide reports whether alarms of kind k are about a lock board as a
// whole (wire: they carry a board, not an address).
func boardWide(k wire.AlarmKind) bool {
	return k == wire.AlarmBoardUnreachable || k == wire.AlarmBoardRebooting
}

// alarmPlaced is an alarm's name with where it is, as the alarm lists
// and the timeline say it: at compartment n (n > 0), at a lock board
// (board counted from 0 as on the wire, said from 1 as on the kiosk), or,
// for a board-wide alarm whose record names no board (device events and
// audit records before the board was recorded, d8a2363), "a lock board".
func alarmPlaced(t *tr, kind wire.AlarmKind, n int, board *int) string {
	name := t.S("alarm." + string(kind))
	switch {
	case n > 0:
		return t.F("alarm.at_compartment", "alarm", name, "n", n)
	case board != nil:
		return t.F("alarm.at_board", "alarm", name, "n", *board+1)
	case boardWide(kind):
		return t.F("alarm.at_some_board", "alarm", name)
	}
	return name
}

// nextStep is one thing to do about a device: what is wrong, in words,
// and what a technician does about it.
type nextStep struct{ What, Do string }

// NextSteps says what to do about the device, for its page: offline or
// late in service first, then one line per kind of open alarm (in the
// order listed: those nobody acknowledged first), a board offline
// without its alarm yet as the alarm would say it. None when all is well.
func (h health) NextSteps(t *tr) []nextStep {
	var out []nextStep
	if h.Known && h.OutOfService == nil {
		switch {
		case !h.Online:
			out = append(out, nextStep{What: t.S("status.offline"), Do: t.F("next.offline", "time", t.Time(h.Since))})
		case h.Late:
			out = append(out, nextStep{What: t.S("status.late"), Do: t.F("next.late", "time", t.Time(h.SilentSince()))})
		}
	}
	seen := map[wire.AlarmKind]bool{}
	for _, a := range h.Alarms {
		if seen[a.Kind] {
			continue
		}
		seen[a.Kind] = true
		out = append(out, nextStep{What: t.S("alarm." + string(a.Kind)), Do: t.S("next.alarm." + string(a.Kind))})
	}
	if h.Online && h.BoardsOffline > 0 && !seen[wire.AlarmBoardUnreachable] {
		out = append(out, nextStep{What: t.S("alarm.board_unreachable"), Do: t.S("next.alarm.board_unreachable")})
	}
	return out
}

// SilentSince is since when a device that is Late has sent nothing: its
// last heartbeat, or its coming online when it sent none since.
func (h health) SilentSince() time.Time {
	if h.LastHeartbeat != nil && h.LastHeartbeat.After(h.Since) {
		return *h.LastHeartbeat
	}
	return h.Since
}

// OpenWarning reports whether a remote open will likely not be carried
// out because of the device as a whole (offline or late): the device
// page says so above its open buttons, which stay for an emergency, and
// the form and its confirmation warn again.
func (h health) OpenWarning() bool {
	return h.Known && (!h.Online || h.Late)
}

// Stale reports whether what the last heartbeat said (backlog, running
// since, doors) may no longer hold: the device is offline or late. The
// pages then say when it was reported.
func (h health) Stale() bool {
	return h.Known && h.HasHeartbeat && h.LastHeartbeat != nil && (!h.Online || h.Late)
}

// boardOnline reports whether the last heartbeat had board b online (a
// board it does not list is not).
func (h health) boardOnline(b int) bool {
	for _, x := range h.Boards {
		if x.Address == b {
			return x.Online
		}
	}
	return false
}

func makeHealth(d store.Device, p presenceRow, known bool, alarms []alarm, now time.Time) health {
	h := health{Device: d, Known: known, Alarms: alarms}
	if !known {
		return h
	}
	// Software and firmware names are the device's word (a stolen device
	// password, a board's firmware string), which the wire bounds in
	// length only: a direction override would reorder what the
	// technicians read ("1.4.2 \u202Eexe.gnp" reads "1.4.2 png.exe"), so
	// what the console shows of them is escaped as kluisctl does.
	h.Online, h.Since, h.Software, h.LastHeartbeat = p.Online, p.Since, safetext.Escape(p.Software), p.LastHeartbeat
	h.Late = service.Late(p.Online, p.Since, p.LastHeartbeat, now)
	var hb wire.Heartbeat
	if len(p.Heartbeat) > 0 && json.Unmarshal(p.Heartbeat, &hb) == nil {
		h.HasHeartbeat = true
		h.Doors, h.Backlog = hb.Doors, hb.Backlog
		var fw []string
		for i := range hb.Boards {
			hb.Boards[i].Firmware = safetext.Escape(hb.Boards[i].Firmware)
			b := boardHealth{BoardHealth: hb.Boards[i]}
			// A board's state is the newer word of the heartbeat and the
			// board's open board_unreachable alarm (both in the device's
			// clock), so the page does not say "online" in the boards
			// table beside "board 1 not reachable" in the alarms: kluisd
			// raises the alarm between two heartbeats (the heartbeat
			// still has the board online), and a heartbeat can have the
			// board back before the clearing arrives. The alarm newer:
			// the board is offline (its doors unknown, the fleet's count
			// and the next steps with it). The heartbeat newer with the
			// board online: online, and the table says the alarm is still
			// open.
			for j := range alarms {
				a := alarms[j]
				if a.Kind == wire.AlarmBoardUnreachable && a.Board != nil && *a.Board == b.Address {
					b.Alarm = &alarms[j]
					if !hb.At.After(a.At) {
						b.Online = false
					}
					b.AlarmNotCleared = b.Online
				}
			}
			h.Boards = append(h.Boards, b)
			h.BoardErrors += b.Errors
			h.BoardReboots += b.Reboots
			h.WatchdogRelocks += b.WatchdogRelocks
			if !b.Online {
				h.BoardsOffline++
			}
			if b.Firmware != "" && !contains(fw, b.Firmware) {
				fw = append(fw, b.Firmware)
			}
		}
		h.Firmware = strings.Join(fw, ", ")
		for _, c := range hb.Doors {
			if c.DoorOpen {
				h.DoorsOpen++
			}
		}
		if p.LastHeartbeat != nil && hb.UptimeS >= 0 {
			up := p.LastHeartbeat.Add(-time.Duration(hb.UptimeS) * time.Second)
			h.UpSince = &up
		}
		if h.Software == "" {
			h.Software = safetext.Escape(hb.Software)
		}
	}
	// A board with an open board_unreachable alarm that the last
	// heartbeat does not list (kluisd lists the boards it knows of; none
	// stored yet) is offline by its alarm: without it, the boards table
	// had no row for the board the alarm names and the open form no
	// warning for its compartments.
	for j := range alarms {
		a := alarms[j]
		if a.Kind != wire.AlarmBoardUnreachable || a.Board == nil || h.hasBoard(*a.Board) {
			continue
		}
		h.Boards = append(h.Boards, boardHealth{BoardHealth: wire.BoardHealth{Address: *a.Board}, Alarm: &alarms[j], NotReported: true})
		h.BoardsOffline++
	}
	sort.SliceStable(h.Boards, func(i, j int) bool { return h.Boards[i].Address < h.Boards[j].Address })
	return h
}

// hasBoard reports whether h lists board b.
func (h health) hasBoard(b int) bool {
	for _, x := range h.Boards {
		if x.Address == b {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// readFleet reads every device's health; pres are the presence rows
// (nil: read them).
func readFleet(ctx context.Context, db store.DB, pres map[string]presenceRow, now time.Time) ([]health, error) {
	devs, err := store.ListDevices(ctx, db, "")
	if err != nil {
		return nil, err
	}
	if pres == nil {
		if pres, err = presenceRows(ctx, db); err != nil {
			return nil, err
		}
	}
	alarms, err := activeAlarms(ctx, db, now, "")
	if err != nil {
		return nil, err
	}
	if len(alarms) > 0 {
		if err := numberAlarms(ctx, db, alarms); err != nil {
			return nil, err
		}
	}
	out := make([]health, 0, len(devs))
	for _, d := range devs {
		p, ok := pres[d.ID]
		out = append(out, makeHealth(d, p, ok, alarms[d.ID], now))
	}
	return out, nil
}

// numberAlarms fills in the compartment numbers of door alarms on lockers.
func numberAlarms(ctx context.Context, db store.DB, alarms map[string][]alarm) error {
	ids := make([]string, 0, len(alarms))
	for id := range alarms {
		ids = append(ids, id)
	}
	rows, err := db.Query(ctx, `SELECT c.device_id, c.board, c.channel, c.number FROM compartments c
		JOIN devices d ON d.id = c.device_id WHERE d.kind = 'locker' AND c.device_id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("web: alarm compartments: %w", err)
	}
	defer rows.Close()
	num := map[string]int{}
	for rows.Next() {
		var dev string
		var b, c, n int
		if err := rows.Scan(&dev, &b, &c, &n); err != nil {
			return fmt.Errorf("web: alarm compartments: %w", err)
		}
		num[fmt.Sprintf("%s/%d/%d", dev, b, c)] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("web: alarm compartments: %w", err)
	}
	for dev, as := range alarms {
		for i := range as {
			if a := as[i].Addr; a != nil {
				as[i].Compartment = num[fmt.Sprintf("%s/%d/%d", dev, a.Board, a.Channel)]
			}
		}
	}
	return nil
}

// Trouble is what the boards column sorts by: boards offline, then
// restarts and watchdog relocks, then errors.
func (h health) Trouble() int64 {
	return int64(h.BoardsOffline)*1_000_000_000 + (h.BoardReboots+h.WatchdogRelocks)*1_000 + h.BoardErrors
}

// compView is a compartment on the map and in the table.
type compView struct {
	store.Compartment
	// Shown is the map state: free, reserved, loaded, expired,
	// out_of_service.
	Shown    string
	DocID    string
	DocState lifecycle.State
	Deadline *time.Time
	DoorOpen bool
	// DoorKnown: the device reports this door now (DoorsKnown, its board
	// online and, on a locker, its channel in the heartbeat's doors). A
	// board that does not answer reports no doors: they are unknown, not
	// shut.
	DoorKnown bool
	Alarms    []wire.AlarmKind
	// AlarmsAcked says which of Alarms someone acknowledged.
	AlarmsAcked []bool
	Low         bool
}

// Occupied reports whether a document is behind the door
// (lifecycle.State.InCompartment), which only an admin may open remotely.
func (c compView) Occupied() bool { return c.DocID != "" && c.DocState.InCompartment() }

// Acked reports whether someone acknowledged the compartment's i-th alarm.
func (c compView) Acked(i int) bool { return i < len(c.AlarmsAcked) && c.AlarmsAcked[i] }

// detail is one device as its page shows it.
type detail struct {
	health
	Site     store.Site
	Comps    []compView
	Layout   store.Layout
	Timeline []event
	LowMax   int
}

// HasDoors reports whether each compartment has a door of its own (a
// locker); an automaton's slots sit on a carousel behind one hatch, so
// its slots have no door state to show.
func (d detail) HasDoors() bool { return d.Kind == store.Locker }

// SlotAlarms reports whether alarms are tied to compartments (readDetail
// places a locker's door alarms at their compartment); an automaton's
// alarms are the device's only (its status lists them), so its slots
// have no alarms column that would read "none" beside an open alarm.
func (d detail) SlotAlarms() bool { return d.Kind == store.Locker }

// legendItem is one line of the map's legend: its swatch's class and
// its words' catalogue key.
type legendItem struct{ Class, Key string }

// Legend lists what the map (drawMap) can show for the device's kind,
// nothing more: every compartment state; on a locker also a door standing
// open and an alarm at a compartment. An automaton's slots have no door
// of their own and readDetail ties no alarm to a slot (its alarms are
// listed with the device's status), so its map shows neither.
func (d detail) Legend() []legendItem {
	var out []legendItem
	for _, s := range []string{"free", "reserved", "loaded", "expired", "out_of_service"} {
		out = append(out, legendItem{Class: "st-" + s, Key: "map.state." + s})
	}
	if d.HasDoors() {
		out = append(out, legendItem{Class: "door-open", Key: "map.door_open"})
	}
	if d.SlotAlarms() {
		out = append(out, legendItem{Class: "alarmed", Key: "map.alarm"})
	}
	return out
}

// readDetail reads one device's page.
// alarmsOnly keeps the timeline to the alarms (raised, cleared,
// acknowledged).
func readDetail(ctx context.Context, db store.DB, id string, lowMax int, now time.Time, alarmsOnly bool) (detail, error) {
	d, err := store.GetDevice(ctx, db, id)
	if err != nil {
		return detail{}, err
	}
	site, err := store.GetSite(ctx, db, d.SiteID)
	if err != nil {
		return detail{}, err
	}
	pres, err := presenceRows(ctx, db)
	if err != nil {
		return detail{}, err
	}
	alarms, err := activeAlarms(ctx, db, now, id)
	if err != nil {
		return detail{}, err
	}
	if len(alarms) > 0 {
		if err := numberAlarms(ctx, db, alarms); err != nil {
			return detail{}, err
		}
	}
	p, known := pres[id]
	out := detail{health: makeHealth(d, p, known, alarms[id], now), Site: site, LowMax: lowMax}
	nums := make([]int, len(d.Compartments))
	ids := make([]int64, len(d.Compartments))
	for i, c := range d.Compartments {
		nums[i], ids[i] = c.Number, c.ID
	}
	if d.Kind == store.Locker && d.Layout != nil {
		out.Layout, err = store.ResolveLayout(d.Layout, nums)
	} else {
		out.Layout, err = store.ResolveLayout(nil, nums)
	}
	if err != nil {
		// A stored layout that no longer fits: draw the default.
		out.Layout, _ = store.ResolveLayout(nil, nums)
	}
	docs := map[int64]store.Document{}
	rows, err := db.Query(ctx, `SELECT id::text, state, compartment_id, deadline FROM documents
		WHERE compartment_id = ANY($1) AND state IN ('reserved', 'loaded', 'notified', 'expired')`, ids)
	if err != nil {
		return detail{}, fmt.Errorf("web: occupants: %w", err)
	}
	for rows.Next() {
		var doc store.Document
		if err := rows.Scan(&doc.ID, &doc.State, &doc.CompartmentID, &doc.Deadline); err != nil {
			rows.Close()
			return detail{}, fmt.Errorf("web: occupants: %w", err)
		}
		docs[doc.CompartmentID] = doc
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return detail{}, fmt.Errorf("web: occupants: %w", err)
	}
	for _, c := range d.Compartments {
		v := compView{Compartment: c, Shown: string(c.State), Low: c.HeightCM <= lowMax}
		if doc, ok := docs[c.ID]; ok {
			v.DocID, v.DocState, v.Deadline = doc.ID, doc.State, doc.Deadline
			if doc.State == lifecycle.Expired {
				v.Shown = "expired"
			}
		}
		for _, ch := range out.Doors {
			if d.Kind == store.Locker && ch.Addr.Board == c.Board && ch.Addr.Channel == c.Channel {
				v.DoorOpen = ch.DoorOpen
				v.DoorKnown = out.DoorsKnown() && out.boardOnline(c.Board)
			}
		}
		for _, a := range out.Alarms {
			if a.Addr != nil && d.Kind == store.Locker && a.Addr.Board == c.Board && a.Addr.Channel == c.Channel {
				v.Alarms, v.AlarmsAcked = append(v.Alarms, a.Kind), append(v.AlarmsAcked, a.Acknowledged())
			}
		}
		out.Comps = append(out.Comps, v)
	}
	out.Timeline, err = deviceTimeline(ctx, db, d, alarmsOnly)
	if err != nil {
		return detail{}, err
	}
	return out, nil
}

// event is one line of a device's timeline, from the audit trail.
type event struct {
	Seq         int64
	At          time.Time
	Action      string
	Actor       string
	Compartment int
	// Board is the lock board of a board-wide alarm (board_unreachable,
	// board_rebooting), counted from 0 as on the wire.
	Board    *int
	Alarm    string
	Reason   string
	Result   string
	Detail   string
	Document string
	// Note is an alarm acknowledgement's note.
	Note    string
	IsAlarm bool
}

// timelineMax is how many lines a device's timeline shows.
const timelineMax = 60

// alarmActions are the audit actions of a device's alarms.
var alarmActions = []string{"device.alarm", "device.alarm_cleared", "alarm.acknowledged"}

// deviceTimeline reads the newest audit records about a device and its
// compartments, by when they happened (a device event's own time; the
// order of arrival is not that of the events: kluisd sends alarms ahead
// of a backlog, and the backend applies a device's events in parallel),
// newest first; records of the same time in the order they were written.
//
// alarmsOnly keeps the alarm lines: raised, cleared, acknowledged.
func deviceTimeline(ctx context.Context, db store.DB, d store.Device, alarmsOnly bool) ([]event, error) {
	subjects := []string{"device:" + d.ID}
	byID := map[string]store.Compartment{}
	addr := map[[2]int]int{}
	for _, c := range d.Compartments {
		s := "compartment:" + strconv.FormatInt(c.ID, 10)
		subjects = append(subjects, s)
		byID[s] = c
		addr[[2]int{c.Board, c.Channel}] = c.Number
	}
	only := []string{}
	if alarmsOnly {
		only = alarmActions
	}
	if err := audit.CatchUp(ctx, db); err != nil { // show what was just done
		return nil, fmt.Errorf("web: timeline: %w", err)
	}
	// The newest of each subject (audit_log_subject_at_idx), then of all.
	rows, err := db.Query(ctx, `SELECT a.seq, a.at, a.actor, a.action, a.subject, a.details, coalesce(u.username, '')
		FROM unnest($1::text[]) s(subject)
		CROSS JOIN LATERAL (SELECT * FROM audit_log l WHERE l.subject = s.subject
			AND (cardinality($3::text[]) = 0 OR l.action = ANY($3))
			ORDER BY l.at DESC, l.seq DESC LIMIT $2) a
		LEFT JOIN auth_users u ON a.actor = 'user:' || u.id::text
		ORDER BY a.at DESC, a.seq DESC LIMIT $2`, subjects, timelineMax, only)
	if err != nil {
		return nil, fmt.Errorf("web: timeline: %w", err)
	}
	defer rows.Close()
	var out []event
	for rows.Next() {
		var e event
		var subject, username string
		var raw []byte
		if err := rows.Scan(&e.Seq, &e.At, &e.Actor, &e.Action, &subject, &raw, &username); err != nil {
			return nil, fmt.Errorf("web: timeline: %w", err)
		}
		if username != "" {
			e.Actor = username
		}
		var det struct {
			Board       *int    `json:"board"`
			Channel     *int    `json:"channel"`
			Compartment *int    `json:"compartment"`
			Number      *int    `json:"number"`
			Alarm       string  `json:"alarm"`
			Reason      string  `json:"reason"`
			Result      string  `json:"result"`
			Detail      string  `json:"detail"`
			Document    string  `json:"document"`
			Note        string  `json:"note"`
			Method      string  `json:"method"`
			Op          *string `json:"op"`
		}
		_ = json.Unmarshal(raw, &det)
		switch {
		case det.Compartment != nil:
			e.Compartment = *det.Compartment
		case det.Number != nil:
			e.Compartment = *det.Number
		case det.Board != nil && det.Channel != nil && d.Kind == store.Locker:
			e.Compartment = addr[[2]int{*det.Board, *det.Channel}]
		}
		if c, ok := byID[subject]; ok {
			e.Compartment = c.Number
		}
		if det.Board != nil && det.Channel == nil {
			e.Board = det.Board
		}
		e.Alarm, e.Reason, e.Result, e.Detail, e.Document, e.Note = det.Alarm, det.Reason, det.Result, det.Detail, det.Document, det.Note
		e.IsAlarm = e.Action == "device.alarm"
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("web: timeline: %w", err)
	}
	return out, nil
}

// changedDevices returns the devices the audit records after seq (up to
// upTo) are about: a device, one of its compartments, or a document in
// one of them. ok is false when too much happened to say (everything may
// have changed).
func changedDevices(ctx context.Context, db store.DB, after, upTo int64) (map[string]bool, bool, error) {
	if upTo-after > 5000 {
		return nil, false, nil
	}
	rows, err := db.Query(ctx, `SELECT DISTINCT CASE
			WHEN a.subject LIKE 'device:%' THEN substr(a.subject, 8)
			WHEN a.subject ~ '^compartment:[0-9]{1,18}$' THEN
				(SELECT c.device_id FROM compartments c WHERE c.id = substr(a.subject, 13)::bigint)
			WHEN a.subject ~ '^document:[0-9a-f-]{36}$' THEN
				(SELECT d.device_id FROM documents d WHERE d.id = substr(a.subject, 10)::uuid)
		END
		FROM audit_log a WHERE a.seq > $1 AND a.seq <= $2`, after, upTo)
	if err != nil {
		return nil, false, fmt.Errorf("web: changes: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[*string])
	if err != nil {
		return nil, false, fmt.Errorf("web: changes: %w", err)
	}
	out := map[string]bool{}
	for _, id := range ids {
		if id != nil && *id != "" {
			out[*id] = true
		}
	}
	return out, true, nil
}

// auditHead is the newest audit sequence number (0: none).
func auditHead(ctx context.Context, db store.DB) (int64, error) {
	var seq *int64
	if err := db.QueryRow(ctx, `SELECT max(seq) FROM audit_log`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("web: audit head: %w", err)
	}
	if seq == nil {
		return 0, nil
	}
	return *seq, nil
}

// Text is the event in words.
func (e event) Text(t *tr) string {
	key := "timeline." + e.Action
	if _, ok := t.cat[key]; !ok {
		return t.F("timeline.other", "action", e.Action)
	}
	result := ""
	if e.Result != "" {
		result = t.S("result." + e.Result)
	}
	alarm := ""
	if e.Alarm != "" {
		// Which door or lock board, as the alarm lists say it.
		alarm = alarmPlaced(t, wire.AlarmKind(e.Alarm), e.Compartment, e.Board)
	}
	s := t.F(key, "n", e.Compartment, "alarm", alarm, "result", result)
	if reason := e.reasonText(t); reason != "" {
		s += " · " + t.F("timeline.reason", "reason", reason)
	}
	if e.Note != "" {
		s += " · " + t.F("alarm.ack_note", "note", e.Note)
	}
	return s
}

// codedReasons are the audit actions whose reason is a code the backend
// writes (a refused code's pickupcode reason, why a kiosk session ended),
// shown in words from the catalogue (reason.<code>); the other actions'
// reasons are what a person typed, shown as typed.
var codedReasons = map[string]bool{"code.denied": true, "code.used": true, "kiosk.session_ended": true}

// reasonText is the event's reason as people read it ("" for none).
func (e event) reasonText(t *tr) string {
	if !codedReasons[e.Action] {
		return e.Reason
	}
	if e.Reason == "ok" {
		return ""
	}
	if _, ok := t.cat["reason."+e.Reason]; ok {
		return t.S("reason." + e.Reason)
	}
	return e.Reason
}

// Who is who did it, in words.
func (e event) Who(t *tr) string { return actorName(t, e.Actor) }

// actorName says who an audit actor is; user names are looked up before.
func actorName(t *tr, a string) string {
	switch {
	case a == "system":
		return t.S("actor.system")
	case strings.HasPrefix(a, "device:"):
		return t.F("actor.device", "device", strings.TrimPrefix(a, "device:"))
	}
	return a
}

// alarmSeverity ranks alarm kinds for the fleet page's default order, most
// severe first (lower is more severe): a door that may stand open to the
// street, then faults that stop compartments from serving, then the rest.
// A kind not listed ranks after the listed ones.
var alarmSeverity = map[wire.AlarmKind]int{
	wire.AlarmForcedDoor:         0,
	wire.AlarmDoorLeftOpen:       1,
	wire.AlarmPulseUncertain:     2,
	wire.AlarmSensorDisagreement: 3,
	wire.AlarmMechanismFault:     4,
	wire.AlarmJournalFull:        5,
	wire.AlarmBoardUnreachable:   6,
	wire.AlarmBoardRebooting:     7,
	wire.AlarmJournalDamaged:     8,
	// The offline codes refused until the full sync: nothing changes
	// while the device is online; its file may have been written by
	// someone (after the upgrade, the older kluisd's file).
	wire.AlarmOfflineCacheUntrusted: 9,
	wire.AlarmBruteForceLockout:     10,
}

// AttentionRank is the fleet page's default order, lowest first: a device
// with an open alarm nobody acknowledged (0-11 by its most severe such
// alarm), then one that is Unhandled (offline or late in service, a board
// offline that no alarm names: 12), then one whose open alarms are all
// acknowledged (13-24 by its most severe: someone handles them, they stay
// listed), then the others (25). An offline device without alarms came
// after those whose alarms were all acknowledged: the one nobody had
// taken on below the ones being handled.
func (h health) AttentionRank() int {
	n := len(alarmSeverity)
	if h.Unacknowledged() > 0 {
		best := n
		for _, a := range h.Alarms {
			if s, ok := alarmSeverity[a.Kind]; ok && s < best && !a.Acknowledged() {
				best = s
			}
		}
		return best
	}
	if h.Unhandled() {
		return n + 1
	}
	if len(h.Alarms) > 0 {
		best := n
		for _, a := range h.Alarms {
			if s, ok := alarmSeverity[a.Kind]; ok && s < best {
				best = s
			}
		}
		return n + 2 + best
	}
	return 2*n + 3
}

// Unhandled reports a device in service that cannot serve citizens as it
// should for a reason no open alarm names: offline or late after it was
// seen, or a lock board offline without its board_unreachable alarm (one
// acknowledged is being handled). The fleet page gives its row the orange
// mark (tr.attention); a device never connected or taken out of service on
// purpose is not marked.
func (h health) Unhandled() bool {
	if !h.Known || h.OutOfService != nil {
		return false
	}
	if !h.Online || h.Late {
		return true
	}
	alarmed := 0
	for _, b := range h.Boards {
		if !b.Online && b.Alarm != nil {
			alarmed++
		}
	}
	return h.BoardsOffline > alarmed
}

// Unacknowledged counts the open alarms nobody acknowledged.
func (h health) Unacknowledged() int {
	c := 0
	for _, a := range h.Alarms {
		if !a.Acknowledged() {
			c++
		}
	}
	return c
}

// byAttention returns the rows in the fleet page's default order: by
// AttentionRank, then by name (the id when it has none), then by id. It
// sorts a copy: rows may be the hub's shared snapshot.
func byAttention(rows []health) []health {
	out := append([]health(nil), rows...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ra, rb := a.AttentionRank(), b.AttentionRank(); ra != rb {
			return ra < rb
		}
		na, nb := strings.ToLower(displayName(a.Device)), strings.ToLower(displayName(b.Device))
		if na != nb {
			return na < nb
		}
		return a.ID < b.ID
	})
	return out
}
