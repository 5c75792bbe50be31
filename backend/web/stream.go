package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"kluis/backend/auth"
)

// The live pages' streams: GET /staff/devices/events (the fleet) and GET
// /staff/devices/{id}/events (one device) send server-sent events whose
// data is a JSON object of HTML fragments rendered in the reader's
// language, keyed by the id of the page element they replace. An "ended"
// event says the session is over (the page asks to sign in again).

const (
	// streamPing keeps proxies from closing an idle stream.
	streamPing = 20 * time.Second
	// streamRecheck is how often a stream checks its session is alive.
	streamRecheck = 30 * time.Second
)

// deviceView is a device page's data.
type deviceView struct {
	detail
	Map       template.HTML
	Highlight int
	// AlarmsOnly: the timeline shows the alarms only (?timeline=alarms,
	// on the page and its live stream).
	AlarmsOnly bool
	// LiveURL is the page's live stream, with the page's own view in its
	// query (c=, timeline=alarms), built by liveURL.
	LiveURL string
}

// liveURL is the live stream of device id's page for the compartment to
// find (highlight, 0: none) and the timeline's view: the query is
// url.Values', so the template only escapes it (html/template writes the
// & of an attribute as &amp;).
func liveURL(id string, highlight int, alarmsOnly bool) string {
	v := url.Values{}
	if highlight > 0 {
		v.Set("c", strconv.Itoa(highlight))
	}
	if alarmsOnly {
		v.Set("timeline", "alarms")
	}
	u := Prefix + "devices/" + url.PathEscape(id) + "/events"
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return u
}

func (w *Web) deviceView(q *req, id string, highlight int) (deviceView, error) {
	alarmsOnly := q.r.URL.Query().Get("timeline") == "alarms"
	d, err := readDetail(q.r.Context(), w.o.Pool, id, w.o.Service.LowMaxHeightCM(), w.o.Clock(), alarmsOnly)
	if err != nil {
		return deviceView{}, err
	}
	return deviceView{detail: d, Map: drawMap(q.t, d, highlight), Highlight: highlight, AlarmsOnly: alarmsOnly,
		LiveURL: liveURL(id, highlight, alarmsOnly)}, nil
}

// stream serves the events of the fleet (device "") or of one device.
func (w *Web) stream(deviceStream bool) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		headers(rw.Header())
		q := &req{w: w, r: r}
		q.lang = w.language(rw, r)
		q.t = w.tr(q.lang)
		c, err := w.cookie(r, sessionCookie)
		if err == nil {
			q.sess, err = w.o.Auth.WebSessionFor(r.Context(), c.Value, false)
		}
		if err != nil {
			http.Error(rw, "sign in again", http.StatusUnauthorized)
			return
		}
		q.loggedIn = true
		action, device := "devices.list", ""
		if deviceStream {
			action, device = "devices.view", r.PathValue("id")
		}
		// The role first: a role that may not see devices gets the same
		// answer for every id, so it cannot tell which devices exist.
		if !q.may(action) {
			http.Error(rw, "forbidden", http.StatusForbidden)
			return
		}
		if deviceStream {
			if _, err := w.o.Service.GetDevice(r.Context(), device); err != nil {
				http.Error(rw, "no such device", http.StatusNotFound)
				return
			}
		}
		// One user may not take every stream of the process.
		uid := q.sess.User.ID
		w.userMu.Lock()
		if w.userStreams[uid] >= w.o.MaxStreamsPerUser {
			w.userMu.Unlock()
			rw.Header().Set("Retry-After", "30")
			http.Error(rw, "too many live pages are open for this user", http.StatusTooManyRequests)
			return
		}
		w.userStreams[uid]++
		w.userMu.Unlock()
		defer func() {
			w.userMu.Lock()
			if w.userStreams[uid]--; w.userStreams[uid] <= 0 {
				delete(w.userStreams, uid)
			}
			w.userMu.Unlock()
		}()
		if w.hub.open.Add(1) > int64(w.o.MaxStreams) {
			w.hub.open.Add(-1)
			rw.Header().Set("Retry-After", "30")
			http.Error(rw, "too many live pages are open", http.StatusServiceUnavailable)
			return
		}
		w.streams.Inc()
		defer func() {
			w.hub.open.Add(-1)
			w.streams.Dec()
		}()
		rc := http.NewResponseController(rw)
		_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
		h := rw.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no")
		rw.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return
		}
		s := w.hub.subscribe(device)
		defer w.hub.unsubscribe(s)
		highlight, _ := strconv.Atoi(r.URL.Query().Get("c"))
		ping := time.NewTicker(streamPing)
		defer ping.Stop()
		recheck := time.NewTicker(streamRecheck)
		defer recheck.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-w.closing:
				return
			case <-ping.C:
				if _, err := fmt.Fprint(rw, ": ping\n\n"); err != nil || rc.Flush() != nil {
					return
				}
			case <-recheck.C:
				ws, err := w.o.Auth.WebSessionFor(r.Context(), c.Value, false)
				if errors.Is(err, auth.ErrUnauthenticated) || err == nil && !w.Allowed(action, ws.User.Role) {
					_, _ = fmt.Fprint(rw, "event: ended\ndata: {}\n\n")
					_ = rc.Flush()
					return
				}
				if err == nil {
					q.sess = ws
				}
			case <-s.c:
				q.t = w.tr(q.lang) // the time now, for "ago" texts
				var parts map[string]string
				if deviceStream {
					parts, err = w.deviceParts(q, device, highlight)
				} else {
					parts, err = w.fleetParts(q)
				}
				if err != nil {
					w.log.Warn("live page: render", "device", device, "err", err)
					continue
				}
				b, err := json.Marshal(parts)
				if err != nil {
					continue
				}
				if _, err := fmt.Fprintf(rw, "event: update\ndata: %s\n\n", b); err != nil || rc.Flush() != nil {
					return
				}
			}
		}
	}
}

// fragment renders one named template of a page with q's layout.
func (w *Web) fragment(q *req, page, name string, main any) (string, error) {
	l := layout{T: q.t, Lang: q.lang, LoggedIn: true, User: q.sess.User, CSRF: q.sess.CSRF, Main: main, q: q}
	var b bytes.Buffer
	if err := w.pages[page].ExecuteTemplate(&b, name, l); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (w *Web) fleetParts(q *req) (map[string]string, error) {
	snap := w.hub.snapshot()
	if snap == nil {
		return nil, errors.New("no fleet read yet")
	}
	d := devicesData{Rows: snap.rows, Sites: snap.sites}
	out := map[string]string{}
	var err error
	for id, name := range map[string]string{"fleet-rows": "fleet-rows", "fleet-summary": "fleet-summary"} {
		if out[id], err = w.fragment(q, "devices", name, d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (w *Web) deviceParts(q *req, id string, highlight int) (map[string]string, error) {
	v, err := w.deviceView(q, id, highlight)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range []string{"device-status", "device-map", "device-comps", "device-boards", "device-timeline"} {
		if out[name], err = w.fragment(q, "device", name, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}
