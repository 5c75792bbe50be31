// Package broker is kluis-backend's embedded MQTT broker (mochi-mqtt), the
// zero-setup default when no external Mosquitto is configured.
//
// Every client authenticates with a user name and password, checked by the
// Credentials function (backend/devicelink's credential table in
// production). A client has one of two roles:
//
//   - RoleDevice: the user name is the device id. It may publish only its
//     own presence, heartbeat, event, cmdres, verify/req and staff/req
//     topics and subscribe only its own ack, cmd, verify/res and staff/res
//     topics (exact topics, no wildcards); its last will must be its own
//     presence topic; its client id must be the device id, "kluisd-{device}"
//     or start with "{device}." so that one device cannot take over
//     another's session.
//   - RoleBackend: may do everything, including shared subscriptions
//     ($share/kluis-backend/...).
//
// These are the same rules as deploy/mosquitto/acl; [Allowed] is the single
// Go statement of them. An unauthorised publish is dropped (MQTT 3.1.1
// clients are disconnected, as mochi does), an unauthorised subscription
// refused in the SUBACK.
//
// The listener is the broker's own (listener.go), not mochi's, whose
// accept loop ends on the first error: an accept error such as EMFILE is
// counted (kluis_broker_accept_errors_total), logged and retried with a
// back-off, and [Broker.Healthy] (part of /readyz) reports it meanwhile.
// Connections are capped (Options.MaxConnections, by default the
// open-file limit less a reserve): the excess gets CONNACK "server
// unavailable" (kluis_broker_connections_refused_total). A connection
// must send CONNECT within Options.ConnectTimeout. Each client's outbound
// queue (Options.PendingWrites) is small, since mochi allocates it whole
// per client; a packet dropped on a full queue is counted
// (kluis_broker_dropped_total). kluis-backend's own device link does not
// connect over TCP: [Broker.Subscribe] and [Broker.Publish] serve it
// in-process (mochi's inline client), so the devices' traffic to the
// backend never waits in such a queue.
package broker
