package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/audit"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/safetext"
)

// Opener sends a remote-open command to a device's compartment (the device
// link). It returns once the device acknowledged or failed.
type Opener interface {
	OpenCompartment(ctx context.Context, deviceID string, number int, reason, actor string) error
}

// LockoutClearer lifts a device's PIN lockout for staff: the backend's
// burst lock (audited with who and why) and the device's own.
type LockoutClearer interface {
	ClearLockout(ctx context.Context, deviceID, reason, actor string) (LockoutCleared, error)
}

// LockoutCleared is the answer of POST /api/v1/devices/{id}/clear-lockout.
type LockoutCleared struct {
	// DeviceID is the device.
	DeviceID string `json:"device_id"`
	// WasLocked is true when the backend's burst lockout was in force.
	WasLocked bool `json:"was_locked"`
	// LockedUntil is set while the daily cap still locks PIN entry (nobody
	// can lift it); null: PIN entry is open.
	LockedUntil *time.Time `json:"locked_until"`
	// Device is what became of the clear_lockout command to the device.
	Device DeviceCommandOutcome `json:"device"`
}

// DeviceCommandOutcome is what became of a command to a device.
type DeviceCommandOutcome struct {
	// CommandID is the command's id, when one was sent.
	CommandID string `json:"command_id,omitempty"`
	// Status is the device's answer (done, rejected, failed, expired,
	// duplicate) or not_sent, device_offline, no_answer.
	Status string `json:"status"`
	// Detail explains it.
	Detail string `json:"detail,omitempty"`
}

// Presence is a device's connection state as the device link last saw it.
type Presence struct {
	// Online is true while the device is connected to the broker.
	Online bool `json:"online"`
	// Since is when the state last changed.
	Since time.Time `json:"since"`
	// Software is the kluisd version the device reported.
	Software string `json:"software,omitempty"`
	// LastHeartbeatAt is the last telemetry received.
	LastHeartbeatAt *time.Time `json:"last_heartbeat_at,omitempty"`
}

// PresenceFunc returns a device's presence; ok false when the device never
// connected.
type PresenceFunc func(ctx context.Context, deviceID string) (p Presence, ok bool, err error)

// deviceView is a device with its presence.
type deviceView struct {
	store.Device
	// Presence is null when unknown (never connected, or no device link).
	Presence *Presence `json:"presence"`
}

func (s *Server) withPresence(ctx context.Context, d store.Device) deviceView {
	v := deviceView{Device: d}
	if s.presence == nil {
		return v
	}
	p, ok, err := s.presence(ctx, d.ID)
	if err != nil {
		s.log.Warn("device presence", "device", d.ID, "err", err)
		return v
	}
	if ok {
		v.Presence = &p
	}
	return v
}

// DevicePasswordFunc stores a device's MQTT password (hashed) for the
// embedded broker.
type DevicePasswordFunc func(ctx context.Context, deviceID, password string) error

// SlipFunc renders the printable pickup slip (HTML) of a document.
type SlipFunc func(ctx context.Context, doc store.Document) ([]byte, error)

func (s *Server) needService() error {
	if s.svc == nil {
		return errorf(http.StatusServiceUnavailable, "unavailable", "the document service is not configured on this server")
	}
	return nil
}

// decodeOptionalJSON is decodeJSON that accepts an empty body.
func decodeOptionalJSON(r *http.Request, dst any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return decodeJSON(r, dst)
}

// offsetPage pages an in-memory list with an offset cursor.
func offsetPage[T any](r *http.Request, all []T) (Page[T], error) {
	limit, off, err := pageInt(r)
	if err != nil {
		return Page[T]{}, err
	}
	if off > int64(len(all)) {
		off = int64(len(all))
	}
	end := min(int(off)+limit, len(all))
	next := ""
	if end < len(all) {
		next = strconv.Itoa(end)
	}
	return newPage(r, all[off:end], next), nil
}

// Sites and devices.

func (s *Server) handleListSites(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	sites, err := s.svc.ListSites(r.Context())
	if err != nil {
		return err
	}
	p, err := offsetPage(r, sites)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (s *Server) handleCreateSite(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	var n store.NewSite
	if err := decodeJSON(r, &n); err != nil {
		return err
	}
	site, err := s.svc.CreateSite(r.Context(), actor(principal(r.Context())), n)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/sites/"+site.ID)
	writeJSON(w, http.StatusCreated, site)
	return nil
}

func (s *Server) handleGetSite(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	site, err := s.svc.GetSite(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, site)
	return nil
}

func (s *Server) handleListDevices(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	devs, err := s.svc.ListDevices(r.Context(), r.URL.Query().Get("site"))
	if err != nil {
		return err
	}
	p, err := offsetPage(r, devs)
	if err != nil {
		return err
	}
	views := make([]deviceView, 0, len(p.Items))
	for _, d := range p.Items {
		views = append(views, s.withPresence(r.Context(), d))
	}
	writeJSON(w, http.StatusOK, Page[deviceView]{Items: views, NextCursor: p.NextCursor, Next: p.Next})
	return nil
}

func (s *Server) handleCreateDevice(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	var n store.NewDevice
	if err := decodeJSON(r, &n); err != nil {
		return err
	}
	d, err := s.svc.CreateDevice(r.Context(), actor(principal(r.Context())), n)
	if err != nil {
		return err
	}
	if full, err := s.svc.GetDevice(r.Context(), d.ID); err == nil {
		d = full
	}
	w.Header().Set("Location", "/api/v1/devices/"+d.ID)
	writeJSON(w, http.StatusCreated, d)
	return nil
}

func (s *Server) handleGetDevice(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	d, err := s.svc.GetDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.withPresence(r.Context(), d))
	return nil
}

// deviceUpdateRequest is PATCH /api/v1/devices/{id}: absent fields stay,
// "layout": null resets the layout to the default grid.
type deviceUpdateRequest struct {
	Name       *string           `json:"name"`
	Directions map[string]string `json:"directions"`
	Layout     json.RawMessage   `json:"layout"`
}

func (s *Server) handleUpdateDevice(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	var req deviceUpdateRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	u := store.DeviceUpdate{Name: req.Name, Directions: req.Directions}
	if req.Layout != nil {
		u.SetLayout = true
		if string(bytes.TrimSpace(req.Layout)) != "null" {
			var l store.Layout
			dec := json.NewDecoder(bytes.NewReader(req.Layout))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&l); err != nil {
				return &Error{Status: http.StatusBadRequest, Code: "invalid_input", Message: "layout: " + err.Error(),
					Details: map[string]any{"fields": []store.FieldError{{Field: "layout", Message: err.Error()}}}}
			}
			u.Layout = &l
		}
	}
	if u.Name == nil && u.Directions == nil && !u.SetLayout {
		return errorf(http.StatusBadRequest, "missing_field", "nothing to change: give name, directions or layout")
	}
	d, err := s.svc.UpdateDevice(r.Context(), actor(principal(r.Context())), r.PathValue("id"), u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.withPresence(r.Context(), d))
	return nil
}

type deviceServiceRequest struct {
	OutOfService *bool  `json:"out_of_service"`
	Reason       string `json:"reason"`
}

// handleDeviceService takes a device out of service (no new reservations)
// or puts it back; technicians and admins.
func (s *Server) handleDeviceService(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	var req deviceServiceRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.OutOfService == nil {
		return errorf(http.StatusBadRequest, "missing_field", "out_of_service (true or false) is required")
	}
	if err := checkReason(req.Reason, *req.OutOfService); err != nil {
		return err
	}
	d, err := s.svc.SetDeviceOutOfService(r.Context(), actor(principal(r.Context())), r.PathValue("id"), *req.OutOfService, req.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.withPresence(r.Context(), d))
	return nil
}

func (s *Server) handleDevicePassword(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	if err := decodeOptionalJSON(r, &emptyRequest{}); err != nil {
		return err
	}
	d, err := s.svc.GetDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if s.devicePassword == nil {
		return errorf(http.StatusServiceUnavailable, "unavailable", "device MQTT passwords are managed by the external broker, not by this server")
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("device password: %w", err)
	}
	pw := base64.RawURLEncoding.EncodeToString(b)
	if err := s.devicePassword(r.Context(), d.ID, pw); err != nil {
		return err
	}
	p := principal(r.Context())
	if err := s.appendAudit(r.Context(), audit.Entry{Actor: actor(p), Action: "device.mqtt_password_set", Subject: "device:" + d.ID}); err != nil {
		return fmt.Errorf("audit device password: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]string{"device_id": d.ID, "username": d.ID, "password": pw})
	return nil
}

func compartmentNumber(r *http.Request) (int, error) {
	n, err := strconv.Atoi(r.PathValue("number"))
	if err != nil || n < 1 || n > store.MaxCompartments {
		return 0, errorf(http.StatusBadRequest, "invalid_id", "the compartment number must be a whole number from 1 to %d", store.MaxCompartments)
	}
	return n, nil
}

type compartmentUpdate struct {
	OutOfService *bool  `json:"out_of_service"`
	Reason       string `json:"reason"`
}

func (s *Server) handleUpdateCompartment(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	num, err := compartmentNumber(r)
	if err != nil {
		return err
	}
	var req compartmentUpdate
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.OutOfService == nil {
		return errorf(http.StatusBadRequest, "missing_field", "out_of_service (true or false) is required")
	}
	if err := checkReason(req.Reason, false); err != nil {
		return err
	}
	c, err := store.CompartmentByNumber(r.Context(), s.pool, r.PathValue("id"), num)
	if err != nil {
		return err
	}
	c, err = s.svc.SetOutOfService(r.Context(), actor(principal(r.Context())), c.ID, *req.OutOfService, req.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func checkReason(reason string, required bool) error {
	if required && strings.TrimSpace(reason) == "" {
		return errorf(http.StatusBadRequest, "missing_field", "a reason is required")
	}
	// 256 bytes is the device protocol's limit for a command's reason.
	if err := safetext.Check(reason, 200); err != nil || len(reason) > 256 {
		return errorf(http.StatusBadRequest, "invalid_input", "the reason must be one line of text of at most 200 characters, without control, bidirectional-control or invisible format characters")
	}
	return nil
}

type openRequest struct {
	Reason string `json:"reason"`
}

// handleClearLockout lifts a device's PIN lockout (staff, technicians,
// admins): the backend's burst lock, audited with who and why, then the
// device's own through a clear_lockout command.
func (s *Server) handleClearLockout(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	var req openRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkReason(req.Reason, true); err != nil {
		return err
	}
	ctx := r.Context()
	d, err := s.svc.GetDevice(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	if s.lockouts == nil {
		return errorf(http.StatusServiceUnavailable, "unavailable", "clearing lockouts needs the codes service, which is not configured on this server")
	}
	res, err := s.lockouts.ClearLockout(ctx, d.ID, strings.TrimSpace(req.Reason), actor(principal(ctx)))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) handleOpen(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	num, err := compartmentNumber(r)
	if err != nil {
		return err
	}
	var req openRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	deviceID := r.PathValue("id")
	err = RemoteOpen(ctx, s.pool, s.opener, actor(principal(ctx)), principal(ctx).Role, deviceID, num, req.Reason, s.clock())
	if of := (*OpenFailed)(nil); errors.As(err, &of) {
		var ae *Error
		if errors.As(of.Err, &ae) || s.mapsKnown(of.Err) {
			return of.Err
		}
		return &Error{Status: http.StatusServiceUnavailable, Code: "device_unreachable",
			Message: "the device did not confirm the opening: " + of.Err.Error(), Err: of.Err}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"device_id": deviceID, "number": num, "result": "opened"})
	return nil
}

// mapsKnown reports whether a configured mapper knows err.
func (s *Server) mapsKnown(err error) bool {
	for _, m := range s.mappers {
		if m(err) != nil {
			return true
		}
	}
	return false
}

// Documents.

// registerRequest is NewDocument with the birth date as "YYYY-MM-DD".
type registerRequest struct {
	Kind      store.DocumentKind `json:"kind"`
	Number    string             `json:"number"`
	FirstName string             `json:"holder_first_name"`
	LastName  string             `json:"holder_last_name"`
	BirthDate string             `json:"holder_birth_date"`
	Language  string             `json:"language"`
	Email     string             `json:"email"`
	Mobile    string             `json:"mobile"`
	WantsLow  bool               `json:"wants_low"`
	SiteID    string             `json:"site_id"`
	NoContact bool               `json:"no_contact"`
}

func (s *Server) handleRegisterDocument(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	var req registerRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	n := store.NewDocument{Kind: req.Kind, Number: req.Number, FirstName: req.FirstName, LastName: req.LastName,
		Language: req.Language, Email: req.Email, Mobile: req.Mobile, WantsLow: req.WantsLow, SiteID: req.SiteID, NoContact: req.NoContact}
	if req.BirthDate != "" {
		d, err := time.Parse(time.DateOnly, req.BirthDate)
		if err != nil {
			return &Error{Status: http.StatusBadRequest, Code: "invalid_input", Message: "holder_birth_date must be a date like 1990-05-31",
				Details: map[string]any{"fields": []store.FieldError{{Field: "holder_birth_date", Message: "must be a date like 1990-05-31"}}}}
		}
		n.BirthDate = &d
	}
	doc, err := s.svc.RegisterDocument(r.Context(), actor(principal(r.Context())), n)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/documents/"+doc.ID)
	writeJSON(w, http.StatusCreated, doc)
	return nil
}

func (s *Server) handleListDocuments(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	limit, off, err := pageInt(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	state := lifecycle.State(q.Get("state"))
	if state != "" && !state.Valid() {
		return errorf(http.StatusBadRequest, "invalid_filter", "state must be one of registered, reserved, loaded, notified, collected, expired, retrieved, cancelled")
	}
	if off > 1<<31 {
		return errorf(http.StatusBadRequest, "invalid_cursor", "the cursor is not one this server handed out")
	}
	search := q.Get("q")
	if len(search) > 100 {
		return errorf(http.StatusBadRequest, "invalid_filter", "q (a document number or a holder's name) is at most 100 bytes")
	}
	pg, err := s.svc.ListDocuments(r.Context(), store.DocumentFilter{State: state, DeviceID: q.Get("device"),
		SiteID: q.Get("site"), Query: search, Limit: limit, Offset: int(off)})
	if err != nil {
		return err
	}
	next := ""
	if end := int(off) + len(pg.Documents); end < pg.Total && len(pg.Documents) > 0 {
		next = strconv.Itoa(end)
	}
	type docPage struct {
		Page[store.Document]
		Total int `json:"total"`
	}
	writeJSON(w, http.StatusOK, docPage{Page: newPage(r, pg.Documents, next), Total: pg.Total})
	return nil
}

type documentView struct {
	store.Document
	History []store.Transition `json:"history"`
	// Notifications is omitted when the server has no notification history.
	Notifications []NotificationRecord `json:"notifications,omitempty"`
}

// NotificationRecord is one attempt to tell the holder something.
type NotificationRecord struct {
	// Kind is e.g. loaded, reminder, reissued, expired, collected.
	Kind string `json:"kind"`
	// Channel is email, sms or slip.
	Channel string `json:"channel"`
	// Status is e.g. sent or failed.
	Status string `json:"status"`
	// Error is the (redacted) failure text.
	Error string `json:"error,omitempty"`
	// At is when it was attempted.
	At time.Time `json:"at"`
}

// NotificationsFunc lists a document's notifications, oldest first.
type NotificationsFunc func(ctx context.Context, documentID string) ([]NotificationRecord, error)

func (s *Server) handleGetDocument(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	doc, err := s.svc.GetDocument(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	hist, err := s.svc.History(r.Context(), doc.ID)
	if err != nil {
		return err
	}
	if hist == nil {
		hist = []store.Transition{}
	}
	view := documentView{Document: doc, History: hist}
	if s.notifications != nil {
		if view.Notifications, err = s.notifications(r.Context(), doc.ID); err != nil {
			return err
		}
		if view.Notifications == nil {
			view.Notifications = []NotificationRecord{}
		}
	}
	writeJSON(w, http.StatusOK, view)
	return nil
}

type reserveRequest struct {
	DeviceID string `json:"device_id"`
}

// reservedView is a reservation's answer: the document and, in
// warnings, what is wrong now with the device it is reserved on (never
// connected, offline, late, or an open alarm that stops pickups:
// service.Health.Warnings); empty when the device is fit to serve. A
// device named by staff is reserved whatever its health: the warnings
// say what the holder may run into.
type reservedView struct {
	store.Document
	Warnings []service.Warning `json:"warnings"`
}

func (s *Server) reserved(ctx context.Context, doc store.Document) (reservedView, error) {
	v := reservedView{Document: doc, Warnings: []service.Warning{}}
	h, err := s.svc.DeviceHealth(ctx, doc.DeviceID)
	if err != nil {
		return v, err
	}
	if w := h[doc.DeviceID].Warnings(); w != nil {
		v.Warnings = w
	}
	return v, nil
}

type reasonRequest struct {
	Reason string `json:"reason"`
}

type emptyRequest struct{}

// documentAction builds the handler of POST /api/v1/documents/{id}/<action>.
func (s *Server) documentAction(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.needService(); err != nil {
			return err
		}
		ctx := r.Context()
		id, who := r.PathValue("id"), actor(principal(ctx))
		var doc store.Document
		var err error
		switch action {
		case "reserve":
			var req reserveRequest
			if err := decodeOptionalJSON(r, &req); err != nil {
				return err
			}
			if doc, err = s.svc.Reserve(ctx, who, id, service.ReserveOptions{DeviceID: req.DeviceID}); err != nil {
				return err
			}
			view, err := s.reserved(ctx, doc)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, view)
			return nil
		case "cancel":
			var req reasonRequest
			if err := decodeOptionalJSON(r, &req); err != nil {
				return err
			}
			if err := checkReason(req.Reason, false); err != nil {
				return err
			}
			doc, err = s.svc.Cancel(ctx, who, id, req.Reason)
		default:
			if err := decodeOptionalJSON(r, &emptyRequest{}); err != nil {
				return err
			}
			switch action {
			case "load":
				doc, err = s.svc.Load(ctx, who, id)
			case "renotify":
				doc, err = s.svc.Renotify(ctx, who, id)
			case "reissue":
				doc, err = s.svc.Reissue(ctx, who, id)
			case "retrieve":
				doc, err = s.svc.Retrieve(ctx, who, id)
			case "unreserve":
				doc, err = s.svc.Unreserve(ctx, who, id)
			case "collect":
				doc, err = s.svc.Collect(ctx, who, id)
			default:
				return fmt.Errorf("unknown document action %q", action)
			}
		}
		if err != nil {
			return err
		}
		if action == "reissue" {
			writeJSON(w, http.StatusOK, s.reissued(ctx, doc))
			return nil
		}
		writeJSON(w, http.StatusOK, doc)
		return nil
	}
}

// ReissueOfflineWarning is the warning of a re-issue's answer when the
// document's device is not online (docs/security.md, "Offline codes and
// the compartment's contents", case b).
const ReissueOfflineWarning = "the device is offline: until it reconnects (and gets the code sync), the old code still opens the compartment there"

// Reissued is the answer of POST /api/v1/documents/{id}/reissue: the
// document, and whether its old code still opens the compartment at the
// device, which is offline now (or its presence could not be read: the
// answer then says the worse) and has not received the new codes.
type Reissued struct {
	store.Document
	OldCodeOpensOffline bool   `json:"old_code_opens_offline"`
	Warning             string `json:"warning,omitempty"`
}

func (s *Server) reissued(ctx context.Context, doc store.Document) Reissued {
	out := Reissued{Document: doc}
	if doc.DeviceID == "" {
		return out
	}
	online, err := DeviceOnline(ctx, s.pool, doc.DeviceID)
	if err != nil {
		s.log.Warn("re-issue: reading the device presence failed", "device", doc.DeviceID, "err", err)
	}
	if !online {
		out.OldCodeOpensOffline, out.Warning = true, ReissueOfflineWarning
	}
	return out
}

func (s *Server) handleSlip(w http.ResponseWriter, r *http.Request) error {
	if err := s.needService(); err != nil {
		return err
	}
	doc, err := s.svc.GetDocument(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	// The slip shows the PIN: who looked at it is audited.
	html, err := ViewSlip(r.Context(), s.pool, s.slip, actor(principal(r.Context())), doc, s.clock())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// The slip's own inline style and data: QR image only (as the track
	// page): no script, no framing, no referrer.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(html)
	return nil
}

func (s *Server) handleTrack(w http.ResponseWriter, r *http.Request) error {
	if s.track == nil {
		return errorf(http.StatusServiceUnavailable, "unavailable", "the track page is not configured on this server")
	}
	s.track.ServeHTTP(w, r)
	return nil
}

// documentStates is the documents-by-state gauge, read from the store at
// scrape time.
type documentStates struct {
	svc  *service.Service
	desc *prometheus.Desc
	log  func(msg string, args ...any)
}

func newDocumentStates(svc *service.Service, warn func(string, ...any)) *documentStates {
	return &documentStates{
		svc: svc,
		desc: prometheus.NewDesc("kluis_documents", "Documents by lifecycle state (read from the database at scrape time).",
			[]string{"state"}, nil),
		log: warn,
	}
}

// Describe implements prometheus.Collector.
func (d *documentStates) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

// Collect implements prometheus.Collector.
func (d *documentStates) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := d.svc.DocumentCountsByState(ctx)
	if err != nil {
		d.log("documents gauge: count failed", "err", err)
		return
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(n), state)
	}
}
