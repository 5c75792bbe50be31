package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kluis/controller/journal"
	"kluis/controller/offline"
	"kluis/controller/wire"
	"kluis/hardware"
)

// hatchBit marks the hatch pulse of an automaton operation: the Present
// uses the intent's id, the hatch pulse the same id with the top bit set, so
// both are distinct commands and both are deduplicated on a retry.
const hatchBit = 1 << 31

// start reserves o's lock, shows the opening screen and runs o in the
// background. It returns "" or, when o cannot run, the state to show
// (StateBusy, StateOutOfOrder, or StateDeviceOutOfOrder while the
// journal's disk is full).
func (e *Engine) start(o *op) string {
	low := e.journalLow() // not under e.mu: compaction's Keep takes e.mu under the journal's lock
	e.mu.Lock()
	ctx := e.runCtx
	switch {
	case ctx == nil || !e.ready || ctx.Err() != nil:
		e.mu.Unlock()
		return StateBusy
	case low:
		// A full disk: the journal's room is for ending the
		// operations under way; the door stays shut, and every other
		// door too.
		e.mu.Unlock()
		return StateDeviceOutOfOrder
	case e.boardDown[o.comp.cfg.Board]:
		e.mu.Unlock()
		return StateOutOfOrder
	case e.active[o.comp.lock] != nil:
		e.mu.Unlock()
		return StateBusy
	}
	o.events = make(chan hardware.Event, 64)
	e.active[o.comp.lock] = o
	e.wg.Add(1)
	if o.purpose != PurposeRemote {
		// Before the operation runs, so its later screens win.
		st := e.openState(o)
		if o.comp.slot >= 0 {
			st = StatePresenting
		}
		e.setScreenLocked(st, o.comp.cfg.Number, o.lang)
	}
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		e.runOp(ctx, o, false)
	}()
	return ""
}

// release frees o's lock.
func (e *Engine) release(o *op) {
	e.mu.Lock()
	if e.active[o.comp.lock] == o {
		delete(e.active, o.comp.lock)
	}
	e.mu.Unlock()
}

// end closes o in the journal and frees its lock.
func (e *Engine) end(o *op) {
	if o.intent.ID != 0 {
		// After the outcome event, should that be kept (emitKept): until
		// both are written the intent stays open, and a restart decides
		// the operation again.
		id := o.intent.ID
		e.keep("end of operation", func() error { return e.j.EndOp(id) })
	}
	e.release(o)
}

func (e *Engine) show(o *op, state string) {
	if o.resumed && o.purpose == PurposePickup {
		// Nobody is waiting at the screen for a resumed operation.
		return
	}
	e.setScreen(state, o.comp.cfg.Number, o.lang)
}

func (e *Engine) openState(o *op) string {
	switch o.purpose {
	case PurposeLoad:
		return StateLoading
	case PurposeRetrieve:
		return StateRetrieving
	case PurposeTest, PurposeRemote:
		return StateTestOpen
	}
	return StateOpen
}

// runOp journals the intent (unless resending one), presents the slot on
// an automaton, pulses the lock and follows the door.
func (e *Engine) runOp(ctx context.Context, o *op, resend bool) {
	bb, _ := e.drv.(hardware.BootBinder)
	if resend && bb != nil && o.intent.Boot != 0 {
		// The intent's id may have been carried out before kluisd
		// restarted: send it only to the boot it was meant for, so a board
		// that restarted since refuses it (ErrRebooted) instead of pulsing
		// a second time.
		bb.BindBoot(o.comp.lock.Board, hardware.CommandID(o.intent.ID), o.intent.Boot)
	}
	if !resend {
		var boot uint32
		if bb != nil {
			boot = bb.Boot(o.comp.lock.Board)
		}
		in, err := e.j.BeginPulse(journal.Intent{Compartment: o.comp.cfg.Number, Board: o.comp.lock.Board,
			Channel: o.comp.lock.Channel, Slot: o.comp.slot, Purpose: o.purpose, Ref: o.docID, Offline: o.offline,
			CodeRef: o.codeRef, Method: string(o.method), Staff: o.staffID, Command: o.commandID, Boot: boot})
		if err != nil {
			// Not journaled, so not pulsed: keep the door shut.
			e.log.Error("journal intent failed: door stays shut", "err", err)
			e.m.journalErrors.Inc()
			e.unuse(o, time.Time{})
			e.release(o)
			e.show(o, StateError)
			e.journalFailed(err)
			return
		}
		o.intent = in
	}
	caps := e.Caps()
	if o.comp.slot >= 0 {
		e.show(o, StatePresenting)
		if !e.present(ctx, o) {
			return
		}
	}
	id := hardware.CommandID(o.intent.ID)
	if o.comp.slot >= 0 {
		id |= hatchBit
	}
	res := e.pulse(ctx, o, id, caps)
	switch res {
	case pulseFailed:
		_ = e.j.EndPulse(o.intent.ID, false)
		e.unuse(o, time.Time{})
		e.end(o)
		e.show(o, StateOutOfOrder)
		return
	case pulseUncertain:
		_ = e.j.EndPulse(o.intent.ID, true)
		e.m.uncertain.Inc()
		e.alarm(wire.AlarmPulseUncertain, addrPtr(o.comp.lock), nil,
			fmt.Sprintf("no answer to pulse %d of compartment %d: may or may not have been carried out", id, o.comp.cfg.Number))
	case pulseCancelled:
		return // left unfinished: the next start resolves it
	default:
		if err := e.j.EndPulse(o.intent.ID, false); err != nil {
			e.log.Error("journal done failed", "err", err)
		}
		e.m.pulses.WithLabelValues(o.purpose).Inc()
	}
	if !caps.DoorSensor {
		e.show(o, e.openState(o))
		e.finish(ctx, o, true)
		return
	}
	e.show(o, e.openState(o))
	retries := *e.cfg.Timeouts.OpenRetries
	for attempt := 0; ; attempt++ {
		opened, live := waitOpened(ctx, o, e.cfg.Timeouts.DoorOpenDetect)
		if !live {
			return
		}
		if opened {
			e.afterOpen(ctx, o)
			return
		}
		e.emitKept(wire.Event{Kind: wire.EvOpenNotDetected, Addr: addrPtr(o.comp.lock), DocumentID: o.docID,
			StaffID: o.staffID, CommandID: o.commandID, Slot: slotPtr(o.comp), Detail: fmt.Sprintf("attempt %d", attempt+1)})
		e.m.openNotDetected.Inc()
		if caps.CommandIDs && attempt < retries {
			// Same id: if the first pulse was carried out the hardware
			// ignores this one; if it was lost, this one unlocks. If the
			// board restarted since (the gauntlet, seed 20261206101,
			// board_reboot: the restart cut the pulse and forgot the id,
			// so the same id pulsed a second time), the driver refuses
			// with ErrRebooted and nothing is pulsed: the door not seen
			// open stays shut and the person tries again with a new id.
			if err := e.drv.Pulse(ctx, o.comp.lock, e.cfg.Pulse, id); err != nil {
				e.log.Warn("retry pulse failed", "err", err)
			}
			continue
		}
		break
	}
	// The door was not seen opening. A board that does not answer now (line
	// noise, a reboot) may still hold the door's events in its queue: wait
	// for it a while before deciding, taking a late door event as the
	// operation's. Found by the gauntlet (bench/chaos, line_noise).
	present, _, known := e.itemState(ctx, o)
	if !known {
		deadline := time.Now().Add(max(e.cfg.Timeouts.BoardUnreachable, 10*time.Second))
		for time.Now().Before(deadline) {
			opened, live := waitOpened(ctx, o, 500*time.Millisecond)
			if !live {
				return
			}
			if opened {
				e.afterOpen(ctx, o)
				return
			}
			if present, _, known = e.itemState(ctx, o); known {
				break
			}
		}
	}
	// If the item sensor says the job got done anyway (the door opened
	// while kluisd was down, or its events were lost), report the outcome;
	// otherwise the document is still there and the code was not consumed.
	// The decision uses the reading the wait ended on: on a noisy line the
	// next read may fail again, and a failed read is no proof that the
	// item is still there (the gauntlet, seed 1796531315030483771,
	// line_noise: the citizen's pickup was called not opened and the
	// board's late events a forced door).
	if known && e.goalFrom(o, present) {
		if !o.resumed {
			e.alarm(wire.AlarmSensorDisagreement, addrPtr(o.comp.lock), nil,
				fmt.Sprintf("compartment %d: item changed but the door was never seen open", o.comp.cfg.Number))
		}
		e.finishSeen(ctx, o, false, false)
		return
	}
	e.unuse(o, time.Time{})
	e.end(o)
	e.show(o, StateNotOpened)
}

// waitOpened waits up to d for o's door to open, dropping o's other events
// meanwhile. live is false when ctx ended first.
func waitOpened(ctx context.Context, o *op, d time.Duration) (opened, live bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, false
		case ev := <-o.events:
			if ev.Kind == hardware.DoorOpened {
				return true, true
			}
		case <-timer.C:
			return false, true
		}
	}
}

type pulseResult int

const (
	pulseOK pulseResult = iota
	pulseFailed
	pulseUncertain
	pulseCancelled
)

// pulse sends the pulse, retrying with the same id only on hardware that
// deduplicates ids. Once any attempt went unanswered the pulse may have been
// carried out, so a later attempt's different error still makes the result
// uncertain (followed to the door's close, the code not released), never
// failed.
func (e *Engine) pulse(ctx context.Context, o *op, id hardware.CommandID, caps hardware.Capabilities) pulseResult {
	var err error
	maybe := false
	for attempt := 0; attempt < 3; attempt++ {
		err = e.drv.Pulse(ctx, o.comp.lock, e.cfg.Pulse, id)
		if err == nil {
			return pulseOK
		}
		// ErrRebooted: an attempt may have pulsed before the board
		// restarted, which forgot the id; the driver sends it no more
		// (firmware-protocol.md 4.3.1). Uncertain, like no answer.
		rebooted := errors.Is(err, hardware.ErrRebooted)
		maybe = maybe || rebooted || errors.Is(err, hardware.ErrTimeout)
		if ctx.Err() != nil {
			return pulseCancelled
		}
		e.log.Warn("pulse failed", "compartment", o.comp.cfg.Number, "attempt", attempt+1, "err", err)
		e.boardError(o.comp.lock.Board)
		if !caps.CommandIDs || rebooted || errors.Is(err, hardware.ErrHalted) || errors.Is(err, hardware.ErrOutOfRange) {
			break
		}
	}
	e.m.pulseErrors.Inc()
	if maybe {
		return pulseUncertain
	}
	return pulseFailed
}

func slotPtr(c *comp) *int {
	if c.slot < 0 {
		return nil
	}
	return intPtr(c.slot)
}

// present brings an automaton's slot to the hatch. False means o is over.
func (e *Engine) present(ctx context.Context, o *op) bool {
	id := hardware.CommandID(o.intent.ID)
	// A pickup or a retrieval takes the document out of the slot: the
	// hatch opens only onto it (see holdsItem).
	takesOut := o.purpose == PurposePickup || o.purpose == PurposeRetrieve
	// The slot may already be at the hatch (just loaded, or a retry): a
	// mechanism that does not move reports nothing on every driver, so
	// do not ask it to. A document to take out must be seen there too: a
	// driver without position feedback may believe a slot is at the hatch
	// that never arrived.
	if h, err := e.mech.Hatch(ctx, o.comp.cfg.Board); err == nil && h.Slot == o.comp.slot && h.Locked && !h.Open && !h.Busy && !h.Fault &&
		(!takesOut || h.ItemAtHatch) {
		e.log.Info("slot already at the hatch", "compartment", o.comp.cfg.Number, "slot", o.comp.slot)
		return true
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = e.mech.Present(ctx, o.comp.cfg.Board, o.comp.slot, id)
		if err != nil && ctx.Err() == nil {
			e.boardError(o.comp.cfg.Board)
		}
		if err == nil || !e.Caps().CommandIDs || errors.Is(err, hardware.ErrFault) || errors.Is(err, hardware.ErrRebooted) {
			break
		}
	}
	fail := func(detail string) bool {
		_ = e.j.EndPulse(o.intent.ID, false)
		e.alarm(wire.AlarmMechanismFault, nil, intPtr(o.comp.cfg.Board), detail)
		e.unuse(o, time.Time{})
		e.end(o)
		e.show(o, StateOutOfOrder)
		return false
	}
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		return fail("present failed: " + err.Error())
	}
	timer := time.NewTimer(e.cfg.Timeouts.Present)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return fail(fmt.Sprintf("slot %d not presented in time", o.comp.slot))
		case ev := <-o.events:
			switch {
			case ev.Kind == hardware.SlotPresented && ev.Slot == o.comp.slot:
				if takesOut && !e.holdsItem(ctx, o) {
					if ctx.Err() != nil {
						return false
					}
					return fail(fmt.Sprintf("slot %d reported at the hatch, but no item there: the hatch stays shut", o.comp.slot))
				}
				return true
			case ev.Kind == hardware.SlotPresented:
				return fail(fmt.Sprintf("slot %d presented instead of %d", ev.Slot, o.comp.slot))
			case ev.Kind == hardware.MechanismFault:
				_ = e.j.EndPulse(o.intent.ID, false)
				e.unuse(o, time.Time{})
				e.end(o)
				e.show(o, StateOutOfOrder)
				return false
			}
		}
	}
}

// itemSettle is how long holdsItem waits for the item sensor at the hatch
// after the slot was reported there: a module may report the end of the
// move before the sensor's change.
const itemSettle = 2 * time.Second

// holdsItem reports whether the item sensor at the hatch sees an item once
// o's slot was reported there, waiting up to itemSettle for it. A Tasmota
// carousel has no position feedback: its driver takes "busy" going off as
// the slot's arrival, and a mechanism that stops half-way (a reboot of its
// controller) looks the same. Opening the hatch then shows the citizen an
// empty hatch, and the closed hatch without an item reads as a completed
// pickup of a document still inside. Found by the gauntlet (bench/chaos
// seed 1796538706995782264, night 6, board_reboot on a Tasmota automaton:
// the backend called the document collected while it lay in its slot).
func (e *Engine) holdsItem(ctx context.Context, o *op) bool {
	timer := time.NewTimer(itemSettle)
	defer timer.Stop()
	for {
		if h, err := e.mech.Hatch(ctx, o.comp.cfg.Board); err == nil && h.ItemAtHatch {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			h, err := e.mech.Hatch(ctx, o.comp.cfg.Board)
			return err == nil && h.ItemAtHatch
		case ev := <-o.events:
			if ev.Kind == hardware.ItemPlaced {
				return true
			}
		}
	}
}

// afterOpen follows an open door until it closes, raising the door-left-open
// alarm once.
func (e *Engine) afterOpen(ctx context.Context, o *op) {
	e.show(o, e.openState(o))
	timer := time.NewTimer(e.cfg.Timeouts.DoorLeftOpen)
	defer timer.Stop()
	alarmed := false
	defer func() {
		if alarmed {
			e.m.leftOpen.Dec()
		}
	}()
	sawRemoved, sawPlaced := false, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			if !alarmed {
				alarmed = true
				e.m.leftOpen.Inc()
				e.alarm(wire.AlarmDoorLeftOpen, addrPtr(o.comp.lock), nil,
					fmt.Sprintf("compartment %d open for more than %v", o.comp.cfg.Number, e.cfg.Timeouts.DoorLeftOpen))
			}
		case ev := <-o.events:
			switch ev.Kind {
			case hardware.ItemRemoved:
				sawRemoved = true
			case hardware.ItemPlaced:
				sawPlaced = true
			case hardware.DoorClosed:
				if alarmed {
					e.emitKept(wire.Event{Kind: wire.EvAlarmCleared, Alarm: wire.AlarmDoorLeftOpen, Addr: addrPtr(o.comp.lock)})
				}
				e.finishSeen(ctx, o, sawRemoved, sawPlaced)
				return
			}
		}
	}
}

func (e *Engine) finish(ctx context.Context, o *op, _ bool) { e.finishSeen(ctx, o, false, false) }

// itemState reads whether the item is there: known is false without an item
// sensor or when the reading fails.
func (e *Engine) itemState(ctx context.Context, o *op) (present, doorOpen, known bool) {
	caps := e.Caps()
	if o.comp.slot >= 0 {
		h, err := e.mech.Hatch(ctx, o.comp.cfg.Board)
		if err != nil {
			return false, false, false
		}
		return h.ItemAtHatch, h.Open, true
	}
	if !caps.ItemSensor {
		return false, false, false
	}
	st, err := e.drv.States(ctx)
	if err != nil {
		return false, false, false
	}
	for _, s := range st {
		if s.Addr == o.comp.lock {
			return s.ItemPresent, s.DoorOpen && caps.DoorSensor, true
		}
	}
	return false, false, false
}

// finishSeen decides the outcome once the door closed.
func (e *Engine) finishSeen(ctx context.Context, o *op, sawRemoved, sawPlaced bool) {
	present, doorOpen, known := e.itemState(ctx, o)
	if known && doorOpen {
		e.alarm(wire.AlarmSensorDisagreement, addrPtr(o.comp.lock), nil,
			fmt.Sprintf("compartment %d: door reported closed but reads open", o.comp.cfg.Number))
	}
	if known && ((sawRemoved && present && !sawPlaced) || (sawPlaced && !present && !sawRemoved)) {
		e.alarm(wire.AlarmSensorDisagreement, addrPtr(o.comp.lock), nil,
			fmt.Sprintf("compartment %d: item events and item sensor disagree", o.comp.cfg.Number))
	}
	base := wire.Event{Addr: addrPtr(o.comp.wireAddr()), Slot: slotPtr(o.comp), DocumentID: o.docID, StaffID: o.staffID,
		CommandID: o.commandID}
	state := StateIdle
	switch o.purpose {
	case PurposePickup:
		ev := base
		ev.Method, ev.Offline = o.method, o.offline
		if o.offline {
			ev.CodeRef = o.codeRef
			if ev.CodeRef == "" {
				ev.CodeRef = e.usedRef(o.docID) // resumed after a restart
			}
		}
		if known && present {
			ev.Kind = wire.EvPickupNotCollected
			e.unuse(o, e.now().Add(e.cfg.Timeouts.Grace))
			state = StateNotCollected
		} else {
			ev.Kind = wire.EvPickupCompleted
			if !known {
				ev.Detail = "no item sensor: assumed collected"
			}
			e.markUsed(o.docID)
			state = StateDone
		}
		e.m.pickups.WithLabelValues(string(ev.Kind)).Inc()
		e.emitKept(ev)
	case PurposeLoad:
		if known && !present {
			state = StateLoadEmpty
		} else {
			ev := base
			ev.Kind = wire.EvLoaded
			e.emitKept(ev)
			e.forgetCodes(o.comp, o.docID)
			state = StateLoaded
		}
	case PurposeRetrieve:
		if known && present {
			state = StateStillThere
		} else {
			ev := base
			ev.Kind = wire.EvRetrieved
			e.emitKept(ev)
			e.forgetCodes(o.comp, "")
			state = StateRetrieved
		}
	default:
		// A remote open or a technician's test-open: the door opened
		// for no document, so the device no longer knows which document
		// lies behind it (staff may have taken one out or put one in,
		// recorded at the console only): no code opens it offline
		// until the backend's sync names its document again.
		e.forgetCodes(o.comp, "")
		state = StateTestOpen
	}
	e.end(o)
	if o.purpose != PurposePickup && o.purpose != PurposeRemote && !o.resumed {
		e.setScreen(state, o.comp.cfg.Number, o.lang)
		return
	}
	e.show(o, state)
}

// forgetCodes withdraws from the offline cache the entries of c (a locker
// compartment or an automaton slot) other than keep's ("" all): staff
// emptied c or loaded keep into it, or its door (the hatch with c's slot
// presented) opened for no document, so no other document's code may open
// it offline, even before the backend's code sync (which revokes them)
// arrives (offline.Cache.Forget).
func (e *Engine) forgetCodes(c *comp, keep string) {
	if e.o.Cache == nil || c == nil {
		return
	}
	n, err := e.o.Cache.Forget(c.wireAddr(), keep)
	if err != nil {
		e.log.Error("forgetting the offline codes of an emptied or reloaded compartment failed", "compartment", c.cfg.Number, "err", err)
		return
	}
	if n > 0 {
		e.log.Info("offline codes of an emptied or reloaded compartment forgotten", "compartment", c.cfg.Number, "entries", n)
		e.m.cacheSize.Set(float64(e.o.Cache.Len()))
	}
}

// forgetBoardCodes withdraws the offline codes of every slot of the
// automaton on board (in one write of the cache): its hatch opened or its
// item changed with no operation, and any slot may have been reached.
func (e *Engine) forgetBoardCodes(board int) {
	if e.o.Cache == nil {
		return
	}
	var addrs []wire.Address
	for _, c := range e.comps {
		if c.slot >= 0 && c.cfg.Board == board {
			addrs = append(addrs, c.wireAddr())
		}
	}
	n, err := e.o.Cache.ForgetAll(addrs)
	if err != nil {
		e.log.Error("withdrawing the offline codes of a forced automaton's slots failed", "board", board, "err", err)
		return
	}
	if n > 0 {
		e.log.Info("offline codes of every slot of a forced automaton withdrawn", "board", board, "entries", n)
		e.m.cacheSize.Set(float64(e.o.Cache.Len()))
	}
}

// forgetAllCodes withdraws every code of the offline cache (in one durable
// write): the journal was damaged, and the records lost after the damage
// may have held the single-use mark of an offline pickup (and its
// pickup_completed, which the backend then never had, so its syncs keep
// the code). Offline no code known at the damage opens a door again; online
// the backend decides, and codes synced afterwards are new entries. It
// reports whether the withdrawal is durable (nothing to withdraw counts);
// without a cache (unreadable) it is not: a later start may read it.
func (e *Engine) forgetAllCodes() bool {
	if e.o.Cache == nil {
		return false
	}
	// Every entry, not only the configured compartments': one taken out
	// of the configuration and put back later keeps no spent code.
	n, err := e.o.Cache.WithdrawAll()
	if err != nil {
		e.log.Error("withdrawing the offline codes after journal damage failed", "err", err)
		return false
	}
	e.log.Warn("journal damaged: every offline code known until now withdrawn (single-use marks may be lost)", "entries", n)
	e.m.cacheSize.Set(float64(e.o.Cache.Len()))
	return true
}

// errWithdrawalPending refuses every offline code while a damaged
// journal's withdrawal of the offline codes is not durable yet.
var errWithdrawalPending = fmt.Errorf("engine: the offline codes' withdrawal after journal damage is not saved yet: %w", offline.ErrWithdrawn)

// settleWithdrawal withdraws every offline code after journal damage and
// reports whether that is done. Settled (journal.DamageName removed) only
// once the withdrawal is durable: until then every start withdraws again,
// so a power cut between the journal's recovery and here loses nothing;
// and while it is not durable (the cache could not be saved) no code is
// accepted offline in this run either (verifyOffline tries again).
func (e *Engine) settleWithdrawal() bool {
	e.withdrawMu.Lock()
	defer e.withdrawMu.Unlock()
	if !e.withdrawPending.Load() {
		return true
	}
	if !e.forgetAllCodes() {
		return false
	}
	e.withdrawPending.Store(false)
	if err := e.o.Journal.SettleDamage(); err != nil {
		e.log.Error("settling the journal damage failed (the codes are withdrawn again at the next start)", "err", err)
	}
	return true
}

// unuse releases an offline single-use mark: the code may be used again
// (until graceUntil when not zero).
func (e *Engine) unuse(o *op, graceUntil time.Time) {
	if o.purpose != PurposePickup || o.docID == "" {
		return
	}
	e.setUsed(usedCode{Doc: o.docID, GraceUntil: graceUntil, Released: graceUntil.IsZero()})
}

func (e *Engine) markUsed(doc string) {
	if doc != "" {
		e.setUsed(usedCode{Doc: doc})
	}
}

// setUsed records u in memory now and in the journal in order with the
// kept writes (a full disk keeps it until the journal takes writes).
func (e *Engine) setUsed(u usedCode) {
	e.keep("code mark", func() error { return e.appendData(recCodeUsed, u) })
	e.mu.Lock()
	e.used[u.Doc] = u
	e.mu.Unlock()
}

// holdPending marks u's code spent in memory only (an offline pickup whose
// pulse intent, journaled next, carries the mark durably) and returns what
// puts the previous mark back when the operation does not start. It does
// not touch a mark changed meanwhile.
func (e *Engine) holdPending(u usedCode) (restore func()) {
	e.mu.Lock()
	prev, had := e.used[u.Doc]
	e.used[u.Doc] = u
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.used[u.Doc] != u {
			return
		}
		if had {
			e.used[u.Doc] = prev
		} else {
			delete(e.used, u.Doc)
		}
	}
}

// usedRef returns the code reference of doc's single-use mark.
func (e *Engine) usedRef(doc string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.used[doc].CodeRef
}

// usedNow reports whether doc's code is spent on this device.
func (e *Engine) usedNow(doc string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, ok := e.used[doc]
	if !ok || u.Released {
		return false
	}
	return u.GraceUntil.IsZero() || !e.now().Before(u.GraceUntil)
}

// goalReached reports whether the item sensor shows o's purpose done: the
// item gone after a pickup or retrieval, present after a load.
func (e *Engine) goalReached(ctx context.Context, o *op) bool {
	present, _, known := e.itemState(ctx, o)
	return known && e.goalFrom(o, present)
}

// goalFrom reports whether an item sensor reading present says o's job
// is done (the item out for a pickup or retrieval, in for a load).
func (e *Engine) goalFrom(o *op, present bool) bool {
	switch o.purpose {
	case PurposePickup, PurposeRetrieve:
		return !present
	case PurposeLoad:
		return present
	}
	return false
}
