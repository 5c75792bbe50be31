package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFigureRatio(t *testing.T) {
	require.InDelta(t, 0.5, Figure{Value: 100, Floor: 200}.Ratio(), 1e-9)
	require.InDelta(t, 0.25, Figure{Value: 8, Floor: 2, LowerIsBetter: true}.Ratio(), 1e-9)
	require.Zero(t, Figure{Value: 0, Floor: 2}.Ratio())
	require.False(t, Figure{Value: 60, Floor: 100, Goal: 0.7}.Met())
	require.True(t, Figure{Value: 70, Floor: 100, Goal: 0.7}.Met())
}

func TestWriteKeepsEveryRun(t *testing.T) {
	dir := t.TempDir()
	r := Report{Name: "verify", Command: "kluis-bench verify", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Params:  map[string]any{"devices": 8},
		Figures: []Figure{{Name: "verifications/s, 8 devices", Unit: "1/s", Value: 700, Floor: 1000, Goal: 0.7}}}
	paths, err := Write(dir, r)
	require.NoError(t, err)
	require.Len(t, paths, 2)
	b, err := os.ReadFile(filepath.Join(dir, "20260102T030405Z-verify.json"))
	require.NoError(t, err)
	var back Report
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, r.Figures, back.Figures)
	md, err := os.ReadFile(filepath.Join(dir, "20260102T030405Z-verify.md"))
	require.NoError(t, err)
	require.True(t, strings.Contains(string(md), "| verifications/s, 8 devices | 700 1/s | 1000 1/s | 0.70 | 0.70 (met) |"), string(md))
	_, err = Write(dir, r) // same second, same name: refused, the first run stays
	require.Error(t, err)
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 50*time.Millisecond, Percentile(ds, 50))
	require.Equal(t, 99*time.Millisecond, Percentile(ds, 99))
	require.Equal(t, 100*time.Millisecond, Percentile(ds, 100))
	require.Equal(t, time.Duration(0), Percentile(nil, 50))
	require.Equal(t, 2.5, Median([]float64{4, 1, 3, 2}))
}
