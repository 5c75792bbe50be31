//go:build linux

package tasmota

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"kluis/deploy/dev/testenv"
	"kluis/hardware"
)

// The link to the broker stalls just after the module confirmed the
// PulseTime, behind half a megabyte the driver is sending: the ON is written
// to the socket and waits in the driver's kernel, undelivered, past the
// pulse's deadline. Then the link comes back with the same TCP session.
// The ON must not reach the module: when its deadline passes unconfirmed
// the driver resets the connection (SO_LINGER 0), so the kernel discards
// it instead of delivering it when the link returns; the OFF owed goes out
// on the next connection. Before, the connection carried on and the
// module switched the relay on (then off, by the OFF written behind it)
// after the caller was told the pulse failed. The reset is made before
// the pulse is reported failed: left to paho's close, which came a little
// later, the link could come back in between.
func TestUndeliveredOnIsDiscardedByAReset(t *testing.T) {
	// paho's write timeout, half of it, leaves the junk's write time on
	// a loaded machine.
	const timeout = 4 * time.Second
	d, px, dev, topic := behindStallProxy(t, "reseton", timeout)

	var mu sync.Mutex
	var ons int
	junkWritten := make(chan bool, 1)
	dev.mu.Lock()
	dev.onCommand = func(cmd, payload string) {
		switch {
		case strings.HasPrefix(cmd, "PulseTime"):
			// More than the proxy's receive window takes (it reads no
			// more) and less than the driver's send buffer holds: the
			// write completes, the rest of it and the ON behind it wait
			// in the driver's kernel.
			px.stall()
			tok := d.client.Publish("kluistest/junk/"+topic, 0, false, make([]byte, 512<<10))
			junkWritten <- tok.WaitTimeout(timeout/2) && tok.Error() == nil
			// Confirmed at QoS 0: nothing for the driver to acknowledge.
			dev.client.Publish("stat/"+topic+"/RESULT", 0, false, `{"PulseTime1":{"Set":`+payload+`,"Remaining":`+payload+`}}`)
		case cmd == "POWER1" && payload == "ON":
			mu.Lock()
			ons++
			mu.Unlock()
		}
	}
	dev.mu.Unlock()

	conn := d.currentConn()
	require.NotNil(t, conn)
	perr := d.Pulse(testCtx(t), hardware.Address{Channel: 0}, time.Second, 1)
	// Checked before the link comes back. The reset used to be left to
	// paho's close, after its reader noticed the deadlines set in the
	// past: at the pulse's return the connection still held the ON (4
	// runs in 5), and the link coming back before paho closed it took
	// the ON to the module (1 run in 3).
	require.False(t, holdsUnacked(t, conn), "the pulse was reported failed with its ON still in the driver's kernel: the link coming back delivers it")
	require.True(t, <-junkWritten, "the driver's write of the junk did not complete: the ON could not be written behind it")
	require.Error(t, perr)
	require.ErrorContains(t, perr, "POWER1 ON")
	require.ErrorContains(t, perr, "not confirmed")
	px.carryOn()
	testenv.EventuallyWithin(t, 30*time.Second, "relay 1 confirmed off after the failed pulse", func() bool { return d.offsPending() == 0 })
	// (The module may report the relay off, asked at the reconnection,
	// before the OFF reaches it.)
	testenv.EventuallyWithin(t, 30*time.Second, "the OFF at the module", func() bool { return dev.offCount(1) >= 1 })
	time.Sleep(timeout) // anything still on its way
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, ons, "POWER1 ON reached the module after its pulse failed")
	require.NotZero(t, d.m.resets.Value(), "no connection reset")
}

// holdsUnacked reports whether c is still an established TCP connection
// with bytes its other end has not acknowledged: what a link coming back
// would deliver.
func holdsUnacked(t *testing.T, c *abortConn) bool {
	t.Helper()
	rc, err := c.tcp.SyscallConn()
	require.NoError(t, err)
	var info *unix.TCPInfo
	var outq int
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		if info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); ierr == nil {
			outq, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		}
	}); err != nil {
		return false // closed by paho, with a reset (abortConn.Close)
	}
	require.NoError(t, ierr)
	t.Logf("driver's connection at the pulse's failure: TCP state %d, %d bytes unacknowledged", info.State, outq)
	return info.State == unix.BPF_TCP_ESTABLISHED && outq > 0
}
