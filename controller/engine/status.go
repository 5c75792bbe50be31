package engine

import (
	"context"
	"sort"
	"time"

	"kluis/controller/wire"
	"kluis/hardware"
)

// Diagnostics is what a technician sees (GET /kiosk/v1/diagnostics) and
// what heartbeats carry.
type Diagnostics struct {
	Driver       string                  `json:"driver"`
	Caps         hardware.Capabilities   `json:"caps"`
	Boards       []wire.BoardHealth      `json:"boards"`
	Doors        []hardware.ChannelState `json:"doors"`
	Backlog      int                     `json:"backlog"`
	OfflineCache int                     `json:"offline_cache"`
	CacheVersion int64                   `json:"cache_version"`
	Busy         []int                   `json:"busy_compartments"`
	// LockedUntil is set while PIN entry is locked (QR codes still work).
	LockedUntil *time.Time `json:"locked_until,omitempty"`
	Ready       bool       `json:"ready"`
	StatesError string     `json:"states_error,omitempty"`
	// Alarms are the most recent alarms since start-up, newest first.
	Alarms []AlarmNote `json:"alarms,omitempty"`
}

// Diagnostics reads the hardware and the daemon's state.
func (e *Engine) Diagnostics(ctx context.Context) Diagnostics {
	d := Diagnostics{Backlog: e.j.OutboxLen()}
	if e.o.Cache != nil {
		d.OfflineCache, d.CacheVersion = e.o.Cache.Len(), e.o.Cache.Version()
	}
	st, err := e.drv.States(ctx)
	if err != nil {
		d.StatesError = err.Error()
	} else {
		d.Doors = st
	}
	e.mu.Lock()
	d.Driver, d.Caps, d.Ready = e.info.Kind, e.caps, e.ready
	fw := map[int]string{}
	for _, b := range e.info.Boards {
		fw[b.Address] = b.Firmware
	}
	for _, b := range e.cfg.Hardware.Boards {
		d.Boards = append(d.Boards, wire.BoardHealth{Address: b, Online: !e.boardDown[b], Firmware: fw[b], Errors: e.boardErrs[b],
			Reboots: e.boardRebootN[b], WatchdogRelocks: e.boardWatchdogN[b]})
	}
	for _, o := range e.active {
		d.Busy = append(d.Busy, o.comp.cfg.Number)
	}
	if t := e.pinWall(e.pinLockedUntil()); !t.IsZero() {
		d.LockedUntil = &t
	}
	for i := len(e.alarms) - 1; i >= 0; i-- {
		d.Alarms = append(d.Alarms, e.alarms[i])
	}
	e.mu.Unlock()
	sort.Ints(d.Busy)
	return d
}
