package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/store"
)

type devicesData struct {
	Rows   []health
	Sites  map[string]string
	Filter string
	Show   string
}

// siteNames maps site ids to names.
func siteNames(ctx context.Context, db store.DB) (map[string]string, error) {
	sites, err := store.ListSites(ctx, db)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range sites {
		out[s.ID] = s.Name
	}
	return out, nil
}

// fleetRows is the fleet as the page shows it: the hub's snapshot when it
// is recent, else read now.
func (w *Web) fleetRows(q *req) ([]health, error) {
	if s := w.hub.snapshot(); s != nil && w.o.Clock().Sub(s.at) < 2*w.o.PollEvery {
		return s.rows, nil
	}
	return readFleet(q.r.Context(), w.o.Pool, nil, w.o.Clock())
}

func (w *Web) devices(rw http.ResponseWriter, q *req) error {
	rows, err := w.fleetRows(q)
	if err != nil {
		return err
	}
	sites, err := siteNames(q.r.Context(), w.o.Pool)
	if err != nil {
		return err
	}
	show := q.r.URL.Query().Get("show")
	switch show {
	case "online", "late", "offline", "never", "alarms", "out_of_service":
	default:
		show = "all"
	}
	d := devicesData{Rows: rows, Sites: sites, Filter: q.r.URL.Query().Get("filter"), Show: show}
	w.render(rw, q, http.StatusOK, "devices", fleetTitle(q.t, rows), d)
	return nil
}

// fleetTitle is the fleet page's title: with the number of alarms nobody
// acknowledged in front when there are any ("(2) Toestellen"), so that
// the page left open in a background tab says so in the tab; the live
// stream keeps it current (fleet-summary's data-title, console.js).
func fleetTitle(t *tr, rows []health) string {
	n := 0
	for _, h := range rows {
		n += h.Unacknowledged()
	}
	if n == 0 {
		return t.S("devices.title")
	}
	return t.F("devices.title_alarms", "n", n)
}

func (w *Web) device(rw http.ResponseWriter, q *req) error {
	highlight, _ := strconv.Atoi(q.r.URL.Query().Get("c"))
	v, err := w.deviceView(q, q.r.PathValue("id"), highlight)
	if err != nil {
		return err
	}
	w.render(rw, q, http.StatusOK, "device", q.t.F("device.title", "device", displayName(v.Device)), v)
	return nil
}

// displayName is a device's name, or its id when it has none.
func displayName(d store.Device) string {
	if d.Name != "" {
		return d.Name
	}
	return d.ID
}

// compartmentOf reads the {id} and {number} of the path.
func (w *Web) compartmentOf(q *req) (store.Device, store.Compartment, error) {
	n, err := strconv.Atoi(q.r.PathValue("number"))
	if err != nil || n < 1 || n > store.MaxCompartments {
		return store.Device{}, store.Compartment{}, fail(http.StatusNotFound, "error.not_found")
	}
	d, err := w.o.Service.GetDevice(q.r.Context(), q.r.PathValue("id"))
	if err != nil {
		return store.Device{}, store.Compartment{}, err
	}
	for _, c := range d.Compartments {
		if c.Number == n {
			return d, c, nil
		}
	}
	return store.Device{}, store.Compartment{}, fail(http.StatusNotFound, "error.not_found")
}

// actionData is the data of the reason and confirmation pages.
type actionData struct {
	Device  store.Device
	Comp    store.Compartment
	Reason  string
	Error   string
	Confirm bool
	// Occupied: a document is behind the door (open: admins only).
	Occupied bool
	// Out is what the service page does: take out (true) or put back.
	Out bool
	// Kind is open, comp_service or device_service.
	Kind   string
	Action string
	Back   string
	// OfflineSince is set when the device is offline now (open: the
	// command will likely not reach it); BoardDown when the compartment's
	// lock board is offline by the device page's rule (the device will
	// likely refuse), BoardAlarm too when its board_unreachable alarm is
	// open (the form then says the alarm says so, not the heartbeat).
	OfflineSince *time.Time
	BoardDown    bool
	BoardAlarm   bool
	// LateSince is set when the device is connected but its heartbeats
	// stopped (service.Late; kluisd may hang): since its last one. The
	// command will likely expire unexecuted.
	LateSince *time.Time
}

// openOutlook reads what the open form warns about: whether the device
// is offline now (since when) or connected but late (its heartbeats
// stopped: since its last one), and whether c's lock board is offline, by
// the device page's rule (makeHealth): the newer word of the last
// heartbeat and the board's open board_unreachable alarm.
func (w *Web) openOutlook(q *req, d store.Device, c store.Compartment, data *actionData) error {
	pres, err := presenceRows(q.r.Context(), w.o.Pool)
	if err != nil {
		return fmt.Errorf("web: open outlook: %w", err)
	}
	p, known := pres[d.ID]
	if !known {
		return nil // never connected: refused before
	}
	now := w.o.Clock()
	alarms, err := activeAlarms(q.r.Context(), w.o.Pool, now, d.ID)
	if err != nil {
		return fmt.Errorf("web: open outlook: %w", err)
	}
	h := makeHealth(d, p, known, alarms[d.ID], now)
	if !h.Online {
		data.OfflineSince = &h.Since
	}
	if h.Online && h.Late {
		since := h.SilentSince()
		data.LateSince = &since
	}
	for _, b := range h.Boards {
		if b.Address == c.Board && !b.Online {
			data.BoardDown, data.BoardAlarm = true, b.Alarm != nil
		}
	}
	return nil
}

// refuseNeverConnected refuses a remote open to a device that never
// connected: the command would never reach it and could only expire, so
// the console does not offer it (the device page says why). The test is
// the API's (api.RefuseNeverConnected), which api.RemoteOpen applies too.
func (w *Web) refuseNeverConnected(q *req, id string) error {
	err := api.RefuseNeverConnected(q.r.Context(), w.o.Pool, id)
	if errors.Is(err, api.ErrNeverConnected) {
		return fail(http.StatusConflict, "error.never_connected")
	}
	return err
}

// occupied reports whether a document is behind c's door, refusing
// (error.occupied) anyone but an admin before a form is shown: the rule is
// api.RemoteOpen's, which applies it again.
func (w *Web) occupied(q *req, c store.Compartment) (bool, error) {
	doc, err := api.Occupant(q.r.Context(), w.o.Pool, c.ID)
	if err != nil {
		return false, err
	}
	if doc != "" && q.sess.User.Role != auth.RoleAdmin {
		return true, fail(http.StatusForbidden, "error.occupied")
	}
	return doc != "", nil
}

func (w *Web) openForm(rw http.ResponseWriter, q *req) error {
	d, c, err := w.compartmentOf(q)
	if err != nil {
		return err
	}
	if err := w.refuseNeverConnected(q, d.ID); err != nil {
		return err
	}
	occupied, err := w.occupied(q, c)
	if err != nil {
		return err
	}
	data := actionData{Device: d, Comp: c, Occupied: occupied, Kind: "open", Action: q.r.URL.Path, Back: Prefix + "devices/" + d.ID}
	if err := w.openOutlook(q, d, c, &data); err != nil {
		return err
	}
	w.render(rw, q, http.StatusOK, "open", q.t.F("open.title", "n", c.Number, "device", displayName(d)), data)
	return nil
}

// open is the remote open: the first post checks the reason and asks for
// confirmation, the second (confirm=yes) opens.
func (w *Web) open(rw http.ResponseWriter, q *req) error {
	d, c, err := w.compartmentOf(q)
	if err != nil {
		return err
	}
	if err := w.refuseNeverConnected(q, d.ID); err != nil {
		return err
	}
	reason := strings.TrimSpace(q.r.PostForm.Get("reason"))
	occupied, err := w.occupied(q, c)
	if err != nil && q.r.PostForm.Get("confirm") != "yes" {
		return err // refused at the confirmed post by api.RemoteOpen, audited
	}
	data := actionData{Device: d, Comp: c, Reason: reason, Occupied: occupied, Kind: "open", Action: q.r.URL.Path, Back: Prefix + "devices/" + d.ID}
	title := q.t.F("open.title", "n", c.Number, "device", displayName(d))
	if q.r.PostForm.Get("confirm") != "yes" {
		if err := w.openOutlook(q, d, c, &data); err != nil {
			return err
		}
	}
	if api.CheckReason(reason, true) != nil {
		data.Error = q.t.S("open.reason_needed")
		w.render(rw, q, http.StatusBadRequest, "open", title, data)
		return nil
	}
	if q.r.PostForm.Get("confirm") != "yes" {
		data.Confirm = true
		w.render(rw, q, http.StatusOK, "open", title, data)
		return nil
	}
	err = api.RemoteOpen(q.r.Context(), w.o.Pool, w.o.Opener, q.actor(), q.sess.User.Role, d.ID, c.Number, reason, w.o.Clock())
	var of *api.OpenFailed
	var ae *api.Error
	switch {
	case errors.Is(err, api.ErrOccupied):
		return &pageError{status: http.StatusForbidden, key: "error.occupied", err: err}
	case errors.As(err, &of):
		w.log.Warn("remote open failed", "device", d.ID, "compartment", c.Number, "err", of.Err)
		key := "error.open_failed"
		switch {
		case errors.Is(err, api.ErrNoAnswer):
			key = "error.open_no_answer"
		case errors.Is(err, api.ErrDeviceRefused):
			key = "error.open_refused"
		}
		return &pageError{status: http.StatusBadGateway, key: key, err: err}
	case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
		return &pageError{status: http.StatusServiceUnavailable, key: "error.no_link", err: err}
	case err != nil:
		return err
	}
	w.redirect(rw, q.r, Prefix+"devices/"+d.ID, "notice.opened", c.Number)
	return nil
}

func (w *Web) compServiceForm(rw http.ResponseWriter, q *req) error {
	d, c, err := w.compartmentOf(q)
	if err != nil {
		return err
	}
	out := c.State != store.CompartmentOutOfService
	w.render(rw, q, http.StatusOK, "service", q.t.F("service.comp_title", "n", c.Number, "device", displayName(d)),
		actionData{Device: d, Comp: c, Out: out, Kind: "comp_service", Action: q.r.URL.Path, Back: Prefix + "devices/" + d.ID})
	return nil
}

func (w *Web) compService(rw http.ResponseWriter, q *req) error {
	d, c, err := w.compartmentOf(q)
	if err != nil {
		return err
	}
	out := q.r.PostForm.Get("out_of_service") == "yes"
	reason := strings.TrimSpace(q.r.PostForm.Get("reason"))
	if api.CheckReason(reason, false) != nil {
		w.render(rw, q, http.StatusBadRequest, "service", q.t.F("service.comp_title", "n", c.Number, "device", displayName(d)),
			actionData{Device: d, Comp: c, Out: out, Reason: reason, Error: q.t.S("error.reason"), Kind: "comp_service",
				Action: q.r.URL.Path, Back: Prefix + "devices/" + d.ID})
		return nil
	}
	if _, err := w.o.Service.SetOutOfService(q.r.Context(), q.actor(), c.ID, out, reason); err != nil {
		return err
	}
	notice := "notice.comp_in_service"
	if out {
		notice = "notice.comp_out_of_service"
	}
	w.redirect(rw, q.r, Prefix+"devices/"+d.ID, notice, c.Number)
	return nil
}

func (w *Web) devServiceForm(rw http.ResponseWriter, q *req) error {
	d, err := w.o.Service.GetDevice(q.r.Context(), q.r.PathValue("id"))
	if err != nil {
		return err
	}
	w.render(rw, q, http.StatusOK, "service", q.t.F("service.device_title", "device", displayName(d)),
		actionData{Device: d, Out: d.OutOfService == nil, Kind: "device_service", Action: q.r.URL.Path, Back: Prefix + "devices/" + d.ID})
	return nil
}

func (w *Web) devService(rw http.ResponseWriter, q *req) error {
	d, err := w.o.Service.GetDevice(q.r.Context(), q.r.PathValue("id"))
	if err != nil {
		return err
	}
	out := q.r.PostForm.Get("out_of_service") == "yes"
	reason := strings.TrimSpace(q.r.PostForm.Get("reason"))
	if api.CheckReason(reason, out) != nil {
		w.render(rw, q, http.StatusBadRequest, "service", q.t.F("service.device_title", "device", displayName(d)),
			actionData{Device: d, Out: out, Reason: reason, Error: q.t.S("error.reason"), Kind: "device_service",
				Action: q.r.URL.Path, Back: Prefix + "devices/" + d.ID})
		return nil
	}
	if _, err := w.o.Service.SetDeviceOutOfService(q.r.Context(), q.actor(), d.ID, out, reason); err != nil {
		return err
	}
	notice := "notice.in_service"
	if out {
		notice = "notice.out_of_service"
	}
	w.redirect(rw, q.r, Prefix+"devices/"+d.ID, notice, 0)
	return nil
}
