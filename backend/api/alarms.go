package api

import (
	"errors"
	"net/http"

	"kluis/backend/alarms"
)

// alarmsResponse is GET /api/v1/devices/{id}/alarms.
type alarmsResponse struct {
	Alarms []alarms.Alarm `json:"alarms"`
}

// handleListAlarms answers a device's open alarms, not acknowledged first
// (every role: the same as the dashboard shows).
func (s *Server) handleListAlarms(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	ctx := r.Context()
	d, err := s.svc.GetDevice(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	open, err := alarms.Open(ctx, s.pool, s.clock(), d.ID)
	if err != nil {
		return err
	}
	out := alarmsResponse{Alarms: open[d.ID]}
	if out.Alarms == nil {
		out.Alarms = []alarms.Alarm{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type ackRequest struct {
	Note string `json:"note"`
}

// ackResponse is POST /api/v1/devices/{id}/alarms/{alarm}/ack: the alarm
// with its acknowledgement, and whether this request recorded it (false:
// it was acknowledged before, the first acknowledgement is answered and
// this one's note is not kept).
type ackResponse struct {
	Alarm    alarms.Alarm `json:"alarm"`
	Recorded bool         `json:"recorded"`
}

// handleAckAlarm acknowledges an open alarm (technicians and admins), with
// an optional note; audited as alarm.acknowledged, once.
func (s *Server) handleAckAlarm(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	var req ackRequest
	if err := decodeOptionalJSON(r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	d, err := s.svc.GetDevice(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	res, err := alarms.Acknowledge(ctx, s.pool, alarms.AckRequest{Device: d.ID, ID: r.PathValue("alarm"),
		Actor: actor(principal(ctx)), Note: req.Note, At: s.clock()})
	switch {
	case errors.Is(err, alarms.ErrNote):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_input", Err: err,
			Message: "the note must be one line of at most 200 characters, without control, bidirectional-control or invisible format characters",
			Details: map[string]any{"fields": []string{"note"}}}
	case errors.Is(err, alarms.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "alarm_not_found", Err: err,
			Message: "the device raised no alarm with this id"}
	case errors.Is(err, alarms.ErrNotOpen):
		return &Error{Status: http.StatusConflict, Code: "alarm_not_open", Err: err,
			Message: "the alarm is no longer open (the device cleared it, raised it again as a new alarm, or it expired): nothing was recorded"}
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, ackResponse{Alarm: res.Alarm, Recorded: res.Recorded})
	return nil
}
