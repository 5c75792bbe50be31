// Package hardwaretest provides Fake, a recording hardware.Driver and
// hardware.Mechanism for tests of the layers above the drivers (kluisd, the
// pickup flow, the simulator's wiring).
//
// The fake keeps no real hardware but behaves like the real drivers where it
// matters to callers:
//
//   - every Pulse and Present is recorded with its address, duration and
//     command id (Calls, Pulses, Presents, WaitPulses);
//   - with Caps.CommandIDs a repeated id is recorded as a duplicate and does
//     not count as a second pulse, like Kluis boards;
//   - tests set channel and hatch states (SetState, SetHatch) and inject
//     events (Inject); Watch hands them to its callback in order and drops an
//     event only after the callback returned nil, so an event whose callback
//     failed is delivered again by the next Watch (acknowledged semantics);
//   - FailNext makes the next call of one operation return an error;
//   - Options.OnPulse and OnPresent react to carried-out commands (open the
//     door a pulse unlocked, inject its events);
//   - Halt refuses further pulses with hardware.ErrHalted until Resume;
//   - Play replays a Script: expected calls in order, with the events and
//     states to produce when they arrive. Recording returns what happened so
//     far as such a script, so a session can be recorded once and replayed.
//
// For the tests of the real drivers (kluisbus, kerong, tasmota), StartWatch
// runs a driver's Watch in the background and keeps its events, to wait for
// (WaitEvent, WaitFor, both bounded), count and look at.
package hardwaretest
