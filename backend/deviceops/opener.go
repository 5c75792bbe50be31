package deviceops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"kluis/backend/api"
	"kluis/backend/devicelink"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// OpenerOptions configure NewOpener.
type OpenerOptions struct {
	// Link sends the commands (required; a SignedLink in production, as
	// devices refuse unsigned commands).
	Link CommandLink
	// Pool is the database (required).
	Pool *pgxpool.Pool
	// Clock gives the time; default time.Now.
	Clock func() time.Time
	// Timeout is how long an open waits for the device (and when its
	// command expires); default 15 s. Poll is how often the command's
	// status is read; default 100 ms.
	Timeout, Poll time.Duration
}

// Opener sends remote-open commands and waits for the device's result; it
// implements api.Opener.
type Opener struct {
	link    CommandLink
	pool    *pgxpool.Pool
	now     func() time.Time
	timeout time.Duration
	poll    time.Duration
}

// NewOpener returns an Opener.
func NewOpener(o OpenerOptions) *Opener {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	return &Opener{link: o.Link, pool: o.Pool, now: o.Clock, timeout: o.Timeout, poll: o.Poll}
}

// OpenCompartment implements api.Opener. The command expires with the
// wait, so a device that was offline never opens the door much later.
func (o *Opener) OpenCompartment(ctx context.Context, deviceID string, number int, reason, actor string) error {
	c, err := store.CompartmentByNumber(ctx, o.pool, deviceID, number)
	if err != nil {
		return err
	}
	now := o.now().UTC()
	id, err := o.link.SendCommand(ctx, deviceID, wire.Command{Kind: wire.CmdOpen, Issued: now, Expires: now.Add(o.timeout),
		Addr: &wire.Address{Board: c.Board, Channel: c.Channel}, Reason: reason, By: actor})
	if errors.Is(err, devicelink.ErrNotConnected) {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: "device_link_unavailable",
			Message: "the backend is not connected to the MQTT broker", Err: err}
	}
	if err != nil {
		return err
	}
	deadline := time.NewTimer(o.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(o.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("no answer from device %s within %s (the command expires unexecuted)", deviceID, o.timeout)
		case <-tick.C:
		}
		st, err := o.link.CommandStatus(ctx, id)
		if err != nil {
			return err
		}
		switch wire.CommandStatus(st.Status) {
		case wire.StatusDone, wire.StatusDuplicate:
			return nil
		case wire.StatusFailed, wire.StatusExpired, wire.StatusRejected:
			return fmt.Errorf("device %s answered %s: %s", deviceID, st.Status, st.Detail)
		}
	}
}
