// Package server runs kluis-backend: New fills in the defaults of the
// Options, Run opens (and migrates) the database, creates the bootstrap
// admin, starts every part, serves until its context ends and stops them
// in order. cmd/kluis-backend is a thin main around backend/cli, which
// turns flags and environment into Options.
//
// The parts, each a component with Run(ctx) next to what it serves:
//
//   - the REST API (backend/api) on an http.Server, shut down first;
//   - the embedded MQTT broker (backend/broker) when no external broker is
//     configured, with per-device credentials (backend/devicelink);
//   - the device link (backend/devicelink) with the code verifier, the
//     device events and the kiosk staff operations (backend/deviceops);
//   - the offline-code sync (deviceops.CodeSync), the sweep of accepted but
//     unfollowed verifications (deviceops.Followup);
//   - housekeeping (expiry and retention purge, backend/service), the
//     reminder loop (notify.Reminders), the pruning of idempotency keys,
//     the device retention (devicelink.Pruner: device events, commands
//     and code attempts past Options.DeviceRetention; the audit trail is
//     never pruned);
//   - the audit chainer (audit.Chainer), which moves committed audit
//     records into the hash chain shortly after their commit, and the
//     audit-chain watcher (audit.Watcher), checked once before serving.
//
// Jobs get the Options' clock, logger and registry; every periodic one
// runs its passes with backend/internal/periodic. A part that fails stops
// the server, like kluisd's daemon.
package server
