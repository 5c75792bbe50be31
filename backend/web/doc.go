// Package web is the staff console and the technician dashboard that
// kluis-backend serves under /staff/ on the same listener as the REST API:
// pages rendered with html/template from embedded files, a little plain
// JavaScript served as files (no build step, no inline script), and every
// word people read taken from one catalogue in Dutch, French, English and
// German (catalog.go; Dutch first, as staff in Kortrijk read it).
//
// # Who may do what
//
// The pages call the same use cases as the REST API (backend/service,
// backend/deviceops through api.RemoteOpen, api.ViewSlip) in-process, and
// every console action names the REST routes it stands for: its allowed
// roles are those of the API's route table (Options.RouteRoles), read at
// start-up, so there is one rule per action. A button a role may not use is
// not drawn, and the server refuses the request anyway (403).
//
// # Sessions and forms
//
// A password login (the API's login limits, auth.LoginLimits, shared with
// POST /api/v1/sessions) starts a server-side session in PostgreSQL
// (auth.WebSession): the cookie is HttpOnly, SameSite=Lax, path /staff/,
// Secure behind TLS; it ends at logout, after an idle timeout and at an
// absolute lifetime. Every POST carries the session's synchroniser CSRF
// token and must pass net/http's cross-origin protection (Sec-Fetch-Site,
// Origin); the login form uses a double-submit cookie. Responses carry a
// Content-Security-Policy without inline scripts or styles
// (frame-ancestors 'none'), nosniff, no-referrer and no-store.
//
// # Live dashboard
//
// The fleet page and a device's page update without a reload through
// server-sent events. One poller per process (Hub) reads the database
// about once a second, and only while a stream is open: the audit trail's
// newest sequence number (every transition, device event, remote open and
// service change is audited) says which devices changed, and the device
// presence rows say which connected, disconnected or sent a heartbeat. A
// change renders the fleet table once per open stream, and a device's
// detail only on that device's streams: the cost grows with changes and
// open pages, not with their product. Every 30 seconds both are rendered
// again without a change, since time alone changes what they say (a
// device whose heartbeats stopped becomes late; "how long ago"). The number of open streams is
// bounded (Options.MaxStreams), and so is one user's
// (Options.MaxStreamsPerUser), so that one account cannot take them all.
package web
