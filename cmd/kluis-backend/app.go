package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/broker"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/deviceops"
	"kluis/backend/service"
	"kluis/backend/store"
)

// env is the process environment, injected for tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// onListen, when set, is told the HTTP address once listening.
	onListen func(addr string)
	// onBroker, when set, is told the embedded broker's address.
	onBroker func(addr string)
	// onRegistry, when set, is given the registry /metrics serves once
	// every metric is registered (tests compare it with the alert rules).
	onRegistry func(*prometheus.Registry)
}

// config is the resolved configuration.
type config struct {
	databaseURL string
	mqttURL     string
	httpAddr    string
	adminUser   string
	adminPass   string
	logLevel    string
	keyDir      string
	mailURL     string
	mailFrom    string
	smsURL      string
	smsToken    string
	slipDir     string
	publicURL   string
	mqttUser    string
	mqttPass    string
	mqttAddr    string
	openTimeout time.Duration
	// codeGrace is how long a code stays valid again after the device
	// reported pickup_not_collected (kluisd's timeouts.grace).
	codeGrace time.Duration
	// rearmUnfollowed is how long a device, online, may stay silent about a
	// document after its code was accepted before the code is given back;
	// 0 disables the sweep.
	rearmUnfollowed time.Duration
	// auditEvery is how often the audit chain is verified for the gauge; 0 disables.
	auditEvery time.Duration
	// codeSyncEvery is how often every device's offline codes are checked; 0 disables code sync.
	codeSyncEvery time.Duration
	// housekeepEvery is the expiry/purge interval; 0 disables it.
	housekeepEvery time.Duration
	// pickup are the pickup periods per kind (-pickup-period).
	pickup pickupPeriods
	// retention is how long personal data of finished documents is kept.
	retention time.Duration
	// apiTokenTTL and apiTokenMaxTTL are the default and the longest
	// lifetime of API tokens.
	apiTokenTTL, apiTokenMaxTTL time.Duration
	// trustedProxies may name the client in X-Forwarded-For (login throttle).
	trustedProxies []netip.Prefix
}

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/kluis?sslmode=disable"

func envOr(e env, key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

func commonFlags(fs *flag.FlagSet, e env, c *config) {
	fs.StringVar(&c.databaseURL, "database-url", envOr(e, "DATABASE_URL", defaultDatabaseURL), "PostgreSQL URL (env DATABASE_URL)")
	fs.StringVar(&c.logLevel, "log-level", envOr(e, "KLUIS_LOG_LEVEL", "info"), "debug, info, warn or error (env KLUIS_LOG_LEVEL)")
}

func run(ctx context.Context, args []string, e env) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, e)
	case "migrate":
		err = migrate(ctx, args, e)
	case "useradd":
		err = useradd(ctx, args, e)
	case "token":
		err = token(ctx, args, e)
	case "mqttpasswd":
		err = mqttpasswd(ctx, args, e)
	case "pubkey":
		err = pubkey(args, e)
	case "help", "-h", "--help":
		fmt.Fprintln(e.stdout, "usage: kluis-backend [serve|migrate|useradd|token|mqttpasswd|pubkey] [flags]; kluis-backend CMD -h for flags")
		return 0
	default:
		err = fmt.Errorf("unknown command %q (want serve, migrate, useradd, token, mqttpasswd or pubkey)", cmd)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "kluis-backend %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})).With("service", "kluis-backend"), nil
}

// cheapParams lowers argon2id costs when KLUIS_INSECURE_FAST_HASH=1 (tests and the demo only).
func hashParams(e env) auth.Params {
	if e.getenv("KLUIS_INSECURE_FAST_HASH") == "1" {
		return auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}
	}
	return auth.DefaultParams()
}

func openStore(ctx context.Context, c config, log *slog.Logger) (*store.Store, error) {
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	st, err := store.Open(octx, c.databaseURL, store.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return st, nil
}

func migrate(ctx context.Context, args []string, e env) error {
	var c config
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	commonFlags(fs, e, &c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, c.logLevel)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, c, log) // Open migrates.
	if err != nil {
		return err
	}
	st.Close()
	fmt.Fprintln(e.stdout, "migrations applied")
	return nil
}

func readPassword(e env) (string, error) {
	if p := e.getenv("KLUIS_NEW_PASSWORD"); p != "" {
		return p, nil
	}
	fmt.Fprintln(e.stderr, "password (one line on stdin):")
	line, err := bufio.NewReader(io.LimitReader(e.stdin, auth.MaxPasswordLen+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func useradd(ctx context.Context, args []string, e env) error {
	var c config
	var username, role string
	fs := flag.NewFlagSet("useradd", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	commonFlags(fs, e, &c)
	fs.StringVar(&username, "username", "", "login name (required)")
	fs.StringVar(&role, "role", "staff", "staff, technician or admin")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if username == "" {
		return errors.New("-username is required")
	}
	r, err := auth.ParseRole(role)
	if err != nil {
		return err
	}
	log, err := newLogger(e.stderr, c.logLevel)
	if err != nil {
		return err
	}
	pw, err := readPassword(e)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer st.Close()
	as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: log, Params: hashParams(e)})
	if err != nil {
		return err
	}
	u, err := as.CreateUser(ctx, username, pw, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "created user %s (id %d, role %s)\n", u.Username, u.ID, u.Role)
	return nil
}

func token(ctx context.Context, args []string, e env) error {
	var c config
	var username, name string
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	commonFlags(fs, e, &c)
	fs.StringVar(&username, "username", "", "owner of the token (required)")
	fs.StringVar(&name, "name", "automation", "what the token is for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if username == "" {
		return errors.New("-username is required")
	}
	log, err := newLogger(e.stderr, c.logLevel)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer st.Close()
	as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: log, Params: hashParams(e)})
	if err != nil {
		return err
	}
	u, err := as.UserByName(ctx, username)
	if err != nil {
		return err
	}
	iss, err := as.CreateAPIToken(ctx, u.ID, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, iss.Token)
	return nil
}

// loadKeys reads the code keys from KLUIS_CODES_SIGNING_KEY and
// KLUIS_CODES_PIN_KEY when set, else from dir (created at first use).
func loadKeys(e env, dir string) (codes.Keys, error) {
	k, ok, err := codes.KeysFromEnv(e.getenv)
	if err != nil {
		return codes.Keys{}, err
	}
	if ok {
		return k, nil
	}
	k, err = codes.LoadOrCreateKeys(dir)
	if err != nil {
		return codes.Keys{}, fmt.Errorf("code keys in %s: %w", dir, err)
	}
	return k, nil
}

// pubkey prints the QR-token public key (base64) for device configuration.
func pubkey(args []string, e env) error {
	fs := flag.NewFlagSet("pubkey", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dir := fs.String("key-dir", envOr(e, "KLUIS_KEY_DIR", "var/keys"), "key directory (env KLUIS_KEY_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	k, err := loadKeys(e, *dir)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, k.PublicBase64())
	return nil
}

// mqttpasswd sets a device's password for the embedded broker: from
// KLUIS_NEW_PASSWORD, or generated and printed once.
func mqttpasswd(ctx context.Context, args []string, e env) error {
	var c config
	var device string
	fs := flag.NewFlagSet("mqttpasswd", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	commonFlags(fs, e, &c)
	fs.StringVar(&device, "device", "", "device id, the MQTT user name (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if device == "" {
		return errors.New("-device is required")
	}
	log, err := newLogger(e.stderr, c.logLevel)
	if err != nil {
		return err
	}
	pw := e.getenv("KLUIS_NEW_PASSWORD")
	generated := pw == ""
	if generated {
		p, err := randomPassword()
		if err != nil {
			return err
		}
		pw = p + p
	}
	st, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer st.Close()
	creds := devicelink.NewCredentials(devicelink.CredentialsOptions{Pool: st.Pool(), Logger: log, Params: mqttParams(e)})
	if err := creds.Set(ctx, device, broker.RoleDevice, pw); err != nil {
		return err
	}
	if generated {
		fmt.Fprintln(e.stdout, pw)
	} else {
		fmt.Fprintf(e.stdout, "password set for device %s\n", device)
	}
	return nil
}

func randomPassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func serve(ctx context.Context, args []string, e env) error {
	var c config
	var err error
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	commonFlags(fs, e, &c)
	fs.StringVar(&c.mqttURL, "mqtt-url", e.getenv("MQTT_URL"), "MQTT broker URL, e.g. tcp://127.0.0.1:1883 (env MQTT_URL); empty starts the embedded broker")
	fs.StringVar(&c.httpAddr, "http-addr", envOr(e, "KLUIS_HTTP_ADDR", "127.0.0.1:8080"), "HTTP listen address (env KLUIS_HTTP_ADDR)")
	fs.StringVar(&c.mqttUser, "mqtt-username", envOr(e, "MQTT_USERNAME", backendMQTTUser), "user name at an external broker (env MQTT_USERNAME)")
	fs.StringVar(&c.mqttAddr, "mqtt-addr", envOr(e, "KLUIS_MQTT_ADDR", "127.0.0.1:1883"), "listen address of the embedded broker (env KLUIS_MQTT_ADDR)")
	fs.DurationVar(&c.codeSyncEvery, "code-sync-every", time.Minute, "how often devices' offline code caches are checked and resent when changed (0 disables code sync)")
	fs.DurationVar(&c.auditEvery, "audit-verify-every", time.Hour, "how often the audit hash chain is verified for the kluis_audit_chain_ok gauge (0 disables)")
	fs.DurationVar(&c.codeGrace, "code-grace", 10*time.Minute, "how long a code stays valid again when the citizen opened the door but left the document (match kluisd's timeouts.grace)")
	fs.DurationVar(&c.rearmUnfollowed, "rearm-unfollowed-after", deviceops.DefaultUnfollowedAfter, "give a code back when its device, online, reported no door, open or pickup event for the document this long after the backend accepted the code (kluisd died before pulsing); 0 disables")
	fs.DurationVar(&c.openTimeout, "open-timeout", 15*time.Second, "how long a remote open waits for the device; the command expires then")
	fs.StringVar(&c.mailURL, "mail-url", e.getenv("KLUIS_MAIL_URL"), "e-mail: smtp://[user:pass@]host:port or drop:<dir> (env KLUIS_MAIL_URL); empty: no e-mail")
	fs.StringVar(&c.mailFrom, "mail-from", envOr(e, "KLUIS_MAIL_FROM", "Stad Kortrijk <kluis@kortrijk.be>"), "sender address (env KLUIS_MAIL_FROM)")
	fs.StringVar(&c.smsURL, "sms-url", e.getenv("KLUIS_SMS_URL"), "SMS gateway endpoint (env KLUIS_SMS_URL; token in KLUIS_SMS_TOKEN); empty: no SMS")
	fs.StringVar(&c.slipDir, "slip-dir", envOr(e, "KLUIS_SLIP_DIR", "var/slips"), "pickup slips for holders without e-mail or SMS (env KLUIS_SLIP_DIR)")
	fs.StringVar(&c.publicURL, "public-url", e.getenv("KLUIS_PUBLIC_URL"), "base URL of the citizen track links (env KLUIS_PUBLIC_URL; default http://<http-addr>)")
	fs.StringVar(&c.keyDir, "key-dir", envOr(e, "KLUIS_KEY_DIR", "var/keys"), "directory of the QR signing and PIN keys, created at first start (env KLUIS_KEY_DIR)")
	fs.DurationVar(&c.housekeepEvery, "housekeep-every", defaultHousekeepEvery, "interval of the expiry sweep and retention purge (0 disables)")
	fs.StringVar(&c.adminUser, "admin-user", envOr(e, "KLUIS_ADMIN_USER", "admin"), "bootstrap admin created when no admin exists (env KLUIS_ADMIN_USER)")
	pickup := fs.String("pickup-period", e.getenv("KLUIS_PICKUP_PERIOD"), fmt.Sprintf("pickup periods per kind, comma list of kind=value: whole days (10 or 10d: until the end of the N-th local day) or an exact Go duration (90s, 48h: load time plus it); unlisted kinds get %d days (env KLUIS_PICKUP_PERIOD)", service.DefaultPickupDays))
	retention := fs.String("retention", envOr(e, "KLUIS_RETENTION", service.DefaultRetention.String()), "how long personal data of collected, retrieved and cancelled documents is kept (env KLUIS_RETENTION)")
	tokenTTL := fs.String("api-token-ttl", envOr(e, "KLUIS_API_TOKEN_TTL", auth.DefaultAPITokenTTL.String()), "lifetime of an API token created without one (env KLUIS_API_TOKEN_TTL)")
	proxies := fs.String("trusted-proxies", e.getenv("KLUIS_TRUSTED_PROXIES"), "reverse proxies (comma list of addresses or CIDR prefixes) whose X-Forwarded-For names the client for the login limits (env KLUIS_TRUSTED_PROXIES); empty: the peer address counts")
	tokenMaxTTL := fs.String("api-token-max-ttl", envOr(e, "KLUIS_API_TOKEN_MAX_TTL", auth.DefaultAPITokenMaxTTL.String()), "longest lifetime an API token may be given (env KLUIS_API_TOKEN_MAX_TTL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, d := range []struct {
		flag, v string
		to      *time.Duration
	}{{"api-token-ttl", *tokenTTL, &c.apiTokenTTL}, {"api-token-max-ttl", *tokenMaxTTL, &c.apiTokenMaxTTL}} {
		if *d.to, err = time.ParseDuration(d.v); err != nil || *d.to <= 0 {
			return fmt.Errorf("-%s %q: want a positive Go duration such as 2160h", d.flag, d.v)
		}
	}
	if c.trustedProxies, err = api.ParseTrustedProxies(*proxies); err != nil {
		return fmt.Errorf("-trusted-proxies: %w", err)
	}
	if c.apiTokenTTL > c.apiTokenMaxTTL {
		return fmt.Errorf("-api-token-ttl %s is above -api-token-max-ttl %s", c.apiTokenTTL, c.apiTokenMaxTTL)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.pickup, err = parsePickupPeriods(*pickup); err != nil {
		return err
	}
	if c.retention, err = parseRetention(*retention); err != nil {
		return err
	}
	c.adminPass = e.getenv("KLUIS_ADMIN_PASSWORD")
	c.mqttPass = e.getenv("MQTT_PASSWORD")
	c.smsToken = e.getenv("KLUIS_SMS_TOKEN")
	if c.publicURL == "" {
		c.publicURL = "http://" + c.httpAddr
	}
	log, err := newLogger(e.stderr, c.logLevel)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	keys, err := loadKeys(e, c.keyDir)
	if err != nil {
		return err
	}
	as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: log, Params: hashParams(e), KioskKey: deriveKey(keys, "kiosk staff credentials"),
		APITokenTTL: c.apiTokenTTL, APITokenMaxTTL: c.apiTokenMaxTTL})
	if err != nil {
		return err
	}
	if err := bootstrapAdmin(ctx, as, c, e, log); err != nil {
		return err
	}

	deps, err := wireDeps(ctx, st, reg, keys, as, c, e, log)
	if err != nil {
		return err
	}
	defer deps.close()
	if deps.brokerAddr != "" && e.onBroker != nil {
		e.onBroker(deps.brokerAddr)
	}

	opts := deps.api
	opts.Logger, opts.Registry, opts.Pool, opts.Auth = log, reg, st.Pool(), as
	opts.TrustedProxies = c.trustedProxies
	srv, err := api.New(opts)
	if err != nil {
		return err
	}
	if c.auditEvery > 0 {
		if err := watchAudit(deps, st, reg, c.auditEvery, log); err != nil {
			return err
		}
	}
	deps.every(time.Hour, func(ctx context.Context) {
		if n, err := srv.PruneIdempotency(ctx, api.DefaultIdempotencyRetention); err != nil {
			log.Warn("prune idempotency keys", "err", err)
		} else if n > 0 {
			log.Info("pruned idempotency keys", "count", n)
		}
	})
	if e.onRegistry != nil {
		e.onRegistry(reg)
	}
	ln, err := net.Listen("tcp", c.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.httpAddr, err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	if e.onListen != nil {
		e.onListen(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

func bootstrapAdmin(ctx context.Context, as *auth.Service, c config, e env, log *slog.Logger) error {
	pass := c.adminPass
	generated := false
	if pass == "" {
		p, err := randomPassword()
		if err != nil {
			return err
		}
		pass, generated = p, true
	}
	created, err := as.EnsureAdmin(ctx, c.adminUser, pass)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if created {
		log.Info("bootstrap admin created", "username", c.adminUser, "password_generated", generated)
		if generated {
			// Shown once, on the terminal only, never through the logger.
			fmt.Fprintf(e.stderr, "kluis-backend: created admin user %q with password %s (shown once; change it)\n", c.adminUser, pass)
		}
	}
	return nil
}
