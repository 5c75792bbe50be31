package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // Europe/Brussels without system tzdata

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/internal/periodic"
	"kluis/backend/service"
	"kluis/backend/store"
)

// Prefix is where the console and the dashboard are served.
const Prefix = "/staff/"

// Defaults of Options.
const (
	DefaultPollEvery  = time.Second
	DefaultMaxStreams = 500
	// DefaultMaxStreamsPerUser bounds one user's live streams (tabs on a
	// desk and a phone), so that one account cannot take every stream.
	DefaultMaxStreamsPerUser = 16
	// maxFormBytes bounds a form post.
	maxFormBytes = 64 << 10
)

//go:embed assets
var assets embed.FS

// RouteRolesFunc returns the roles the REST API allows on a route given as
// "METHOD /path/pattern" (e.g. "POST /api/v1/documents"), and false when
// the API has no such route.
type RouteRolesFunc func(route string) ([]auth.Role, bool)

// RouteRolesOf builds a RouteRolesFunc from the API's route table.
func RouteRolesOf(routes []api.RouteInfo) RouteRolesFunc {
	m := make(map[string][]auth.Role, len(routes))
	for _, rt := range routes {
		m[rt.Method+" "+rt.Path] = rt.Roles
	}
	return func(route string) ([]auth.Role, bool) {
		r, ok := m[route]
		return r, ok
	}
}

// Options configure New. Pool, Auth, Service and RouteRoles are required.
type Options struct {
	// Pool is the database (sessions, the dashboard's reads).
	Pool *pgxpool.Pool
	// Auth checks passwords and keeps the web sessions.
	Auth *auth.Service
	// Service runs the document and device use cases.
	Service *service.Service
	// RouteRoles is the REST API's role table (RouteRolesOf(api.Routes())).
	RouteRoles RouteRolesFunc
	// Opener sends remote opens (deviceops); nil: remote open answers 503.
	Opener api.Opener
	// Slip reads a document's pickup slip; nil: no slips.
	Slip api.SlipFunc
	// LoginLimits are shared with the REST API's login; default a new one.
	LoginLimits *auth.LoginLimits
	// TrustedProxies name the client (X-Forwarded-For) and TLS
	// (X-Forwarded-Proto) for requests that come through them.
	TrustedProxies []netip.Prefix
	// SecureCookies marks the session cookie Secure on every answer (set
	// it when the public URL is https); without it the cookie is Secure
	// when the request came over TLS.
	SecureCookies bool
	// Clock gives the time; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives the console's metrics; nil: none.
	Registerer prometheus.Registerer
	// PollEvery is how often the dashboard's poller looks for changes
	// while a live page is open; default DefaultPollEvery.
	PollEvery time.Duration
	// MaxStreams bounds the open live streams; default DefaultMaxStreams.
	MaxStreams int
	// MaxStreamsPerUser bounds the open live streams of one user (all
	// their sessions); default DefaultMaxStreamsPerUser.
	MaxStreamsPerUser int
	// Location is the time zone times are shown in; default
	// Europe/Brussels.
	Location *time.Location
}

// Web is the console and dashboard.
type Web struct {
	o      Options
	log    *slog.Logger
	mux    *http.ServeMux
	pages  map[string]*template.Template
	static fs.FS
	rules  map[string][]auth.Role
	hub    *Hub
	// shortPINs returns how many users have a short staff PIN and up to
	// limit of them (auth.Service's; a fixture in the catalogue tests).
	shortPINs func(ctx context.Context, limit int) (int, []auth.User, error)
	cop       *http.CrossOriginProtection
	streams   prometheus.Gauge
	refused   *prometheus.CounterVec // console forms refused as forged, by reason

	userMu      sync.Mutex
	userStreams map[int64]int // open live streams by user id

	closeOnce sync.Once
	closing   chan struct{}
}

// New checks o, fills defaults and builds the handlers. It fails when a
// console action names a route the REST API does not have.
func New(o Options) (*Web, error) {
	if o.Pool == nil || o.Auth == nil || o.Service == nil || o.RouteRoles == nil {
		return nil, errors.New("web: Options.Pool, Auth, Service and RouteRoles are required")
	}
	if o.LoginLimits == nil {
		o.LoginLimits = auth.NewLoginLimits(o.Pool)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PollEvery <= 0 {
		o.PollEvery = DefaultPollEvery
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.MaxStreamsPerUser <= 0 {
		o.MaxStreamsPerUser = DefaultMaxStreamsPerUser
	}
	if o.Location == nil {
		loc, err := time.LoadLocation("Europe/Brussels")
		if err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
		o.Location = loc
	}
	w := &Web{o: o, log: o.Logger.With("part", "web"), mux: http.NewServeMux(), closing: make(chan struct{}),
		userStreams: map[int64]int{}}
	rules, err := actionRoles(o.RouteRoles)
	if err != nil {
		return nil, err
	}
	w.rules = rules
	w.shortPINs = o.Auth.ShortKioskPINs
	if w.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if w.static, err = fs.Sub(assets, "assets/static"); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	w.streams = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kluis_web_live_streams",
		Help: "Open live-update streams (server-sent events) of the staff console and dashboard."})
	w.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kluis_web_forged_forms_refused_total",
		Help: "Console form posts refused as possibly forged: reason origin (another site's, by Origin or Sec-Fetch-Site), token (a missing or wrong csrf token) or login_token (the login form's missing or wrong double-submit token)."},
		[]string{"reason"})
	for _, reason := range []string{refusedOrigin, refusedToken, refusedLoginToken} {
		w.refused.WithLabelValues(reason)
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{w.streams, w.refused} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("web: register metrics: %w", err)
			}
		}
	}
	w.hub = newHub(hubOptions{pool: o.Pool, every: o.PollEvery, clock: o.Clock, log: w.log})
	w.cop = http.NewCrossOriginProtection()
	w.cop.SetDenyHandler(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.plainError(rw, r, http.StatusForbidden)
	}))
	w.routes()
	return w, nil
}

// Handler serves everything under Prefix.
func (w *Web) Handler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		// Every answer, the mux's own redirects (/staff, a path that is
		// not clean) included; pages, streams and static files set their
		// own Cache-Control over this one.
		headers(rw.Header())
		rw.Header().Set("Cache-Control", "no-store")
		tw := &trackWriter{ResponseWriter: rw}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			// The type and stack, never the value: it may quote the
			// request (a holder's name, a search).
			w.log.Error("console handler panic", "path", r.URL.Path,
				slog.Group("panic", "type", fmt.Sprintf("%T", v), "stack", string(debug.Stack())))
			if !tw.wrote {
				q := &req{w: w, r: r}
				q.lang = w.language(rw, r)
				q.t = w.tr(q.lang)
				w.render(rw, q, http.StatusInternalServerError, "error", q.t.S("error.title"),
					errorData{Message: q.t.S("error.internal"), Status: http.StatusInternalServerError})
			}
		}()
		w.mux.ServeHTTP(tw, r)
	})
}

// trackWriter remembers whether an answer was begun (a panic after it
// can only cut the connection).
type trackWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackWriter) WriteHeader(code int) {
	if code >= http.StatusOK {
		t.wrote = true
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (the live
// pages' flushes and write deadlines).
func (t *trackWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// Run polls for the live pages and prunes old sessions (now, then every
// hour) until ctx ends; it returns nil once both have stopped.
func (w *Web) Run(ctx context.Context) error {
	var prune sync.WaitGroup
	defer prune.Wait()
	prune.Go(func() {
		_ = periodic.Loop{Every: time.Hour}.Run(ctx, func(ctx context.Context) {
			if n, err := w.o.Auth.PruneWebSessions(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("prune web sessions", "err", err)
			} else if n > 0 {
				w.log.Info("pruned web sessions", "count", n)
			}
		})
	})
	return w.hub.Run(ctx)
}

// Close ends the open live streams (call it when the HTTP server shuts
// down, e.g. with http.Server.RegisterOnShutdown).
func (w *Web) Close() {
	w.closeOnce.Do(func() { close(w.closing) })
}

// Allowed reports whether role may do a console action (see Actions).
func (w *Web) Allowed(action string, role auth.Role) bool {
	for _, r := range w.rules[action] {
		if r == role {
			return true
		}
	}
	return false
}

// Action is a console action and the REST routes it stands for.
type Action struct {
	// Name is how pages and handlers refer to it.
	Name string
	// Routes are the REST routes ("METHOD /pattern") doing the same; a
	// role may do the action when every route allows it.
	Routes []string
}

// Actions lists every console action. Reading pages is an action too:
// what a page shows is what the matching GET route answers.
func Actions() []Action {
	return []Action{
		{"documents.list", []string{"GET /api/v1/documents"}},
		{"documents.view", []string{"GET /api/v1/documents/{id}"}},
		{"documents.register", []string{"POST /api/v1/documents", "POST /api/v1/documents/{id}/reserve"}},
		{"documents.reserve", []string{"POST /api/v1/documents/{id}/reserve"}},
		{"documents.unreserve", []string{"POST /api/v1/documents/{id}/unreserve"}},
		{"documents.cancel", []string{"POST /api/v1/documents/{id}/cancel"}},
		{"documents.renotify", []string{"POST /api/v1/documents/{id}/renotify"}},
		{"documents.reissue", []string{"POST /api/v1/documents/{id}/reissue"}},
		{"documents.retrieve", []string{"POST /api/v1/documents/{id}/retrieve"}},
		{"documents.collect", []string{"POST /api/v1/documents/{id}/collect"}},
		{"documents.slip", []string{"GET /api/v1/documents/{id}/slip"}},
		{"audit.view", []string{"GET /api/v1/audit"}},
		{"devices.list", []string{"GET /api/v1/devices"}},
		{"devices.view", []string{"GET /api/v1/devices/{id}"}},
		{"devices.open", []string{"POST /api/v1/devices/{id}/compartments/{number}/open"}},
		{"devices.service", []string{"PATCH /api/v1/devices/{id}/service"}},
		{"compartments.service", []string{"PATCH /api/v1/devices/{id}/compartments/{number}"}},
		{"alarms.ack", []string{"POST /api/v1/devices/{id}/alarms/{alarm}/ack"}},
		{"me.kiosk_pin", []string{"POST /api/v1/me/kiosk-pin"}},
		{"me.password", []string{"POST /api/v1/me/password"}},
		// An admin's staff PIN form, and the names in the short-PIN
		// notice (the user list).
		{"users.kiosk_pin", []string{"PATCH /api/v1/users/{id}", "GET /api/v1/users"}},
	}
}

func actionRoles(routeRoles RouteRolesFunc) (map[string][]auth.Role, error) {
	out := map[string][]auth.Role{}
	for _, a := range Actions() {
		var allowed []auth.Role
		for i, rt := range a.Routes {
			roles, ok := routeRoles(rt)
			if !ok {
				return nil, fmt.Errorf("web: action %s names %q, which the REST API does not have", a.Name, rt)
			}
			if len(roles) == 0 {
				return nil, fmt.Errorf("web: action %s names the public route %q", a.Name, rt)
			}
			if i == 0 {
				allowed = append([]auth.Role(nil), roles...)
				continue
			}
			allowed = intersect(allowed, roles)
		}
		sort.Slice(allowed, func(i, j int) bool { return allowed[i] < allowed[j] })
		out[a.Name] = allowed
	}
	return out, nil
}

func intersect(a, b []auth.Role) []auth.Role {
	var out []auth.Role
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
			}
		}
	}
	return out
}

// pageFiles are the page templates; each is parsed with layout.html and
// the shared fragments.
var pageFiles = []string{"login", "home", "documents", "register", "document", "slip", "devices", "device",
	"open", "service", "ack", "kioskpin", "password", "error"}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageFiles {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/fragments.html", "assets/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

var funcs = template.FuncMap{
	"lower": strings.ToLower,
	"list":  func(s ...string) []string { return s },
	// human is a board address (0 on the wire) as people count it.
	"human": func(n int) int { return n + 1 },
	"deref": func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	},
	"deref2":  func(d *store.Device) store.Device { return *d },
	"devname": displayName,
	"unix": func(t *time.Time) int64 {
		if t == nil {
			return 0
		}
		return t.Unix()
	},
	// online counts devices online with their heartbeat on time; late
	// the others online, as their rows say.
	"online": func(hs []health) (n int) {
		for _, h := range hs {
			if h.Online && !h.Late {
				n++
			}
		}
		return n
	},
	"late": func(hs []health) (n int) {
		for _, h := range hs {
			if h.Late {
				n++
			}
		}
		return n
	},
	// offline counts devices seen before and offline now; a device that
	// never connected counts under never, as its row says.
	"offline": func(hs []health) (n int) {
		for _, h := range hs {
			if h.Known && !h.Online {
				n++
			}
		}
		return n
	},
	"never": func(hs []health) (n int) {
		for _, h := range hs {
			if !h.Known {
				n++
			}
		}
		return n
	},
	"byAttention": byAttention,
	"alarmCount": func(hs []health) (n int) {
		for _, h := range hs {
			n += len(h.Alarms)
		}
		return n
	},
	"unackedCount": func(hs []health) (n int) {
		for _, h := range hs {
			n += h.Unacknowledged()
		}
		return n
	},
	"fleetTitle": fleetTitle,
	"alarmText":  func(t *tr, a alarm) string { return alarmPlaced(t, a.Kind, a.Compartment, a.Board) },
	// alarmItem is one open alarm in a list (fragments.html): its
	// acknowledgement, or the link to acknowledge it.
	"alarmItem": func(l layout, a alarm) alarmItemData { return alarmItemData{L: l, A: a} },
	"docTable": func(l layout, rows []docRow, caption string) docTableData {
		return docTableData{L: l, Rows: rows, Caption: caption}
	},
	"langs": func() []langLink {
		out := make([]langLink, 0, len(Languages))
		for _, code := range Languages {
			out = append(out, langLink{Code: code, Name: catalogue[code]["lang.name"]})
		}
		return out
	},
}

type alarmItemData struct {
	L layout
	A alarm
}

type docTableData struct {
	L       layout
	Rows    []docRow
	Caption string
}
