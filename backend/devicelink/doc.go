// Package devicelink is kluis-backend's side of the MQTT contract
// (controller/wire).
//
// A Link is one paho client. It subscribes, in its OnConnect handler so
// that subscriptions survive reconnects, through shared subscriptions
// ($share/kluis-backend/kluis/v1/dev/+/event, ...), so several backend
// replicas split the devices' messages between them. On kluis-backend's
// embedded broker (Options.Embedded) it uses no MQTT connection: it
// subscribes in-process and its handler runs in the publishing device's
// goroutine, so a full queue holds back that device alone, and nothing
// waits in (or is dropped from) a broker queue for the backend. The paho message
// handler never drops a presence or heartbeat: it goes to a
// per-device coalescer (the latest of each per device waits; an older one
// still waiting is replaced, counted as "coalesced"); anything else goes
// onto a bounded queue, the handler waiting while it is full
// (back-pressure on the broker connection), at most Options.Timeout: then
// the message is dropped unacknowledged, counted as "busy", and its
// device sends it again (a request goes unanswered). Waiting longer held
// on the embedded broker a goroutine per device and per reconnection of
// its kluisd (its pings unread meanwhile) while a hanging database kept
// the queue full. Answers (acks, verify and staff responses) are
// published without waiting for the broker's acknowledgement, so that a
// worker never waits on the reader it is holding up. A few workers do the
// rest; verify and staff requests have a queue and more workers of their
// own (Options.RequestWorkers), so that a kiosk's question never waits
// behind events, and many verifications can share one transaction
// (backend/codes batches them):
//
//   - event: inserted into device_events, whose primary key is the event
//     id, and handed to the EventHandler in the same transaction; after
//     the commit the id is acknowledged on the device's ack topic. A
//     duplicate (QoS 1 redelivery, a device resending after a lost ack) is
//     acknowledged again and applied once. An EventHandler error wrapping
//     ErrRejected records the event as rejected and acknowledges it (the
//     device must stop resending it); any other error rolls back and does
//     not acknowledge, so the device sends the event again later.
//   - cmdres: recorded on the command's device_commands row (the first
//     result wins), then acknowledged on the device's ack topic with the
//     command's id (a repeated result, and one of an unknown command,
//     too), so that the device stops sending it again; a result over
//     budget or not recorded is not acknowledged, and the device sends it
//     again later. Commands are sent with Link.SendCommand, each with an
//     id and an expiry, and stored before they are published.
//   - verify/req, staff/req: answered on verify/res and staff/res by the
//     Verifier and StaffHandler; a repeated request id from the same
//     device gets the first answer again without asking twice.
//   - presence, heartbeat: written in batches (Options.PresenceBatch
//     devices per round trip, in arrival order per device; a failed batch
//     is retried) to device_presence (online/offline, last heartbeat
//     time) and device_diagnostics (the last heartbeat's payload). The
//     kluis_devicelink_devices_online gauge is recounted (a partial index)
//     at most every Options.OnlineRefresh after a change, not per
//     message. Verify and staff answers are kept for a repeated request id
//     in a cache that expires oldest first (O(1) per request). Every
//     device's stored presence is also exported at scrape time, for
//     alerting on one device: kluis_device_online{device} and
//     kluis_device_last_heartbeat_timestamp_seconds{device}. Once
//     recorded, each presence and heartbeat is told to the
//     Options.Observer (deviceops.CodeSync: a device back online gets its
//     offline codes at once; a heartbeat's cache_version confirms a code
//     sync or shows a cache the device lost).
//
// Each device has four budgets (token buckets, budget.go; Options.VerifyBudget,
// EventBudget, AlarmBudget and ResultBudget), checked as a message arrives,
// before it is queued: a verify or staff request over budget is answered
// "unavailable" (signed by Options.SignAnswer) without asking the Verifier
// or StaffHandler, and that answer is kept for its request id like any
// other; an event over budget is neither stored nor acknowledged, so the
// device sends it again later and none is lost; a command result over
// budget is neither recorded nor acknowledged, and the device sends it
// again later too. Alarms and their clearing spend the alarm budget
// instead of the event budget, told apart before decoding by the payload's
// first top-level kind (wire.PeekEventKind): a backlog over the event
// budget holds back no alarm, and an event let in as an alarm that decodes
// as another kind is refused as malformed, so a stolen password gains no
// more than the alarm budget. Refusals are counted (outcome "throttled"); the first of an
// episode is logged with the device, counted in
// kluis_devicelink_throttle_episodes_total and audited as device.throttled.
//
// A message that does not decode (wire.Decode) is counted in
// kluis_devicelink_messages_total{outcome="malformed"}, logged without its
// payload, and otherwise ignored.
//
// Credentials is the mqtt_credentials table (argon2id hashes) whose Check
// method is the embedded broker's broker.CredentialsFunc.
package devicelink
