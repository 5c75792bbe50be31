// Package cli is kluis-backend's command line: the subcommands, their
// flags and environment variables, turned into backend/server's Options
// (serve) or into one-off database operations (migrate, useradd, token,
// mqttpasswd, pubkey). cmd/kluis-backend calls Run.
package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/broker"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/deviceops"
	"kluis/backend/server"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// Env is the process environment of a command.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads an environment variable (os.Getenv).
	Getenv func(string) string

	// onReady, when set, is given the server once it serves (tests).
	onReady func(*server.Server)
}

// DefaultDatabaseURL is used without DATABASE_URL or -database-url.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/kluis?sslmode=disable"

func envOr(e Env, key, def string) string {
	if v := e.Getenv(key); v != "" {
		return v
	}
	return def
}

// common are the flags of every subcommand that opens the database.
type common struct {
	databaseURL string
	logLevel    string
}

// isHelpFlag tells whether arg asks the program (not serve) for its usage:
// "kluis-backend -h" lists the subcommands; "kluis-backend serve -h" gives
// serve's flags.
func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

func commonFlags(fs *flag.FlagSet, e Env, c *common) {
	fs.StringVar(&c.databaseURL, "database-url", envOr(e, "DATABASE_URL", DefaultDatabaseURL), "PostgreSQL URL (env DATABASE_URL)")
	fs.StringVar(&c.logLevel, "log-level", envOr(e, "KLUIS_LOG_LEVEL", "info"), "debug, info, warn or error (env KLUIS_LOG_LEVEL)")
}

// Run runs the subcommand named by args[0] ("serve" when args is empty or
// starts with a flag) and returns the process exit code: 0, or 1 after an
// error written to e.Stderr.
func Run(ctx context.Context, args []string, e Env) int {
	cmd := "serve"
	if len(args) > 0 && (!strings.HasPrefix(args[0], "-") || isHelpFlag(args[0])) {
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
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(e.Stdout, "usage: kluis-backend [serve|migrate|useradd|token|mqttpasswd|pubkey] [flags]; kluis-backend CMD -h for flags")
		return 0
	default:
		err = fmt.Errorf("unknown command %q (want serve, migrate, useradd, token, mqttpasswd or pubkey)", cmd)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(e.Stderr, "kluis-backend %s: %v\n", cmd, err)
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

// fastHash reports KLUIS_INSECURE_FAST_HASH=1: argon2id at test cost (tests
// and the demo only).
func fastHash(e Env) bool { return e.Getenv("KLUIS_INSECURE_FAST_HASH") == "1" }

// hashParams are the user password costs.
func hashParams(e Env) auth.Params {
	if fastHash(e) {
		return auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}
	}
	return auth.DefaultParams()
}

// mqttParams are the MQTT password costs.
func mqttParams(e Env) pickupcode.ArgonParams {
	if fastHash(e) {
		return pickupcode.ArgonParams{Time: 1, MemoryKiB: 1024, Threads: 1}
	}
	return pickupcode.DefaultArgonParams
}

func openStore(ctx context.Context, c common, log *slog.Logger) (*store.Store, error) {
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	st, err := store.Open(octx, c.databaseURL, store.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return st, nil
}

// withStore parses the common flags (plus those add declares), then opens
// the database for fn.
func withStore(ctx context.Context, name string, args []string, e Env, add func(fs *flag.FlagSet) func() error,
	fn func(st *store.Store, log *slog.Logger) error) error {
	var c common
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	commonFlags(fs, e, &c)
	check := func() error { return nil }
	if add != nil {
		check = add(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := check(); err != nil {
		return err
	}
	log, err := newLogger(e.Stderr, c.logLevel)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, c, log) // Open migrates.
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st, log)
}

func migrate(ctx context.Context, args []string, e Env) error {
	return withStore(ctx, "migrate", args, e, nil, func(*store.Store, *slog.Logger) error {
		fmt.Fprintln(e.Stdout, "migrations applied")
		return nil
	})
}

func readPassword(e Env) (string, error) {
	if p := e.Getenv("KLUIS_NEW_PASSWORD"); p != "" {
		return p, nil
	}
	if f, ok := e.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		// Typed at a terminal: with the echo off, so that it is neither
		// shown nor kept in the scroll-back.
		fmt.Fprint(e.Stderr, "password (not shown): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.Stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	fmt.Fprintln(e.Stderr, "password (one line on stdin):")
	line, err := bufio.NewReader(io.LimitReader(e.Stdin, auth.MaxPasswordLen+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func useradd(ctx context.Context, args []string, e Env) error {
	var username, role, pw string
	var r auth.Role
	return withStore(ctx, "useradd", args, e, func(fs *flag.FlagSet) func() error {
		fs.StringVar(&username, "username", "", "login name (required)")
		fs.StringVar(&role, "role", "staff", "staff, technician or admin")
		return func() error {
			if username == "" {
				return errors.New("-username is required")
			}
			var err error
			if r, err = auth.ParseRole(role); err != nil {
				return err
			}
			pw, err = readPassword(e)
			return err
		}
	}, func(st *store.Store, log *slog.Logger) error {
		as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: log, Params: hashParams(e)})
		if err != nil {
			return err
		}
		u, err := as.CreateUser(ctx, username, pw, r)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "created user %s (id %d, role %s)\n", u.Username, u.ID, u.Role)
		return nil
	})
}

// token creates an API token for a user and prints it; it lives
// -api-token-ttl, as one created through the API without a lifetime.
func token(ctx context.Context, args []string, e Env) error {
	var (
		username, name string
		ttl, maxTTL    time.Duration
	)
	return withStore(ctx, "token", args, e, func(fs *flag.FlagSet) func() error {
		fs.StringVar(&username, "username", "", "owner of the token (required)")
		fs.StringVar(&name, "name", "automation", "what the token is for")
		lifetimes := tokenLifetimeFlags(fs, e)
		return func() error {
			if username == "" {
				return errors.New("-username is required")
			}
			var err error
			ttl, maxTTL, err = lifetimes()
			return err
		}
	}, func(st *store.Store, log *slog.Logger) error {
		as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: log, Params: hashParams(e), APITokenTTL: ttl, APITokenMaxTTL: maxTTL})
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
		fmt.Fprintln(e.Stdout, iss.Token)
		return nil
	})
}

// tokenLifetimeFlags adds -api-token-ttl and -api-token-max-ttl (serve and
// token share them); the returned function, called after parsing, checks
// them and returns the lifetime and the longest lifetime.
func tokenLifetimeFlags(fs *flag.FlagSet, e Env) func() (ttl, maxTTL time.Duration, err error) {
	ttlFlag := fs.String("api-token-ttl", envOr(e, "KLUIS_API_TOKEN_TTL", auth.DefaultAPITokenTTL.String()), "lifetime of an API token created without one (env KLUIS_API_TOKEN_TTL)")
	maxFlag := fs.String("api-token-max-ttl", envOr(e, "KLUIS_API_TOKEN_MAX_TTL", auth.DefaultAPITokenMaxTTL.String()), "longest lifetime an API token may be given (env KLUIS_API_TOKEN_MAX_TTL)")
	return func() (ttl, maxTTL time.Duration, err error) {
		for _, d := range []struct {
			flag, v string
			to      *time.Duration
		}{{"api-token-ttl", *ttlFlag, &ttl}, {"api-token-max-ttl", *maxFlag, &maxTTL}} {
			if *d.to, err = time.ParseDuration(d.v); err != nil || *d.to <= 0 {
				return 0, 0, fmt.Errorf("-%s %q: want a positive Go duration such as 2160h", d.flag, d.v)
			}
		}
		if ttl > maxTTL {
			return 0, 0, fmt.Errorf("-api-token-ttl %s is above -api-token-max-ttl %s", ttl, maxTTL)
		}
		return ttl, maxTTL, nil
	}
}

// mqttpasswd sets a registered device's password for the embedded
// broker: from KLUIS_NEW_PASSWORD, or generated and printed once. An id
// no device has is refused (exit 1), nothing set.
func mqttpasswd(ctx context.Context, args []string, e Env) error {
	var device string
	return withStore(ctx, "mqttpasswd", args, e, func(fs *flag.FlagSet) func() error {
		fs.StringVar(&device, "device", "", "device id, the MQTT user name (required)")
		return func() error {
			if device == "" {
				return errors.New("-device is required")
			}
			return nil
		}
	}, func(st *store.Store, log *slog.Logger) error {
		// Only for a registered device: a password for an id no device
		// has (a typo) would be a working broker login for nobody.
		if wire.ValidDeviceID(device) == nil {
			if _, err := store.GetDevice(ctx, st.Pool(), device); errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("device %q is not registered: register it first (POST /api/v1/devices), then set its password: %w", device, err)
			} else if err != nil {
				return err
			}
		}
		pw := e.Getenv("KLUIS_NEW_PASSWORD")
		generated := pw == ""
		if generated {
			p, err := server.RandomPassword()
			if err != nil {
				return err
			}
			pw = p + p
		}
		creds := devicelink.NewCredentials(devicelink.CredentialsOptions{Pool: st.Pool(), Logger: log, Params: mqttParams(e)})
		if err := creds.Set(ctx, device, broker.RoleDevice, pw); err != nil {
			return err
		}
		if generated {
			fmt.Fprintln(e.Stdout, pw)
		} else {
			fmt.Fprintf(e.Stdout, "password set for device %s\n", device)
		}
		return nil
	})
}

// loadKeys reads the code keys from KLUIS_CODES_SIGNING_KEY and
// KLUIS_CODES_PIN_KEY when set, else from dir (created at first use).
func loadKeys(e Env, dir string) (codes.Keys, error) {
	k, ok, err := codes.KeysFromEnv(e.Getenv)
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
func pubkey(args []string, e Env) error {
	fs := flag.NewFlagSet("pubkey", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	dir := fs.String("key-dir", envOr(e, "KLUIS_KEY_DIR", "var/keys"), "key directory (env KLUIS_KEY_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	k, err := loadKeys(e, *dir)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, k.PublicBase64())
	return nil
}

// serve runs the server with the flags and environment.
func serve(ctx context.Context, args []string, e Env) error {
	var c common
	var o server.Options
	var keyDir, logLevel string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	commonFlags(fs, e, &c)
	fs.StringVar(&o.MQTTURL, "mqtt-url", e.Getenv("MQTT_URL"), "MQTT broker URL, e.g. tcp://127.0.0.1:1883 (env MQTT_URL); empty starts the embedded broker")
	fs.StringVar(&o.HTTPAddr, "http-addr", envOr(e, "KLUIS_HTTP_ADDR", server.DefaultHTTPAddr), "HTTP listen address (env KLUIS_HTTP_ADDR)")
	fs.IntVar(&o.HTTPMaxConnections, "http-max-connections", server.DefaultHTTPMaxConnections(), "most connections the HTTP listener holds open; past it a connection is answered 503 with Retry-After (the default is a quarter of the open-file limit, at most 4096; 0 or less: that default)")
	fs.StringVar(&o.MQTTUsername, "mqtt-username", envOr(e, "MQTT_USERNAME", server.BackendMQTTUser), "user name at an external broker (env MQTT_USERNAME)")
	caFile := fs.String("mqtt-ca-file", e.Getenv("MQTT_CA_FILE"), "PEM file of the CAs that may sign the broker's certificate, for an ssl:// -mqtt-url; only they are trusted (env MQTT_CA_FILE); empty: the system's CAs")
	brokerCert := fs.String("mqtt-tls-cert", e.Getenv("KLUIS_MQTT_TLS_CERT"), "PEM certificate (chain) of the embedded broker: it then speaks TLS only (env KLUIS_MQTT_TLS_CERT; with -mqtt-tls-key)")
	brokerKey := fs.String("mqtt-tls-key", e.Getenv("KLUIS_MQTT_TLS_KEY"), "PEM private key of -mqtt-tls-cert (env KLUIS_MQTT_TLS_KEY)")
	fs.StringVar(&o.MQTTAddr, "mqtt-addr", envOr(e, "KLUIS_MQTT_ADDR", server.DefaultMQTTAddr), "listen address of the embedded broker (env KLUIS_MQTT_ADDR)")
	fs.DurationVar(&o.CodeSyncEvery, "code-sync-every", server.DefaultCodeSyncEvery, "how often devices' offline code caches are checked and resent when changed (0 disables code sync)")
	fs.DurationVar(&o.AuditEvery, "audit-verify-every", server.DefaultAuditEvery, "how often the audit hash chain is verified for the kluis_audit_chain_ok gauge (0 disables)")
	fs.DurationVar(&o.CodeGrace, "code-grace", server.DefaultCodeGrace, "how long a code stays valid again when the citizen opened the door but left the document (match kluisd's timeouts.grace)")
	fs.DurationVar(&o.RearmUnfollowed, "rearm-unfollowed-after", server.DefaultRearmUnfollowed, "give a code back when its device, online, reported no door, open or pickup event for the document this long after the backend accepted the code (kluisd died before pulsing); 0 disables")
	fs.DurationVar(&o.RedeliverAfter, "redeliver-after", server.DefaultRedeliverAfter, "a notification that failed (mail or SMS gateway down or slow) is tried again after this long, then after twice as long each time up to -redeliver-max, 12 attempts in all")
	fs.DurationVar(&o.RedeliverMax, "redeliver-max", server.DefaultRedeliverMax, "the longest wait between two attempts of a failed notification")
	fs.DurationVar(&o.OpenTimeout, "open-timeout", server.DefaultOpenTimeout, "how long a remote open waits for the device; the command expires then")
	fs.StringVar(&o.MailURL, "mail-url", e.Getenv("KLUIS_MAIL_URL"), "e-mail: smtp://[user:pass@]host:port or drop:<dir> (env KLUIS_MAIL_URL); empty: no e-mail")
	fs.StringVar(&o.MailFrom, "mail-from", envOr(e, "KLUIS_MAIL_FROM", server.DefaultMailFrom), "sender address (env KLUIS_MAIL_FROM)")
	fs.StringVar(&o.SMSURL, "sms-url", e.Getenv("KLUIS_SMS_URL"), "SMS gateway endpoint (env KLUIS_SMS_URL; token in KLUIS_SMS_TOKEN); empty: no SMS")
	fs.StringVar(&o.SlipDir, "slip-dir", envOr(e, "KLUIS_SLIP_DIR", server.DefaultSlipDir), "pickup slips for holders without e-mail or SMS (env KLUIS_SLIP_DIR)")
	fs.StringVar(&o.PublicURL, "public-url", e.Getenv("KLUIS_PUBLIC_URL"), "base URL of the citizen track links (env KLUIS_PUBLIC_URL; default http://<http-addr>)")
	allowedHosts := fs.String("allowed-hosts", e.Getenv("KLUIS_ALLOWED_HOSTS"), "host names the HTTP listener answers to besides the -public-url's host (comma list, e.g. a name Prometheus scrapes by; env KLUIS_ALLOWED_HOSTS); IP addresses and localhost are always answered, any other Host gets 421 (DNS rebinding)")
	fs.StringVar(&keyDir, "key-dir", envOr(e, "KLUIS_KEY_DIR", "var/keys"), "directory of the QR signing and PIN keys, created at first start (env KLUIS_KEY_DIR)")
	fs.DurationVar(&o.HousekeepEvery, "housekeep-every", server.DefaultHousekeepEvery, "interval of the expiry sweep, retention purge and pruning of expired login-limit rows (0 disables)")
	fs.StringVar(&o.AdminUser, "admin-user", envOr(e, "KLUIS_ADMIN_USER", server.DefaultAdminUser), "bootstrap admin created when no admin exists (env KLUIS_ADMIN_USER)")
	pickup := fs.String("pickup-period", e.Getenv("KLUIS_PICKUP_PERIOD"), fmt.Sprintf("pickup periods per kind, comma list of kind=value: whole days (10 or 10d: until the end of the N-th local day) or an exact Go duration (90s, 48h: load time plus it); unlisted kinds get %d days (env KLUIS_PICKUP_PERIOD)", service.DefaultPickupDays))
	retention := fs.String("retention", envOr(e, "KLUIS_RETENTION", service.DefaultRetention.String()), "how long personal data of collected, retrieved and cancelled documents is kept (env KLUIS_RETENTION)")
	unclaimedRetention := fs.String("unclaimed-retention", envOr(e, "KLUIS_UNCLAIMED_RETENTION", "90d"), fmt.Sprintf("how long personal data of documents never closed (expired and never taken back, registered and never loaded) is kept after their pickup deadline, or their registration when never loaded (env KLUIS_UNCLAIMED_RETENTION): whole days (90d) or a Go duration, at least %dd", service.MinUnclaimedRetention/(24*time.Hour)))
	deviceRetention := fs.String("device-retention", envOr(e, "KLUIS_DEVICE_RETENTION", "400d"), fmt.Sprintf("how long device events, device commands and code attempts are kept (env KLUIS_DEVICE_RETENTION): whole days (400d) or a Go duration, at least %dd; 0 keeps them for ever; the audit trail is never pruned", devicelink.MinRetention/(24*time.Hour)))
	lifetimes := tokenLifetimeFlags(fs, e)
	proxies := fs.String("trusted-proxies", e.Getenv("KLUIS_TRUSTED_PROXIES"), "reverse proxies (comma list of addresses or CIDR prefixes) whose X-Forwarded-For names the client for the login limits (env KLUIS_TRUSTED_PROXIES); empty: the peer address counts")
	metricsTokenFile := fs.String("metrics-token-file", e.Getenv("KLUIS_METRICS_TOKEN_FILE"), "file holding the bearer token GET /metrics requires (env KLUIS_METRICS_TOKEN_FILE); empty: /metrics is public")
	fs.DurationVar(&o.StaffIdle, "staff-session-idle", auth.DefaultWebIdle, "a staff console session ends after this long without a request")
	fs.DurationVar(&o.StaffMaxAge, "staff-session-max", auth.DefaultWebMaxAge, "a staff console session ends this long after the login, whatever happens")
	answerSig := fs.String("answer-signature", envOr(e, "KLUIS_ANSWER_SIGNATURE", string(deviceops.AnswerKR1)), "how the answers of one verify batch are signed (env KLUIS_ANSWER_SIGNATURE): kr1, one signature each, which every kluisd checks; kr2, one signature for the batch, only once every device runs a kluisd that checks KR2 (docs/operations.md)")
	kr1Devices := fs.String("answer-signature-kr1-devices", e.Getenv("KLUIS_ANSWER_SIGNATURE_KR1_DEVICES"), "comma list of device ids that get kr1 answers whatever -answer-signature says: devices still on an older kluisd (env KLUIS_ANSWER_SIGNATURE_KR1_DEVICES)")
	o.DeviceVerifyBudget, o.DeviceEventBudget = devicelink.DefaultVerifyBudget(), devicelink.DefaultEventBudget()
	fs.Var(&o.DeviceVerifyBudget, "device-verify-budget", "each device's budget of verify and staff requests, RATE/BURST: RATE a second, BURST at once; over it a request is answered unavailable")
	fs.Var(&o.DeviceEventBudget, "device-event-budget", "each device's budget of events but alarms, RATE/BURST: RATE a second, BURST at once; over it an event is not acknowledged yet (the device sends it again)")
	o.DeviceAlarmBudget, o.DeviceResultBudget = devicelink.DefaultAlarmBudget(), devicelink.DefaultResultBudget()
	fs.Var(&o.DeviceAlarmBudget, "device-alarm-budget", "each device's budget of alarms and their clearing, apart from its other events, RATE/BURST; over it an alarm is not acknowledged yet (the device sends it again)")
	fs.Var(&o.DeviceResultBudget, "device-result-budget", "each device's budget of command results, RATE/BURST; over it a result is not recorded yet (not acknowledged: the device sends it again)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.APITokenTTL, o.APITokenMaxTTL, err = lifetimes(); err != nil {
		return err
	}
	if o.AnswerSignature, err = deviceops.ParseAnswerForm(*answerSig); err != nil {
		return fmt.Errorf("-answer-signature: %w", err)
	}
	for _, d := range strings.Split(*kr1Devices, ",") {
		if d = strings.TrimSpace(d); d != "" {
			o.AnswerSignatureKR1Devices = append(o.AnswerSignatureKR1Devices, d)
		}
	}
	if o.TrustedProxies, err = api.ParseTrustedProxies(*proxies); err != nil {
		return fmt.Errorf("-trusted-proxies: %w", err)
	}
	if o.MetricsToken, err = readMetricsToken(*metricsTokenFile); err != nil {
		return err
	}
	if o.AllowedHosts, err = server.ParseAllowedHosts(*allowedHosts); err != nil {
		return fmt.Errorf("-allowed-hosts: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.MQTTTLS, o.BrokerTLS, err = mqttTLS(o.MQTTURL, *caFile, *brokerCert, *brokerKey); err != nil {
		return err
	}
	periods, err := parsePickupPeriods(*pickup)
	if err != nil {
		return err
	}
	o.PickupDays, o.PickupPeriods = periods.days, periods.exact
	if o.Retention, err = parseRetention(*retention); err != nil {
		return err
	}
	if o.UnclaimedRetention, err = parseUnclaimedRetention(*unclaimedRetention); err != nil {
		return err
	}
	if o.DeviceRetention, err = parseDeviceRetention(*deviceRetention); err != nil {
		return err
	}
	// 0 on the command line turns a job off.
	for _, d := range []*time.Duration{&o.CodeSyncEvery, &o.AuditEvery, &o.RearmUnfollowed, &o.HousekeepEvery} {
		if *d == 0 {
			*d = server.Disabled
		}
	}
	o.DatabaseURL, logLevel = c.databaseURL, c.logLevel
	o.AdminPassword = e.Getenv("KLUIS_ADMIN_PASSWORD")
	o.MQTTPassword = e.Getenv("MQTT_PASSWORD")
	o.SMSToken = e.Getenv("KLUIS_SMS_TOKEN")
	o.PasswordParams, o.MQTTParams = hashParams(e), mqttParams(e)
	o.Console = e.Stderr
	if o.Logger, err = newLogger(e.Stderr, logLevel); err != nil {
		return err
	}
	if o.Keys, err = loadKeys(e, keyDir); err != nil {
		return err
	}
	srv, err := server.New(o)
	if err != nil {
		return err
	}
	if e.onReady != nil {
		go func() {
			select {
			case <-srv.Ready():
				e.onReady(srv)
			case <-ctx.Done():
			}
		}()
	}
	return srv.Run(ctx)
}

// mqttTLS reads the TLS files: a CA file for an external broker's
// certificate, a certificate and key for the embedded broker.
func mqttTLS(url, caFile, certFile, keyFile string) (linkTLS, brokerTLS *tls.Config, err error) {
	external := url != ""
	if caFile != "" {
		if !external {
			return nil, nil, errors.New("-mqtt-ca-file is for an external broker (-mqtt-url ssl://...); the embedded broker takes -mqtt-tls-cert and -mqtt-tls-key")
		}
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, nil, fmt.Errorf("-mqtt-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, fmt.Errorf("-mqtt-ca-file %s holds no PEM certificate", caFile)
		}
		linkTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, nil, errors.New("-mqtt-tls-cert and -mqtt-tls-key go together")
	}
	if certFile != "" {
		if external {
			return nil, nil, errors.New("-mqtt-tls-cert and -mqtt-tls-key are for the embedded broker; with -mqtt-url the broker has its own")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("-mqtt-tls-cert/-mqtt-tls-key: %w", err)
		}
		brokerTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return linkTLS, brokerTLS, nil
}

// readMetricsToken reads -metrics-token-file: one line, at least 16
// characters; no file, no token.
func readMetricsToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("-metrics-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("-metrics-token-file %s: the token must be one word of at least 16 characters", path)
	}
	return tok, nil
}
