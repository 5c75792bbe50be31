package devicelink

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/controller/wire"
)

// presenceMetrics exports every device's stored presence, read from
// device_presence at scrape time, so that each replica reports the whole
// fleet (not only the devices whose messages it happened to handle) and a
// device that falls silent without a last will still shows its age:
// kluis_device_online{device} and
// kluis_device_last_heartbeat_timestamp_seconds{device} (absent until the
// first heartbeat).
type presenceMetrics struct {
	pool      *pgxpool.Pool
	filter    string
	timeout   time.Duration
	log       *slog.Logger
	online    *prometheus.Desc
	heartbeat *prometheus.Desc
}

func newPresenceMetrics(pool *pgxpool.Pool, filter string, timeout time.Duration, log *slog.Logger) *presenceMetrics {
	return &presenceMetrics{pool: pool, filter: filter, timeout: timeout, log: log,
		online: prometheus.NewDesc("kluis_device_online",
			"1 when the device's last presence (or heartbeat) says online, 0 after its offline presence or last will; read from the database at scrape time.",
			[]string{"device"}, nil),
		heartbeat: prometheus.NewDesc("kluis_device_last_heartbeat_timestamp_seconds",
			"Unix time of the device's last heartbeat as received by the backend; read from the database at scrape time.",
			[]string{"device"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (p *presenceMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- p.online
	ch <- p.heartbeat
}

// Collect implements prometheus.Collector. A database error is logged and
// the scrape carries no presence series (an alert on them must not read a
// silent scrape as "offline").
func (p *presenceMetrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	rows, err := p.pool.Query(ctx, `SELECT device_id, state, last_heartbeat_at FROM device_presence
		WHERE $1 = '+' OR device_id = $1`, p.filter)
	if err != nil {
		p.log.Warn("presence metrics: query failed", "err", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var device, state string
		var hb *time.Time
		if err := rows.Scan(&device, &state, &hb); err != nil {
			p.log.Warn("presence metrics: scan failed", "err", err)
			return
		}
		online := 0.0
		if state == string(wire.Online) {
			online = 1
		}
		ch <- prometheus.MustNewConstMetric(p.online, prometheus.GaugeValue, online, device)
		if hb != nil {
			ch <- prometheus.MustNewConstMetric(p.heartbeat, prometheus.GaugeValue, float64(hb.UnixNano())/1e9, device)
		}
	}
	if err := rows.Err(); err != nil {
		p.log.Warn("presence metrics: read failed", "err", err)
	}
}
