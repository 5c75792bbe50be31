package web

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
)

// After an outage kluisd sends its alarms ahead of its backlog: the
// forced-door alarm of 03:10 arrives first, the 70 door events of the
// night (02:00 to 03:09) after it. The device's timeline lists what
// happened by when it happened: the alarm on top, the door events below
// it in their order, newest first. By arrival (as before) the alarm came
// below the older door events, and the drained backlog pushed it out of
// the newest 60 lines altogether.
func TestDeviceTimelineInTheOrderThingsHappened(t *testing.T) {
	t.Parallel() // its own database
	ctx := context.Background()
	db := storetest.New(t).Pool()
	d := store.Device{ID: "k1", Kind: store.Locker, Compartments: []store.Compartment{{ID: 7, DeviceID: "k1", Number: 3, Board: 0, Channel: 2}}}
	night := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	appendAt := func(at time.Time, action, subject string, details map[string]any) {
		require.NoError(t, pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			_, err := audit.Append(ctx, tx, audit.Entry{At: at, Actor: "device:k1", Action: action, Subject: subject, Details: details})
			return err
		}))
	}
	door := map[string]any{"board": 0, "channel": 2}
	alarm := map[string]any{"board": 0, "channel": 2, "alarm": "forced_door"}
	appendAt(night.Add(70*time.Minute), "device.alarm", "device:k1", alarm)
	for i := range 70 {
		action := "device.door_opened"
		if i%2 == 1 {
			action = "device.door_closed"
		}
		appendAt(night.Add(time.Duration(i)*time.Minute), action, "device:k1", door)
	}
	// A staff action on the compartment, in between by time.
	appendAt(night.Add(69*time.Minute+30*time.Second), "compartment.remote_open", "compartment:7", map[string]any{"compartment": 3})

	evs, err := deviceTimeline(ctx, db, d, false)
	require.NoError(t, err)
	require.Len(t, evs, timelineMax)
	require.Equal(t, "device.alarm", evs[0].Action, "the newest thing that happened first")
	require.True(t, evs[0].IsAlarm)
	require.Equal(t, 3, evs[0].Compartment)
	require.Equal(t, "compartment.remote_open", evs[1].Action)
	require.Equal(t, "device.door_closed", evs[2].Action)
	for i := 1; i < len(evs); i++ {
		require.False(t, evs[i].At.After(evs[i-1].At), "line %d (%s %v) after line %d (%v)", i, evs[i].Action, evs[i].At, i-1, evs[i-1].At)
	}
	require.Equal(t, night.Add(12*time.Minute), evs[len(evs)-1].At.UTC(), "the oldest shown")

	// The alarms only: the forced door, its acknowledgement and its
	// clearing, not the door events nor the remote open.
	appendAt(night.Add(71*time.Minute), "alarm.acknowledged", "device:k1", alarm)
	appendAt(night.Add(72*time.Minute), "device.alarm_cleared", "device:k1", alarm)
	evs, err = deviceTimeline(ctx, db, d, true)
	require.NoError(t, err)
	var got []string
	for _, e := range evs {
		got = append(got, e.Action)
	}
	require.Equal(t, []string{"device.alarm_cleared", "alarm.acknowledged", "device.alarm"}, got)
}
