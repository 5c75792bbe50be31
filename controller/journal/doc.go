// Package journal is kluisd's durable memory: an append-only file of records
// that is written and fsynced BEFORE the daemon acts on what a record says or
// publishes it.
//
// # File format
//
// One record per line: eight hex digits of the CRC-32C of the JSON text, a
// space, the JSON text, a newline. A power cut can leave the last line torn
// (no newline, or a CRC that does not match); Open detects that, drops the
// torn tail and truncates the file to the last whole record, so a half-written
// record is never misread. Damage before the last record (a bad disk block)
// stops reading at the first bad record: the rest is moved aside to a
// journal.log.bad-N file for forensics and Recovery.Corrupt tells the daemon
// to raise an alarm. A crash before the cut finds the same tail at the next
// Open, which writes the copy that crash left again (one whose bytes begin
// the tail) instead of adding another: repeated crashes keep one copy. On a
// full disk the reserve a previous run left (see "A full disk") is given up
// for the copy, and the journal opens low. Before the cut the marker file journal.damaged is
// written and fsynced (DamageName); every Open reports Recovery.Unsettled
// while it is there, until the caller, its response to the damage durable,
// calls SettleDamage: a power cut between the cut and that response does not
// leave a clean-looking journal.
//
// # What is in it
//
//   - events (door opened, collected, alarms, ...) that make up the outbox:
//     an event stays in the outbox until an ack record for its id is
//     appended after the backend acknowledged it;
//   - command results (results.go): the answer to a backend command, as
//     published on cmdres, held until an ack record names the command's
//     id (the backend acknowledges events and results on one ack topic);
//     a restart sends the held ones again. The caller bounds them
//     (ForgetResult: nothing written, the next compaction drops it);
//   - pulse intents and their outcome: "intent id=X channel=C" is fsynced
//     before the lock is energised and "done X" after the driver accepted
//     the command. An intent without done after a restart is an unfinished
//     pulse (see docs/kluisd.md: it is never blindly pulsed again);
//   - whatever else the daemon needs to survive a restart, as typed records
//     the caller keeps or drops at compaction: offline-used codes, seen
//     commands, the PIN attempt limits (pin_limits: the whole limiter state
//     after every failure, lockout and lift; the latest one is kept) and
//     their clock (pin_clock: its reading, so that a start does not count
//     the time kluisd was stopped), the version of the last offline code
//     sync applied (cache_version: an older cache file is refused), the
//     offline codes the device withdrew (cache_withdrawn),
//     failed offline PIN attempts by a short tag of the PIN (dob_failure)
//     and codes locked offline (code_locked). No record holds a PIN, a
//     date of birth or a QR token.
//
// The outbox is indexed in memory (outbox.go), made from the records as
// they are applied: an ack takes its event out by id (O(1), not a walk of
// the outbox), and OutboxNext reads the oldest events of a lane, the
// urgent ones (Options.Urgent: kluisd's alarms) ahead of the rest,
// without walking the acknowledged ones. Nothing of it is written: after
// a restart or a kill it is made again from the file, the truth.
//
// # Group commit
//
// Appends are durable when they return (fdatasync), but concurrent appends
// share their fdatasyncs. A writer encodes its record, then under the
// journal's lock numbers it and writes its line after those already
// written; it never holds the lock across an fdatasync. It then waits:
// when an fdatasync under way began after its line was written, that one
// covers it; otherwise it starts one itself, covering every line written
// so far (its own and those of the writers who came meanwhile), unless two
// are already running, in which case it waits for one to end and the next
// one covers it. Two at a time keep the disk busy (one running, the next
// gathering) without an fdatasync per append. Each fdatasync uses its own
// descriptor of the file: Linux reports a writeback error once per open
// file description, and two fdatasyncs sharing one could see one fail and
// the other succeed for the same pages. When an fdatasync ends, every
// record it made durable is applied (seen by Outbox, Unfinished, ...), in
// file order, and its writer woken; a record is never applied before it
// is durable. When an fdatasync fails, the file is cut back to the last
// durable offset and every writer still waiting gets the error: nothing
// that was not durable is acted upon or comes back at the next start.
//
// # Compaction
//
// Compact rewrites the live records (unacked events, open intents, records
// the caller's Keep function wants) into journal.log.tmp, fsyncs it, renames
// it over journal.log and fsyncs the directory. A meta record first in the
// new file carries the next sequence number so ids never repeat.
//
// # A full disk
//
// The journal owns a reserve of disk space: journal.reserve in its
// directory (Options.Reserve bytes, 1 MiB by default), allocated with
// fallocate (zeros written where that is not supported) and fsynced at
// Open. It holds nothing and is never read; its name does not start with
// journal.log, so it is never taken for the journal, a compaction's
// temporary file or a damaged tail. Open completes a reserve a crash left
// half made (allocating is idempotent) and cuts one larger than asked.
//
// When the file system says it is full (ENOSPC, EDQUOT) on a record's
// write or fdatasync, the journal gives the reserve up: the file is cut to
// nothing and the cut fsynced (a file system frees the blocks once the cut
// is committed), and the record is written again in that room (a failed
// record was cut off or never applied, so nothing doubles; every writer a
// failed fdatasync covered writes again). The journal is then "low"
// (Space): BeginPulse refuses with ErrNoSpace, so no new door is opened
// that the journal might not be able to follow, while the records of the
// operations under way (outcome events, done, end, alarms, code marks) go
// on being written, durably, in the reserve's room: nothing has to be kept
// in memory, and a kill or a power cut loses nothing that was reported
// written. An intent that itself meets the full disk gives the reserve up
// and is refused. Acknowledgements stop (ErrNoSpace) once half of the
// reserve's room is used: the event stays in the outbox and is sent and
// acknowledged again later. Compaction whose new file meets the full disk
// gives the reserve up too and writes the file again; the old file's room
// comes back at the rename.
//
// Restore makes the reserve again once the file system has room for it
// twice over (statfs; so that the next record does not give it up at
// once); the journal is then no longer low. A disk too full for the
// reserve at Open still opens the journal (reading needs no room), low.
package journal
