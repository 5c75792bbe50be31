package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/internal/connlimit"
)

// DefaultHTTPMaxConnections is the default of Options.HTTPMaxConnections:
// a quarter of the process's open-file limit, at least 64, at most 4,096
// (the live pages take at most 500 of them).
func DefaultHTTPMaxConnections() int { return connlimit.DefaultMax(4096) }

// capConnections wraps the HTTP listener in a cap of max connections (0:
// the default), with its metrics on reg.
func capConnections(ln net.Listener, max int, log *slog.Logger, reg prometheus.Registerer) (*connlimit.Listener, error) {
	if max <= 0 {
		max = DefaultHTTPMaxConnections()
	}
	refused, err := register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "kluis_http_connections_refused_total",
		Help: "Connections to the HTTP listener refused (503) because it held its maximum (-http-max-connections)."}))
	if err != nil {
		return nil, err
	}
	open, err := register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_http_connections_open",
		Help: "Connections the HTTP listener holds open."}))
	if err != nil {
		return nil, err
	}
	open.Set(0)
	return connlimit.New(ln, connlimit.Options{Max: max, Name: "http", Logger: log, OnRefuse: refused.Inc,
		OnOpen: func(n int64) { open.Set(float64(n)) }}), nil
}

// register registers c on reg, or returns the collector registered before
// under its name (a server run again on the same registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old, nil
			}
		}
		return c, fmt.Errorf("server: http connection metrics: %w", err)
	}
	return c, nil
}
