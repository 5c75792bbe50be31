// Package api is the backend's REST/JSON interface under /api/v1 for staff,
// technicians and admins, plus the health, metrics and citizen track pages.
//
// # Routes and roles
//
// Every route is declared once in a table (see routes.go) with its method,
// ServeMux pattern and the roles allowed to call it. The same table drives
// the mux, the authorisation check, the metrics label (the pattern, never
// the raw path) and the test that keeps openapi.yaml in step with the code.
// Routes without roles are public: /healthz, /readyz, /metrics, the OpenAPI
// document, POST /api/v1/sessions (login) and the citizen page /t/{trackingID}.
//
// # Errors
//
// Every failure is JSON: {"error":{"code":"...","message":"..."}}. Codes are
// stable and documented in openapi.yaml; messages are for people. Request
// bodies are limited (1 MiB by default), must be a single JSON object
// without unknown fields, and wrong types are reported with the field name.
//
// # Idempotency
//
// Creating POSTs accept an Idempotency-Key header. The first request with a
// key stores its response (table api_idempotency, per user); the same key
// with the same method, path and body replays that response with the header
// Idempotent-Replayed: true; the same key with anything else is refused
// with 422 idempotency_key_reused; a request racing one still in progress
// gets 409 idempotency_in_progress. Responses with status 5xx are not kept.
//
// # Pagination
//
// Lists take limit (1-200, default 50) and an opaque cursor, and answer
// {"items":[...],"next_cursor":"...","next":"/api/v1/...?cursor=..."};
// next_cursor is empty on the last page.
package api
