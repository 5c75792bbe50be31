package simulator

import (
	"fmt"
	"time"

	"kluis/hardware"
)

// Module line changes, for emulators of networked modules (Tasmota).
const (
	ModuleOffline hardware.EventKind = "module_offline"
	ModuleOnline  hardware.EventKind = "module_online"
)

// LineFaults damage bytes on a serial line, each with a probability per
// byte, in both directions. Every draw comes from the device's seed, one
// random stream per direction, so a run replays exactly.
type LineFaults struct {
	// Drop loses the byte.
	Drop float64 `json:"drop,omitempty" yaml:"drop"`
	// Corrupt flips one random bit of the byte.
	Corrupt float64 `json:"corrupt,omitempty" yaml:"corrupt"`
	// Delay holds the byte back for up to MaxDelay.
	Delay float64 `json:"delay,omitempty" yaml:"delay"`
	// MaxDelay bounds a delay; default 50ms.
	MaxDelay time.Duration `json:"max_delay,omitempty" yaml:"max_delay"`
}

// Faults are the device-wide fault settings.
type Faults struct {
	Line LineFaults `json:"line" yaml:"line"`
	// BusyProb refuses a pulse with a busy answer (duty-cycle refusal).
	BusyProb float64 `json:"busy_prob,omitempty" yaml:"busy_prob"`
	// RebootProb reboots a board when it receives a frame.
	RebootProb float64 `json:"reboot_prob,omitempty" yaml:"reboot_prob"`
	// Offline takes a networked module off the network.
	Offline bool `json:"offline,omitempty" yaml:"offline"`
	// RebootAfterCommand reboots the Kluis board that carries out the next
	// UNLOCK or PRESENT right after it did (the lock energised, the
	// carousel started), before its reply goes out: the reply is lost and
	// the remembered command ids with it. It is a one-shot: the first
	// command carried out clears it. It is the worst moment for a reboot
	// (firmware-protocol.md 4.3.1).
	RebootAfterCommand bool `json:"reboot_after_command,omitempty" yaml:"reboot_after_command"`
}

func validProb(name string, p float64) error {
	if p < 0 || p > 1 || p != p {
		return fmt.Errorf("%s probability %v not in [0,1]: %w", name, p, ErrBadInput)
	}
	return nil
}

// Validate checks the probabilities.
func (f Faults) Validate() error {
	for _, x := range []struct {
		n string
		p float64
	}{{"drop", f.Line.Drop}, {"corrupt", f.Line.Corrupt}, {"delay", f.Line.Delay}, {"busy", f.BusyProb}, {"reboot", f.RebootProb}} {
		if err := validProb(x.n, x.p); err != nil {
			return err
		}
	}
	if f.Line.MaxDelay < 0 || f.Line.MaxDelay > 10*time.Second {
		return fmt.Errorf("max delay %s not in [0,10s]: %w", f.Line.MaxDelay, ErrBadInput)
	}
	return nil
}

// Faults returns the device-wide fault settings.
func (d *Device) Faults() Faults {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults
}

// SetFaults replaces the device-wide fault settings.
func (d *Device) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.Line.MaxDelay == 0 {
		f.Line.MaxDelay = 50 * time.Millisecond
	}
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	if f.Offline != d.faults.Offline {
		k := ModuleOnline
		if f.Offline {
			k = ModuleOffline
		}
		d.pending = append(d.pending, Change{Kind: k, Board: 0, Channel: -1, At: d.clk.Now()})
	}
	d.faults = f
	return nil
}

// SetStuck makes a lock stuck: a pulse energises it (and is recorded) but
// the door does not open.
func (d *Device) SetStuck(b, c int, on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ch, err := d.channelLocked(b, c)
	if err != nil {
		return err
	}
	ch.stuck = on
	return nil
}

// SetSensorBroken breaks a door sensor: it reads closed whatever the door
// does (and produces no door events).
func (d *Device) SetSensorBroken(b, c int, on bool) error {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	bd, ch, err := d.channelLocked(b, c)
	if err != nil {
		return err
	}
	ch.sensorBroken = on
	d.senseLocked(bd, c)
	return nil
}

// JamNext makes the next carousel move of automaton board b end in a
// mechanism fault.
func (d *Device) JamNext(b int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kind != Automaton {
		return fmt.Errorf("jam on %s: %w", d.id, ErrNotAutomaton)
	}
	if b < 0 || b >= len(d.boards) {
		return fmt.Errorf("board %d: %w", b, ErrNoSuchChannel)
	}
	d.boards[b].jamNext = true
	return nil
}

// SetMechanismFault sets or clears (a technician's repair) the mechanism
// fault of automaton board b.
func (d *Device) SetMechanismFault(b int, on bool) error {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	if d.kind != Automaton {
		return fmt.Errorf("fault on %s: %w", d.id, ErrNotAutomaton)
	}
	if b < 0 || b >= len(d.boards) {
		return fmt.Errorf("board %d: %w", b, ErrNoSuchChannel)
	}
	bd := d.boards[b]
	bd.fault = on
	if on {
		bd.busy = false
		bd.moveGen++
	}
	d.senseLocked(bd, 0)
	return nil
}

// MaybeReboot draws the reboot fault for a frame received by board b and
// reboots it when it hits; it reports whether it did.
func (d *Device) MaybeReboot(b int) bool {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	if b < 0 || b >= len(d.boards) || d.faults.RebootProb <= 0 {
		return false
	}
	if d.rng.Float64() >= d.faults.RebootProb {
		return false
	}
	d.rebootLocked(b)
	return true
}

// rebootAfterCommand reboots board b when the one-shot fault
// RebootAfterCommand is set, clearing it; it reports whether it did.
func (d *Device) rebootAfterCommand(b int) bool {
	d.mu.Lock()
	defer d.flush()
	defer d.mu.Unlock()
	if b < 0 || b >= len(d.boards) || !d.faults.RebootAfterCommand {
		return false
	}
	d.faults.RebootAfterCommand = false
	d.rebootLocked(b)
	return true
}

// Offline reports whether the module fault "offline" is set.
func (d *Device) Offline() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults.Offline
}

// Direction of bytes on a serial line.
type Direction int

// The two directions.
const (
	ToBoard   Direction = iota // master to board
	FromBoard                  // board to master
)

// LineFault draws the line faults for one byte travelling in dir: the byte
// to deliver, whether it is dropped and how long it is held back.
func (d *Device) LineFault(dir Direction, b byte) (out byte, drop bool, delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lf := d.faults.Line
	r := d.rngRx
	if dir == FromBoard {
		r = d.rngTx
	}
	if lf.Drop > 0 && r.Float64() < lf.Drop {
		return b, true, 0
	}
	if lf.Corrupt > 0 && r.Float64() < lf.Corrupt {
		b ^= 1 << r.IntN(8)
	}
	if lf.Delay > 0 && r.Float64() < lf.Delay {
		max := lf.MaxDelay
		if max <= 0 {
			max = 50 * time.Millisecond
		}
		delay = time.Duration(r.Int64N(int64(max)) + 1)
	}
	return b, false, delay
}
