package notify

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// Every channel's outcomes exist at 0 before the first notification (an
// alert on increase() of the failures must see the first one).
func TestMessagesCounterStartsAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := New(Options{DB: newNfix(t).pool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg})
	require.NoError(t, err)
	want := `# HELP kluis_notify_messages_total Notifications by channel (email, sms, slip) and outcome (sent, failed, needed).
# TYPE kluis_notify_messages_total counter
kluis_notify_messages_total{channel="email",outcome="failed"} 0
kluis_notify_messages_total{channel="email",outcome="sent"} 0
kluis_notify_messages_total{channel="slip",outcome="failed"} 0
kluis_notify_messages_total{channel="slip",outcome="needed"} 0
kluis_notify_messages_total{channel="sms",outcome="failed"} 0
kluis_notify_messages_total{channel="sms",outcome="sent"} 0
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "kluis_notify_messages_total"))
}
