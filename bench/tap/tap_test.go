package tap

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/bench"
	"kluis/deploy/dev/testenv"
)

// TestOfflineTapsOpen runs the offline part of "kluis-bench tap" once (a
// QR and a PIN tap through kluisd's engine, the production driver and the
// simulator's board): every tap must open its door. It breaks when kluisd
// refuses the rig's codes (as it did when the board's load events, taken
// after the code sync, withdrew them) or the rig stops working otherwise;
// the figures themselves are the benchmark's, not checked here.
func TestOfflineTapsOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, bench.Env{}, []string{"-online=false", "-taps", "1", "-rounds", "1", "-dir", testenv.TmpfsDir(t, "kluis-tap-")})
	require.NoError(t, err)
	names := map[string]float64{}
	for _, f := range rep.Figures {
		names[f.Name] = f.Value
	}
	for _, n := range []string{"offline QR tap-to-pulse p99", "offline PIN tap-to-pulse p99"} {
		require.Contains(t, names, n)
		require.Positive(t, names[n], n)
	}
}
