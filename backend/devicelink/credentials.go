package devicelink

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/broker"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// ErrCredential is wrapped by credential errors callers branch on (bad
// user name, role or password).
var ErrCredential = errors.New("devicelink: invalid credential")

// Credentials is the mqtt_credentials table: per-device (and backend)
// passwords for the embedded broker, stored as argon2id hashes.
//
// A successful check is remembered in mqtt_credential_checks as an
// HMAC-SHA256 of the user name and password under CheckKey, so that a
// reconnecting device costs one HMAC instead of an argon2id verification
// (a whole fleet reconnecting after a restart). The entry is used only
// while the credential's password_hash is the one it was checked against,
// the credential is not disabled and it is younger than CheckTTL: Set and
// Disable invalidate it at once in this process and in the database. To
// spare the database a query per CONNECT in a storm, the remembered checks
// are also held in memory, loaded whole at most every Refresh while
// devices connect and used while younger than twice that: another
// replica's Set or Disable takes effect here within 2×Refresh (10 s by
// default). A failed check is never
// remembered, so guessing still costs argon2id per attempt. Device
// passwords are random secrets of 16 bytes or more, for which a keyed
// hash is as strong as a slow one; the key is not in the database.
type Credentials struct {
	pool    *pgxpool.Pool
	params  pickupcode.ArgonParams
	now     func() time.Time
	log     *slog.Logger
	dummy   string        // a hash checked for unknown users, so they cost the same
	slots   chan struct{} // bounds concurrent hashing (memory: MemoryKiB each)
	key     []byte
	ttl     time.Duration
	refresh time.Duration
	checks  *prometheus.CounterVec
	// throttle refuses the checks of an address with many failures
	// before they cost a hash.
	throttle *addressThrottle

	mu      sync.Mutex
	mem     map[string]remembered // by user name
	memAt   time.Time             // when mem was loaded
	loading bool
	loaded  chan struct{}   // closed when the current load ends
	dropped map[string]bool // forgotten while loading
	// forgets counts forget calls: a check remembers its success only if
	// none came while it ran (it may have read the password just replaced).
	forgets uint64
}

// remembered is a successful check held in memory.
type remembered struct {
	role      string
	mac       []byte
	checkedAt time.Time
}

// CredentialsOptions configure Credentials.
type CredentialsOptions struct {
	Pool *pgxpool.Pool
	// Params are the argon2id costs of new hashes; default
	// pickupcode.DefaultArgonParams.
	Params pickupcode.ArgonParams
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// MaxConcurrent bounds simultaneous password checks, so that a fleet
	// reconnecting at once cannot exhaust memory; default 4.
	MaxConcurrent int
	// CheckKey keys the remembered successful checks (at least 16 bytes;
	// kluis-backend derives it from its keys so that replicas and restarts
	// share them). Default: a random key, good for this process only.
	CheckKey []byte
	// CheckTTL is how long a successful check is remembered; default 7
	// days.
	CheckTTL time.Duration
	// Registerer receives kluis_mqtt_credential_checks_total; default none.
	Registerer prometheus.Registerer
	// Refresh is how often, while devices connect, the remembered checks
	// are loaded into memory; default 5 s.
	Refresh time.Duration
	// MaxFailuresPerAddress failed checks from one client address (IPv6:
	// per /64) within FailureWindow, counted from its first, refuse its
	// further checks until the window ends, without a database query or a
	// hash (a successful check remembered in memory still passes);
	// defaults 10 and 1 minute.
	MaxFailuresPerAddress int
	FailureWindow         time.Duration
}

// NewCredentials returns the credential store on opts.Pool. Costs outside
// pickupcode.ArgonParams.Validate's range are a programming error: it
// panics.
func NewCredentials(opts CredentialsOptions) *Credentials {
	if opts.Params == (pickupcode.ArgonParams{}) {
		opts.Params = pickupcode.DefaultArgonParams
	}
	if err := opts.Params.Validate(); err != nil {
		panic("devicelink: " + err.Error())
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 4
	}
	if len(opts.CheckKey) < 16 {
		opts.CheckKey = make([]byte, 32)
		_, _ = rand.Read(opts.CheckKey)
	}
	if opts.CheckTTL <= 0 {
		opts.CheckTTL = 7 * 24 * time.Hour
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 5 * time.Second
	}
	if opts.MaxFailuresPerAddress <= 0 {
		opts.MaxFailuresPerAddress = defaultMaxFailuresPerAddress
	}
	if opts.FailureWindow <= 0 {
		opts.FailureWindow = defaultFailureWindow
	}
	c := &Credentials{pool: opts.Pool, params: opts.Params, now: opts.Now,
		log: opts.Logger.With("part", "devicelink-credentials"), slots: make(chan struct{}, opts.MaxConcurrent),
		key: append([]byte(nil), opts.CheckKey...), ttl: opts.CheckTTL, refresh: opts.Refresh, mem: map[string]remembered{},
		throttle: newAddressThrottle(opts.MaxFailuresPerAddress, opts.FailureWindow),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kluis_mqtt_credential_checks_total",
			Help: "MQTT password checks of the embedded broker: remembered (one HMAC), verified (argon2id), refused, or throttled (refused unhashed: too many failures from the client's address)."}, []string{"result"})}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(c.checks); err != nil {
			panic("devicelink: " + err.Error())
		}
	}
	c.dummy = c.hash("not a password")
	return c
}

// Set creates or replaces the password of username with role. A device's
// user name is its device id.
func (c *Credentials) Set(ctx context.Context, username string, role broker.Role, password string) error {
	if err := wire.ValidDeviceID(username); err != nil {
		return fmt.Errorf("devicelink: user name: %v: %w", err, ErrCredential)
	}
	if role != broker.RoleDevice && role != broker.RoleBackend {
		return fmt.Errorf("devicelink: role %q: %w", role, ErrCredential)
	}
	if len(password) < 16 || len(password) > 256 {
		return fmt.Errorf("devicelink: password must have 16-256 bytes: %w", ErrCredential)
	}
	now := c.now().UTC()
	// A user name keeps its role: a device never takes over the backend's
	// user (or the reverse) by having its password set.
	tag, err := c.pool.Exec(ctx, `INSERT INTO mqtt_credentials (username, role, password_hash, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (username) DO UPDATE SET password_hash = $3, disabled = false, updated_at = $4
		WHERE mqtt_credentials.role = $2`,
		username, string(role), c.hash(password), now)
	if err != nil {
		return fmt.Errorf("devicelink: set credential: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("devicelink: user name %q belongs to another role than %s: %w", username, role, ErrCredential)
	}
	c.forget(username)
	return nil
}

// forget drops username's remembered check from memory.
func (c *Credentials) forget(username string) {
	c.mu.Lock()
	delete(c.mem, username)
	c.forgets++
	if c.loading {
		c.dropped[username] = true
	}
	c.mu.Unlock()
}

// Disable refuses username from now on (connected clients stay until they
// reconnect).
func (c *Credentials) Disable(ctx context.Context, username string) error {
	if _, err := c.pool.Exec(ctx, `UPDATE mqtt_credentials SET disabled = true, updated_at = $2 WHERE username = $1`,
		username, c.now().UTC()); err != nil {
		return fmt.Errorf("devicelink: disable credential: %w", err)
	}
	c.forget(username)
	return nil
}

// Check verifies a user name and password; it is a broker.CredentialsFunc.
// A device's id is its user name; the backend's is empty.
func (c *Credentials) Check(ctx context.Context, username, password string) (string, broker.Role, bool) {
	want := c.mac(username, password)
	if r, ok := c.fromMemory(ctx, username); ok && c.now().Sub(r.checkedAt) < c.ttl && hmac.Equal(r.mac, want) {
		c.checks.WithLabelValues("remembered").Inc()
		return c.identity(username, r.role)
	}
	// An address with many failures is refused before the database is
	// asked and before a hash: a remembered device (above) still passes.
	addr, hasAddr := broker.ClientAddr(ctx)
	if hasAddr && c.throttle.refused(addr, c.now()) {
		c.checks.WithLabelValues("throttled").Inc()
		return "", "", false
	}
	fail := func() (string, broker.Role, bool) {
		c.checks.WithLabelValues("refused").Inc()
		if hasAddr {
			c.throttle.failed(addr, c.now())
		}
		return "", "", false
	}
	// A Set or Disable while this check runs may replace what it reads:
	// its success is then not remembered in memory (the next check reads
	// again), or the old password would pass from memory after the new
	// one was set.
	c.mu.Lock()
	forgets := c.forgets
	c.mu.Unlock()
	var role, hash string
	var disabled bool
	var mac []byte
	var checkedAt *time.Time
	err := c.pool.QueryRow(ctx, `SELECT c.role, c.password_hash, c.disabled, k.mac, k.checked_at
		FROM mqtt_credentials c
		LEFT JOIN mqtt_credential_checks k ON k.username = c.username AND k.password_hash = c.password_hash
		WHERE c.username = $1`, username).Scan(&role, &hash, &disabled, &mac, &checkedAt)
	found := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		// Nothing to verify against: refuse now (the device retries)
		// rather than spend a hash on it.
		c.log.Error("credential lookup failed", "err", err)
		c.checks.WithLabelValues("error").Inc()
		return "", "", false
	}
	if found && !disabled && checkedAt != nil && c.now().Sub(*checkedAt) < c.ttl && hmac.Equal(mac, want) {
		c.checks.WithLabelValues("remembered").Inc()
		return c.identity(username, role)
	}
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		c.log.Warn("password check not started in time", "err", ctx.Err())
		c.checks.WithLabelValues("refused").Inc()
		return "", "", false
	}
	if !found {
		_ = c.verify(c.dummy, password)
		return fail()
	}
	if !c.verify(hash, password) || disabled {
		return fail()
	}
	c.checks.WithLabelValues("verified").Inc()
	if _, err := c.pool.Exec(ctx, `INSERT INTO mqtt_credential_checks (username, password_hash, mac, checked_at)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (username) DO UPDATE SET password_hash = $2, mac = $3, checked_at = $4`,
		username, hash, want, c.now().UTC()); err != nil {
		c.log.Warn("remembering a credential check failed", "err", err) // the next connect verifies again
	} else {
		c.mu.Lock()
		if c.forgets == forgets {
			c.mem[username] = remembered{role: role, mac: want, checkedAt: c.now()}
		}
		c.mu.Unlock()
	}
	return c.identity(username, role)
}

// fromMemory returns username's remembered check from memory while the
// memory is fresh (younger than 2×refresh), starting a reload once it is
// older than refresh. While memory is too old and a load runs, it waits
// for the load (within ctx) rather than let every CONNECT of a storm
// query the database and starve the load of connections.
func (c *Credentials) fromMemory(ctx context.Context, username string) (remembered, bool) {
	c.mu.Lock()
	age := c.now().Sub(c.memAt)
	if age >= c.refresh && !c.loading {
		c.loading, c.dropped, c.loaded = true, map[string]bool{}, make(chan struct{})
		go c.load()
	}
	if age >= 2*c.refresh {
		loaded := c.loaded
		c.mu.Unlock()
		select {
		case <-loaded:
		case <-ctx.Done():
			return remembered{}, false
		}
		c.mu.Lock()
		if c.now().Sub(c.memAt) >= 2*c.refresh {
			c.mu.Unlock()
			return remembered{}, false // the load failed
		}
	}
	r, ok := c.mem[username]
	c.mu.Unlock()
	return r, ok
}

// load reads every valid remembered check into memory.
func (c *Credentials) load() {
	start := c.now()
	mem := map[string]remembered{}
	err := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rows, err := c.pool.Query(ctx, `SELECT c.username, c.role, k.mac, k.checked_at
			FROM mqtt_credentials c
			JOIN mqtt_credential_checks k ON k.username = c.username AND k.password_hash = c.password_hash
			WHERE NOT c.disabled`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			var r remembered
			if err := rows.Scan(&u, &r.role, &r.mac, &r.checkedAt); err != nil {
				return err
			}
			mem[u] = r
		}
		return rows.Err()
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loading = false
	defer close(c.loaded)
	if err != nil {
		c.log.Warn("loading remembered credential checks failed", "err", err)
		return
	}
	for u := range c.dropped { // a load may have read them before they changed
		delete(mem, u)
	}
	c.mem, c.memAt = mem, start
}

func (c *Credentials) identity(username, role string) (string, broker.Role, bool) {
	if broker.Role(role) == broker.RoleDevice {
		return username, broker.RoleDevice, true
	}
	return "", broker.Role(role), true
}

// mac is the remembered form of a successful check.
func (c *Credentials) mac(username, password string) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(username))
	m.Write([]byte{0})
	m.Write([]byte(password))
	return m.Sum(nil)
}

// hash is the PHC string stored for password (pickupcode.HashSecret). The
// costs were checked by NewCredentials: only a failing crypto/rand errs.
func (c *Credentials) hash(password string) string {
	h, err := pickupcode.HashSecret(password, c.params)
	if err != nil {
		panic(err)
	}
	return h
}

// verify checks password against a PHC string with its own parameters; a
// malformed string matches nothing.
func (c *Credentials) verify(phc, password string) bool {
	ok, err := pickupcode.VerifySecret(phc, password)
	return err == nil && ok
}
