package wire

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPeekEventKind(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
	for _, ev := range []*Event{
		{ID: "e1", Kind: EvAlarm, Alarm: AlarmForcedDoor, Addr: &Address{Board: 1, Channel: 2}, At: t0},
		{ID: "e2", Kind: EvDoorOpened, Addr: &Address{Board: 0, Channel: 1}, At: t0},
	} {
		b, err := Encode(ev)
		require.NoError(t, err)
		k, ok := PeekEventKind(b)
		assert.True(t, ok)
		assert.Equal(t, ev.Kind, k, "%s", b)
	}
	for _, c := range []struct {
		payload string
		kind    EventKind
		ok      bool
	}{
		{`{"v":1,"addr":{"kind":"x","board":1},"kind":"alarm"}`, EvAlarm, true}, // a nested "kind" is not the event's
		{` { "kind" : "alarm_cleared" , "v": 1 }`, EvAlarmCleared, true},
		{`{"kind":"alarm","kind":"door_opened"}`, EvAlarm, true}, // the first; Decode's check catches the rest
		{`{"v":1,"id":"x"}`, "", false},
		{`{"kind":7}`, "", false},
		{`["kind","alarm"]`, "", false},
		{`not json`, "", false},
		{``, "", false},
		{`{"v":1,"detail":"` + strings.Repeat("x", MaxSize(KindEvent)) + `","kind":"alarm"}`, "", false},
		{`{"v":1,"detail":"` + strings.Repeat("x", PeekWithin) + `","kind":"alarm"}`, "", false}, // beyond the peek: an event like any
		{`{"v":1,"id":"0190f3a2-7c1e-7a3b-9d2e-3f4a5b6c7d8f","kind":"alarm","detail":"` + strings.Repeat("x", MaxSize(KindEvent)/2) + `"}`, EvAlarm, true},
	} {
		k, ok := PeekEventKind([]byte(c.payload))
		assert.Equal(t, c.ok, ok, c.payload)
		assert.Equal(t, c.kind, k, c.payload)
	}
	assert.True(t, EvAlarm.Urgent())
	assert.True(t, EvAlarmCleared.Urgent())
	for _, k := range EventKinds() {
		if k != EvAlarm && k != EvAlarmCleared {
			assert.False(t, k.Urgent(), k)
		}
	}
}
