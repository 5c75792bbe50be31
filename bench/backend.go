package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kluis/backend/devicelink"
	"kluis/backend/server"
)

// Unthrottled is a per-device budget no bench device reaches: kluis-bench
// verify's devices verify back to back (hundreds a second each) and tap's
// one kiosk taps without pause, far above a real device's use and the
// default budgets (devicelink.DefaultVerifyBudget, DefaultEventBudget,
// DefaultAlarmBudget, DefaultResultBudget).
// The budget is still checked for every message, as in production.
func Unthrottled() devicelink.Budget { return devicelink.Budget{Rate: 1e9, Burst: 1 << 30} }

// StartBackend builds a kluis-backend from o, runs it in-process and waits
// until it is ready. stop ends it (waiting up to 30 s) and returns what
// its Run returned. ctx bounds the wait for readiness only: the backend
// runs until stop is called.
func StartBackend(ctx context.Context, o server.Options) (srv *server.Server, stop func() error, err error) {
	srv, err = server.New(o)
	if err != nil {
		return nil, nil, fmt.Errorf("backend: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("backend: did not stop within 30 s")
		}
	}
	select {
	case <-srv.Ready():
		return srv, stop, nil
	case err := <-done:
		cancel()
		return nil, nil, fmt.Errorf("backend: %w", err)
	case <-ctx.Done():
		_ = stop()
		return nil, nil, ctx.Err()
	}
}
