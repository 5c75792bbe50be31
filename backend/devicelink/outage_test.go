package devicelink

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/deploy/dev/cutproxy"
	"kluis/deploy/dev/testenv"
)

// cutOnce is an EventHandler that applies an event by a row of its own in
// the event's transaction; for the event id in cut it first cuts the
// database link, so that the transaction's COMMIT fails.
type cutOnce struct {
	proxy *cutproxy.Proxy
	mu    sync.Mutex
	cut   string
}

func (c *cutOnce) HandleEvent(ctx context.Context, tx pgx.Tx, device string, ev wire.Event) error {
	if _, err := tx.Exec(ctx, `INSERT INTO outage_applied (event_id) VALUES ($1)`, ev.ID); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.ID == c.cut {
		c.cut = ""
		c.proxy.Cut()
	}
	return nil
}

// The database goes away while a device's events arrive (every connection
// cut and new ones refused, as when PostgreSQL is out of connection slots,
// restarting or failing over): an event met at the acquire and an event
// whose COMMIT fails are not acknowledged, the device keeps sending them,
// and once the database is back each is applied and acknowledged exactly
// once. Review of the gauntlet's seed 303 (docs/chaos.md): the backend
// never acknowledges an event it did not commit.
func TestDatabaseOutageLosesNoEventAndAppliesItOnce(t *testing.T) {
	direct := newPool(t)
	ctx := context.Background()
	_, err := direct.Exec(ctx, `CREATE TABLE outage_applied (event_id text NOT NULL)`)
	require.NoError(t, err)
	cc := direct.Config().ConnConfig
	proxy, err := cutproxy.New(ctx, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), quiet())
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	cfg := direct.Config().Copy()
	host, port, err := net.SplitHostPort(proxy.Addr())
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	dev := "t" + randHex(6)
	h := &cutOnce{proxy: proxy}
	reg := prometheus.NewRegistry()
	startLink(t, linkSetup{url: testenv.BrokerURL(), group: "kluis-test-" + randHex(4), device: dev, pool: pool, events: h, reg: reg})
	d := newDevice(t, testenv.BrokerURL(), dev)
	applied := func(id string) int {
		return countRows(t, direct, `SELECT count(*) FROM outage_applied WHERE event_id = $1`, id)
	}
	failed := func() float64 {
		return metricValue(t, reg, "kluis_devicelink_messages_total", map[string]string{"kind": "event", "outcome": "error"})
	}

	// A failure at COMMIT: the handler ran, the link to the database
	// breaks before the commit.
	atCommit := d.event(time.Now())
	h.mu.Lock()
	h.cut = atCommit.ID
	h.mu.Unlock()
	d.send(atCommit)
	testenv.Eventually(t, "the commit failed", func() bool { return failed() >= 1 })
	// A failure at the acquire: the database refuses connections.
	atAcquire := d.event(time.Now())
	d.send(atAcquire)
	before := failed()
	testenv.Eventually(t, "both resent and failing", func() bool { return failed() >= before+4 })
	for _, ev := range []*wire.Event{atCommit, atAcquire} {
		require.Zero(t, d.ackCount(ev.ID), "acknowledged while the database was away")
		require.Zero(t, applied(ev.ID))
		require.Zero(t, countRows(t, direct, `SELECT count(*) FROM device_events WHERE event_id = $1`, ev.ID))
	}

	proxy.Restore()
	testenv.Eventually(t, "both acknowledged after the database came back", func() bool {
		return d.ackCount(atCommit.ID) >= 1 && d.ackCount(atAcquire.ID) >= 1
	})
	// Resends already under way are duplicates: acknowledged, not applied.
	d.send(atCommit)
	d.send(atAcquire)
	testenv.Eventually(t, "the duplicates acknowledged", func() bool { return d.ackCount(atCommit.ID) >= 2 && d.ackCount(atAcquire.ID) >= 2 })
	for _, ev := range []*wire.Event{atCommit, atAcquire} {
		require.Equal(t, 1, applied(ev.ID), fmt.Sprintf("event %s applied once", ev.ID))
		require.Equal(t, 1, countRows(t, direct, `SELECT count(*) FROM device_events WHERE event_id = $1 AND outcome = 'applied'`, ev.ID))
	}
}
