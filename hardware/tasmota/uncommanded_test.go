package tasmota

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/hardware"
	"kluis/hardware/hardwaretest"
)

// A relay reported switching on that the driver did not command (someone
// else on the modules' broker) is LockUncommanded on its lock's address;
// the driver's own pulses (whose ON Tasmota reports twice, RESULT and
// POWERn) and the first report of a relay (its baseline) are not.
func TestUncommandedOnIsReported(t *testing.T) {
	topic := uniqueTopic(t, "rogue")
	dev := newDevice(t, topic, 4, false)
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 4, Board: 1}}})
	dev.setPower(2, true) // a baseline ON, then OFF: not a switching it is told of
	dev.setPower(2, false)
	dev.setPower(3, false)
	settle(t, d)
	w := hardwaretest.StartWatch(t, d)

	require.NoError(t, d.Pulse(testCtx(t), hardware.Address{Board: 1, Channel: 0}, 100*time.Millisecond, 0))
	dev.setPower(3, true) // someone else's POWER3 ON
	a := hardware.Address{Board: 1, Channel: 2}
	ev := w.WaitEvent(t, hardware.LockUncommanded, a)
	assert.Equal(t, "POWER3 ON not commanded by kluisd", ev.Detail)
	dev.setPower(3, true) // repeated
	settle(t, d)
	assert.Equal(t, 1, w.Count(hardware.LockUncommanded, a))
	assert.Zero(t, w.Count(hardware.LockUncommanded, hardware.Address{Board: 1, Channel: 0}), "the driver's own pulse")
	assert.Zero(t, w.Count(hardware.LockUncommanded, hardware.Address{Board: 1, Channel: 1}), "the baseline")
}

// On an automaton a slot relay switched by someone else turned the
// carousel: the event names the slot, and which slot stands at the hatch
// is unknown from then on.
func TestUncommandedCarouselTurnForgetsTheSlot(t *testing.T) {
	topic := uniqueTopic(t, "roguecar")
	dev := newDevice(t, topic, 7, true)
	d := newDriver(t, Options{Modules: []Module{{Topic: topic, Relays: 7}}, Automaton: true})
	for n := 1; n <= 7; n++ {
		dev.setPower(n, false)
	}
	settle(t, d)
	w := hardwaretest.StartWatch(t, d)
	dev.setPower(4, true) // slot 2 brought to the hatch
	ev := w.WaitEvent(t, hardware.LockUncommanded, hardware.Address{Board: 0, Channel: 0})
	assert.Equal(t, 2, ev.Slot)
	d.mu.Lock()
	slot := d.mods[topic].slot
	d.mu.Unlock()
	assert.Equal(t, -1, slot)
}
