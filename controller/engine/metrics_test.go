package engine

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/promtext/promtexttest"
	"kluis/controller/wire"
	"kluis/hardware"
)

// metric reads one sample of the engine's registry: name and label pairs;
// ok is false when the series does not exist.
func (r *rig) metric(name string, labels ...string) (v float64, ok bool) {
	r.t.Helper()
	return promtexttest.Value(r.t, r.e.o.Registry, name, labels...)
}

func (r *rig) mustMetric(name string, labels ...string) float64 {
	r.t.Helper()
	v, ok := r.metric(name, labels...)
	require.True(r.t, ok, "series %s%v exists", name, labels)
	return v
}

// Every alarm kind and every configured board has its series from the
// start (an alert on increase() needs the 0 before the first alarm); the
// forced door and the door left open move them, and doors_left_open follows
// the door_left_open alarm until the door closes.
func TestMetricsAlarmsAndDoorsLeftOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		for _, k := range wire.AlarmKinds() {
			require.Zero(t, r.mustMetric("kluisd_alarms_total", "alarm", string(k)), k)
		}
		for _, b := range []string{"0", "1"} {
			require.Zero(t, r.mustMetric("kluisd_board_errors_total", "board", b))
			require.Zero(t, r.mustMetric("kluisd_board_reboots_total", "board", b))
		}
		require.Zero(t, r.mustMetric("kluisd_doors_left_open"))

		a := hardware.Address{Board: 0, Channel: 0}
		r.setItem(a, true, false)
		r.be.set(func() { r.be.verify["K1.good"] = okAt("doc-1", 0) })
		_, err := r.e.Pickup(context.Background(), PickupRequest{QR: "K1.good"})
		require.NoError(t, err)
		r.waitFor("pulse", func() bool { return len(r.f.Pulses()) == 1 })
		r.f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: a})
		r.waitFor("opened", func() bool { return r.hasEvent("door_opened") })
		require.Zero(t, r.mustMetric("kluisd_doors_left_open"), "open, but not yet for too long")
		time.Sleep(61 * time.Second)
		r.waitFor("left open alarm", func() bool { return r.hasEvent("alarm:door_left_open") })
		require.Equal(t, 1.0, r.mustMetric("kluisd_doors_left_open"))
		require.Equal(t, 1.0, r.mustMetric("kluisd_alarms_total", "alarm", "door_left_open"))
		r.setItem(a, false, false)
		r.f.Inject(hardware.Event{Kind: hardware.DoorClosed, Addr: a})
		r.waitFor("cleared", func() bool { return r.hasEvent("alarm_cleared:door_left_open") })
		r.waitFor("closed door counted", func() bool { return r.mustMetric("kluisd_doors_left_open") == 0 })

		require.Zero(t, r.mustMetric("kluisd_alarms_total", "alarm", "forced_door"))
		r.f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: hardware.Address{Board: 0, Channel: 1}})
		r.waitFor("forced", func() bool { return r.hasEvent("alarm:forced_door") })
		require.Equal(t, 1.0, r.mustMetric("kluisd_alarms_total", "alarm", "forced_door"))

		r.f.Inject(hardware.Event{Kind: hardware.BoardRebooted, Addr: hardware.Address{Board: 1, Channel: -1}})
		r.waitFor("reboot counted", func() bool { return r.mustMetric("kluisd_board_reboots_total", "board", "1") == 1 })
		require.Zero(t, r.mustMetric("kluisd_board_reboots_total", "board", "0"))
	})
}

// code_entry_locked is 1 exactly while the brute-force lockout of PIN entry
// lasts, also after a restart that replays it.
func TestMetricsCodeEntryLocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		require.Zero(t, r.mustMetric("kluisd_code_entry_locked"))
		for i := 0; i < 3; i++ {
			_, err := r.e.Pickup(context.Background(), PickupRequest{PIN: fmt.Sprintf("55555555%d", i), BirthDate: "1990-01-01"})
			require.NoError(t, err)
		}
		require.True(t, r.hasEvent("alarm:brute_force_lockout"))
		require.Equal(t, 1.0, r.mustMetric("kluisd_code_entry_locked"))
		require.Equal(t, 1.0, r.mustMetric("kluisd_lockouts_total"))

		f := r.f
		r.stop()
		f.Resume()
		r = newRig(t, rigOpts{caps: sensors, dir: r.dir, fake: f, priv: r.priv})
		defer r.stop()
		require.Equal(t, 1.0, r.mustMetric("kluisd_code_entry_locked"), "the replayed lockout")
		time.Sleep(16 * time.Minute)
		require.Zero(t, r.mustMetric("kluisd_code_entry_locked"))
	})
}

// journal_backlog is the journal's outbox at scrape time, also when no
// heartbeat (and so no Diagnostics call) happened, as while the broker is
// unreachable.
func TestMetricsJournalBacklogLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		start := len(r.events())
		require.Equal(t, float64(start), r.mustMetric("kluisd_journal_backlog"))
		r.f.Inject(hardware.Event{Kind: hardware.DoorOpened, Addr: hardware.Address{Board: 0, Channel: 2}})
		r.waitFor("forced", func() bool { return r.hasEvent("alarm:forced_door") })
		evs := r.events()
		require.Greater(t, len(evs), start)
		require.Equal(t, float64(len(evs)), r.mustMetric("kluisd_journal_backlog"))
		_, err := r.j.Ack(evs[0].ID)
		require.NoError(t, err)
		require.Equal(t, float64(len(evs)-1), r.mustMetric("kluisd_journal_backlog"))
	})
}
