// Package store is the backend's PostgreSQL data layer: the connection pool,
// the embedded schema migrations and the repositories for sites, devices,
// compartments and documents.
//
// # Migrations
//
// Every file migrations/NNNN_name.sql is embedded in the binary and applied
// in name order by [Migrate], each inside its own transaction, while holding
// a session-level PostgreSQL advisory lock so that several replicas starting
// together apply each migration exactly once. Applied versions are recorded
// in the schema_migrations table. Engineers own number ranges so files never
// collide: 0001-0019 core (sites, devices, compartments, documents,
// document_transitions, audit_log), 0020-0039 codes and notifications,
// 0040-0059 users, tokens and idempotency keys, 0060-0079 device link,
// 0160-0169 the audit records waiting for the chain (backend/audit),
// 0180-0189 the staff login limits (backend/auth, kiosk: backend/deviceops),
// 0200-0209 alarm acknowledgements (backend/alarms).
//
// # Times
//
// Every connection runs with TimeZone=UTC and every time written by this
// package comes from the injected clock, converted to UTC. Display in a
// site's time zone (sites.time_zone, Europe/Brussels by default) is the
// caller's business.
//
// # Concurrency
//
// Reservation picks a compartment with SELECT ... FOR UPDATE SKIP LOCKED and
// a unique partial index (documents_one_per_compartment) guarantees that no
// compartment ever holds two documents, whatever the callers do.
package store
