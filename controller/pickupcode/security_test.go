package pickupcode

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSecurityDocMatchesConfig keeps docs/security.md and the limits the
// code enforces in step, and checks the bound the document derives.
func TestSecurityDocMatchesConfig(t *testing.T) {
	raw, err := os.ReadFile("../../docs/security.md")
	require.NoError(t, err)
	doc := string(raw)
	cfg := DefaultConfig()
	for _, line := range []string{
		fmt.Sprintf("| PIN digits | %d |", cfg.PINDigits),
		fmt.Sprintf("| active codes per device at most | %d |", MaxActiveCodesPerDevice),
		fmt.Sprintf("| wrong dates of birth per code before it is locked | %d |", cfg.CodeMaxFailures),
		fmt.Sprintf("| burst: failed PIN attempts per device | %d in %s, then PIN entry locked for %s |", cfg.DeviceMaxFailures, cfg.DeviceWindow, cfg.DeviceLockout),
		fmt.Sprintf("| daily cap: failed PIN attempts per device | %d in any rolling %s |", cfg.DailyMaxFailures, cfg.DailyWindow),
		fmt.Sprintf("costs t=%d, m=%d KiB, p=%d", OfflineArgonParams.Time, OfflineArgonParams.MemoryKiB, OfflineArgonParams.Threads),
	} {
		require.Contains(t, doc, line)
	}
	month := 30 * 24 * time.Hour
	require.Equal(t, 1500, cfg.MaxFailedGuesses(month))
	p := cfg.BruteForceBound(month, MaxActiveCodesPerDevice)
	require.Less(t, p, 1e-4)
	exp := int(math.Floor(math.Log10(p)))
	require.Contains(t, doc, fmt.Sprintf("**%.2fe%d**", p/math.Pow(10, float64(exp)), exp))
	require.True(t, strings.Contains(doc, fmt.Sprintf("%d × %d / 10^%d", cfg.MaxFailedGuesses(month)+1, MaxActiveCodesPerDevice, cfg.PINDigits)))
	for kind := range DefaultDOBKinds() {
		require.Contains(t, doc, kind)
	}
	require.False(t, cfg.NeedsDOB("driving_licence"))
}
