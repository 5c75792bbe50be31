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
// Appends are serialised with a transaction-level advisory lock taken in
// the caller's transaction ([Append]): concurrent writers queue, and a
// rolled-back transaction leaves no gap. Take the audit append as the last
// statement of a transaction so the lock is held briefly.
//
// A trigger refuses UPDATE, DELETE and TRUNCATE on audit_log. [Verify]
// walks the whole chain and names the first record that was altered,
// deleted or inserted out of order by someone who got around the trigger.
// Removing records at the end of the chain cannot be seen from inside the
// chain: compare [Report.HeadSeq] and [Report.HeadHash] with a copy kept
// elsewhere (e.g. logged daily) to detect that; the same anchor shows a
// forger who rewrote the whole tail with fresh hashes.
//
// Audit details must never hold personal data (names, birth dates, e-mail
// addresses, phone numbers, document numbers), PINs or tokens: refer to
// documents by id. The retention purge erases personal data from documents
// and leaves the audit trail, which is pseudonymous by construction, intact.
package audit
