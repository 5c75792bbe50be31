// Package audit is the backend's append-only, tamper-evident audit trail.
//
// Every record (document transitions, door events, denied code attempts,
// remote opens, logins, ...) is a row of audit_log with a sequence number
// seq (1, 2, 3, ... without gaps), a UTC time, an actor ("user:<id>",
// "device:<id>", "system"), an action, a subject (e.g. "document:<uuid>")
// and details as JSON. Each row carries
//
//	hash = SHA-256(prev_hash || encode(seq, at, actor, action, subject, details))
//
// where prev_hash is the previous row's hash (32 zero bytes for seq 1) and
// encode is a length-prefixed binary encoding (see [HashRecord]), so that
// no field can bleed into another. Details are stored as PostgreSQL json
// (not jsonb): the stored text is exactly the hashed text.
//
// # Appending and chaining
//
// A business transaction does not touch the chain: [Append] inserts the
// record into audit_pending (numbered by a sequence) in the caller's
// transaction, without any lock, so the fleet's verifications and events
// commit side by side instead of queueing behind one lock held through
// every COMMIT. The chainer ([Chain]) then moves committed records into
// audit_log, oldest number first, in batches: one transaction at a time
// under a transaction-level advisory lock ([LockKey]) reads the chain's
// head, gives each record the next seq and its hash, inserts them and
// deletes them from audit_pending, atomically. So every committed record
// is chained exactly once (a crash leaves it pending for the next pass), a
// rolled-back transaction leaves nothing, and seq stays dense. A record
// committed late (its transaction started earlier) simply gets a later
// seq: the chain's order is the order of chaining, and readers paging by
// seq never see an earlier seq appear behind a later one.
//
// The backend runs a [Chainer] (every replica may: the chain transactions
// take turns under the lock), which looks every [DefaultChainEvery] and
// exports the backlog (kluis_audit_pending_records,
// kluis_audit_chain_lag_seconds). [List] and [Verify] chain what is
// pending first ([CatchUp]), so a reader sees what was committed before
// it asked; readers with SQL of their own call CatchUp.
//
// A trigger refuses UPDATE, DELETE and TRUNCATE on audit_log, and UPDATE,
// TRUNCATE and any DELETE but the chainer's on audit_pending. [Verify]
// walks the whole chain and names the first record that was altered,
// deleted or inserted out of order by someone who got around the trigger.
// Removing records at the end of the chain cannot be seen from inside the
// chain: compare [Report.HeadSeq] and [Report.HeadHash] with a copy kept
// elsewhere (e.g. logged daily) to detect that; the same anchor shows a
// forger who rewrote the whole tail with fresh hashes. Likewise a record
// still pending (for the chainer's fraction of a second) is protected by
// the trigger only; [Report.Pending] counts those Verify found waiting.
//
// Audit details must never hold personal data (names, birth dates, e-mail
// addresses, phone numbers, document numbers), PINs or tokens: refer to
// documents by id. The retention purge erases personal data from documents
// and leaves the audit trail, which is pseudonymous by construction, intact.
package audit
