// Package systemtest runs the whole system as separate processes and
// checks it end to end: the real kluis-backend binary (PostgreSQL from
// backend/pgtest, its embedded MQTT broker, the .eml mail drop), the real
// kluis-sim binary (a Kluis-protocol locker on a pseudo-terminal and a
// Tasmota automaton on the Mosquitto broker) and real kluisd processes
// with generated configurations.
//
// The tests drive them only through their real interfaces: the backend's
// REST API as admin and staff, the kiosk API of each kluisd, the
// simulator's control API, the mail drop (QR images decoded with gozxing,
// PINs read from the text) and signals: SIGKILL of a backend that is also
// the broker in the middle of a pickup, SIGKILL of kluisd at seeded points
// of pickups (TestKluisdKill), and SIGKILL of a private Mosquitto (deploy/mosquitto's
// configuration, per-device passwords and ACLs) while the backend and
// kluisd stay up (TestBrokerRestart). TestBrokerTLS runs the same
// configuration's TLS listener (certificates made by the test) with kluisd
// and the backend trusting the test's CA only. TestReplicas runs two
// backend replicas on that broker (shared subscriptions, one database) and
// SIGKILLs one inside a verification's and inside an event's transaction
// (found in pg_stat_activity while the test holds the row they wait for)
// and at seeded moments of pickups (KLUIS_REPLICA_SEED,
// KLUIS_REPLICA_ROUNDS); TestReplicaJobsRunOnce shows the reminder lock and
// the expiry sweep hold across replicas. TestDatabaseFailover gives the
// backend a primary and a synchronous standby (backend/pgtest/pgpair),
// kills the primary during a pickup and promotes the standby. TestKioskScreen drives kluisd's
// kiosk screen in headless Chromium (deploy/dev/browsertest) as citizens
// and staff do: clicks on the keypads, keys typed as a keyboard-wedge
// scanner types them. Every scenario checks the
// simulator's physical truth (pulses, doors, items) and the backend's
// document state.
//
// Each test starts its own world (database, backend, broker ports,
// simulator, kluisd) and none shares anything with another: they run in
// parallel, two at a time (maxWorlds, for PostgreSQL's shared 100
// connections), so that one test's waits for doors, timeouts and
// processes overlap another's.
//
// The binaries are built once per test binary (TestMain), with -race when
// the tests run with -race (the build cache is then shared with `go test
// -race ./...`). There is nothing to import here.
package systemtest
