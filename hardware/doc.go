// Package hardware defines what every lock-board or relay-module driver does:
// pulse a lock, read channel states, stream door events, describe itself and
// halt leaving everything locked.
//
// Drivers live in sub-packages: kluisbus (the Kluis lock-board protocol of
// firmware-protocol.md over RS485), kerong (Kerong KR-CU16 compatible boards)
// and tasmota (MQTT relay modules in Tasmota's convention). The serial drivers
// share serialport, which turns go.bug.st/serial's silent read timeouts into
// errors and reopens a port that went stale.
//
// Safety rules every driver keeps: a pulse is sent only when asked, never
// repeated on a retry that the hardware could already have carried out unless
// the hardware deduplicates command ids; garbage on the line is counted and
// skipped, never acted upon; when in doubt the door stays shut.
package hardware
