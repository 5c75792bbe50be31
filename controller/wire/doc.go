// Package wire is the MQTT contract between kluisd (one per device) and
// kluis-backend. Both sides import it; docs/asyncapi.yaml describes the same
// contract for people and other tools, and a test keeps the two in step.
//
// # Topics
//
// Every topic lies under one versioned root, kluis/v1/dev/{device}/, where
// {device} is the device id (also its MQTT user name, so broker ACL patterns
// can use %u). Use [TopicFor] and [ParseTopic]; never format topics by hand.
//
//	kind         direction          QoS retained  payload
//	presence     device -> backend  1   yes       Presence (also the last will, state "offline")
//	heartbeat    device -> backend  0   no        Heartbeat
//	event        device -> backend  1   no        Event
//	ack          backend -> device  1   no        Ack
//	cmd          backend -> device  1   no        Command
//	cmdres       device -> backend  1   no        CommandResult
//	verify/req   device -> backend  1   no        VerifyRequest
//	verify/res   backend -> device  1*  no        VerifyResponse
//	staff/req    device -> backend  1   no        StaffRequest
//	staff/res    backend -> device  1*  no        StaffResponse
//
// (*) published at QoS 1, subscribed to at QoS 0 by the device
// ([Kind.SubscribeQoS]), so the broker delivers answers at QoS 0: no
// PUBACK from the device, which would protect nothing (no broker sends
// a message to a device again; a lost answer is a timeout either way).
//
// The backend subscribes through shared subscriptions
// ([SharedSubscription], "$share/kluis-backend/kluis/v1/dev/+/event", ...)
// so several replicas split the load.
//
// # Delivery
//
// QoS 1 delivers at least once, so duplicates are normal. A request
// (verify/req, staff/req) that the broker did not acknowledge before a
// connection ended is published again by the device's MQTT client after
// the reconnect, with the same id, if the device still waits for it; the backend answers a repeated id with
// its first answer, so the device may act on it if it is still waiting. Every event and
// command carries an id (see [NewID]) and the receiver applies it once:
//
//   - An edge keeps each Event in its journal until an Ack naming its id
//     arrives; the backend sends the Ack only after its database commit, and
//     acknowledges a duplicate again without applying it twice. A broker's
//     PUBACK is not durability. A CommandResult is kept and sent again the
//     same way until an Ack names its command id; the backend records the
//     first result of a command and acknowledges every copy.
//   - A Command carries an id, an expiry and the backend's signature for
//     the device ([SignCommand]; "KC1." claims binding the device id, the
//     command id and the SHA-256 of the whole command): a device carries
//     out none that [VerifyCommand] refuses (unsigned, badly signed, for
//     another device, expired beyond [CommandSkew], issued ahead of its
//     clock, valid for longer than [MaxCommandLifetime]) or that it carried
//     out before (ids journaled), answers "rejected", "expired" or
//     "duplicate" and reports an event command_refused.
//   - Request/response pairs (verify, staff) carry a correlation id chosen
//     by the device; the response repeats it and carries the backend's
//     signature ([SignResponse]; "KR1." claims binding the device id, the
//     request id, the SHA-256 of the whole answer and an expiry of
//     [ResponseTTL]; or the same claims signed with other answers' in one
//     group, [SignResponseGroup], "KR2."): a device acts on no answer that [VerifyResponseSig]
//     refuses, waits on for the genuine one (unanswered in the end if none
//     comes) and reports an event response_refused.
//
// # Payloads
//
// Every payload is a JSON object with "v": 1 ([Version]). [Decode] is
// strict: an unknown version, an unknown or missing field, a wrong type, a
// value out of range, trailing data, a key twice in one object at any
// depth (compared ignoring case, as encoding/json matches names, which
// keeps the last), a code entry or heartbeat door without its addr, a
// string escape PostgreSQL's jsonb refuses (a UTF-16 surrogate half
// alone, which encoding/json reads as U+FFFD, or \u0000), or a
// payload above [MaxPayload] is an error (never a panic). The receiver counts and logs such a message and
// does nothing else. [Encode] validates the same way before sending.
//
// # A device's connection
//
//   - User name: the device id; client id: the device id (kluisd's
//     default; "{device}.{suffix}" and the old "kluisd-{device}" are also
//     accepted by the embedded broker, others refused). The shipped
//     Mosquitto configuration takes the user name as client id whatever is
//     sent (use_username_as_clientid), so that one device's credential can
//     never take over another device's session.
//   - Last will: retained Presence{State: Offline} on its presence topic,
//     QoS 1; after every (re)connect publish a retained Presence{State:
//     Online}. A heartbeat also marks the device online at the backend.
//   - Subscribe, in the OnConnect handler, to the exact topics of
//     [BackendKinds] for the device (no wildcards: the ACL refuses them).
//   - Resend every unacknowledged event after a reconnect and then now and
//     then; the backend's answer to a duplicate is just another Ack.
//
// Secrets: VerifyRequest and StaffRequest carry codes, PINs and badges.
// Their LogValue methods redact them; log the message, never its fields.
package wire
