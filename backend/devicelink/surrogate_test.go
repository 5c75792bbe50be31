package devicelink

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"

	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// A payload PostgreSQL's jsonb refuses but encoding/json reads: a UTF-16
// surrogate half escaped in a string ("\ud800"; Go reads U+FFFD). kluisd
// never writes one (encoding/json does not); a stolen password can. An
// event holding one decoded and validated, then its INSERT failed, every
// time: counted "error", logged at ERROR, not acknowledged, sent again
// for ever; a heartbeat holding one failed its whole presence batch,
// which then ran statement by statement (every device's in it), again at
// every flush the device's next heartbeat was part of. Refused as
// malformed now, before any statement.
func TestEscapedSurrogateHalfIsMalformed(t *testing.T) {
	pool := newPool(t)
	dev := "t" + randHex(6)
	rec := newRecorder()
	reg := prometheus.NewRegistry()
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, events: rec, reg: reg})
	d := newDevice(t, testenv.BrokerURL(), dev)

	now := time.Now().UTC().Format(time.RFC3339Nano)
	d.raw(wire.KindEvent, []byte(`{"v":1,"id":"e1","kind":"alarm","alarm":"forced_door","at":"`+now+`","addr":{"board":0,"channel":1},"detail":"\ud800"}`))
	d.raw(wire.KindHeartbeat, []byte(`{"v":1,"at":"`+now+`","uptime_s":1,"backlog":0,"offline_cache":0,"software":"kluisd \udfff"}`))
	ev := d.event(time.Now())
	d.send(ev) // a positive control behind them
	testenv.Eventually(t, "the valid event acknowledged", func() bool { return d.ackCount(ev.ID) >= 1 })
	testenv.Eventually(t, "both counted malformed", func() bool {
		return metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "malformed"}) == 1 &&
			metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "heartbeat", "outcome": "malformed"}) == 1
	})
	assert.Zero(t, metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "error"}))
	assert.Zero(t, metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "heartbeat", "outcome": "error"}))
	assert.Zero(t, d.ackCount("e1"))
}
