package kluisbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kluis/hardware"
	"kluis/hardware/kluisproto"
)

// fnError carries an error returned by Watch's callback.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// Watch polls every board's event queue and hands the events to fn, in
// order per board, until ctx ends. A board's events are acknowledged to it
// only after fn returned nil for them; when fn fails, Watch acknowledges
// the ones before, returns fn's error, and the failed event is delivered
// again by the next Watch.
//
// Besides the boards' own events Watch reports BoardOffline (no answer
// after the retries), BoardOnline (answering again), BoardRebooted (boot id
// changed; the state is then re-read) and, after a reboot or a full event
// queue lost events, the door, item and hatch changes a re-read of STATUS
// shows (Seq 0). After such a re-read, a door, item or hatch event of the
// same boot that changes nothing in the state the driver knows repeats what
// the re-read already reported; it is acknowledged and dropped.
//
// Only one Watch runs at a time (another gets ErrBusy). It returns
// ctx.Err() when ctx ends and an error wrapping hardware.ErrHalted after
// Close.
func (d *Driver) Watch(ctx context.Context, fn func(hardware.Event) error) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return fmt.Errorf("kluisbus: closed: %w", hardware.ErrHalted)
	}
	if d.watching {
		d.mu.Unlock()
		return fmt.Errorf("kluisbus: watch already running: %w", hardware.ErrBusy)
	}
	d.watching = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.watching = false
		d.mu.Unlock()
	}()
	for {
		for _, b := range d.o.Boards {
			if err := d.watchStep(ctx, fn, func() error { return d.pollBoard(ctx, b, fn) }); err != nil {
				return err
			}
		}
		if err := d.watchStep(ctx, fn, nil); err != nil {
			return err
		}
		t := time.NewTimer(d.o.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// watchStep checks ctx and Close, runs poll and delivers the driver's own
// events; it returns the error that ends Watch, if any.
func (d *Driver) watchStep(ctx context.Context, fn func(hardware.Event) error, poll func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.usable(); err != nil {
		return err
	}
	if poll != nil {
		if err := poll(); err != nil {
			var fe fnError
			if errors.As(err, &fe) {
				return fe.err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if uerr := d.usable(); uerr != nil {
				return uerr
			}
			// Line trouble is recorded as an offline board; go on.
		}
	}
	if err := d.deliverPending(fn); err != nil {
		return err
	}
	return nil
}

// deliverPending hands the driver's own events to fn, removing each only
// when fn returned nil.
func (d *Driver) deliverPending(fn func(hardware.Event) error) error {
	for {
		d.mu.Lock()
		if len(d.pending) == 0 {
			d.mu.Unlock()
			return nil
		}
		ev := d.pending[0]
		d.mu.Unlock()
		if err := fn(ev); err != nil {
			return err
		}
		d.mu.Lock()
		d.pending = d.pending[1:]
		d.mu.Unlock()
	}
}

// pollBoard brings one board up to date: INFO and WATCHDOG when needed,
// STATUS after a reboot or overflow, then its event queue.
func (d *Driver) pollBoard(ctx context.Context, b int, fn func(hardware.Event) error) error {
	d.mu.Lock()
	bd := d.boards[b]
	skip := bd.link == linkOffline && d.o.Clock().Before(bd.nextTry)
	d.mu.Unlock()
	if skip {
		return nil
	}
	for round := 0; round < 16; round++ {
		if err := d.prepare(ctx, b); err != nil {
			return err
		}
		// Reboot events and re-read changes go before the new events.
		if err := d.deliverPending(fn); err != nil {
			return fnError{err}
		}
		reply, err := d.request(ctx, b, &kluisproto.EventsRequest{})
		if err != nil {
			return err
		}
		r, err := expect[*kluisproto.EventsReply](b, reply)
		if err != nil {
			d.warn.Warn("EVENTS refused", "board", b, "err", err)
			return err
		}
		d.mu.Lock()
		stale := bd.resync || bd.bootID != r.BootID
		d.mu.Unlock()
		if stale {
			continue // the board rebooted: re-read its state first
		}
		// BoardOnline (this answer) goes before the board's events.
		if err := d.deliverPending(fn); err != nil {
			return fnError{err}
		}
		more, err := d.deliverBoardEvents(ctx, b, r, fn)
		if err != nil {
			return err
		}
		if r.Flags&kluisproto.EvFlagOverflow != 0 {
			d.log.Warn("board event queue overflowed; re-reading state", "board", b)
			d.mu.Lock()
			bd.resync = true
			d.mu.Unlock()
			more = true
		}
		if !more {
			return nil
		}
	}
	return nil
}

// prepare reads INFO when unknown, sets the watchdog and re-reads the state
// after a reboot or overflow (queueing the changes it finds).
func (d *Driver) prepare(ctx context.Context, b int) error {
	d.mu.Lock()
	bd := d.boards[b]
	haveInfo, haveState, resync, watchdogSet := bd.haveInfo, bd.haveState, bd.resync, bd.watchdogSet
	d.mu.Unlock()
	if !haveInfo {
		reply, err := d.request(ctx, b, &kluisproto.InfoRequest{})
		if err != nil {
			return err
		}
		if _, err := expect[*kluisproto.InfoReply](b, reply); err != nil {
			return err
		}
	}
	if !watchdogSet && d.o.Watchdog > 0 {
		s := min(max(int((d.o.Watchdog+time.Second-1)/time.Second), 1), 255)
		reply, err := d.request(ctx, b, &kluisproto.WatchdogRequest{TimeoutS: uint8(s)})
		if err != nil {
			return err
		}
		r, err := expect[*kluisproto.WatchdogReply](b, reply)
		if err != nil {
			d.log.Warn("watchdog not set", "board", b, "err", err)
		}
		d.mu.Lock()
		// Set, or refused (no use asking again in this boot).
		if err != nil || bd.bootID == r.BootID {
			bd.watchdogSet = true
		}
		d.mu.Unlock()
	}
	if haveState && !resync {
		return nil
	}
	st, err := d.readStatus(ctx, b)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if bd.bootID != st.BootID {
		return nil // rebooted again meanwhile; the next round re-reads
	}
	if haveState {
		d.queueChangesLocked(b, bd, st)
		bd.dropNoop = true
	}
	bd.state, bd.haveState, bd.resync = *st, true, false
	return nil
}

func (d *Driver) hatchBoardLocked(bd *board) bool {
	return bd.info.Caps&kluisproto.CapMechanism != 0
}

// queueChangesLocked queues the door, item and hatch changes between the
// known state and a fresh STATUS.
func (d *Driver) queueChangesLocked(b int, bd *board, st *kluisproto.StatusReply) {
	n := max(int(st.Channels), int(bd.state.Channels))
	for ch := 0; ch < n; ch++ {
		a := hardware.Address{Board: b, Channel: ch}
		if was, is := bd.state.DoorOpen.Get(ch), st.DoorOpen.Get(ch); was != is {
			k := hardware.DoorClosed
			if is {
				k = hardware.DoorOpened
			}
			if ch == 0 && d.hatchBoardLocked(bd) {
				k = map[bool]hardware.EventKind{true: hardware.HatchOpened, false: hardware.HatchClosed}[is]
			}
			d.queueLocked(hardware.Event{Kind: k, Addr: a, Detail: "seen in re-read state"})
		}
		if was, is := bd.state.ItemPresent.Get(ch), st.ItemPresent.Get(ch); was != is {
			k := hardware.ItemRemoved
			if is {
				k = hardware.ItemPlaced
			}
			d.queueLocked(hardware.Event{Kind: k, Addr: a, Detail: "seen in re-read state"})
		}
	}
}

var faultText = map[byte]string{
	kluisproto.FaultNone:     "unspecified",
	kluisproto.FaultJam:      "jam",
	kluisproto.FaultPosition: "position lost",
	kluisproto.FaultMotor:    "motor fault",
	kluisproto.FaultHatch:    "hatch obstructed",
	kluisproto.FaultOther:    "other",
}

// convertLocked turns a board event into a hardware event, applying it to
// the known state. ok is false for events that are dropped (no-op state
// changes, watchdog notes, unknown kinds).
func (d *Driver) convertLocked(b int, bd *board, e kluisproto.Event) (hardware.Event, bool) {
	ch := int(e.Channel)
	if e.Channel == kluisproto.ChannelNone {
		ch = -1
	}
	ev := hardware.Event{Addr: hardware.Address{Board: b, Channel: ch}, Seq: e.Seq, At: d.o.Clock()}
	setBit := func(m *kluisproto.Bitmap, v bool) bool {
		if ch < 0 || ch >= kluisproto.MaxChannels || m.Get(ch) == v {
			return false
		}
		*m = m.Set(ch, v)
		return true
	}
	switch e.Kind {
	case kluisproto.EvDoorOpened, kluisproto.EvDoorClosed, kluisproto.EvHatchOpened, kluisproto.EvHatchClosed:
		open := e.Kind == kluisproto.EvDoorOpened || e.Kind == kluisproto.EvHatchOpened
		if e.Kind == kluisproto.EvHatchOpened || e.Kind == kluisproto.EvHatchClosed {
			ch = 0
			ev.Addr.Channel = 0
			ev.Kind = map[bool]hardware.EventKind{true: hardware.HatchOpened, false: hardware.HatchClosed}[open]
		} else {
			ev.Kind = map[bool]hardware.EventKind{true: hardware.DoorOpened, false: hardware.DoorClosed}[open]
		}
		if !setBit(&bd.state.DoorOpen, open) && bd.dropNoop {
			return ev, false
		}
	case kluisproto.EvItemPlaced, kluisproto.EvItemRemoved:
		placed := e.Kind == kluisproto.EvItemPlaced
		ev.Kind = map[bool]hardware.EventKind{true: hardware.ItemPlaced, false: hardware.ItemRemoved}[placed]
		if !setBit(&bd.state.ItemPresent, placed) && bd.dropNoop {
			return ev, false
		}
	case kluisproto.EvUnlocked:
		ev.Kind = hardware.Unlocked
	case kluisproto.EvSlotPresented:
		ev.Kind = hardware.SlotPresented
		ev.Addr.Channel = -1
		ev.Slot = int(e.Arg)
	case kluisproto.EvMechanismFault:
		ev.Kind = hardware.MechanismFault
		ev.Addr.Channel = -1
		t, ok := faultText[e.Arg]
		if !ok {
			t = fmt.Sprintf("code %d", e.Arg)
		}
		ev.Detail = "mechanism fault: " + t
	case kluisproto.EvWatchdog:
		d.log.Warn("board watchdog relocked everything (the master was silent)", "board", b, "seq", e.Seq)
		ev.Kind = hardware.BoardWatchdog
		ev.Addr.Channel = -1
		ev.Detail = "the board's watchdog relocked every lock: the master was silent"
	default:
		d.warn.Warn("unknown event kind skipped", "board", b, "kind", e.Kind.String(), "seq", e.Seq)
		return ev, false
	}
	return ev, true
}

// deliverBoardEvents hands the new events of r to fn and acknowledges what
// fn took. more reports that the board holds further events.
func (d *Driver) deliverBoardEvents(ctx context.Context, b int, r *kluisproto.EventsReply, fn func(hardware.Event) error) (more bool, err error) {
	d.mu.Lock()
	bd := d.boards[b]
	d.mu.Unlock()
	var fnErr error
	took := 0
	for _, e := range r.Events {
		d.mu.Lock()
		if bd.bootID != r.BootID {
			d.mu.Unlock()
			return true, nil // a reboot was seen meanwhile (States): start over
		}
		if bd.delivered != 0 && int32(e.Seq-bd.delivered) <= 0 {
			d.mu.Unlock()
			took++
			continue // delivered before; its ACK was lost
		}
		saved := bd.state
		ev, ok := d.convertLocked(b, bd, e)
		d.mu.Unlock()
		if ok {
			if err := fn(ev); err != nil {
				d.mu.Lock()
				bd.state = saved // it will be delivered again
				d.mu.Unlock()
				fnErr = err
				break
			}
			d.m.events.Inc()
		}
		d.mu.Lock()
		if bd.bootID == r.BootID {
			bd.delivered = e.Seq
		}
		d.mu.Unlock()
		took++
	}
	if took > 0 {
		d.mu.Lock()
		seq, boot := bd.delivered, bd.bootID
		d.mu.Unlock()
		if seq != 0 && boot == r.BootID {
			reply, err := d.request(ctx, b, &kluisproto.AckRequest{BootID: boot, Seq: seq})
			if err == nil {
				_, err = expect[*kluisproto.AckReply](b, reply)
			}
			if err != nil && fnErr == nil {
				// The events stay queued; they are read again and skipped.
				d.log.Warn("ACK failed", "board", b, "seq", seq, "err", err)
				if errors.Is(err, hardware.ErrTimeout) || errors.Is(err, context.Canceled) {
					return false, err
				}
				return true, nil
			}
		}
	}
	if fnErr != nil {
		return false, fnError{fnErr}
	}
	return int(r.Pending) > len(r.Events), nil
}
