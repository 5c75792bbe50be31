// Package simulator stands in for the physical world of Kluis lockers and
// automatons: in tests, in the fault gauntlet and in `make demo`.
//
// A Device is the true physical state of one locker bank or automaton:
// boards of channels, each with a lock (energised by a pulse), a door (that
// springs open after a small mechanical delay while the lock is energised,
// and stays shut otherwise), a door sensor (which may be broken) and an
// item slot whose label tells tests WHAT is behind each door. People are
// scripted through its methods (Take, Put, Close, LeaveOpen, Force); an
// automaton board adds a carousel of slots behind its hatch (channel 0)
// that takes MoveTime to bring a slot to the hatch. Every pulse and carousel
// command received is recorded (Pulses, Presents) so tests can assert that
// no door was pulsed twice and none unasked.
//
// Time runs on an injected Clock (RealClock, ManualClock, or RealClock
// inside testing/synctest) and every random choice comes from the device's
// seed (math/rand/v2 PCG streams: one for board faults, one per serial
// direction), so a failing run replays exactly.
//
// Protocol responders make devices reachable by the real drivers:
// ServeSerial puts the Kluis protocol (Kluis, on hardware/kluisproto) or
// Kerong CU16 (Kerong) on a raw pseudo-terminal, with per-byte line faults
// and counts of the bad input the boards skipped (Line.Stats);
// ServeTasmota answers Tasmota commands on an MQTT broker. StartFleet builds
// a whole fleet from a Config (YAML, LoadConfig) and serves the loopback
// control API (NewControlHandler). See README.md for the wire mappings, the
// HTTP API and the kluis-sim command line.
package simulator
