package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/service"
)

// DefaultMaxBodyBytes limits request bodies (1 MiB).
const DefaultMaxBodyBytes = 1 << 20

// Options configure [New]. Zero values get defaults; Auth and Pool are
// required. Optional collaborators left nil make their routes answer 503
// with a clear code, so that the route table (and OpenAPI) stays complete.
type Options struct {
	// Logger receives request and error logs; default slog.Default().
	Logger *slog.Logger
	// Registry receives the API metrics and serves /metrics; default a new registry.
	Registry *prometheus.Registry
	// Pool is the database for idempotency keys and /readyz; required.
	Pool *pgxpool.Pool
	// Auth manages users and tokens; required.
	Auth *auth.Service
	// Clock gives the current time; default time.Now.
	Clock func() time.Time
	// MaxBodyBytes limits request bodies; default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Service runs the document, site and device use cases; nil makes
	// those routes answer 503 unavailable.
	Service *service.Service
	// Opener sends remote-open commands (the device link); nil makes remote
	// open answer 503 device_link_unavailable.
	Opener Opener
	// Lockouts lifts devices' PIN lockouts; nil makes that route answer 503.
	Lockouts LockoutClearer
	// Slip renders pickup slips; nil makes the slip route answer 503.
	Slip SlipFunc
	// DevicePassword sets devices' MQTT passwords (embedded broker); nil
	// makes that route answer 503.
	DevicePassword DevicePasswordFunc
	// Notifications lists a document's notifications for its view; nil omits them.
	Notifications NotificationsFunc
	// Presence reports devices' connection state; nil: presence is null.
	Presence PresenceFunc
	// Ready, when set, is checked by /readyz (and kluis_api_ready) after
	// the database: an error makes the replica not ready (the embedded
	// MQTT broker not accepting connections).
	Ready func(ctx context.Context) error
	// BrokerFull, when set, says whether the embedded MQTT broker holds
	// its maximum of connections: /readyz then answers "broker": "full"
	// (else "accepting") and stays ready (docs/operations.md, "Health").
	BrokerFull func() bool
	// TrackPage serves the citizen page GET /t/{trackingID} (notify.TrackHandler); nil makes it answer 503.
	TrackPage http.Handler
	// ErrorMappers translate domain errors to API errors, tried in order
	// before the built-in mapping.
	ErrorMappers []ErrorMapper
	// TrustedProxies are the reverse proxies whose X-Forwarded-For header
	// names the client (for the login throttle); empty: the peer address
	// is the client and X-Forwarded-For is ignored.
	TrustedProxies []netip.Prefix
	// LoginLimits count failed logins; share one with every other login
	// form of the process (the staff console). Default: a new one.
	LoginLimits *auth.LoginLimits
	// MetricsToken, when not empty, is the bearer token GET /metrics
	// requires (compared in constant time): the listener also serves
	// citizens' track pages, and the metrics tell which devices are
	// offline and which alarms are active. Empty: /metrics is public.
	MetricsToken string
	// IdempotencyKey keys the digest (HMAC-SHA256) of a request stored
	// with its Idempotency-Key for a day: a plain hash of a body that
	// carries a new user's password would let anyone who reads the
	// database try passwords at SHA-256's speed instead of argon2id's.
	// Every replica needs the same key (kluis-backend derives it from its
	// PIN key). Default: a random key of this process, right for one
	// replica only.
	IdempotencyKey []byte
}

// Server is the HTTP API.
type Server struct {
	log            *slog.Logger
	reg            *prometheus.Registry
	pool           *pgxpool.Pool
	auth           *auth.Service
	clock          func() time.Time
	maxBody        int64
	mappers        []ErrorMapper
	svc            *service.Service
	idemKey        []byte
	opener         Opener
	lockouts       LockoutClearer
	slip           SlipFunc
	track          http.Handler
	presence       PresenceFunc
	readyCheck     func(ctx context.Context) error
	brokerFull     func() bool
	devicePassword DevicePasswordFunc
	notifications  NotificationsFunc
	routes         []route
	logins         *auth.LoginLimits
	trusted        []netip.Prefix
	metricsToken   string
	mux            *http.ServeMux
	latency        *prometheus.HistogramVec
	panics         prometheus.Counter
	handler        http.Handler
}

// handlerFunc is a route handler; a returned error becomes the JSON error response.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one entry of the route table.
type route struct {
	method, path string
	roles        []auth.Role // nil: public
	idempotent   bool        // accepts Idempotency-Key
	raw          bool        // writes its own non-JSON response (metrics)
	page         bool        // a person's HTML page: checks its own text (checkRequestText), answers its own 400
	h            handlerFunc
}

// RouteInfo describes a registered route, for tests and documentation.
type RouteInfo struct {
	// Method is the HTTP method.
	Method string
	// Path is the ServeMux path pattern, e.g. /api/v1/documents/{id}.
	Path string
	// Roles may call the route; empty means public.
	Roles []auth.Role
	// Idempotent routes accept an Idempotency-Key header.
	Idempotent bool
}

// New builds the server and its routes.
func New(opts Options) (*Server, error) {
	if opts.Pool == nil {
		return nil, errors.New("api: Options.Pool is required")
	}
	if opts.Auth == nil {
		return nil, errors.New("api: Options.Auth is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.LoginLimits == nil {
		opts.LoginLimits = auth.NewLoginLimits(opts.Pool)
	}
	if len(opts.IdempotencyKey) == 0 {
		opts.IdempotencyKey = make([]byte, 32)
		if _, err := rand.Read(opts.IdempotencyKey); err != nil {
			return nil, fmt.Errorf("api: idempotency key: %w", err)
		}
	}
	s := &Server{
		idemKey:        append([]byte(nil), opts.IdempotencyKey...),
		log:            opts.Logger.With("part", "api"),
		reg:            opts.Registry,
		pool:           opts.Pool,
		auth:           opts.Auth,
		clock:          opts.Clock,
		maxBody:        opts.MaxBodyBytes,
		mappers:        opts.ErrorMappers,
		mux:            http.NewServeMux(),
		logins:         opts.LoginLimits,
		trusted:        append([]netip.Prefix(nil), opts.TrustedProxies...),
		metricsToken:   opts.MetricsToken,
		svc:            opts.Service,
		opener:         opts.Opener,
		lockouts:       opts.Lockouts,
		slip:           opts.Slip,
		track:          opts.TrackPage,
		presence:       opts.Presence,
		readyCheck:     opts.Ready,
		brokerFull:     opts.BrokerFull,
		devicePassword: opts.DevicePassword,
		notifications:  opts.Notifications,
	}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "kluis",
		Subsystem: "api",
		Name:      "request_duration_seconds",
		Help:      "API request latency by route pattern and status code.",
		Buckets:   prometheus.DefBuckets,
	}, []string{"route", "code"})
	s.panics = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "kluis", Subsystem: "api", Name: "panics_total",
		Help: "Handler panics recovered (each answered with 500).",
	})
	if err := s.reg.Register(s.latency); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}
	if err := s.reg.Register(s.panics); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}
	if err := s.reg.Register(s.newReadyGauge()); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}
	if s.svc != nil {
		if err := s.reg.Register(newDocumentStates(s.svc, s.log.Warn)); err != nil {
			return nil, fmt.Errorf("api: register document gauge: %w", err)
		}
	}
	s.routes = s.routeTable()
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt))
	}
	s.handler = http.HandlerFunc(s.serve)
	return s, nil
}

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the registry /metrics serves.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Routes lists the registered routes.
func (s *Server) Routes() []RouteInfo {
	out := make([]RouteInfo, 0, len(s.routes))
	for _, rt := range s.routes {
		out = append(out, RouteInfo{Method: rt.method, Path: rt.path, Roles: rt.roles, Idempotent: rt.idempotent})
	}
	return out
}

// serve answers unmatched requests with JSON 404/405 and hands the rest to the mux.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// Every /api/v1 answer is personal or secret (tokens, holders, device
	// passwords) or tells who may see what: no cache may keep one.
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Cache-Control", "no-store")
	}
	// No answer is to be taken for another type than it says (/metrics'
	// text and the OpenAPI YAML included).
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h, pattern := s.mux.Handler(r)
	if pattern != "" && cleanPath(r) {
		s.mux.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	probe := &bufferWriter{header: http.Header{}}
	h.ServeHTTP(probe, r)
	var e *Error
	switch probe.status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", probe.header.Get("Allow"))
		e = errorf(http.StatusMethodNotAllowed, "method_not_allowed", "method %s is not allowed here", r.Method)
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		e = errorf(http.StatusNotFound, "not_found", "no such resource; did you mean %s?", probe.header.Get("Location"))
	default:
		e = errorf(http.StatusNotFound, "not_found", "no such resource")
	}
	writeAPIError(w, e)
	s.latency.WithLabelValues("unmatched", strconv.Itoa(e.Status)).Observe(time.Since(start).Seconds())
}

// cleanPath reports whether the request's path is the one ServeMux
// serves without redirecting: no empty, "." or ".." segment. For any
// other path the mux (whose Handler then still names the pattern the
// clean path matches) would answer a redirect, not the API's JSON; serve
// answers 404 with the clean path instead.
func cleanPath(r *http.Request) bool {
	p := r.URL.EscapedPath()
	if r.Method == http.MethodConnect || p == "" {
		return true // the mux does not clean CONNECT's path; "" is its own 404
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

type principalKey struct{}

// principal returns the authenticated caller (zero for public routes).
func principal(ctx context.Context) auth.Principal {
	p, _ := ctx.Value(principalKey{}).(auth.Principal)
	return p
}

// wrap applies, outside in: metrics and logging, panic recovery, the body
// limit, authentication and role check, idempotency, then the handler.
func (s *Server) wrap(rt route) http.Handler {
	label := rt.method + " " + rt.path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		var userID int64
		defer func() {
			if v := recover(); v != nil {
				s.panics.Inc()
				// The type and stack, never the value: it may quote the
				// request (a password, a holder's name, a token).
				s.log.Error("handler panic", "route", label,
					slog.Group("panic", "type", fmt.Sprintf("%T", v), "stack", string(debug.Stack())))
				if !sw.wrote {
					writeAPIError(sw, errorf(http.StatusInternalServerError, "internal", "internal error; the incident was logged"))
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			s.latency.WithLabelValues(label, strconv.Itoa(status)).Observe(time.Since(start).Seconds())
			s.log.Debug("request", "route", label, "status", status, "user_id", userID, "duration", time.Since(start))
		}()
		r.Body = http.MaxBytesReader(sw, r.Body, s.maxBody)
		if e := checkRequestText(r); e != nil && !rt.page {
			s.fail(sw, r, label, e)
			return
		}
		if rt.roles != nil {
			p, err := s.authenticate(r)
			if err != nil {
				s.fail(sw, r, label, err)
				return
			}
			if !allowed(p.Role, rt.roles) {
				userID = p.ID
				s.denied(r.Context(), p, label)
				s.fail(sw, r, label, errorf(http.StatusForbidden, "forbidden", "role %s may not call %s", p.Role, label))
				return
			}
			userID = p.ID
			r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		}
		h := rt.h
		if rt.idempotent {
			h = s.idempotent(h)
		}
		if err := h(sw, r); err != nil {
			s.fail(sw, r, label, err)
		}
	})
}

// checkRequestText refuses a request whose path or query (decoded) holds a
// NUL byte or invalid UTF-8: PostgreSQL text refuses both ("invalid byte
// sequence"), so such a value would turn a lookup into a 500. It runs
// before authentication and touches nothing. Bodies are checked when they
// are decoded (decodeBytes).
func checkRequestText(r *http.Request) *Error {
	bad := func(v string) bool { return strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) }
	if bad(r.URL.Path) {
		return errorf(http.StatusBadRequest, "invalid_input", "the request path holds a NUL character or invalid UTF-8")
	}
	for k, vs := range r.URL.Query() {
		if bad(k) {
			return errorf(http.StatusBadRequest, "invalid_input", "a query parameter name holds a NUL character or invalid UTF-8")
		}
		for _, v := range vs {
			if bad(v) {
				return errorf(http.StatusBadRequest, "invalid_input", "query parameter %q holds a NUL character or invalid UTF-8", k)
			}
		}
	}
	return nil
}

// fail writes err as the JSON error; 5xx are logged with the cause.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, label string, err error) {
	e := s.toAPIError(err)
	if e.Status >= 500 {
		s.log.Error("request failed", append([]any{"route", label, "status", e.Status, "code", e.Code, "err", err}, failAttrs(r, err)...)...)
	}
	if sw, ok := w.(*statusWriter); ok && sw.wrote {
		return // too late for an error body
	}
	writeAPIError(w, e)
}

// failAttrs are the facts that name a 500's cause in its log line: the
// SQLSTATE of a PostgreSQL error in err's chain (40001 serialization
// failure, 40P01 deadlock, 53300 too many connections, 57014 statement
// cancelled...) and whether the request's context had ended (the client
// left, or a deadline).
func failAttrs(r *http.Request, err error) []any {
	var attrs []any
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		attrs = append(attrs, "sqlstate", pe.Code)
	}
	if cerr := r.Context().Err(); cerr != nil {
		attrs = append(attrs, "request_context", cerr.Error())
	}
	return attrs
}

// denied records a request its caller's role may not make, as the kiosk
// records its refusals (kiosk.denied): audited access.denied with the
// caller, the role and the route (never the body), and logged with them.
// A technician's or a stolen staff token's try at an admin's route
// (POST /api/v1/users) left a debug line without the user before.
func (s *Server) denied(ctx context.Context, p auth.Principal, route string) {
	who := "user:" + strconv.FormatInt(p.ID, 10)
	s.log.Warn("request refused for the role", "route", route, "user_id", p.ID, "role", p.Role)
	if err := s.appendAudit(ctx, audit.Entry{Actor: who, Action: "access.denied", Subject: who,
		Details: map[string]any{"route": route, "role": string(p.Role), "via": "api"}}); err != nil {
		s.log.Error("audit of a refused request failed", "route", route, "user_id", p.ID, "err", err)
	}
}

func allowed(role auth.Role, roles []auth.Role) bool {
	for _, r := range roles {
		if r == role {
			return true
		}
	}
	return false
}

// authenticate reads the bearer token.
func (s *Server) authenticate(r *http.Request) (auth.Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return auth.Principal{}, errorf(http.StatusUnauthorized, "unauthenticated", "this endpoint needs a bearer token (Authorization: Bearer kls_...)")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return auth.Principal{}, errorf(http.StatusUnauthorized, "unauthenticated", "the Authorization header must be 'Bearer <token>'")
	}
	p, err := s.auth.Authenticate(r.Context(), strings.TrimSpace(tok))
	if err == nil && p.TokenKind == "kiosk" {
		// Kiosk sessions are for the device's staff screen only.
		err = auth.ErrUnauthenticated
	}
	if errors.Is(err, auth.ErrUnauthenticated) {
		return auth.Principal{}, errorf(http.StatusUnauthorized, "invalid_token", "the bearer token is invalid, expired or revoked")
	}
	if err != nil {
		return auth.Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	return p, nil
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

// WriteHeader records the first status.
func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status = code
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write writes the body (status 200 unless set).
func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes through to the underlying writer when it can flush.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// bufferWriter captures a whole response in memory.
type bufferWriter struct {
	header http.Header
	status int
	body   []byte
}

// Header returns the buffered header.
func (b *bufferWriter) Header() http.Header { return b.header }

// WriteHeader records the first status.
func (b *bufferWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

// Write buffers the body.
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	b.body = append(b.body, p...)
	return len(p), nil
}

// metricsHandler serves the registry, to the holder of
// Options.MetricsToken when one is set.
func (s *Server) metricsHandler() handlerFunc {
	h := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
	want := []byte(s.metricsToken)
	return func(w http.ResponseWriter, r *http.Request) error {
		if len(want) > 0 {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
				return errorf(http.StatusUnauthorized, "invalid_token", "/metrics needs the metrics token (-metrics-token-file)")
			}
		}
		h.ServeHTTP(w, r)
		return nil
	}
}

// ParseTrustedProxies reads a comma list of addresses or CIDR prefixes
// for Options.TrustedProxies (auth.ParseTrustedProxies).
func ParseTrustedProxies(s string) ([]netip.Prefix, error) { return auth.ParseTrustedProxies(s) }
