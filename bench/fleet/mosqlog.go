package fleet

import (
	"fmt"
	"strings"
)

// mosqRun counts what one run of Mosquitto logged about its clients: the evidence for a storm that does not
// settle (keepalive timeouts, take-overs) or for lost messages (dropped
// warnings).
type mosqRun struct {
	// Connected counts "New client connected" lines (accepted CONNECTs).
	Connected int
	// Timeouts counts "has exceeded timeout": no packet from the client for
	// 1.5 keepalives, so Mosquitto closed it (and published its will).
	Timeouts int
	// Takeovers counts "already connected, closing old connection": a
	// client connected again while its old connection was still open.
	Takeovers int
	// Closed counts "closed its connection": the client went without a
	// DISCONNECT (its will is published).
	Closed int
	// Disconnected counts clean DISCONNECTs ("Client x disconnected.").
	Disconnected int
	// SocketErrors counts connections lost to a read or write error.
	SocketErrors int
	// Refused counts CONNECTs refused as not authorised.
	Refused int
	// DropWarnings counts "Outgoing messages are being dropped" (a client's
	// queue, max_queued_messages, overflowed; one line per episode).
	DropWarnings int
}

// mosquittoLog counts the client events in (part of) a Mosquitto log.
// Mosquitto writes no line of its own start to a log file (it opens the
// file after), so the caller splits the runs: the log's length when the
// broker was killed.
func mosquittoLog(log string) mosqRun {
	var m mosqRun
	for _, line := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(line, "New client connected from"):
			m.Connected++
		case strings.Contains(line, "has exceeded timeout"):
			m.Timeouts++
		case strings.Contains(line, "already connected, closing old connection"):
			m.Takeovers++
		case strings.Contains(line, "closed its connection"):
			m.Closed++
		case strings.Contains(line, "not authorised"):
			m.Refused++
		case strings.Contains(line, "being dropped"):
			m.DropWarnings++
		case strings.Contains(line, "Bad socket read/write"), strings.Contains(line, "Socket error"),
			strings.Contains(line, "Client ") && strings.Contains(line, " disconnected: "):
			m.SocketErrors++
		case strings.HasSuffix(line, " disconnected."):
			m.Disconnected++
		}
	}
	return m
}

func (m mosqRun) String() string {
	return fmt.Sprintf("%d connects, %d keepalive timeouts, %d take-overs of an open connection, %d closed without DISCONNECT, %d clean DISCONNECTs, %d socket errors, %d refused, %d dropped-message warnings",
		m.Connected, m.Timeouts, m.Takeovers, m.Closed, m.Disconnected, m.SocketErrors, m.Refused, m.DropWarnings)
}
