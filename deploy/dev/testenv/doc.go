// Package testenv holds what the tests and the demo share to reach the
// services of the development machine and to wait for things, so that each
// exists once:
//
//   - [BrokerURL]: the MQTT broker the tests use (MQTT_URL, default the local
//     Mosquitto on 127.0.0.1:1883).
//   - [Listen], [FreeAddr], [FreePort], [PickAddr]: loopback ports. Hand a
//     listener over ([Listen]) where the server takes one: that has no race.
//     Where a server must be given an address (another process, a broker
//     restarted on the same port), FreeAddr picks a port outside the
//     kernel's ephemeral range, which neither `listen :0` nor an outgoing
//     connection can take in the meantime, and never hands the same port out
//     twice in one process.
//   - [Eventually], [Poll], [MustPoll]: bounded waits for a condition, with
//     the failure naming what was awaited and what was last seen.
//
// The helpers take a [T] (satisfied by *testing.T and *testing.B) so that
// the demo, which is not a test, can use the context-based ones without
// linking the testing package.
package testenv

// T is the part of testing.TB the helpers use.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}
