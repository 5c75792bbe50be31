package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/store"
)

// deps are the optional collaborators of the API.
type deps struct {
	closers []func()
}

func (d *deps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// wire builds the domain services, the device link and the broker.
func wire(ctx context.Context, st *store.Store, reg *prometheus.Registry, c config, e env, log *slog.Logger) (*deps, error) {
	return &deps{}, nil
}
