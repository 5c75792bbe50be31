// Package kiosk serves the local kiosk (loopback only): the kiosk screen
// (controller/kiosk/screen) at /, the JSON API that the screen, the
// serial barcode scanner and tests use, and the live screen state; and it
// reads a serial barcode scanner.
//
//	GET  /                         the kiosk screen (HTML; ?lang=nl|fr|en|de, ?large=1)
//	GET  /kiosk/v1/events          the screen as server-sent events ("hello" {build}, then "screen" at every change)
//	POST /kiosk/v1/pickup          {"qr": "..."} or {"pin": "...", "birth_date": "YYYY-MM-DD", "lang": "nl"}
//	GET  /kiosk/v1/session         what the screen shows (state, message in nl/fr/en/de);
//	                               ?wait=<seq> answers once seq differs (long polling, at most 25 s)
//	POST /kiosk/v1/activity        {"seq": 7}: someone is at screen seq (a tap, "I am still here"):
//	                               its idle return is put off (engine.Touch); nothing typed is sent
//	POST /kiosk/v1/staff/login     {"badge": "..."} or {"pin": "..."}
//	POST /kiosk/v1/staff/load      {"document_number": "..."}
//	POST /kiosk/v1/staff/retrieve  {"document_number": "..."}
//	POST /kiosk/v1/staff/logout
//	POST /kiosk/v1/staff/clear-lockout  (staff login required: lifts the PIN lockout)
//	POST /kiosk/v1/tech/test-open  {"compartment": 3}   (staff login required)
//	GET  /kiosk/v1/diagnostics     (a technician or admin logged in at the kiosk; 403 otherwise)
//
// Every API answer is JSON. A malformed request gets 400 with {"error":
// ...}; codes, PINs and badges are never logged. At most
// Options.MaxStreams event streams are open, and as many long polls wait,
// at once; more get 503 with Retry-After. Server.Run brings the
// screen back to idle after timeouts.session (pushing the change to the
// event streams) and logs staff out after kiosk.staff_idle without a staff
// action.
package kiosk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode"

	"kluis/controller/config"
	"kluis/controller/engine"
	"kluis/controller/jsonkeys"
	"kluis/controller/kiosk/screen"
)

// MaxBody bounds a request body.
const MaxBody = 8 << 10

// Handler returns the kiosk API and event stream for e, without the
// screen and its idle rules (New with a Config has them).
func Handler(e *engine.Engine, log *slog.Logger) http.Handler {
	s, _ := New(Options{Engine: e, Logger: log}) // cannot fail without a Config
	return s.Handler()
}

// Options configure New.
type Options struct {
	Engine *engine.Engine
	// Config adds the kiosk screen at / and the idle rules of Run
	// (timeouts.session, kiosk.staff_idle); nil serves the API and the
	// event stream only.
	Config *config.Config
	// ScreenAssets are the screen's, prepared for Config
	// (screen.Prepare); default: prepared by New.
	ScreenAssets *screen.Assets
	Logger       *slog.Logger
	// Clock; default time.Now (the engine's clock).
	Clock func() time.Time
	// KeepAlive is how often an idle event stream gets a comment line;
	// default 15s.
	KeepAlive time.Duration
	// LongPoll bounds GET /kiosk/v1/session?wait=; default 25s.
	LongPoll time.Duration
	// MaxStreams bounds the event streams open at once, and separately
	// the long polls waiting at once; default DefaultMaxStreams. More
	// answer 503 with Retry-After (the screen tries again by itself).
	MaxStreams int
}

// DefaultMaxStreams bounds the kiosk's open event streams (and its
// waiting long polls): the screen needs one, a few more are a technician's
// tools. Each holds a goroutine and a connection; a local process opened
// thousands (100 MB) before the bound.
const DefaultMaxStreams = 32

// retryAfter is what a refused stream or long poll is told to wait, in
// seconds.
const retryAfter = "5"

// Server is the kiosk: API, event stream, screen and idle rules.
type Server struct {
	o       Options
	e       *engine.Engine
	log     *slog.Logger
	now     func() time.Time
	handler http.Handler
	build   string

	closing   chan struct{}
	closeOnce sync.Once
	poke      chan struct{}

	mu        sync.Mutex
	staffSeen time.Time // last staff action
	streams   int       // open event streams
	polls     int       // waiting long polls
}

// New builds the kiosk server.
func New(o Options) (*Server, error) {
	if o.Engine == nil {
		return nil, errors.New("kiosk: engine required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.LongPoll <= 0 {
		o.LongPoll = 25 * time.Second
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	s := &Server{o: o, e: o.Engine, log: o.Logger.With("part", "kiosk"), now: o.Clock,
		closing: make(chan struct{}), poke: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /kiosk/v1/pickup", s.pickup)
	mux.HandleFunc("GET /kiosk/v1/session", s.session)
	mux.HandleFunc("GET /kiosk/v1/events", s.events)
	mux.HandleFunc("POST /kiosk/v1/activity", s.activity)
	mux.HandleFunc("POST /kiosk/v1/staff/login", s.staffLogin)
	mux.HandleFunc("POST /kiosk/v1/staff/load", s.staffDoor(o.Engine.StaffLoad))
	mux.HandleFunc("POST /kiosk/v1/staff/retrieve", s.staffDoor(o.Engine.StaffRetrieve))
	mux.HandleFunc("POST /kiosk/v1/staff/logout", s.staffLogout)
	mux.HandleFunc("POST /kiosk/v1/staff/clear-lockout", s.staffClearLockout)
	mux.HandleFunc("POST /kiosk/v1/tech/test-open", s.testOpen)
	mux.HandleFunc("GET /kiosk/v1/diagnostics", s.diagnostics)
	if o.Config != nil {
		scr, err := screen.New(screen.Options{Source: o.Engine, Config: o.Config, Assets: o.ScreenAssets, Clock: o.Clock, Logger: o.Logger,
			OnStaffActivity: s.staffActed})
		if err != nil {
			return nil, fmt.Errorf("kiosk: %w", err)
		}
		scr.Register(mux)
		s.build = scr.Build()
	}
	s.handler = loopbackOnly(mux)
	return s, nil
}

// Handler is the kiosk's HTTP handler (loopback clients only).
func (s *Server) Handler() http.Handler { return s.handler }

// Build identifies the screen this kiosk serves ("" without one).
func (s *Server) Build() string { return s.build }

// CloseStreams ends every event stream and long poll, so that
// http.Server.Shutdown does not wait for them (register it with
// RegisterOnShutdown). The browser reconnects to the next kluisd.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }

// staffActed notes a staff action (it postpones the idle logout).
func (s *Server) staffActed() {
	s.mu.Lock()
	s.staffSeen = s.now()
	s.mu.Unlock()
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// hold takes one of the MaxStreams places counted by n (streams or
// polls), or answers 503 with Retry-After and returns false. release
// gives the place back.
func (s *Server) hold(w http.ResponseWriter, n *int, what string) bool {
	s.mu.Lock()
	if *n >= s.o.MaxStreams {
		s.mu.Unlock()
		w.Header().Set("Retry-After", retryAfter)
		writeErr(w, http.StatusServiceUnavailable, fmt.Sprintf("too many %s open (at most %d)", what, s.o.MaxStreams))
		return false
	}
	*n++
	s.mu.Unlock()
	return true
}

func (s *Server) release(n *int) {
	s.mu.Lock()
	*n--
	s.mu.Unlock()
}

func (s *Server) lastStaffAction() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.staffSeen
}

// loopbackOnly refuses requests from anywhere but loopback (the listener is
// on loopback too; this is the second lock on the door).
func loopbackOnly(h http.Handler) http.Handler {
	// A web page in any browser on the kiosk's machine can reach
	// 127.0.0.1: a cross-site POST (a "no-cors" fetch with an untyped
	// body needs no preflight) would type PINs and lock PIN entry, or act
	// in a staff session. Go's cross-origin protection refuses unsafe
	// requests that a browser marks cross-origin (Sec-Fetch-Site, else
	// Origin against Host); clients that are not browsers send neither
	// header and pass.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusForbidden, "cross-origin request refused")
	}))
	inner := cop.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer, refusals included: a browser must take a
		// JSON answer or an error text for what its Content-Type
		// says, never sniff it into HTML or script, and keep none
		// of them (a PIN's answer, a staff session's screen).
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			writeErr(w, http.StatusForbidden, "kiosk API is for the local kiosk only")
			return
		}
		// DNS rebinding: a page from evil.example whose name now
		// resolves to 127.0.0.1 is same-origin with the kiosk for its
		// browser, so only the Host it asked for tells it apart.
		if !LoopbackHost(r.Host) {
			writeErr(w, http.StatusMisdirectedRequest, "kiosk API answers only to a loopback host name")
			return
		}
		// Cross-origin protection looks at unsafe methods only: a page
		// elsewhere (another site, or another port on 127.0.0.1) could
		// still GET the technician's panel, which counts as a staff
		// action and so kept a kiosk session from its idle logout, and
		// hold the event streams and long polls the screen needs. Only
		// a navigation to the screen's page (a link to it) is let in.
		if site := r.Header.Get("Sec-Fetch-Site"); (site == "cross-site" || site == "same-site") &&
			!(r.Method == http.MethodGet && r.URL.Path == "/" && r.Header.Get("Sec-Fetch-Mode") == "navigate") {
			writeErr(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		inner.ServeHTTP(&noStoreWriter{ResponseWriter: w}, r)
	})
}

// noStoreWriter puts Cache-Control: no-store back on an answer whose
// handler took it off: http.FileServer's errors (the screen's files, a
// 404) delete it since Go 1.23.
type noStoreWriter struct {
	http.ResponseWriter
	sent bool
}

func (w *noStoreWriter) WriteHeader(code int) {
	if !w.sent && code >= http.StatusOK {
		w.sent = true
		w.Header().Set("Cache-Control", "no-store")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *noStoreWriter) Write(b []byte) (int, error) {
	if !w.sent {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (the event
// stream's flushes and write deadlines).
func (w *noStoreWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// LoopbackHostOnly answers 421 to a request whose Host is not a loopback
// name (LoopbackHost): for kluisd's other loopback listener (/metrics,
// /healthz), which a DNS-rebinding page could otherwise read.
func LoopbackHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !LoopbackHost(r.Host) {
			http.Error(w, "answers only to a loopback host name", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// LoopbackHost reports whether a request's Host names the loopback
// interface: a loopback IP address or "localhost", with or without a
// port. Anything else (a name that a rebinding DNS server points at
// 127.0.0.1) is refused by the kiosk.
func LoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decode reads a strict JSON body into v.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	// An empty Content-Type is refused too: a browser sends none for an
	// untyped body, which a cross-site page may post without a preflight.
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeErr(w, http.StatusUnsupportedMediaType, "send application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, "request body too large")
			return false
		}
		writeErr(w, http.StatusBadRequest, "unreadable body")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid JSON: "+cleanJSONErr(err))
		return false
	}
	if dec.More() {
		writeErr(w, http.StatusBadRequest, "invalid JSON: trailing data")
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeErr(w, http.StatusBadRequest, "invalid JSON: trailing data")
		return false
	}
	// Checked on a body the decoder took (valid, bounded depth): it kept
	// the last of a repeated key, matching names ignoring case
	// ({"pin":…,"PIN":…}); another reader keeps the first. Nothing was
	// acted on yet.
	if _, ok := jsonkeys.Repeated(body); ok {
		writeErr(w, http.StatusBadRequest, "invalid JSON: a key twice in one object (names match ignoring case)")
		return false
	}
	return true
}

// cleanJSONErr keeps JSON errors free of the submitted values (a PIN).
func cleanJSONErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return typeErr(te)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	return "malformed"
}

// typeErr says in the API's words, not Go's, which JSON type a field (or
// the body) must be and which it was: never the submitted value (a PIN),
// which encoding/json puts in Value for a number it cannot store.
func typeErr(te *json.UnmarshalTypeError) string {
	was, _, withValue := strings.Cut(te.Value, " ")
	switch was {
	case "array", "object", "string", "number":
		was = map[string]string{"array": "an array", "object": "an object", "string": "a string", "number": "a number"}[was]
	case "bool":
		was = "true or false"
	default:
		was = "another type"
	}
	if te.Field == "" {
		return "the body must be a JSON object, not " + was
	}
	want := "a JSON object"
	switch te.Type.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		want = "a whole number"
		if withValue {
			was = "a fraction or a number out of range"
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "a whole number from 0"
		if withValue {
			was = "a negative number, a fraction or a number out of range"
		}
	case reflect.Float32, reflect.Float64:
		want = "a number"
	case reflect.Slice, reflect.Array:
		want = "an array"
	}
	return fmt.Sprintf("field %q must be %s, not %s", te.Field, want, was)
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, engine.ErrBadRequest):
		writeErr(w, http.StatusBadRequest, strings.TrimSuffix(err.Error(), ": "+engine.ErrBadRequest.Error()))
	case errors.Is(err, engine.ErrNoStaff):
		writeErr(w, http.StatusForbidden, "staff login required")
	case errors.Is(err, engine.ErrStaffMode):
		writeErr(w, http.StatusConflict, "a staff member is logged in: no citizen's code until staff log out")
	case errors.Is(err, engine.ErrNotFree):
		writeErr(w, http.StatusConflict, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeErr(w, http.StatusServiceUnavailable, "request cancelled")
	default:
		s.log.Error("kiosk request failed", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal error")
	}
}

func (s *Server) pickup(w http.ResponseWriter, r *http.Request) {
	var req engine.PickupRequest
	if !decode(w, r, &req) {
		return
	}
	scr, err := s.e.Pickup(r.Context(), req)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, scr)
}

func (s *Server) staffLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Badge string `json:"badge"`
		PIN   string `json:"pin"`
		Lang  string `json:"lang"`
	}
	if !decode(w, r, &req) {
		return
	}
	// A control character (NUL included) is never part of a badge or a
	// staff PIN: refused here as bad input, not sent to the backend (the
	// device protocol refuses it too, which left the screen in "error").
	for name, v := range map[string]string{"badge": req.Badge, "pin": req.PIN} {
		if strings.ContainsFunc(strings.TrimSpace(v), unicode.IsControl) {
			writeErr(w, http.StatusBadRequest, name+" contains a control character")
			return
		}
	}
	s.staffActed()
	scr, err := s.e.StaffLogin(r.Context(), req.Badge, req.PIN, req.Lang)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, scr)
}

func (s *Server) staffDoor(fn func(context.Context, string, string) (engine.Screen, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			DocumentNumber string `json:"document_number"`
			Lang           string `json:"lang"`
		}
		if !decode(w, r, &req) {
			return
		}
		s.staffActed()
		scr, err := fn(r.Context(), req.DocumentNumber, req.Lang)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, scr)
	}
}

// activity puts the idle return of the screen the page shows off
// (engine.Touch); the answer is the screen, with its new idle_until.
func (s *Server) activity(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Seq uint64 `json:"seq"`
	}
	if !decode(w, r, &req) {
		return
	}
	writeJSON(w, http.StatusOK, s.e.Touch(req.Seq))
}

func (s *Server) staffLogout(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.e.StaffLogout(r.Context()))
}

func (s *Server) staffClearLockout(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Lang string `json:"lang"`
	}
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	scr, err := s.e.StaffClearLockout(r.Context(), req.Lang)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, scr)
}

func (s *Server) testOpen(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Compartment int    `json:"compartment"`
		Lang        string `json:"lang"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.staffActed()
	scr, err := s.e.TestOpen(r.Context(), req.Compartment, req.Lang)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, scr)
}

// diagnostics answers what the technician's panel (/screen/tech) shows,
// and to whom it shows it: a technician or an admin logged in at the
// kiosk. The doors, item sensors and alarms say which compartments hold
// something; any local process could read them before. Tools without a
// login read /healthz on the metrics listener (ready, backlog, the door
// operations under way) and /metrics.
func (s *Server) diagnostics(w http.ResponseWriter, r *http.Request) {
	if !screen.TechAllowed(s.e.Screen()) {
		writeErr(w, http.StatusForbidden, "diagnostics are for a technician or an admin logged in at the kiosk")
		return
	}
	writeJSON(w, http.StatusOK, s.e.Diagnostics(r.Context()))
}
