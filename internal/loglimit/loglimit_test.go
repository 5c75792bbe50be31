package loglimit

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// After the window the suppressed lines are summed up in one, and the
// message is logged again; each message has its own count.
func TestLimiterSummarises(t *testing.T) {
	var logs bytes.Buffer
	count := func(sub string) int { return strings.Count(logs.String(), sub) }
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	const burst, window = 20, 10 * time.Second
	l := New(slog.New(slog.NewTextHandler(&logs, nil)), burst, window, func() time.Time { return now })
	for i := 0; i < burst+7; i++ {
		l.Warn("connection refused", "i", i)
		l.Warn("acl denied", "i", i)
	}
	assert.Equal(t, burst, count(`msg="connection refused"`))
	assert.Equal(t, burst, count(`msg="acl denied"`), "each message has its own count")
	now = now.Add(window - time.Nanosecond)
	l.Warn("connection refused", "i", -1)
	assert.Equal(t, burst, count(`msg="connection refused"`), "still the same window")
	now = now.Add(time.Nanosecond)
	l.Warn("connection refused", "i", -2)
	assert.Equal(t, 1, count(`msg="more of the same not logged" what="connection refused" count=8`))
	assert.Equal(t, burst+1, count(`msg="connection refused"`))
	now = now.Add(window)
	l.Warn("connection refused", "i", -3)
	assert.Equal(t, 1, count(`more of the same`), "nothing left out, no summary")
	assert.Equal(t, burst+2, count(`msg="connection refused"`))
}
