package engine

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"kluis/controller/wire"
	"kluis/hardware"
)

// A board that restarts rebootLoopCount times within rebootLoopWindow
// raises board_rebooting (the same numbers as the KluisBoardRebooting
// Prometheus rule); an hour without a restart clears it.
const (
	rebootLoopCount  = 3
	rebootLoopWindow = time.Hour
)

// boardOffline handles the driver's BoardOffline: the board's compartments
// are refused at once, but board_unreachable is raised only when the board
// is still offline after timeouts.board_unreachable, so that a single
// failed exchange on a noisy line shows no alarm.
func (e *Engine) boardOffline(ev hardware.Event) {
	b := ev.Addr.Board
	e.mu.Lock()
	was := e.boardDown[b]
	e.boardDown[b] = true
	e.boardErrs[b]++
	gen := e.boardGen[b]
	if !was {
		gen++
		e.boardGen[b] = gen
	}
	ctx := e.runCtx
	e.mu.Unlock()
	e.m.boardErrs.WithLabelValues(strconv.Itoa(b)).Inc()
	if was {
		return
	}
	detail := ev.Detail
	time.AfterFunc(e.cfg.Timeouts.BoardUnreachable, func() {
		if ctx != nil && ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		still := e.boardDown[b] && e.boardGen[b] == gen && !e.boardAlarmed[b]
		if still {
			e.boardAlarmed[b] = true
		}
		e.mu.Unlock()
		if !still {
			return
		}
		e.m.boardsDown.Inc()
		e.alarm(wire.AlarmBoardUnreachable, nil, intPtr(b),
			fmt.Sprintf("offline for %v: %s", e.cfg.Timeouts.BoardUnreachable, detail))
	})
}

// boardOnline handles BoardOnline: the board's compartments work again and
// a raised board_unreachable is cleared.
func (e *Engine) boardOnline(ev hardware.Event) error {
	b := ev.Addr.Board
	if !e.configuredBoard(b) {
		return nil
	}
	e.mu.Lock()
	delete(e.boardDown, b)
	e.boardGen[b]++ // a pending debounce is void
	alarmed := e.boardAlarmed[b]
	delete(e.boardAlarmed, b)
	e.mu.Unlock()
	if !alarmed {
		return nil
	}
	e.m.boardsDown.Dec()
	// Kept, not refused: the board is already marked online, so the same
	// event delivered again would clear nothing.
	e.emitKept(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmBoardUnreachable, Board: intPtr(b)})
	return nil
}

// boardRebooted reports a board restart to the backend, counts it and
// raises board_rebooting when the board keeps restarting.
func (e *Engine) boardRebooted(ev hardware.Event) error {
	b := ev.Addr.Board
	e.log.Warn("board rebooted", "board", b, "detail", ev.Detail)
	detail := "every lock relocked, unread board events lost"
	if ev.Detail != "" {
		detail = ev.Detail + ": " + detail
	}
	if err := e.emit(wire.Event{Kind: wire.EvBoardRebooted, Board: intPtr(b), Detail: detail}); err != nil {
		return err // delivered again, counted then
	}
	e.m.boardReboots.WithLabelValues(strconv.Itoa(b)).Inc()
	now := e.now()
	e.mu.Lock()
	e.boardRebootN[b]++
	recent := []time.Time{now}
	for _, t := range e.boardRebootAt[b] {
		if now.Sub(t) < rebootLoopWindow {
			recent = append(recent, t)
		}
	}
	e.boardRebootAt[b] = recent
	raise := len(recent) >= rebootLoopCount && !e.rebootAlarm[b]
	if raise {
		e.rebootAlarm[b] = true
	}
	ctx := e.runCtx
	e.mu.Unlock()
	if raise {
		e.alarm(wire.AlarmBoardRebooting, nil, intPtr(b),
			fmt.Sprintf("board %d restarted %d times within %v: check its power supply and wiring", b, len(recent), rebootLoopWindow))
	}
	time.AfterFunc(rebootLoopWindow, func() { e.rebootQuiet(ctx, b) })
	return nil
}

// rebootQuiet clears board_rebooting once board b has not restarted for
// rebootLoopWindow.
func (e *Engine) rebootQuiet(ctx context.Context, b int) {
	if ctx != nil && ctx.Err() != nil {
		return
	}
	now := e.now()
	e.mu.Lock()
	at := e.boardRebootAt[b]
	quiet := e.rebootAlarm[b] && (len(at) == 0 || now.Sub(at[0]) >= rebootLoopWindow)
	if quiet {
		delete(e.rebootAlarm, b)
	}
	e.mu.Unlock()
	if quiet {
		e.emitKept(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmBoardRebooting, Board: intPtr(b)})
	}
}

// boardWatchdog reports that a board's own watchdog relocked every lock
// (kluisd was silent for the board's timeout) and counts it.
func (e *Engine) boardWatchdog(ev hardware.Event) error {
	b := ev.Addr.Board
	if err := e.emit(wire.Event{Kind: wire.EvBoardWatchdog, Board: intPtr(b), Detail: ev.Detail}); err != nil {
		return err
	}
	e.m.boardWatchdogs.WithLabelValues(strconv.Itoa(b)).Inc()
	e.mu.Lock()
	e.boardWatchdogN[b]++
	e.mu.Unlock()
	return nil
}
