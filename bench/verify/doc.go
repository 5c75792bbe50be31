// Package verify is `kluis-bench verify`: verifications per second through
// the real backend (backend/server in-process: devicelink, deviceops,
// codes, PostgreSQL, the embedded MQTT broker) with real single-use claims,
// against the floor of the same work in PostgreSQL alone.
//
// Kluis: N simulated kiosks (paho clients with their own MQTT credentials)
// each publish verify/req with a fresh signed QR token, wait for verify/res
// and go on (closed loop, one request in flight per device, as a kiosk).
// Like kluisd, a kiosk waits for the answer, not for the broker's PUBACK
// of its request, and reads its connection through a buffer
// (internal/mqttconn); unlike kluisd, and only where that costs the kiosk
// alone, it takes its answers in paho's router goroutine (ordered)
// instead of a goroutine per answer.
// Every answer must be ok: a token is used once. Every answer's signature
// must hold as kluisd checks it (wire.VerifyResponseSig): checked after
// each phase, since in production that check runs on the kiosk's CPU.
//
// The process's heap allocations per claim (objects and bytes, from
// runtime/metrics) are reported beside its CPU per claim, and so are the
// cores each side kept busy on average (CPU time over the phases' elapsed
// time): a closed loop's rate is its cores over its CPU per claim, so the
// ratio to the floor is about the ratio of the cores times the inverse
// ratio of the CPU per claim (docs/performance.md, "Eleventh pass").
//
// The process's CPU per claim is also split by a CPU profile of each Kluis
// phase, by the goroutines' label (part=backend: the backend and its
// embedded broker; part=devices: the simulated kiosks; unlabelled: the Go
// runtime's scheduler and collector, and the bench itself). With -profile
// DIR each of those profiles is also written to DIR, for `go tool pprof
// -tagfocus=part=backend`, with the allocation profiles before and after
// the phase (`go tool pprof -sample_index=alloc_space -base`).
//
// Floor: pgbench with N clients runs the claim transaction on the same
// database: mark one unused code used (the same codes table, a disjoint set
// of codes) and insert one audit row of the same shape into a table like
// audit_log, in one transaction.
//
// The two alternate phase by phase, in every round, so that both see the
// same machine; the figure is the median over the rounds. -batch-mode
// one,one2 pairs one batch at a time with two at once
// (codes.Options.VerifyLeaders, switched between phases in the one
// backend): each round then runs a
// Kluis phase per mode and one floor phase, in a rotating order. After the run,
// the audit chain is verified (audit.Verify, what `kluisctl audit verify`
// calls) and every claim is checked to be in it.
//
// -pg-waits 1ms samples pg_stat_activity from a connection to the admin
// database during every phase and reports, per kind of phase, how many of
// the bench database's backends were on average in each state (statement,
// state, wait event), with the WAL flushes (pg_stat_wal, the whole
// server's) and the bench database's commits in the phases. -db-set
// commit_delay=300,commit_siblings=1 gives the throw-away database those
// settings (ALTER DATABASE ... SET, before anything connects; the floor
// gets them too).
package verify
