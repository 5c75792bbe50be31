// Package engine is the heart of kluisd: the pickup flow, staff loading and
// retrieval, technician test-opens, remote commands, hardware events and
// alarms, on top of a hardware.Driver, the durable journal and the offline
// code cache.
//
// # Operations
//
// Every door operation (pickup, load, retrieve, test, remote) runs the same
// state machine, one per lock:
//
//	verify code -> [automaton: Present slot, wait SlotPresented; a pickup
//	   or retrieval also waits for the item at the hatch, else alarm]
//	-> journal intent (fsync) -> Pulse -> journal done
//	-> wait DoorOpened (timeouts.door_open_detect; on hardware that
//	   deduplicates command ids, re-pulse with the SAME id up to
//	   timeouts.open_retries times; otherwise open_not_detected and give up)
//	-> wait DoorClosed (door_left_open alarm after timeouts.door_left_open)
//	-> read the item sensor -> outcome event -> journal end
//
// Outcome events: pickup_completed (empty), pickup_not_collected (item still
// there: the code stays valid for timeouts.grace), loaded (item present
// after a load), retrieved (empty after a retrieval).
//
// Every event is journaled (fsync) before anything else sees it; the link
// publishes the journal's outbox until the backend acknowledges.
//
// # Verification
//
// Online first (wire verify/req with a correlation id, timeouts.verify);
// when the backend does not answer, offline against the cache: signed QR
// tokens (Ed25519) and argon2id PIN verifiers. Offline single use is
// journaled with the pulse intent (an offline pickup's intent is its code's
// mark, so one fsync precedes the pulse) and released ("code_used") when
// the door never opened; a pickup_completed marks the code used locally in every case, so
// a replay is refused even while the backend has not yet heard of it. Wrong
// codes count towards a local lockout (lockout.*), journaled so a restart
// does not lift it, and raise the brute_force_lockout alarm.
//
// # Restarts
//
// At start-up the boards found (Describe) are compared with the
// configuration: a missing board raises board_unreachable and its
// compartments are refused. Operations the journal shows unfinished are
// resolved (see docs/kluisd.md, "Pulse safety").
package engine
