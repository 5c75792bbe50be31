package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"kluis/backend/alarms"
	"kluis/backend/api"
	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/deviceops"
	"kluis/backend/internal/periodic"
	"kluis/backend/notify"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/web"
	"kluis/controller/pickupcode"
)

// Disabled, as an interval of Options, turns that job off.
const Disabled time.Duration = -1

// Defaults of Options.
const (
	DefaultHTTPAddr        = "127.0.0.1:8080"
	DefaultMQTTAddr        = "127.0.0.1:1883"
	DefaultAdminUser       = "admin"
	DefaultMailFrom        = "Stad Kortrijk <kluis@kortrijk.be>"
	DefaultSlipDir         = "var/slips"
	DefaultOpenTimeout     = 15 * time.Second
	DefaultCodeGrace       = deviceops.DefaultGrace
	DefaultRearmUnfollowed = deviceops.DefaultUnfollowedAfter
	DefaultAuditEvery      = audit.DefaultWatchEvery
	DefaultCodeSyncEvery   = deviceops.DefaultCodeSyncEvery
	DefaultHousekeepEvery  = time.Minute
	DefaultRedeliverAfter  = notify.DefaultOutboxRetryBase
	DefaultRedeliverMax    = notify.DefaultOutboxRetryMax
	// ShutdownTimeout bounds the HTTP server's graceful shutdown.
	ShutdownTimeout = 15 * time.Second
	// QuiesceTimeout bounds the wait for the embedded broker's
	// connections to end once it closed them (broker.Broker.Shutdown).
	QuiesceTimeout = 5 * time.Second
)

// BackendMQTTUser is the embedded broker's user for the backend's own link.
const BackendMQTTUser = store.ReservedDeviceID

// Options configure a Server. Zero values get the defaults named; an
// interval set to Disabled turns its job off.
type Options struct {
	// DatabaseURL is the PostgreSQL URL (required); Run migrates the schema.
	DatabaseURL string
	// DatabaseMaxConns caps the database pool; default store's (10).
	// The password logins not known to come from their usual source
	// hold at most a quarter of it (auth.Options.MaxLoginDBConns).
	DatabaseMaxConns int32
	// Keys sign QR tokens and key PIN digests (required); keys for kiosk
	// staff credentials and document-number pseudonyms are derived from them.
	Keys codes.Keys

	// HTTPAddr is the REST API's listen address; default DefaultHTTPAddr
	// (port 0: a free port, see HTTPAddr).
	HTTPAddr string
	// PublicURL is the base of the citizens' track links; default
	// "http://" + HTTPAddr.
	PublicURL string
	// AllowedHosts are the host names, besides the public URL's host,
	// that the HTTP listener answers to (a name Prometheus or a proxy
	// uses); IP literals and localhost are always answered. A request for
	// any other Host gets 421 (hostGuard: DNS rebinding).
	AllowedHosts []string
	// HTTPMaxConnections caps the connections the HTTP listener (API,
	// console, track pages, /metrics) holds open; past it a connection is
	// answered 503 with Retry-After and closed, counted in
	// kluis_http_connections_refused_total. Default
	// DefaultHTTPMaxConnections: a quarter of the open-file limit, at most
	// 4,096, so that a flood of connections leaves the database pool and
	// the embedded broker their descriptors. Run shares the open-file
	// limit (PlanDescriptors, logged at start): the embedded broker gets
	// what the reserve, the pool and this cap leave, and this cap is
	// lowered, with a warning, when it would leave the broker less than 64.
	HTTPMaxConnections int

	// MQTTURL is an external broker (MQTTUsername, MQTTPassword log in);
	// empty starts the embedded broker on MQTTAddr (default DefaultMQTTAddr).
	MQTTURL, MQTTUsername, MQTTPassword string
	MQTTAddr                            string
	// MQTTTLS configures the connection to an external broker with an
	// ssl:// (tls, mqtts, wss) MQTTURL, e.g. trusting only the city's CA;
	// nil: the system's CAs.
	MQTTTLS *tls.Config
	// BrokerTLS makes the embedded broker's listener speak TLS with its
	// Certificates; the backend's own link to it then uses TLS too and
	// accepts exactly that certificate.
	BrokerTLS *tls.Config

	// AdminUser is the bootstrap admin created when no admin exists;
	// default DefaultAdminUser. Without AdminPassword a password is
	// generated and written once to Console (never to the logger).
	AdminUser, AdminPassword string
	// Console receives a generated admin password; default os.Stderr.
	Console io.Writer

	// MailURL is smtp://[user:pass@]host:port or drop:<dir>; empty: no
	// e-mail. MailFrom is the sender; default DefaultMailFrom.
	MailURL, MailFrom string
	// SMSURL is the SMS gateway (SMSToken authenticates); empty: no SMS.
	SMSURL, SMSToken string
	// SlipDir receives pickup slips for holders no channel reaches;
	// default DefaultSlipDir.
	SlipDir string
	// RedeliverAfter is the wait before a notification that failed is
	// tried again (by the outbox), doubled after each failure up to
	// RedeliverMax; default DefaultRedeliverAfter.
	RedeliverAfter time.Duration
	// RedeliverMax caps the wait between two attempts of a notification;
	// default DefaultRedeliverMax (an hour; the gauntlet compresses it).
	RedeliverMax time.Duration

	// PickupDays and PickupPeriods are the pickup periods per kind (whole
	// local days, or an exact period from loading); unlisted kinds get
	// service.DefaultPickupDays.
	PickupDays    map[store.DocumentKind]int
	PickupPeriods map[store.DocumentKind]time.Duration
	// Retention is how long personal data of finished documents is kept;
	// default service.DefaultRetention.
	Retention time.Duration
	// UnclaimedRetention is how long personal data of documents never
	// closed is kept after their pickup deadline (or registration, never
	// loaded); default service.DefaultUnclaimedRetention, at least
	// service.MinUnclaimedRetention.
	UnclaimedRetention time.Duration
	// DeviceRetention is how long device events, device commands and
	// code attempts are kept (devicelink.Pruner, every hour on every
	// replica); default
	// devicelink.DefaultRetention, at least devicelink.MinRetention;
	// Disabled: kept for ever. The same pass deletes the auth tokens that
	// ended more than auth.EndedTokenRetention ago, whatever this is.
	DeviceRetention time.Duration

	// OpenTimeout is how long a remote open waits for the device; default
	// DefaultOpenTimeout.
	OpenTimeout time.Duration
	// CodeGrace is how long a code stays valid again after the device
	// reported pickup_not_collected (kluisd's timeouts.grace); default
	// DefaultCodeGrace.
	CodeGrace time.Duration
	// RearmUnfollowed gives a code back when its device, online, stayed
	// silent about the document this long after the code was accepted;
	// default DefaultRearmUnfollowed; Disabled: never.
	RearmUnfollowed time.Duration
	// AuditEvery is how often the audit chain is verified for
	// kluis_audit_chain_ok; default DefaultAuditEvery; Disabled: never.
	AuditEvery time.Duration
	// CodeSyncEvery is how often every device's offline codes are checked;
	// default DefaultCodeSyncEvery; Disabled: no code sync at all.
	CodeSyncEvery time.Duration
	// HousekeepEvery is the interval of expiry and retention purge and of
	// the pruning of expired login-limit rows; default
	// DefaultHousekeepEvery; Disabled also stops the reminders (and the
	// login limits are then pruned by logins only).
	HousekeepEvery time.Duration
	// VerifyLeaders is codes.Options.VerifyLeaders (how many verification
	// batches run at once); nil: codes' default.
	VerifyLeaders func() int
	// AnswerSignature is how the answers of one verify batch are signed
	// (deviceops.AnswerForm): "kr1" (the default) one signature each,
	// which every kluisd checks; "kr2" one signature for the batch, only
	// once every kluisd checks "KR2." (docs/operations.md, "Upgrading to
	// answers signed in groups"). AnswerSignatureKR1Devices get "KR1."
	// only, whatever the form.
	AnswerSignature           deviceops.AnswerForm
	AnswerSignatureKR1Devices []string
	// DeviceVerifyBudget and DeviceEventBudget bound each device's verify
	// and staff requests and its events (devicelink.Options.VerifyBudget,
	// EventBudget: a token bucket per device against a stolen device
	// password); zero: devicelink.DefaultVerifyBudget and
	// DefaultEventBudget. kluis-bench verify sets a higher verify budget
	// (its devices verify back to back). DeviceAlarmBudget and
	// DeviceResultBudget bound each device's alarms (apart from its other
	// events) and command results (devicelink.Options.AlarmBudget,
	// ResultBudget); zero: their defaults.
	DeviceVerifyBudget, DeviceEventBudget devicelink.Budget
	DeviceAlarmBudget, DeviceResultBudget devicelink.Budget

	// APITokenTTL is the lifetime of an API token created without one;
	// APITokenMaxTTL the longest an API token may be given (defaults:
	// backend/auth's; a TTL above the maximum is refused by Run).
	APITokenTTL, APITokenMaxTTL time.Duration
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client for the login limits; none: the peer address counts.
	TrustedProxies []netip.Prefix
	// MetricsToken, when not empty, is the bearer token GET /metrics
	// requires (api.Options.MetricsToken); empty: /metrics is public.
	MetricsToken string
	// StaffIdle and StaffMaxAge end a staff console session after that
	// long without a request, and that long after the login (defaults:
	// auth.DefaultWebIdle, auth.DefaultWebMaxAge).
	StaffIdle, StaffMaxAge time.Duration

	// PasswordParams are the argon2id costs of user passwords; default
	// auth.DefaultParams(). MQTTParams are those of MQTT passwords; default
	// pickupcode.DefaultArgonParams.
	PasswordParams auth.Params
	MQTTParams     pickupcode.ArgonParams

	// Logger; default slog.Default().
	Logger *slog.Logger
	// Clock gives the time to the use cases and jobs; default time.Now.
	Clock func() time.Time
	// Registry receives every metric (the Go and process collectors
	// included) and is served on /metrics; default a new registry.
	Registry *prometheus.Registry
}

// Server is kluis-backend.
type Server struct {
	o       Options
	started atomic.Bool
	ready   chan struct{}

	mu         sync.Mutex
	httpAddr   string
	brokerAddr string

	// fds is how Run shares the open-file limit (zero when it could not
	// be read: the broker's and the listener's own defaults).
	fds Descriptors
}

// New checks o, fills in its defaults and returns a Server; nothing is
// opened or started before Run.
func New(o Options) (*Server, error) {
	if o.DatabaseURL == "" {
		return nil, errors.New("server: no database URL")
	}
	if err := o.Keys.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	for name, d := range map[string]time.Duration{"open timeout": o.OpenTimeout, "code grace": o.CodeGrace,
		"retention": o.Retention, "unclaimed retention": o.UnclaimedRetention, "staff session idle timeout": o.StaffIdle, "staff session lifetime": o.StaffMaxAge,
		"redeliver delay": o.RedeliverAfter, "redeliver cap": o.RedeliverMax} {
		if d < 0 {
			return nil, fmt.Errorf("server: %s %s is negative", name, d)
		}
	}
	for name, d := range map[string]time.Duration{"rearm-unfollowed window": o.RearmUnfollowed, "audit interval": o.AuditEvery,
		"code sync interval": o.CodeSyncEvery, "housekeeping interval": o.HousekeepEvery, "device retention": o.DeviceRetention} {
		if d < 0 && d != Disabled {
			return nil, fmt.Errorf("server: %s %s is negative (Disabled turns it off)", name, d)
		}
	}
	form, err := deviceops.ParseAnswerForm(string(o.AnswerSignature))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	o.AnswerSignature = form
	if o.DeviceRetention > 0 && o.DeviceRetention < devicelink.MinRetention {
		return nil, fmt.Errorf("server: %w: %s", devicelink.ErrRetention, o.DeviceRetention)
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.HTTPAddr, DefaultHTTPAddr)
	def(&o.PublicURL, "http://"+o.HTTPAddr)
	if _, err := allowedHostNames(o.PublicURL, o.AllowedHosts); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	def(&o.MQTTAddr, DefaultMQTTAddr)
	def(&o.AdminUser, DefaultAdminUser)
	def(&o.MailFrom, DefaultMailFrom)
	def(&o.SlipDir, DefaultSlipDir)
	if o.MQTTURL != "" {
		def(&o.MQTTUsername, BackendMQTTUser)
	}
	durDef := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	durDef(&o.Retention, service.DefaultRetention)
	durDef(&o.UnclaimedRetention, service.DefaultUnclaimedRetention)
	durDef(&o.RedeliverAfter, DefaultRedeliverAfter)
	durDef(&o.RedeliverMax, DefaultRedeliverMax)
	durDef(&o.OpenTimeout, DefaultOpenTimeout)
	durDef(&o.CodeGrace, DefaultCodeGrace)
	durDef(&o.RearmUnfollowed, DefaultRearmUnfollowed)
	durDef(&o.AuditEvery, DefaultAuditEvery)
	durDef(&o.CodeSyncEvery, DefaultCodeSyncEvery)
	durDef(&o.HousekeepEvery, DefaultHousekeepEvery)
	durDef(&o.DeviceRetention, devicelink.DefaultRetention)
	if o.Console == nil {
		o.Console = os.Stderr
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := o.Registry.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	return &Server{o: o, ready: make(chan struct{})}, nil
}

// Ready is closed once Run serves HTTP (and the device link is started).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// HTTPAddr is the REST API's address once Ready.
func (s *Server) HTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpAddr
}

// BrokerAddr is the embedded broker's address once Ready ("" with an
// external broker).
func (s *Server) BrokerAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.brokerAddr
}

// Run runs the backend until ctx ends, then shuts down: the HTTP server
// stops taking requests (those under way end, with the devices still
// connected); the embedded broker stops accepting and closes the
// devices' connections, their last wills (offline presences) handed to
// the device link; then the jobs and the device link stop, the link
// recording what it was handed; the broker and the database close. So
// every message the broker took from a device is recorded by the link,
// or (an event the link could not record) not acknowledged, and the
// device sends it again. It returns the first part's failure, or
// nil after a shutdown asked for by ctx. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("server: Run called twice")
	}
	o, log := s.o, s.o.Logger
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	st, err := store.Open(octx, o.DatabaseURL, store.Options{Logger: log, Clock: o.Clock, MaxConns: o.DatabaseMaxConns})
	cancel()
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer st.Close()
	if lim, err := fileLimit(); err != nil {
		log.Warn("open-file limit unknown: the broker and the HTTP listener take their own defaults", "err", err)
	} else {
		s.fds = PlanDescriptors(lim, o.MQTTURL == "", o.HTTPMaxConnections, int(st.Pool().Config().MaxConns))
		logDescriptors(log, s.fds)
	}

	as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: log, Clock: o.Clock, Params: o.PasswordParams,
		KioskKey: DeriveKey(o.Keys, "kiosk staff credentials"), PreviousKioskKey: derivePrevious(o.Keys, "kiosk staff credentials"), APITokenTTL: o.APITokenTTL, APITokenMaxTTL: o.APITokenMaxTTL,
		WebIdle: o.StaffIdle, WebMaxAge: o.StaffMaxAge, Registerer: o.Registry})
	if err != nil {
		return err
	}
	if err := s.bootstrapAdmin(ctx, as); err != nil {
		return err
	}
	// The jobs run until the HTTP server has shut down.
	jobsCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJobs()
	w, err := s.wire(jobsCtx, st, as)
	if w != nil {
		defer w.close()
	}
	if err != nil {
		return err
	}
	apiOpts := w.api
	apiOpts.Logger, apiOpts.Registry, apiOpts.Pool, apiOpts.Auth, apiOpts.Clock = log, o.Registry, st.Pool(), as, o.Clock
	apiOpts.TrustedProxies = o.TrustedProxies
	apiOpts.MetricsToken = o.MetricsToken
	apiOpts.IdempotencyKey = DeriveKey(o.Keys, "idempotency request digest")
	// One set of login limits for every password login: the API and the
	// staff console, kept in PostgreSQL so that every replica shares them.
	apiOpts.LoginLimits = auth.NewLoginLimits(st.Pool())
	srv, err := api.New(apiOpts)
	if err != nil {
		return err
	}
	console, err := web.New(web.Options{Pool: st.Pool(), Auth: as, Service: apiOpts.Service, RouteRoles: web.RouteRolesOf(srv.Routes()),
		Opener: apiOpts.Opener, Slip: apiOpts.Slip, LoginLimits: apiOpts.LoginLimits, TrustedProxies: o.TrustedProxies,
		SecureCookies: strings.HasPrefix(o.PublicURL, "https://"), Clock: o.Clock, Logger: log, Registerer: o.Registry})
	if err != nil {
		return err
	}
	w.parts = append(w.parts, part{"staff-console", console.Run})
	// The open alarms and whether someone acknowledged them, read from
	// the database at scrape time like the presence metrics.
	if err := o.Registry.Register(alarms.NewMetrics(st.Pool(), o.Clock, 10*time.Second, log)); err != nil {
		return fmt.Errorf("server: register alarm metrics: %w", err)
	}
	hosts, err := allowedHostNames(o.PublicURL, o.AllowedHosts)
	if err != nil {
		return err
	}
	root, err := hostGuard(rootHandler(console.Handler(), srv.Handler()), hosts, log, o.Registry)
	if err != nil {
		return err
	}
	w.parts = append(w.parts, part{"idempotency-prune", func(ctx context.Context) error {
		return periodic.Loop{Every: time.Hour}.Run(ctx, func(ctx context.Context) {
			if n, err := srv.PruneIdempotency(ctx, api.DefaultIdempotencyRetention); err != nil && ctx.Err() == nil {
				log.Warn("prune idempotency keys", "err", err)
			} else if n > 0 {
				log.Info("pruned idempotency keys", "count", n)
			}
		})
	}})
	// Device events, commands, code attempts and the notifications of
	// closed documents past their retention (Disabled: kept for ever), and the auth tokens that ended more than
	// auth.EndedTokenRetention ago whatever it is; the audit trail is
	// never pruned.
	{
		pool := st.Pool()
		keep := o.DeviceRetention
		if keep == Disabled {
			keep = devicelink.KeepForever
		}
		pruner, err := devicelink.NewPruner(devicelink.PrunerOptions{Pool: pool, Retention: keep,
			Clock: o.Clock, Logger: log, Registerer: o.Registry,
			Also: []devicelink.Table{{Name: "code_attempts", Prune: func(ctx context.Context, cutoff time.Time, limit int) (int, error) {
				return codes.PruneAttempts(ctx, pool, cutoff, limit)
			}}, {Name: "notifications", Prune: func(ctx context.Context, cutoff time.Time, limit int) (int, error) {
				return notify.PruneHistory(ctx, pool, cutoff, limit)
			}}, {Name: "auth_tokens", Keep: auth.EndedTokenRetention, Prune: func(ctx context.Context, cutoff time.Time, limit int) (int, error) {
				return auth.PruneTokens(ctx, pool, cutoff, limit)
			}}}})
		if err != nil {
			return err
		}
		w.parts = append(w.parts, part{"device-retention", func(ctx context.Context) error {
			return pruner.Run(ctx, devicelink.DefaultPruneEvery)
		}})
	}
	// Login-limit rows (the password logins' and the kiosks') are pruned
	// by every login, the kiosks' lookup misses by every miss; this prunes
	// them when none comes, at the housekeeping interval.
	if o.HousekeepEvery != Disabled {
		limits := apiOpts.LoginLimits
		w.parts = append(w.parts, part{"login-limits-prune", func(ctx context.Context) error {
			return periodic.Loop{Every: o.HousekeepEvery}.Run(ctx, func(ctx context.Context) {
				now := o.Clock()
				n, err := limits.Prune(ctx, now)
				if err == nil {
					var k int
					k, err = deviceops.PruneKioskLogins(ctx, st.Pool(), now)
					n += k
				}
				if err == nil {
					var k int
					k, err = deviceops.PruneKioskLookups(ctx, st.Pool(), now)
					n += k
				}
				if err != nil && ctx.Err() == nil {
					log.Warn("prune login limits", "err", err)
				} else if n > 0 {
					log.Debug("pruned login limits", "rows", n)
				}
			})
		}})
	}
	// Audit records reach the hash chain through the chainer, shortly after
	// their transactions commit; it is always on.
	chainer, err := audit.NewChainer(audit.ChainerOptions{DB: st.Pool(), Logger: log, Registerer: o.Registry})
	if err != nil {
		return err
	}
	w.parts = append(w.parts, part{"audit-chainer", chainer.Run})
	if o.AuditEvery != Disabled {
		watch, err := audit.NewWatcher(audit.WatcherOptions{DB: st.Pool(), Every: o.AuditEvery, Logger: log, Registerer: o.Registry})
		if err != nil {
			return err
		}
		// The first check runs before serving, so the gauge is set from the start.
		watch.Check(jobsCtx)
		w.parts = append(w.parts, part{"audit-watch", watch.Run})
	}

	tcpLn, err := net.Listen("tcp", o.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.HTTPAddr, err)
	}
	httpMax := o.HTTPMaxConnections
	if s.fds.HTTP > 0 {
		httpMax = s.fds.HTTP
	}
	ln, err := capConnections(tcpLn, httpMax, log, o.Registry)
	if err != nil {
		tcpLn.Close()
		return err
	}
	hs := &http.Server{
		Handler:           root,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	// Live pages end when the server shuts down (Shutdown waits for them).
	hs.RegisterOnShutdown(console.Close)
	errs := make(chan error, len(w.parts)+1)
	go func() { errs <- fmt.Errorf("http server: %w", hs.Serve(ln)) }()
	var jobs sync.WaitGroup
	for _, p := range w.parts {
		jobs.Add(1)
		go func() {
			defer jobs.Done()
			if err := p.run(jobsCtx); err != nil && jobsCtx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", p.name, err)
			}
		}()
	}
	s.mu.Lock()
	s.httpAddr = ln.Addr().String()
	s.mu.Unlock()
	log.Info("listening", "addr", ln.Addr().String())
	if o.Keys.PreviousPIN != nil {
		log.Info("PIN key rotation: the previous PIN key is configured; it only verifies and opens what was made with it (docs/operations.md, Rotating the PIN key)")
	}
	close(s.ready)

	var failure error
	select {
	case failure = <-errs:
		log.Error("kluis-backend stopping after an error", "err", failure)
	case <-ctx.Done():
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && failure == nil {
		failure = fmt.Errorf("http shutdown: %w", err)
	}
	if w.quiesce != nil {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), QuiesceTimeout)
		if err := w.quiesce(qctx); err != nil {
			log.Warn("device connections still open as the jobs stop", "err", err)
		}
		cancel()
	}
	stopJobs()
	jobs.Wait()
	return failure
}

// part is one job of the server.
type part struct {
	name string
	run  func(ctx context.Context) error
}

func (s *Server) bootstrapAdmin(ctx context.Context, as *auth.Service) error {
	o := s.o
	pass, generated := o.AdminPassword, false
	if pass == "" {
		p, err := RandomPassword()
		if err != nil {
			return err
		}
		pass, generated = p, true
	}
	created, err := as.EnsureAdmin(ctx, o.AdminUser, pass)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if created {
		o.Logger.Info("bootstrap admin created", "username", o.AdminUser, "password_generated", generated)
		if generated {
			// Shown once, on the terminal only, never through the logger.
			fmt.Fprintf(o.Console, "kluis-backend: created admin user %q with password %s (shown once; change it)\n", o.AdminUser, pass)
		}
	}
	return nil
}

// DeriveKey derives a purpose-bound key from the PIN key, so that no extra
// secret has to be kept: HMAC-SHA256(PIN key, "kluis <purpose> v1").
func DeriveKey(k codes.Keys, purpose string) []byte {
	m := hmac.New(sha256.New, k.PIN)
	m.Write([]byte("kluis " + purpose + " v1"))
	return m.Sum(nil)
}

// derivePrevious is DeriveKey under the previous PIN key during a rotation
// (codes.Keys.PreviousPIN), nil without one: for opening what was made
// before the rotation only.
func derivePrevious(k codes.Keys, purpose string) []byte {
	if k.PreviousPIN == nil {
		return nil
	}
	return DeriveKey(codes.Keys{PIN: k.PreviousPIN}, purpose)
}

// RandomPassword is 24 characters from crypto/rand (144 bits).
func RandomPassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// rootHandler sends what is under the console's prefix (web.Prefix, and
// the prefix without its slash) to the console and everything else to the
// API, deciding by the cleaned path. It is not a ServeMux: a mux answers
// a path that is not clean (/api/v1//users, /api/v1/./me) with a redirect
// to the clean one, and every API answer, an error included, is JSON
// that no cache keeps (the API answers such paths itself, with a JSON
// 404). The console's own mux still redirects its unclean paths and
// /staff to /staff/, for browsers.
func rootHandler(console, api http.Handler) http.Handler {
	bare := strings.TrimSuffix(web.Prefix, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p != "" && p[0] == '/' {
			p = path.Clean(p)
		}
		if p == bare || strings.HasPrefix(p, web.Prefix) {
			console.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
