package kiosk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"kluis/controller/engine"
)

// writeWait bounds one write to a stream or long poll (the kiosk
// server's WriteTimeout would cut a stream after it).
const writeWait = 10 * time.Second

// events streams the screen as server-sent events: "hello" with the
// screen's build, then "screen" (engine.Screen as JSON) now and at every
// change of seq, woken by the engine (no polling); a comment line every
// KeepAlive. The browser's EventSource reconnects by itself (retry 1 s).
// At most Options.MaxStreams are open at once (503 beyond).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if !s.hold(w, &s.streams, "event streams") {
		return
	}
	defer s.release(&s.streams)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(format string, args ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	hello, _ := json.Marshal(map[string]string{"build": s.build})
	if !send("retry: 1000\nevent: hello\ndata: %s\n\n", hello) {
		return
	}
	keep := time.NewTicker(s.o.KeepAlive)
	defer keep.Stop()
	var last uint64
	first := true
	for {
		ch := s.e.Changed() // before Screen: a change in between closes ch
		sc := s.e.Screen()
		if first || sc.Seq != last {
			b, err := json.Marshal(sc)
			if err != nil {
				return
			}
			if !send("id: %d\nevent: screen\ndata: %s\n\n", sc.Seq, b) {
				return
			}
			first, last = false, sc.Seq
		}
		select {
		case <-ch:
		case <-keep.C:
			if !send(": keep-alive\n\n") {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
}

// session answers what the screen shows; with ?wait=<seq> it waits (up to
// LongPoll) until the screen's seq differs from it: the long-polling
// fallback of the event stream. At most Options.MaxStreams wait at once
// (503 beyond).
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	if s.build != "" {
		w.Header().Set("X-Kluis-Build", s.build)
	}
	q := r.URL.Query().Get("wait")
	if q == "" {
		writeJSON(w, http.StatusOK, s.e.Screen())
		return
	}
	seq, err := strconv.ParseUint(q, 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "wait must be a screen seq")
		return
	}
	if !s.hold(w, &s.polls, "long polls") {
		return
	}
	defer s.release(&s.polls)
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.o.LongPoll + writeWait))
	timer := time.NewTimer(s.o.LongPoll)
	defer timer.Stop()
	for {
		ch := s.e.Changed()
		sc := s.e.Screen()
		if sc.Seq != seq {
			writeJSON(w, http.StatusOK, sc)
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			writeJSON(w, http.StatusOK, sc)
			return
		case <-r.Context().Done():
			return
		case <-s.closing:
			writeJSON(w, http.StatusOK, sc)
			return
		}
	}
}

// busyStates are the screens of a door being opened or open: not idle.
var busyStates = map[string]bool{engine.StateVerifying: true, engine.StatePresenting: true, engine.StateOpen: true,
	engine.StateLoading: true, engine.StateRetrieving: true, engine.StateTestOpen: true}

// Run applies the idle rules until ctx ends: the screen returns to idle
// (and the default language) timeouts.session after its last change or
// the last activity reported on it (engine.Touch, bounded by
// engine.SessionCap),
// which the engine does when asked (Screen) and the event streams then
// push; and a staff member is logged out kiosk.staff_idle after their
// last action or screen change, unless a door is open for them. It waits
// for the engine's changes and the next deadline; it does not poll.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.o.Config
	if cfg == nil {
		<-ctx.Done()
		return nil
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// lastChange is when the staff member last caused a change: a login
	// or a screen other than idle and the staff menu (the automatic
	// return to the menu is not theirs).
	var lastChange time.Time
	prevStaff := ""
	for {
		ch := s.e.Changed()
		sc := s.e.Screen() // applies timeouts.session
		now := s.now()
		if sc.Staff != "" && (prevStaff == "" || (sc.State != engine.StateIdle && sc.State != engine.StateStaff)) && sc.At.After(lastChange) {
			lastChange = sc.At
		}
		prevStaff = sc.Staff
		wait := time.Duration(-1)
		if sc.State != engine.StateIdle && sc.State != engine.StateStaff {
			// Past the deadline the engine kept the screen: an operation
			// runs, and its end changes the screen (and starts again).
			// Reported activity (engine.Touch) puts the deadline off: the
			// engine then keeps the screen at the old one, and this waits
			// again for the new.
			until := sc.At.Add(cfg.Timeouts.Session)
			if sc.IdleUntil != nil {
				until = *sc.IdleUntil
			}
			if d := until.Sub(now) + time.Millisecond; d > 0 {
				wait = d
			}
		}
		if sc.Staff != "" && !busyStates[sc.State] {
			last := s.lastStaffAction()
			if lastChange.After(last) {
				last = lastChange
			}
			idle := last.Add(cfg.Kiosk.StaffIdle).Sub(now)
			if idle <= 0 {
				s.log.Info("staff logged out after being idle", "idle", cfg.Kiosk.StaffIdle)
				s.e.StaffLogout(ctx)
				continue
			}
			if wait < 0 || idle < wait {
				wait = idle
			}
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-s.poke:
		case <-tc:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}
