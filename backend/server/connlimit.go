package server

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/internal/connlimit"
)

// DefaultHTTPMaxConnections is the default of Options.HTTPMaxConnections:
// a quarter of the process's open-file limit, at least 64, at most 4,096
// (the live pages take at most 500 of them).
func DefaultHTTPMaxConnections() int { return connlimit.DefaultMax(httpMaxCeiling) }

// httpMaxCeiling is the most DefaultHTTPMaxConnections gives.
const httpMaxCeiling = 4096

// capConnections wraps the HTTP listener in a cap of max connections (0:
// the default), with its metrics on reg.
func capConnections(ln net.Listener, max int, log *slog.Logger, reg prometheus.Registerer) (*connlimit.Listener, error) {
	if max <= 0 {
		max = DefaultHTTPMaxConnections()
	}
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "kluis_http_connections_refused_total",
		Help: "Connections to the HTTP listener refused (503) because it held its maximum (-http-max-connections)."})
	l := connlimit.New(ln, connlimit.Options{Max: max, Name: "http", Logger: log, OnRefuse: refused.Inc})
	// Read at scrape time: a gauge Set from Accept and Close can be left
	// one behind when the two race.
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kluis_http_connections_open",
		Help: "Connections the HTTP listener holds open."}, func() float64 { return float64(l.Open()) })
	for _, c := range []prometheus.Collector{refused, open} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: http connection metrics: %w", err)
		}
	}
	return l, nil
}
