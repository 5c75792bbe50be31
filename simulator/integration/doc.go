// Package integration runs the real drivers (hardware/kluisbus,
// hardware/kerong, hardware/tasmota) against the simulator over a real
// pseudo-terminal or the real MQTT broker: every channel opened, states
// read, door events seen, and, with bytes corrupted on the line, no channel
// pulsed twice and none pulsed that was not asked for. It holds only tests.
package integration
