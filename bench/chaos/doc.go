// Package chaos is the gauntlet: a deterministic, seeded run of many
// compressed nights of a whole Kluis installation (kluis-backend on
// PostgreSQL, a broker (a private Mosquitto with the shipped configuration,
// ACL and TLS, or the backend's embedded broker: [Options.Broker]), kluis-sim
// with several devices of every driver, one kluisd per device) while
// faults are injected at seeded moments, with invariants checked after
// every night against the simulator's physical truth and the database.
//
// The pieces:
//
//   - [World] starts and owns the processes (binaries built by [Build]),
//     the cut proxies between each kluisd and the broker, the journal
//     mounts, the SMTP and SMS gateways the backend sends through, and the
//     clients of every API (the simulator through simulator/simclient). [World.Backends] holds one or more backend
//     processes: a fault may kill and restart any of them.
//   - [Fault] is one kind of fault: it is injected at a seeded moment of a
//     night and healed before the night's checks. [Kinds] lists every kind;
//     a new kind (such as a backend replica's kill) is one more entry.
//   - [Night] plays one night: staff load documents, citizens collect with
//     right and wrong codes, QR and PIN, forget doors open, leave items
//     behind, let documents expire; staff retrieve them.
//   - [Check] verifies the invariants after a night; [Report] holds the
//     figures and every violation with the seed that replays it.
//
// Run it with `make chaos` (100 nights) or, shorter, inside `make test`
// (TestGauntletShort). docs/chaos.md describes the faults, the invariants
// and how to replay a seed.
package chaos
