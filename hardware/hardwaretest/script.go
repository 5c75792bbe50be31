package hardwaretest

import (
	"fmt"

	"kluis/hardware"
)

// Step is one line of a Script. Exactly one field is set:
//
//   - Expect: the next successful, non-duplicate Pulse or Present must match
//     it (Op and Addr; Slot for presents; Duration and ID when non-zero);
//     the script waits for it before going on;
//   - Event: queue this event for Watch;
//   - State: set this channel state.
type Step struct {
	Expect *Call                  `json:"expect,omitempty"`
	Event  *hardware.Event        `json:"event,omitempty"`
	State  *hardware.ChannelState `json:"state,omitempty"`
}

// Script is a sequence of steps: a recorded session to replay.
type Script []Step

// Play starts replaying s, replacing any script still running. Leading event
// and state steps happen at once; each later group happens when the expected
// call before it arrives. A call that does not match the next expectation is
// a script error (see ScriptDone); it is still recorded and still counts as
// carried out.
func (f *Fake) Play(s Script) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script = append(Script(nil), s...)
	f.scriptAt = 0
	f.scriptEr = nil
	f.runScriptLocked()
	f.notifyLocked()
}

// runScriptLocked carries out steps until the next expectation.
func (f *Fake) runScriptLocked() {
	for f.scriptAt < len(f.script) {
		st := f.script[f.scriptAt]
		switch {
		case st.Expect != nil:
			return
		case st.Event != nil:
			f.injectLocked(*st.Event)
		case st.State != nil:
			f.states[st.State.Addr] = *st.State
		}
		f.scriptAt++
	}
}

// matchScriptLocked advances the script on a finished call.
func (f *Fake) matchScriptLocked(c Call) {
	if c.Err != "" || c.Duplicate || f.scriptEr != nil || f.scriptAt >= len(f.script) {
		return
	}
	want := f.script[f.scriptAt].Expect
	if want == nil {
		return
	}
	if !matches(*want, c) {
		f.scriptEr = fmt.Errorf("hardwaretest: script step %d: want %s %s slot %d, got %s %s slot %d",
			f.scriptAt, want.Op, want.Addr, want.Slot, c.Op, c.Addr, c.Slot)
		return
	}
	f.scriptAt++
	f.runScriptLocked()
}

func matches(want, got Call) bool {
	if want.Op != got.Op || want.Addr != got.Addr {
		return false
	}
	if want.Op == OpPresent && want.Slot != got.Slot {
		return false
	}
	if want.Duration != 0 && want.Duration != got.Duration {
		return false
	}
	if want.ID != 0 && want.ID != got.ID {
		return false
	}
	return true
}

// ScriptDone reports whether every step of the script played, and the first
// mismatch if a call did not match the script.
func (f *Fake) ScriptDone() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scriptAt >= len(f.script), f.scriptEr
}

// Recording returns what happened so far as a Script: carried-out pulses and
// presents as expectations (failed and duplicate calls are left out),
// injected events and set states, in order. Playing it on a fresh fake
// replays the session.
func (f *Fake) Recording() Script {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(Script, 0, len(f.recorded))
	for _, st := range f.recorded {
		if st.Expect != nil {
			if st.Expect.Err != "" || st.Expect.Duplicate {
				continue
			}
			e := Call{Op: st.Expect.Op, Addr: st.Expect.Addr, Duration: st.Expect.Duration, ID: st.Expect.ID, Slot: st.Expect.Slot}
			out = append(out, Step{Expect: &e})
			continue
		}
		out = append(out, st)
	}
	return out
}
