package fleet

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Each client event of a Mosquitto 2.0 log counts in its category; other
// lines count nowhere.
func TestMosquittoLogCountsClientEvents(t *testing.T) {
	log := `2026-12-06T10:16:06: New connection from 127.0.0.1:40000 on port 22510.
2026-12-06T10:16:06: New client connected from 127.0.0.1:40000 as fleet-00001 (p2, c0, k60, u'fleet-00001').
2026-12-06T10:16:06: New client connected from 127.0.0.1:40001 as fleet-00002 (p2, c0, k60, u'fleet-00002').
2026-12-06T10:16:07: Client fleet-00001 has exceeded timeout, disconnecting.
2026-12-06T10:16:08: Outgoing messages are being dropped for client kluis-backend.
2026-12-06T10:17:01: New client connected from 127.0.0.1:40002 as fleet-00001 (p2, c0, k60, u'fleet-00001').
2026-12-06T10:17:01: Client fleet-00001 already connected, closing old connection.
2026-12-06T10:17:01: Client fleet-00002 closed its connection.
2026-12-06T10:17:02: Client <unknown> disconnected, not authorised.
2026-12-06T10:17:03: Client fleet-00003 disconnected: Connection reset by peer.
2026-12-06T10:17:03: Bad socket read/write on client fleet-00004: Broken pipe
2026-12-06T10:17:04: Client fleet-00001 disconnected.
2026-12-06T10:17:04: Client fleet-00002 disconnected.
`
	m := mosquittoLog(log)
	require.Equal(t, mosqRun{Connected: 3, Timeouts: 1, DropWarnings: 1, Takeovers: 1, Closed: 1, Refused: 1, SocketErrors: 2, Disconnected: 2}, m)
	require.Contains(t, m.String(), "1 keepalive timeouts")
	require.Equal(t, mosqRun{}, mosquittoLog(""))
}
