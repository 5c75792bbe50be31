package web

import (
	"errors"
	"net/http"

	"kluis/backend/alarms"
	"kluis/backend/store"
)

// ackData is the data of an alarm's acknowledgement page.
type ackData struct {
	Device store.Device
	Alarm  alarm
	Note   string
	Error  string
	Action string
	Back   string
}

// openAlarm finds the open alarm {alarm} of device {id}: a 404 page for a
// device or alarm that does not exist, a 409 one for an alarm that is no
// longer open.
func (w *Web) openAlarm(q *req) (store.Device, alarm, error) {
	ctx := q.r.Context()
	d, err := w.o.Service.GetDevice(ctx, q.r.PathValue("id"))
	if err != nil {
		return store.Device{}, alarm{}, err
	}
	id := q.r.PathValue("alarm")
	open, err := activeAlarms(ctx, w.o.Pool, w.o.Clock(), d.ID)
	if err != nil {
		return store.Device{}, alarm{}, err
	}
	if len(open) > 0 {
		if err := numberAlarms(ctx, w.o.Pool, open); err != nil {
			return store.Device{}, alarm{}, err
		}
	}
	for _, a := range open[d.ID] {
		if a.ID == id {
			return d, a, nil
		}
	}
	raised, err := alarms.Raised(ctx, w.o.Pool, d.ID, id)
	if err != nil {
		return store.Device{}, alarm{}, err
	}
	if raised {
		return store.Device{}, alarm{}, backToDevice(q, d, fail(http.StatusConflict, "error.alarm_not_open"))
	}
	return store.Device{}, alarm{}, backToDevice(q, d, fail(http.StatusNotFound, "error.alarm_not_found"))
}

// backToDevice has the error page of an alarm of device d link back to
// d's page: the alarm cleared while the technician was acknowledging it
// (after a repair) is the usual case, and the device's page is where he
// checks that all is well again, not the start page.
func backToDevice(q *req, d store.Device, pe *pageError) *pageError {
	return pe.backTo(Prefix+"devices/"+d.ID, q.t.F("error.back_device", "device", displayName(d)))
}

func (w *Web) ackForm(rw http.ResponseWriter, q *req) error {
	d, a, err := w.openAlarm(q)
	if err != nil {
		return err
	}
	w.render(rw, q, http.StatusOK, "ack", q.t.F("ack.title", "device", displayName(d)),
		ackData{Device: d, Alarm: a, Action: q.r.URL.Path, Back: Prefix + "devices/" + d.ID})
	return nil
}

// ack acknowledges the alarm (alarms.Acknowledge, as the API does) and
// goes back to the device's page; a note that is refused comes back with
// the form.
func (w *Web) ack(rw http.ResponseWriter, q *req) error {
	d, a, err := w.openAlarm(q)
	if err != nil {
		return err
	}
	note := q.r.PostForm.Get("note")
	res, err := alarms.Acknowledge(q.r.Context(), w.o.Pool, alarms.AckRequest{Device: d.ID, ID: a.ID, Actor: q.actor(),
		Note: note, At: w.o.Clock()})
	switch {
	case errors.Is(err, alarms.ErrNote):
		w.render(rw, q, http.StatusBadRequest, "ack", q.t.F("ack.title", "device", displayName(d)),
			ackData{Device: d, Alarm: a, Note: note, Error: q.t.F("error.ack_note", "max", alarms.MaxNote),
				Action: q.r.URL.Path, Back: Prefix + "devices/" + d.ID})
		return nil
	case errors.Is(err, alarms.ErrNotOpen):
		return backToDevice(q, d, fail(http.StatusConflict, "error.alarm_not_open"))
	case errors.Is(err, alarms.ErrNotFound):
		return backToDevice(q, d, fail(http.StatusNotFound, "error.alarm_not_found"))
	case err != nil:
		return err
	}
	notice := "notice.alarm_acked"
	if !res.Recorded {
		notice = "notice.alarm_already_acked"
	}
	w.redirect(rw, q.r, Prefix+"devices/"+d.ID, notice, 0)
	return nil
}
