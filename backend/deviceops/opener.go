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
			// A last look: the result may have come with the deadline.
			if done, err := o.answered(ctx, deviceID, id); done || err != nil {
				return err
			}
			// No answer is no proof that nothing happened: the device
			// may have carried the command out before its expiry and
			// its result be late (a slow link, a reconnection), or it
			// may never have received it; after the expiry it no longer
			// carries it out. A late result still updates the command's
			// row, and the door's events reach the device's timeline.
			return &api.Error{Status: http.StatusGatewayTimeout, Code: "no_answer",
				Message: fmt.Sprintf("no answer from device %s within %s: the door may or may not have opened (a device that received the command before it expired at %s may have carried it out and report it late); check the device's timeline",
					deviceID, o.timeout, now.Add(o.timeout).Format(time.RFC3339)),
				Err: api.ErrNoAnswer}
		case <-tick.C:
		}
		if done, err := o.answered(ctx, deviceID, id); done || err != nil {
			return err
		}
	}
}

// answered reads command id's status: done when the device answered (err
// nil when it carried it out, its answer otherwise).
func (o *Opener) answered(ctx context.Context, deviceID, id string) (bool, error) {
	st, err := o.link.CommandStatus(ctx, id)
	if err != nil {
		return true, err
	}
	switch wire.CommandStatus(st.Status) {
	case wire.StatusDone, wire.StatusDuplicate:
		return true, nil
	case wire.StatusFailed, wire.StatusExpired, wire.StatusRejected:
		return true, fmt.Errorf("%w: device %s answered %s: %s", api.ErrDeviceRefused, deviceID, st.Status, st.Detail)
	case wire.StatusUncertain:
		// kluisd stopped while carrying it out (docs/kluisd.md).
		return true, &api.Error{Status: http.StatusGatewayTimeout, Code: "no_answer",
			Message: fmt.Sprintf("device %s restarted while carrying out the command: the door may or may not have opened; check the device's timeline", deviceID),
			Err:     api.ErrNoAnswer}
	}
	return false, nil
}
