package bench

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseCounts(t *testing.T) {
	got, err := ParseCounts("1, 4,16", 16)
	require.NoError(t, err)
	require.Equal(t, []int{1, 4, 16}, got)
	for _, bad := range []string{"", "0", "17", "4,x", "4,,8", "-1"} {
		_, err := ParseCounts(bad, 16)
		require.Error(t, err, "%q", bad)
	}
	_, err = ParseCounts("4,x", 16)
	require.EqualError(t, err, `"x" is not a count from 1 to 16`)
}
