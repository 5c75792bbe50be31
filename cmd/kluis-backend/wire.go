package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/api"
	"kluis/backend/codes"
	"kluis/backend/service"
	"kluis/backend/store"
)

// deps are the collaborators of the API and their background loops.
type deps struct {
	codes   *codes.Service
	service *service.Service
	api     api.Options     // the domain part of the API options
	ctx     context.Context // ends at close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closers []func()
}

// close stops the background loops and releases resources, newest first.
func (d *deps) close() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// go runs fn in the background until close.
func (d *deps) goLoop(fn func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		fn()
	}()
}

// every runs fn now and then every interval until close.
func (d *deps) every(interval time.Duration, fn func(ctx context.Context)) {
	d.goLoop(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			fn(d.ctx)
			select {
			case <-d.ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// pseudonymKey derives the document-number pseudonym key from the PIN key,
// so no extra secret has to be kept.
func pseudonymKey(k codes.Keys) []byte {
	m := hmac.New(sha256.New, k.PIN)
	m.Write([]byte("kluis document-number pseudonym v1"))
	return m.Sum(nil)
}

// wire builds the codes and document services and starts housekeeping.
func wire(ctx context.Context, st *store.Store, reg *prometheus.Registry, c config, e env, log *slog.Logger) (*deps, error) {
	d := &deps{}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.ctx, d.cancel = lctx, cancel

	keys, err := codes.LoadOrCreateKeys(c.keyDir)
	if err != nil {
		d.close()
		return nil, fmt.Errorf("code keys in %s: %w", c.keyDir, err)
	}
	d.codes, err = codes.New(codes.Options{Pool: st.Pool(), Keys: keys, Logger: log, Registerer: reg})
	if err != nil {
		d.close()
		return nil, err
	}
	d.service, err = service.New(service.Options{
		Store:        st,
		Logger:       log,
		PseudonymKey: pseudonymKey(keys),
		Codes:        codes.Issuer{Service: d.codes},
	})
	if err != nil {
		d.close()
		return nil, err
	}
	d.api.Service = d.service
	if c.housekeepEvery > 0 {
		d.goLoop(func() { _ = d.service.RunHousekeeping(lctx, c.housekeepEvery) })
	}
	return d, nil
}

// defaultHousekeepEvery is how often expiry and purge run.
const defaultHousekeepEvery = time.Minute
