package service

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/alarms"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// LateAfter is how old an online device's last sign of life may be: its
// last heartbeat or its coming online, whichever is later; older, the
// device is late. kluisd sends a heartbeat every 30 s by default; three
// minutes is six missed.
const LateAfter = 3 * time.Minute

// Late reports whether a device online since since, its last heartbeat at
// heartbeat (nil: none yet), is late at now. Coming online is a sign of
// life too: a device back after an outage longer than LateAfter is not
// late until its first heartbeat, which may be 30 s away (the console's
// health and the automatic choice use this one rule).
func Late(online bool, since time.Time, heartbeat *time.Time, now time.Time) bool {
	if !online {
		return false
	}
	last := since
	if heartbeat != nil && heartbeat.After(last) {
		last = *heartbeat
	}
	return now.Sub(last) > LateAfter
}

// blockingAlarms are the alarm kinds that make a pickup at the device
// unsafe or impossible; the automatic choice never picks a device with
// one open (acknowledged or not: someone handling it does not close the
// door). forced_door: a door was opened without an operation, the device
// may be damaged or tampered with until a technician checked it;
// door_left_open: a door stands open to the street; board_unreachable and
// board_rebooting: the doors of a lock board do not open, or not
// reliably; journal_full: kluisd opens no door at all; mechanism_fault: an
// automaton's carousel or hatch failed. The other kinds (sensor_disagreement,
// pulse_uncertain, journal_damaged, offline_cache_untrusted (the device
// verifies online as before), brute_force_lockout, and any kind
// added later) leave the device able to serve: it is chosen only when no
// device without an open alarm has room.
var blockingAlarms = map[wire.AlarmKind]bool{
	wire.AlarmForcedDoor: true, wire.AlarmDoorLeftOpen: true, wire.AlarmBoardUnreachable: true,
	wire.AlarmBoardRebooting: true, wire.AlarmJournalFull: true, wire.AlarmMechanismFault: true,
}

// BlocksPickup reports whether an open alarm of kind k keeps the
// automatic choice away from its device.
func BlocksPickup(k wire.AlarmKind) bool { return blockingAlarms[k] }

// Health is what the backend knows now of whether a device can serve a
// holder: its presence (written by the device link), its heartbeat's age
// and its open alarms (backend/alarms).
type Health struct {
	// Known is false when the device never connected.
	Known bool `json:"known"`
	// Online: its presence says online.
	Online bool `json:"online"`
	// Late: online, but its last sign of life is older than LateAfter
	// (see Late).
	Late bool `json:"late"`
	// Blocking are its open alarms that make a pickup unsafe or
	// impossible (BlocksPickup), Other its other open alarms; each kind
	// once, in the order of wire.AlarmKinds.
	Blocking []wire.AlarmKind `json:"blocking_alarms"`
	Other    []wire.AlarmKind `json:"other_alarms"`
}

// Fit reports whether the automatic choice may pick the device: online,
// on time and without a blocking alarm (out of service is the device's
// own field).
func (h Health) Fit() bool { return h.Known && h.Online && !h.Late && len(h.Blocking) == 0 }

// Warning is one reason a device may not serve a holder, as the API
// answers it: code is device_never_connected, device_offline,
// device_late or device_alarm (with Alarm).
type Warning struct {
	Code  string         `json:"code"`
	Alarm wire.AlarmKind `json:"alarm,omitempty"`
}

// Warnings are h's problems, the worst first: never connected, offline
// or late, then the blocking alarms; nil when Fit. The other alarms are
// not warnings (the device serves).
func (h Health) Warnings() []Warning {
	var out []Warning
	switch {
	case !h.Known:
		out = append(out, Warning{Code: "device_never_connected"})
	case !h.Online:
		out = append(out, Warning{Code: "device_offline"})
	case h.Late:
		out = append(out, Warning{Code: "device_late"})
	}
	for _, k := range h.Blocking {
		out = append(out, Warning{Code: "device_alarm", Alarm: k})
	}
	return out
}

// DeviceHealth reads the health of the given devices at now.
func DeviceHealth(ctx context.Context, db store.DB, now time.Time, ids []string) (map[string]Health, error) {
	out := make(map[string]Health, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, `SELECT device_id, state, changed_at, last_heartbeat_at
		FROM device_presence WHERE device_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("service: device presence: %w", err)
	}
	for rows.Next() {
		var id, state string
		var since time.Time
		var beat *time.Time
		if err := rows.Scan(&id, &state, &since, &beat); err != nil {
			rows.Close()
			return nil, fmt.Errorf("service: device presence: %w", err)
		}
		h := Health{Known: true, Online: state == string(wire.Online)}
		h.Late = Late(h.Online, since, beat, now)
		out[id] = h
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("service: device presence: %w", err)
	}
	// One query for every device (autoPick asks for a whole site).
	open, err := alarms.OpenOf(ctx, db, now, ids)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	for _, id := range ids {
		seen := map[wire.AlarmKind]bool{}
		for _, a := range open[id] {
			seen[a.Kind] = true
		}
		h := out[id]
		for _, k := range wire.AlarmKinds() {
			if seen[k] {
				if blockingAlarms[k] {
					h.Blocking = append(h.Blocking, k)
				} else {
					h.Other = append(h.Other, k)
				}
				delete(seen, k)
			}
		}
		var unknown []wire.AlarmKind // kinds this build does not list
		for k := range seen {
			unknown = append(unknown, k)
		}
		sort.Slice(unknown, func(i, j int) bool { return unknown[i] < unknown[j] })
		h.Other = append(h.Other, unknown...)
		out[id] = h
	}
	return out, nil
}

// DeviceHealth reads the health of the given devices now.
func (s *Service) DeviceHealth(ctx context.Context, ids ...string) (map[string]Health, error) {
	return DeviceHealth(ctx, s.db, s.clock(), ids)
}

// autoPick is the automatic choice's view of the site's devices: those
// to skip (not Fit) and those to take last (other open alarms).
func autoPick(ctx context.Context, tx pgx.Tx, now time.Time, siteID string) (skip, last []string, err error) {
	devs, err := store.ListDevices(ctx, tx, siteID)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, 0, len(devs))
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	health, err := DeviceHealth(ctx, tx, now, ids)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		h := health[id]
		switch {
		case !h.Fit():
			skip = append(skip, id)
		case len(h.Other) > 0:
			last = append(last, id)
		}
	}
	return skip, last, nil
}
