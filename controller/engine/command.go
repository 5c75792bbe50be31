package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kluis/controller/offline"
	"kluis/controller/wire"
)

// HandleCommand carries out a backend command at most once (by id) and only
// before it expires, and returns the result to publish.
func (e *Engine) HandleCommand(ctx context.Context, c wire.Command) wire.CommandResult {
	now := e.now()
	res := wire.CommandResult{ID: c.ID, At: now.UTC()}
	// Check and claim the id in one step, so that two deliveries of one
	// command handled at once cannot both act.
	e.mu.Lock()
	_, seen := e.commands[c.ID]
	expired := !now.Before(c.Expires)
	if !seen && !expired {
		e.commands[c.ID] = c.Expires
	}
	e.mu.Unlock()
	if seen {
		res.Status, res.Detail = wire.StatusDuplicate, "already carried out"
		e.m.commands.WithLabelValues(string(c.Kind), string(res.Status)).Inc()
		return res
	}
	if expired {
		res.Status, res.Detail = wire.StatusExpired, fmt.Sprintf("expired at %s", c.Expires.UTC().Format(time.RFC3339))
		e.m.commands.WithLabelValues(string(c.Kind), string(res.Status)).Inc()
		e.log.Warn("expired command ignored", "id", c.ID, "kind", c.Kind)
		return res
	}
	// Journal the id before acting so a restart never repeats it.
	if err := e.appendData(recCommand, map[string]any{"id": c.ID, "expires": c.Expires, "kind": c.Kind}); err != nil {
		e.mu.Lock()
		delete(e.commands, c.ID)
		e.mu.Unlock()
		res.Status, res.Detail = wire.StatusFailed, "journal unavailable"
		return res
	}
	res.Status = wire.StatusDone
	switch c.Kind {
	case wire.CmdCodeSync:
		if e.o.Cache == nil || c.Codes == nil {
			res.Status, res.Detail = wire.StatusRejected, "no offline cache"
			break
		}
		if err := e.o.Cache.ApplyAt(*c.Codes, e.now()); err != nil {
			res.Status, res.Detail = wire.StatusFailed, err.Error()
			if errors.Is(err, offline.ErrStale) {
				res.Status = wire.StatusRejected
			}
		}
		e.m.cacheSize.Set(float64(e.o.Cache.Len()))
	case wire.CmdOpen:
		comp := e.compFor(c.Addr, nil)
		if comp == nil || comp.slot >= 0 {
			res.Status, res.Detail = wire.StatusRejected, "no such locker compartment on this device"
			break
		}
		o := &op{purpose: PurposeRemote, comp: comp, commandID: c.ID, staffID: optID(c.By), lang: e.cfg.Kiosk.DefaultLang}
		if st := e.start(o); st != "" {
			res.Status, res.Detail = wire.StatusFailed, "compartment "+st
		}
		e.log.Info("remote open", "id", c.ID, "compartment", comp.cfg.Number, "reason", c.Reason, "status", res.Status)
	case wire.CmdClearLockout:
		res.Status, res.Detail = e.clearLockoutCommand(c)
	default:
		res.Status, res.Detail = wire.StatusRejected, "not supported by kluisd: edit the configuration file"
	}
	e.m.commands.WithLabelValues(string(c.Kind), string(res.Status)).Inc()
	_ = ctx
	return res
}

func optID(s string) string {
	if wire.ValidID(s) != nil {
		return ""
	}
	return s
}
