package engine

import (
	"strconv"

	"kluis/controller/promtext"
	"kluis/controller/wire"
)

type metrics struct {
	events, alarms, hwEvents, pickups, pulses, verifications, commands, boardErrs, boardReboots, boardWatchdogs *promtext.CounterVec
	journalErrors, pulseErrors, uncertain, openNotDetected, wrongCodes, lockouts                                *promtext.Counter
	boardsDown, cacheSize, leftOpen                                                                             *promtext.Gauge
}

// newMetrics registers the engine's metrics. Label values known in advance
// (every alarm kind, every configured board) start at 0, so that an alert on
// increase() sees the first one. backlog and locked are read at scrape time.
func newMetrics(r *promtext.Registry, boards []int, backlog, locked, diskFull func() float64) (*metrics, error) {
	cv := func(name, help string, labels ...string) *promtext.CounterVec {
		return promtext.NewCounterVec(promtext.CounterOpts{Namespace: "kluisd", Name: name, Help: help}, labels)
	}
	c := func(name, help string) *promtext.Counter {
		return promtext.NewCounter(promtext.CounterOpts{Namespace: "kluisd", Name: name, Help: help})
	}
	g := func(name, help string) *promtext.Gauge {
		return promtext.NewGauge(promtext.GaugeOpts{Namespace: "kluisd", Name: name, Help: help})
	}
	gf := func(name, help string, fn func() float64) *promtext.GaugeFunc {
		return promtext.NewGaugeFunc(promtext.GaugeOpts{Namespace: "kluisd", Name: name, Help: help}, fn)
	}
	m := &metrics{
		events:          cv("events_total", "Events journaled for the backend, by kind.", "kind"),
		alarms:          cv("alarms_total", "Alarms raised, by alarm kind.", "alarm"),
		hwEvents:        cv("hardware_events_total", "Events received from the driver, by kind.", "kind"),
		pickups:         cv("pickups_total", "Finished pickups, by outcome event.", "outcome"),
		pulses:          cv("pulses_total", "Lock pulses accepted by the hardware, by purpose.", "purpose"),
		verifications:   cv("verifications_total", "Code verifications, by result and source (online, offline, local).", "result", "source"),
		commands:        cv("commands_total", "Backend commands, by kind and status.", "kind", "status"),
		boardErrs:       cv("board_errors_total", "Failed exchanges with a lock board (pulses and carousel commands refused or unanswered, board gone offline), by board.", "board"),
		boardReboots:    cv("board_reboots_total", "Lock board restarts the driver noticed (a new boot id), by board.", "board"),
		boardWatchdogs:  cv("board_watchdog_relocks_total", "Times a lock board's own watchdog relocked every lock because kluisd was silent, by board.", "board"),
		journalErrors:   c("journal_errors_total", "Failed journal writes."),
		pulseErrors:     c("pulse_errors_total", "Pulses the hardware refused or did not answer."),
		uncertain:       c("pulses_uncertain_total", "Pulses that may or may not have been carried out."),
		openNotDetected: c("open_not_detected_total", "Pulsed doors not seen opening in time."),
		wrongCodes:      c("wrong_codes_total", "Wrong codes entered at the kiosk (QR and PIN; only PINs count towards the lockout)."),
		lockouts:        c("lockouts_total", "Brute-force lockouts of PIN entry."),
		boardsDown:      g("boards_down", "Configured boards missing or unreachable."),
		cacheSize:       g("offline_cache_entries", "Entries in the offline code cache."),
		leftOpen:        g("doors_left_open", "Doors open longer than timeouts.door_left_open: door_left_open alarms raised and not yet cleared by the door closing."),
	}
	for _, k := range wire.AlarmKinds() {
		m.alarms.WithLabelValues(string(k))
	}
	for _, b := range boards {
		m.boardErrs.WithLabelValues(strconv.Itoa(b))
		m.boardReboots.WithLabelValues(strconv.Itoa(b))
		m.boardWatchdogs.WithLabelValues(strconv.Itoa(b))
	}
	for _, col := range []promtext.Collector{m.events, m.alarms, m.hwEvents, m.pickups, m.pulses, m.verifications,
		m.commands, m.boardErrs, m.boardReboots, m.boardWatchdogs, m.journalErrors, m.pulseErrors, m.uncertain, m.openNotDetected, m.wrongCodes,
		m.lockouts, m.boardsDown, m.cacheSize, m.leftOpen,
		gf("journal_backlog", "Events not yet acknowledged by the backend (read from the journal at scrape time).", backlog),
		gf("journal_disk_full", "1 while the journal's disk is full: its reserve of disk space is in use (or could not be made at start-up) and no door operation starts, else 0.", diskFull),
		gf("code_entry_locked", "1 while PIN entry at the kiosk is locked after too many wrong PINs (brute-force lockout; QR codes still work), else 0.", locked),
	} {
		if err := r.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}
