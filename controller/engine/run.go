package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"kluis/controller/journal"
	"kluis/controller/wire"
	"kluis/hardware"
)

// Run checks the hardware against the configuration, reconciles unfinished
// operations from the journal, then handles hardware events until ctx ends.
// On return every operation has stopped and the driver is halted.
func (e *Engine) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.mu.Lock()
	e.runCtx = ctx
	e.mu.Unlock()
	defer func() {
		// Cancelled under e.mu: start checks the context under it, so no
		// operation is added (wg.Add) once Wait may have begun, and none
		// starts after the driver is halted.
		e.mu.Lock()
		cancel()
		e.mu.Unlock()
		e.wg.Wait()
		if err := e.drv.Halt(); err != nil {
			e.log.Error("halt failed", "err", err)
		}
	}()
	if err := e.inventory(ctx); err != nil {
		return err
	}
	// Unfinished operations claim their locks before Watch starts, so the
	// events a board queued meanwhile reach them (not the forced-door
	// check); they run once Watch is on.
	resume := e.reconcile(ctx)
	e.releaseOrphanMarks()
	e.wg.Add(1)
	go func() { defer e.wg.Done(); e.keepLoop(ctx) }()
	e.wg.Add(1)
	go func() { defer e.wg.Done(); e.spaceLoop(ctx) }()
	e.wg.Add(1)
	go func() { defer e.wg.Done(); e.pinClockLoop(ctx) }()
	watchErr := make(chan error, 1)
	go func() { watchErr <- e.watch(ctx) }()
	for _, fn := range resume {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			fn()
		}()
	}
	e.mu.Lock()
	if !e.ready {
		e.ready = true
		close(e.readyC)
	}
	e.mu.Unlock()
	e.log.Info("kluisd engine running", "compartments", len(e.comps), "driver", e.info.Kind)
	select {
	case <-ctx.Done():
		<-watchErr
		return nil
	case err := <-watchErr:
		return err
	}
}

// Ready reports whether start-up is complete (inventory and reconciliation).
func (e *Engine) Ready() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ready
}

// ReadyC is closed when start-up is complete (Ready turns true), so that
// kluisd can tell systemd at once (READY=1) instead of polling Ready.
func (e *Engine) ReadyC() <-chan struct{} { return e.readyC }

// inventory compares the boards the driver found with the configuration
// (and reports a damaged journal first).
func (e *Engine) inventory(ctx context.Context) error {
	if e.o.JournalDamaged != "" {
		e.withdrawPending.Store(true)
		e.settleWithdrawal()
	}
	if e.o.JournalDamaged != "" || e.o.CacheDamaged != "" {
		detail := e.o.JournalDamaged
		if e.o.CacheDamaged != "" {
			detail = strings.TrimPrefix(detail+"; "+e.o.CacheDamaged, "; ")
		}
		e.alarm(wire.AlarmJournalDamaged, nil, nil, detail)
	}
	e.noteCache()
	var info hardware.Info
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		info, err = e.drv.Describe(ctx)
		if err == nil {
			break
		}
		e.log.Warn("describe failed", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	found := map[int]hardware.BoardInfo{}
	if err == nil {
		for _, b := range info.Boards {
			found[b.Address] = b
		}
	}
	e.mu.Lock()
	e.info, e.caps = info, info.Caps
	e.mu.Unlock()
	for _, b := range e.cfg.Hardware.Boards {
		bi, ok := found[b]
		detail := ""
		switch {
		case err != nil:
			detail = "driver does not answer: " + err.Error()
		case !ok:
			detail = fmt.Sprintf("board %d not found on the bus", b)
		default:
			for _, c := range e.comps {
				if c.cfg.Board == b && c.lock.Channel >= bi.Channels {
					detail = fmt.Sprintf("board %d has %d channels, compartment %d needs channel %d", b, bi.Channels, c.cfg.Number, c.lock.Channel+1)
				}
				if c.cfg.Board == b && c.slot >= 0 && c.slot >= bi.Slots {
					detail = fmt.Sprintf("board %d has %d slots, compartment %d needs slot %d", b, bi.Slots, c.cfg.Number, c.slot+1)
				}
			}
		}
		if detail != "" {
			e.mu.Lock()
			e.boardDown[b] = true
			e.boardAlarmed[b] = true
			e.mu.Unlock()
			e.m.boardsDown.Inc()
			e.alarm(wire.AlarmBoardUnreachable, nil, intPtr(b), detail)
		}
	}
	if e.cfg.Kind == "automaton" && e.mech == nil {
		return errors.New("engine: automaton configured but the driver has no mechanism")
	}
	return nil
}

// watch runs Driver.Watch, restarting it after errors with a bounded
// back-off, until ctx ends. A watch that ran watchSteady or longer starts
// the back-off again from its first step (the gauntlet's seed 20261206101
// found it still at 3.2 s, grown by a full disk minutes before).
func (e *Engine) watch(ctx context.Context) error {
	backoff := watchBackoff
	for {
		began := time.Now()
		err := e.drv.Watch(ctx, e.onHardware)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, hardware.ErrHalted) {
			return fmt.Errorf("engine: driver closed: %w", err)
		}
		if time.Since(began) >= watchSteady {
			backoff = watchBackoff
		}
		e.log.Warn("watch stopped, restarting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// watchBackoff is the first wait before a stopped watch restarts; it
// doubles up to 5 s and starts again after watchSteady of watching.
const (
	watchBackoff = 100 * time.Millisecond
	watchSteady  = 10 * time.Second
)

// onHardware journals what the hardware saw and hands it to the operation
// waiting for it. An event on a door no operation has that the journal
// refuses returns an error so the driver keeps it and delivers it again;
// an operation's event is kept in memory (emitKept) and followed at once.
func (e *Engine) onHardware(ev hardware.Event) error {
	e.m.hwEvents.WithLabelValues(string(ev.Kind)).Inc()
	switch ev.Kind {
	case hardware.HatchOpened:
		ev.Kind, ev.Addr = hardware.DoorOpened, hardware.Address{Board: ev.Addr.Board, Channel: e.cfg.Hardware.HatchChannel}
	case hardware.HatchClosed:
		ev.Kind, ev.Addr = hardware.DoorClosed, hardware.Address{Board: ev.Addr.Board, Channel: e.cfg.Hardware.HatchChannel}
	}
	switch ev.Kind {
	case hardware.BoardOffline:
		e.boardOffline(ev)
		return nil
	case hardware.BoardOnline:
		return e.boardOnline(ev)
	case hardware.BoardRebooted:
		return e.boardRebooted(ev)
	case hardware.BoardWatchdog:
		return e.boardWatchdog(ev)
	case hardware.LockUncommanded:
		e.lockUncommanded(ev)
		return nil
	case hardware.SlotPresented, hardware.MechanismFault:
		if ev.Kind == hardware.MechanismFault {
			if err := e.emit(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmMechanismFault, Board: intPtr(ev.Addr.Board), Detail: ev.Detail}); err != nil {
				return err
			}
		}
		e.dispatch(hardware.Address{Board: ev.Addr.Board, Channel: e.cfg.Hardware.HatchChannel}, ev)
		return nil
	case hardware.Unlocked:
		e.dispatch(ev.Addr, ev)
		return nil
	case hardware.DoorOpened, hardware.DoorClosed, hardware.ItemPlaced, hardware.ItemRemoved:
	default:
		e.log.Warn("unknown hardware event ignored", "kind", ev.Kind)
		return nil
	}
	c := e.lockComp(ev.Addr)
	if c == nil {
		e.log.Warn("event on a channel without compartment", "kind", ev.Kind, "addr", ev.Addr.String())
		return nil
	}
	kind := map[hardware.EventKind]wire.EventKind{hardware.DoorOpened: wire.EvDoorOpened, hardware.DoorClosed: wire.EvDoorClosed,
		hardware.ItemPlaced: wire.EvItemPlaced, hardware.ItemRemoved: wire.EvItemRemoved}[ev.Kind]
	e.mu.Lock()
	o := e.active[ev.Addr]
	e.mu.Unlock()
	we := wire.Event{Kind: kind, Addr: addrPtr(ev.Addr)}
	if o != nil {
		we.DocumentID, we.StaffID, we.CommandID = o.docID, o.staffID, o.commandID
		if c.slot >= 0 && o.comp != nil {
			we.Slot = intPtr(o.comp.slot)
		}
		switch o.purpose {
		case PurposeTest:
			we.Detail = "technician test-open"
		case PurposeRemote:
			we.Detail = "remote open"
		}
	}
	if o != nil {
		// An operation has this door: it follows the event now, whether
		// or not the journal takes it. A journal that refuses writes (a
		// full disk) keeps the event in memory, in order, and journals
		// it once it has room (emitKept); it must not stall the watch
		// while the operation's door timeout runs out. Found by the
		// gauntlet (bench/chaos, seed 20261206101, disk_full): a refused
		// door_opened was left with the driver, the operation ended as
		// open_not_detected while the citizen took the document, and the
		// re-delivered door_opened read as a forced door. A kluisd killed
		// while the event is kept leaves the operation's intent open: the
		// restart decides it from the sensors (docs/kluisd.md).
		e.emitKept(we)
		e.dispatch(ev.Addr, ev)
		return nil
	}
	// No operation: a journal failure leaves the event with the driver,
	// which delivers it again (a board's queue survives a crash, kept
	// memory does not). The alarm it raises is kept once the event is
	// journaled, so the event is not journaled twice.
	if err := e.emit(we); err != nil {
		return err
	}
	// The door opened or the item changed with no operation (a forced
	// door, a mechanical key, a faulty sensor): the device no longer
	// knows which document is behind it, so no code opens it offline.
	// On an automaton every slot of the carousel: which slot stood at a
	// forced hatch is only the mechanism's belief (a Tasmota carousel has
	// no position feedback), and with the hatch open the carousel can be
	// turned by hand, so any slot may have been reached.
	withdrawn := ""
	if ev.Kind != hardware.DoorClosed {
		if c.slot < 0 {
			e.forgetCodes(c, "")
		} else {
			e.forgetBoardCodes(c.cfg.Board)
			withdrawn = "; the offline codes of every slot withdrawn (online pickups unaffected)"
		}
	}
	switch ev.Kind {
	case hardware.DoorOpened:
		e.emitKept(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: addrPtr(ev.Addr),
			Detail: "door opened without a command" + withdrawn})
	case hardware.ItemRemoved:
		// A document vanishing with no operation: a forced door or a
		// faulty sensor, either way someone must look.
		e.emitKept(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmSensorDisagreement, Addr: addrPtr(ev.Addr),
			Detail: "item removed while no operation had the door open" + withdrawn})
	}
	return nil
}

// lockUncommanded: a relay module reports a lock (or an automaton's
// carousel drive) switched on that kluisd did not command (a client of
// the modules' broker sent POWERn ON; hardware.LockUncommanded). The door
// could be opened without a grant, whether or not its contact says so
// (a contact may be missing or faulty): it is a forced door, and the
// device no longer knows what is behind it, so no code opens it offline
// (on an automaton: no slot's, as for a forced hatch).
func (e *Engine) lockUncommanded(ev hardware.Event) {
	addr := ev.Addr
	for _, c := range e.comps {
		if c.cfg.Board == addr.Board && c.slot >= 0 {
			addr.Channel = e.cfg.Hardware.HatchChannel // an automaton: its hatch
			break
		}
	}
	c := e.lockComp(addr)
	withdrawn := ""
	switch {
	case c == nil:
		e.log.Warn("a lock without compartment switched on without a command", "addr", addr.String(), "detail", ev.Detail)
	case c.slot >= 0:
		e.forgetBoardCodes(c.cfg.Board)
		withdrawn = "; the offline codes of every slot withdrawn (online pickups unaffected)"
	default:
		e.forgetCodes(c, "")
	}
	e.emitKept(wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: addrPtr(addr),
		Detail: "lock released without a command (" + ev.Detail + ")" + withdrawn})
}

func (e *Engine) configuredBoard(b int) bool {
	for _, x := range e.cfg.Hardware.Boards {
		if x == b {
			return true
		}
	}
	return false
}

// lockComp returns any compartment behind lock a (the first of an
// automaton's board).
func (e *Engine) lockComp(a hardware.Address) *comp {
	for _, c := range e.comps {
		if c.lock == a {
			return c
		}
	}
	return nil
}

func (e *Engine) dispatch(a hardware.Address, ev hardware.Event) {
	e.mu.Lock()
	o := e.active[a]
	e.mu.Unlock()
	if o == nil {
		return
	}
	select {
	case o.events <- ev:
	default:
		e.log.Error("operation event queue full, event dropped", "kind", ev.Kind, "addr", a.String())
	}
}

// reconcile resolves operations a previous run left unfinished (see
// docs/kluisd.md "Pulse safety") and returns the functions that continue
// them.
func (e *Engine) reconcile(ctx context.Context) []func() {
	pending := e.j.Unfinished()
	if len(pending) == 0 {
		return nil
	}
	var out []func()
	states := map[hardware.Address]hardware.ChannelState{}
	if st, err := e.drv.States(ctx); err == nil {
		for _, s := range st {
			states[s.Addr] = s
		}
	} else {
		e.log.Warn("states unavailable during reconciliation", "err", err)
	}
	for _, p := range pending {
		in := p.Intent
		c := e.compByNumber(in.Compartment)
		if c == nil {
			_ = e.j.EndOp(in.ID)
			continue
		}
		o := &op{purpose: in.Purpose, comp: c, docID: in.Ref, offline: in.Offline, intent: in, resumed: true, pulseRecorded: p.Done || p.Uncertain,
			method: wire.Method(in.Method), staffID: in.Staff, commandID: in.Command,
			events: make(chan hardware.Event, 64), lang: e.cfg.Kiosk.DefaultLang}
		e.mu.Lock()
		if e.active[c.lock] != nil {
			e.mu.Unlock()
			_ = e.j.EndOp(in.ID) // an older intent on the same lock: superseded
			continue
		}
		e.active[c.lock] = o
		e.mu.Unlock()
		resend := false
		if e.mayHaveBeenCut(p) {
			// kluisd's own start-up relock may have cut this pulse short:
			// on real hardware the latch may not have released. Never
			// re-send its id (a board that carried it out answers REPEAT
			// and does nothing); unless the door is seen open, the
			// operation ends as not opened and the person tries again at
			// once, with a fresh command id.
			if !p.Done {
				_ = e.j.EndPulse(in.ID, true)
			}
			st, known := states[c.lock]
			e.log.Info("resuming an operation whose pulse the start-up relock may have cut", "compartment", c.cfg.Number,
				"purpose", in.Purpose, "done", p.Done)
			out = append(out, func() { e.resumeCut(ctx, o, st, known) })
			continue
		}
		if !p.Done && !p.Uncertain {
			age := e.now().Sub(p.At)
			if e.caps.CommandIDs && age >= 0 && age < e.cfg.Timeouts.ResumeWindow {
				resend = true
			} else {
				// Maybe pulsed, maybe not: never pulse again blindly.
				_ = e.j.EndPulse(in.ID, true)
				e.m.uncertain.Inc()
				e.alarm(wire.AlarmPulseUncertain, addrPtr(c.lock), nil,
					fmt.Sprintf("pulse %d for compartment %d interrupted by a restart: may or may not have been carried out", in.ID, c.cfg.Number))
			}
		}
		st, known := states[c.lock]
		e.log.Info("resuming operation after restart", "compartment", c.cfg.Number, "purpose", in.Purpose,
			"done", p.Done, "uncertain", p.Uncertain, "resend", resend)
		out = append(out, func() { e.resume(ctx, o, resend, st, known) })
	}
	return out
}

// releaseOrphanMarks releases the pending single-use marks no unfinished
// operation serves: the previous run died after spending the code and before
// journaling its pulse intent, so nothing was pulsed and the citizen may use
// the code again (else the document could never leave this device). Called
// after reconcile, which claims the locks of the operations it resumes.
func (e *Engine) releaseOrphanMarks() {
	e.mu.Lock()
	served := map[string]bool{}
	for _, o := range e.active {
		served[o.docID] = true
	}
	var orphans []string
	for doc, u := range e.used {
		if u.Pending && !u.Released && !served[doc] {
			orphans = append(orphans, doc)
		}
	}
	e.mu.Unlock()
	for _, doc := range orphans {
		e.log.Info("offline code mark without a pulse released", "document", doc)
		e.setUsed(usedCode{Doc: doc, Released: true})
	}
}

// pulseCutSlack is how long after its intent a pulse may still have been
// under way besides its own duration: the driver's attempts and the
// exchange's latency.
const pulseCutSlack = 2 * time.Second

// mayHaveBeenCut reports whether p's pulse may have been under way when
// kluisd's start-up relocked every lock (Options.StartupHalt).
func (e *Engine) mayHaveBeenCut(p journal.Pending) bool {
	h := e.o.StartupHalt
	if h.IsZero() || p.Uncertain || !p.At.Before(h) {
		return false
	}
	return h.Sub(p.At) < e.cfg.Pulse+pulseCutSlack
}

// resumeCut continues an operation whose pulse the start-up relock may
// have cut: the door is followed if it is (or, from the board's queue,
// was) seen open; otherwise the door counts as not opened: open_not_detected
// (the backend gives a citizen's code back), the offline mark released, the
// lock free for a new attempt with a fresh command id. Nothing is pulsed.
func (e *Engine) resumeCut(ctx context.Context, o *op, st hardware.ChannelState, known bool) {
	if e.resumeOpenDoor(ctx, o, st, known) {
		return
	}
	caps := e.Caps()
	if !e.slotUnsure(ctx, o) && (!caps.DoorSensor || e.goalReached(ctx, o)) {
		// Nothing tells whether the door opened, or the item sensor says
		// the job got done: the outcome is what the sensors say.
		e.finish(ctx, o, false)
		return
	}
	e.notOpenedAfterRestart(o, "pulse cut short by kluisd's start-up relock: the door did not open, try again")
}

// notOpenedAfterRestart ends a resumed operation whose door was not seen
// open as not opened: open_not_detected (the backend gives a citizen's code
// back), the offline mark released, the lock free for a new attempt.
func (e *Engine) notOpenedAfterRestart(o *op, detail string) {
	e.emitKept(wire.Event{Kind: wire.EvOpenNotDetected, Addr: addrPtr(o.comp.lock), DocumentID: o.docID,
		StaffID: o.staffID, CommandID: o.commandID, Slot: slotPtr(o.comp), Detail: detail})
	e.m.openNotDetected.Inc()
	e.unuse(o, time.Time{})
	e.end(o)
}

// slotUnsure reports whether the item sensor at an automaton's hatch says
// nothing about a resumed pickup or retrieval: its journal has no record of
// the hatch pulse (kluisd stopped while the slot was being presented, or
// before the pulse) and the driver does not know the slot to be at the
// hatch (a Tasmota carousel has no position feedback: after a restart its
// driver knows no slot). The hatch then holds another slot, or none, whose
// empty reading would call the document collected while it lies in its
// slot. Found while fixing gauntlet seed 1796538706995782264.
func (e *Engine) slotUnsure(ctx context.Context, o *op) bool {
	if o.comp.slot < 0 || o.pulseRecorded || (o.purpose != PurposePickup && o.purpose != PurposeRetrieve) {
		return false
	}
	h, err := e.mech.Hatch(ctx, o.comp.cfg.Board)
	return err != nil || h.Slot != o.comp.slot || h.Busy
}

// resumeOpenDoor is where a resumed operation whose pulse was (or may
// have been) carried out looks at its door: open now by its sensor, or,
// from the board's queue, opened while kluisd was down (waiting up to
// resumeSettle). If so it follows the door (afterOpen). It reports
// whether the operation is handled: the door followed, or ctx ended
// meanwhile; false: the door was not seen open, and the caller decides.
// Never pulses.
func (e *Engine) resumeOpenDoor(ctx context.Context, o *op, st hardware.ChannelState, known bool) (handled bool) {
	caps := e.Caps()
	opened := known && caps.DoorSensor && st.DoorOpen
	if !opened && caps.EventQueue {
		var live bool
		if opened, live = waitOpened(ctx, o, resumeSettle); !live {
			return true
		}
	}
	if opened {
		e.afterOpen(ctx, o)
		return true
	}
	return false
}

// resumeSettle is how long a resumed operation waits for events the board
// queued while kluisd was down (door used meanwhile), so that they are
// matched to it instead of raising forced-door alarms.
const resumeSettle = 2 * time.Second

// resume continues an operation found unfinished at start-up.
func (e *Engine) resume(ctx context.Context, o *op, resend bool, st hardware.ChannelState, known bool) {
	if resend && !e.goalReached(ctx, o) {
		// Same command id: hardware that already carried it out ignores it.
		e.runOp(ctx, o, true)
		return
	}
	// The pulse was carried out (or may have been): follow the door from
	// what the board queued and what the sensors say; never pulse again.
	if e.resumeOpenDoor(ctx, o, st, known) {
		return
	}
	if e.slotUnsure(ctx, o) {
		e.notOpenedAfterRestart(o, "kluisd restarted before the hatch was opened onto the slot: try again")
		return
	}
	// Door shut: the outcome is what the item sensor says now.
	e.finish(ctx, o, false)
}

// Caps returns the hardware capabilities found at start-up.
func (e *Engine) Caps() hardware.Capabilities {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.caps
}
