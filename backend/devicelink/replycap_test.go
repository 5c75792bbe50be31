package devicelink

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The answers kept for repeated request ids were one pool of 10,000 for
// the fleet, and a request over its device's budget is answered (and
// kept) at once: a device flooding unique request ids with a stolen
// password (cheap "unavailable" answers, about 83 a second) pushed every
// other device's answers out within the two minutes they are kept, so a
// genuine repeat (QoS 1 delivers twice) was verified again instead of
// getting its first answer. Now a device holds at most perDevice of the
// entries: past it its new answers are given but not kept, and the other
// devices' stay.
func TestReplyCacheHoldsAFewPerDevice(t *testing.T) {
	c := newReplyCache(time.Minute, 10, 3)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key := func(device string, i int) string { return device + "\x00verify/res\x00" + fmt.Sprint(i) }
	genuine, seen := c.get(key("d1", 1), t0)
	require.False(t, seen)
	close(genuine.done)
	for i := range 100 {
		r, seen := c.get(key("thief", i), t0.Add(time.Second))
		require.False(t, seen)
		close(r.done)
	}
	assert.Equal(t, 4, c.size(), "the thief's first 3 and d1's")
	again, seen := c.get(key("d1", 1), t0.Add(2*time.Second))
	assert.True(t, seen, "d1's answer is still kept")
	assert.Same(t, genuine, again)
	_, seen = c.get(key("thief", 1), t0.Add(2*time.Second))
	assert.True(t, seen, "the thief's first answers are kept too")

	// Expired, the thief's places are free again.
	r, seen := c.get(key("thief", 500), t0.Add(2*time.Minute))
	assert.False(t, seen)
	close(r.done)
	_, seen = c.get(key("thief", 500), t0.Add(2*time.Minute))
	assert.True(t, seen, "kept once the old ones expired")
}
