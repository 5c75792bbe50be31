// Package broker is kluis-backend's embedded MQTT 3.1.1 broker, the
// zero-setup default when no external Mosquitto is configured. It is its
// own lean server (server.go, packet.go), built to hold a whole fleet on
// one backend: each connection costs one goroutine reading it through a
// 512-byte buffer, its identity and subscriptions; nothing is queued per
// client. A message is written to its subscribers by the goroutine that
// publishes it, under each client's write lock with a write deadline
// (Options.WriteTimeout): a client that does not take it in time is
// disconnected and the message counted in kluis_broker_dropped_total.
// A publisher waits at most a second for that lock, and not at all once
// the write holding it has been stuck for a second: its message to that
// client is dropped (counted the same), so a client that floods requests
// and reads no answers holds one of the goroutines that answer the fleet,
// not all of them.
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
//     or start with "{device}.", and a session is its client id within
//     its identity (a device named "kluisd-{device}" has the id
//     "kluisd-{device}" too), so that one device cannot take over
//     another's session.
//   - RoleBackend: may do everything, including shared subscriptions
//     ($share/kluis-backend/...).
//
// These are the same rules as deploy/mosquitto/acl; [Allowed] is the single
// Go statement of them. The will is stricter than Mosquitto's, which
// checks it as a publish: a will on another of the device's topics (an
// event) would be one message in after [Broker.DisconnectDevice] shut a
// stolen password out. An unauthorised QoS 0 publish is dropped, an
// unauthorised QoS 1 or 2 publish costs the connection (MQTT 3.1.1 has no
// negative acknowledgement), an unauthorised subscription is refused in
// the SUBACK.
//
// What it speaks: MQTT 3.1.1 (and 3.1); QoS 0, 1 (PUBACK after the
// message is handed to every subscriber; a device's request's, verify/req
// or staff/req, goes in one write with the next packet to that device,
// its answer as a rule, and before it, or alone 50 ms after: one write
// and one read fewer per verification) and 2 (PUBREC/PUBREL/PUBCOMP,
// delivered once), subscriptions granted at most QoS 1; retained messages
// (presence); last wills, sent when a connection ends without DISCONNECT
// (keep-alive: 1.5 times the client's) unless a new connection of the
// same identity with the same client id took the session over or the broker is closing
// (Close; Shutdown, which the backend's stop calls first, sends them); shared subscriptions
// ($share/{group}/{filter}, one member of a group gets each message).
// Sessions are not kept past a connection: every client (kluisd, the
// Tasmota driver, devicelink) connects with a clean session, and the
// CONNACK never claims a session present; QoS 1 messages not acknowledged
// when a connection ends are not resent. A malformed packet closes the
// connection (FuzzDecode fuzzes the decoder, FuzzSession a whole
// connection after its CONNECT). A packet's remaining length
// is a promise, not bytes: a body over 4 KB grows as it arrives, so a
// client that announces the limit and stalls costs what it sent; the
// keep-alive (1.5 times the client's) bounds the wait for each whole
// packet.
//
// What one client can hold is bounded, as Mosquitto's configuration
// bounds it (deploy/mosquitto/mosquitto.conf): a keep-alive of 0 (never
// time out) or over Options.MaxKeepAlive (300 s, max_keepalive) is
// refused with CONNACK "identifier rejected", so a connection whose peer
// vanished goes within 450 s; one device's credentials hold at most
// Options.MaxDeviceConnections (8) connections at once, each client id a
// session (Mosquitto, which takes the user name as client id, gives a
// device one), the next refused "server unavailable", so a stolen device
// password cannot take the whole fleet's places.
//
// The listener (listener.go) never stops accepting: an accept error such as EMFILE is
// counted (kluis_broker_accept_errors_total), logged and retried with a
// back-off, and [Broker.Healthy] (part of /readyz) reports it meanwhile.
// Connections are capped (Options.MaxConnections, by default the
// open-file limit less a reserve): the excess gets CONNACK "server
// unavailable" (kluis_broker_connections_refused_total). A connection
// must send CONNECT within Options.ConnectTimeout. kluis-backend's own
// device link does not connect over TCP: [Broker.Subscribe] and
// [Broker.Publish] serve it in-process.
package broker
