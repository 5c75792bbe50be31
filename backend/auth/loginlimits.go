package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Login limits (docs/security.md, "Staff accounts: logins and tokens"),
// shared by every way in with a password: the REST API's POST
// /api/v1/sessions and the staff console's login form (backend/web) use
// one LoginLimits, so a guesser gains nothing by switching. The counts live
// in PostgreSQL (auth_login_failures, auth_login_sources; migration 0180),
// so every backend replica sees the same counts and a restart keeps them.
// Attempts that did not succeed are counted twice:
//
//   - per username and source (the client address, see ClientSource):
//     after maxSourceFailures within loginWindow that source is refused
//     for that username (429) until the oldest of them leaves the window.
//     This locks the guesser's address, not the account.
//   - per username over all sources: from freeFailures failures within
//     loginWindow on, an attempt must wait a back-off after the latest
//     failure, firstBackoff doubling with every further failure up to
//     maxBackoff. Never a lock: anyone waits at most maxBackoff, and a
//     source that logged in successfully as that user within knownFor does
//     not wait at all (it still has its own per-source limit).
//   - per source over all usernames (password spraying: one address
//     trying a common password on many usernames, each within its own
//     limits): from freeAddressFailures failures within loginWindow on,
//     an attempt for a username the source has not logged in as within
//     knownFor waits the same back-off after the source's latest failure
//     (firstBackoff doubling, at most maxBackoff). Never a lock either:
//     colleagues behind one office NAT keep logging in as themselves,
//     and a newcomer there waits at most maxBackoff.
//
// An attempt is counted when Begin lets it through, before the password is
// checked, under a per-username and a per-source transaction lock (taken
// in that order), so concurrent attempts
// on any number of replicas cannot overrun a limit; Succeed forgets the
// attempts of its (username, source), the successful one included, and
// remembers the source; an admin clears everything of a username
// (POST /api/v1/users/{id}/clear-login-lockout). An attempt whose outcome
// never arrives (a crash, a database error) stays counted as a failure.
// Rows older than the window are deleted by every write (at most
// pruneBatch at a time) and by Prune, which the backend runs periodically
// (backend/server, at the housekeeping interval) so that they also go when
// no login comes; the table holds about the attempts of the last
// loginWindow, each of which cost an argon2id verification.
//
// When the database cannot be reached Begin returns an error and the
// caller refuses the login (ErrLimitsUnavailable): no guessing without a
// count. The password check needs the database anyway.
const (
	maxSourceFailures = 5
	freeFailures      = 10
	// freeAddressFailures is how many failures one source may have over
	// all usernames within loginWindow before its attempts for usernames
	// it never logged in as wait the back-off.
	freeAddressFailures = 20
	loginWindow         = 15 * time.Minute
	firstBackoff        = time.Second
	maxBackoff          = time.Minute
	knownFor            = 30 * 24 * time.Hour
	maxKnownPerUser     = 8
	// keepUserFailures is enough failures to reach maxBackoff: the check
	// reads no more.
	keepUserFailures = freeFailures + 8
	// keepAddressFailures likewise for a source.
	keepAddressFailures = freeAddressFailures + 8
	// pruneBatch is how many expired rows a write deletes at most.
	pruneBatch = 100
)

// ErrLimitsUnavailable is returned when the login limits cannot be read or
// written (the database is down): the login is refused.
var ErrLimitsUnavailable = errors.New("auth: login limits unavailable")

// LoginLimits counts failed logins in PostgreSQL and refuses guessing (see
// above). Create it with NewLoginLimits. Safe for concurrent use, by any
// number of processes on one database.
type LoginLimits struct {
	pool  *pgxpool.Pool
	known knownPairs
}

// knownPairs is this process's memory of the (username, source) pairs
// that logged in lately (auth_login_sources): where a login waits before
// its database work (PasswordCheck), read without the database. Only a
// successful login makes a pair known, so a guesser cannot put one in.
// It learns of this process's successes at once and of the other
// replicas' (and of the time before a restart) by reading the table again
// every knownReread; the limits themselves read the table.
type knownPairs struct {
	mu      sync.Mutex
	at      map[string]time.Time // throttleKey(username) NUL source -> latest login
	read    time.Time            // when the table was last read; zero: never
	reading bool                 // one reader at a time; the others use what is known
}

const (
	// knownReread is how often the known pairs are read again.
	knownReread = 30 * time.Second
	// maxKnownPairs bounds the memory of known pairs (the table holds
	// at most maxKnownPerUser per user).
	maxKnownPairs = 100_000
	// knownReadTimeout bounds one reading of the table: a login never
	// waits longer for it.
	knownReadTimeout = 5 * time.Second
)

// NewLoginLimits returns login limits kept in pool's database (migration
// 0180).
func NewLoginLimits(pool *pgxpool.Pool) *LoginLimits {
	return &LoginLimits{pool: pool, known: knownPairs{at: map[string]time.Time{}}}
}

func knownPair(username, source string) string { return throttleKey(username) + "\x00" + source }

// KnownHint tells, from memory, whether source logged in as username
// within knownFor (see knownPairs): a hint for where the login waits,
// never a decision of the limits (Attempt.Known is). The first call, and
// one every knownReread, reads the table (at most one at a time).
func (l *LoginLimits) KnownHint(ctx context.Context, username, source string, now time.Time) bool {
	now = now.UTC()
	k := &l.known
	k.mu.Lock()
	reread := !k.reading && (k.read.IsZero() || now.Sub(k.read) >= knownReread || now.Before(k.read))
	if reread {
		k.reading = true
	}
	k.mu.Unlock()
	if reread {
		l.readKnown(ctx, now)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	at, ok := k.at[knownPair(username, source)]
	return ok && at.After(now.Add(-knownFor))
}

// readKnown reads the pairs known at now into l.known; on failure it
// keeps what it knew and tries again after knownReread.
func (l *LoginLimits) readKnown(ctx context.Context, now time.Time) {
	got := map[string]time.Time{}
	ctx, cancel := context.WithTimeout(ctx, knownReadTimeout)
	defer cancel()
	rows, err := l.pool.Query(ctx, `SELECT username, source, last_login_at FROM auth_login_sources
WHERE last_login_at > $1 ORDER BY last_login_at DESC LIMIT $2`, now.Add(-knownFor), maxKnownPairs)
	if err == nil {
		for rows.Next() {
			var u, src string
			var at time.Time
			if err = rows.Scan(&u, &src, &at); err != nil {
				break
			}
			got[u+"\x00"+src] = at
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	k := &l.known
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reading, k.read = false, now
	if err != nil {
		return
	}
	for p, at := range k.at { // learnt while reading, or in no row yet
		if at.After(now.Add(-knownFor)) && len(got) < maxKnownPairs && at.After(got[p]) {
			got[p] = at
		}
	}
	k.at = got
}

// rememberKnown notes that source logged in as username at now.
func (l *LoginLimits) rememberKnown(username, source string, now time.Time) {
	k := &l.known
	k.mu.Lock()
	defer k.mu.Unlock()
	p := knownPair(username, source)
	if _, ok := k.at[p]; ok || len(k.at) < maxKnownPairs {
		k.at[p] = now.UTC()
	}
}

// throttleKey is the name a login attempt is counted under: the username
// in lower case without surrounding space. Whatever a client sends, it is
// text PostgreSQL stores and indexes: invalid UTF-8 and NUL become U+FFFD,
// and a name longer than any user's (64 bytes) is counted under "long:"
// and its SHA-256, which no username can be. Before, a NUL or a long
// random username made the limits' SQL fail, and an unauthenticated
// client got "logins unavailable" (503) and an error logged at will.
func throttleKey(username string) string {
	k := strings.ToLower(strings.TrimSpace(strings.ToValidUTF8(strings.ReplaceAll(username, "\x00", "\uFFFD"), "\uFFFD")))
	if len(k) > maxUsernameLen {
		sum := sha256.Sum256([]byte(k))
		return "long:" + hex.EncodeToString(sum[:])
	}
	return k
}

// Refusal says why and until when a login is refused.
type Refusal struct {
	// Until is when a login may be tried again.
	Until time.Time
	// Source is true when the source is locked for the username, false
	// for a back-off.
	Source bool
	// Address is true when the back-off is the source's (many failures
	// from it over all usernames), false when it is the username's.
	Address bool
}

// backoff is how long an attempt waits after the latest of n failures of
// its username.
func backoff(n int) time.Duration { return backoffAfter(n, freeFailures) }

// backoffAfter is how long an attempt waits after the latest of n
// failures when free of them are let through without waiting.
func backoffAfter(n, free int) time.Duration {
	if n < free {
		return 0
	}
	d := firstBackoff
	for i := free; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// Begin decides a login of username from source at now: a refusal, or nil
// after counting the attempt as a failure until Succeed says otherwise.
// An error (wrapping ErrLimitsUnavailable) means the login must be refused.
func (l *LoginLimits) Begin(ctx context.Context, username, source string, now time.Time) (*Refusal, error) {
	a, err := l.BeginAttempt(ctx, username, source, now)
	return a.Refusal, err
}

// Attempt is what BeginAttempt decided.
type Attempt struct {
	// Refusal is why the login is refused; nil: it is let through and
	// counted.
	Refusal *Refusal
	// Known is true when source logged in as the username within
	// knownFor: the login waits in the first line for a hashing slot
	// (LoginFrom.Known).
	Known bool
	id    int64 // the counted row; 0 when refused
}

// From is where the attempt's password check waits for a hashing slot.
func (a Attempt) From(source string) LoginFrom { return LoginFrom{Source: source, Known: a.Known} }

// BeginAttempt is Begin that also tells whether the source is known for
// the username, and lets Abandon uncount the attempt.
func (l *LoginLimits) BeginAttempt(ctx context.Context, username, source string, now time.Time) (Attempt, error) {
	u := throttleKey(username)
	now = now.UTC()
	var a Attempt
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('kluis login ' || $1, 0))`, u); err != nil {
			return err
		}
		// Then the source's, so that concurrent attempts for many
		// usernames from one source cannot overrun its back-off (always
		// after the username's: no lock order cycle).
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('kluis login source ' || $1, 0))`, source); err != nil {
			return err
		}
		since := now.Add(-loginWindow)
		var (
			srcN, userN, addrN     int
			srcOldest              *time.Time
			userLatest, addrLatest *time.Time
			known                  bool
		)
		err := tx.QueryRow(ctx, `
SELECT (SELECT count(*) FROM (SELECT 1 FROM auth_login_failures WHERE username = $1 AND source = $2 AND at > $3 LIMIT $4) s),
       (SELECT min(at) FROM (SELECT at FROM auth_login_failures WHERE username = $1 AND source = $2 AND at > $3 ORDER BY at DESC LIMIT $4) s),
       (SELECT count(*) FROM (SELECT 1 FROM auth_login_failures WHERE username = $1 AND at > $3 LIMIT $5) s),
       (SELECT max(at) FROM auth_login_failures WHERE username = $1 AND at > $3),
       EXISTS (SELECT 1 FROM auth_login_sources WHERE username = $1 AND source = $2 AND last_login_at > $6),
       (SELECT count(*) FROM (SELECT 1 FROM auth_login_failures WHERE source = $2 AND at > $3 LIMIT $7) s),
       (SELECT max(at) FROM auth_login_failures WHERE source = $2 AND at > $3)`,
			u, source, since, maxSourceFailures, keepUserFailures, now.Add(-knownFor), keepAddressFailures).Scan(
			&srcN, &srcOldest, &userN, &userLatest, &known, &addrN, &addrLatest)
		if err != nil {
			return err
		}
		a.Known = known
		if srcN >= maxSourceFailures {
			a.Refusal = &Refusal{Until: srcOldest.UTC().Add(loginWindow), Source: true}
			return nil
		}
		if !known {
			var ref *Refusal
			if d := backoff(userN); d > 0 {
				if next := userLatest.UTC().Add(d); now.Before(next) {
					ref = &Refusal{Until: next}
				}
			}
			if d := backoffAfter(addrN, freeAddressFailures); d > 0 {
				if next := addrLatest.UTC().Add(d); now.Before(next) && (ref == nil || next.After(ref.Until)) {
					ref = &Refusal{Until: next, Address: true}
				}
			}
			if ref != nil {
				a.Refusal = ref
				return nil
			}
		}
		if err := tx.QueryRow(ctx, `INSERT INTO auth_login_failures (username, source, at) VALUES ($1, $2, $3) RETURNING id`,
			u, source, now).Scan(&a.id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM auth_login_failures WHERE id IN
    (SELECT id FROM auth_login_failures WHERE at <= $1 ORDER BY at LIMIT $2)`, since, pruneBatch)
		return err
	})
	if err != nil {
		return Attempt{}, fmt.Errorf("%w: %w", ErrLimitsUnavailable, err)
	}
	return a, nil
}

// Abandon uncounts an attempt BeginAttempt let through whose password was
// never checked (ErrLoginBusy): it was no guess.
func (l *LoginLimits) Abandon(ctx context.Context, a Attempt) error {
	if a.id == 0 {
		return nil
	}
	if _, err := l.pool.Exec(ctx, `DELETE FROM auth_login_failures WHERE id = $1`, a.id); err != nil {
		return fmt.Errorf("%w: %w", ErrLimitsUnavailable, err)
	}
	return nil
}

// Succeed records that the attempt Begin let through succeeded: the
// failures of username from source (this attempt's included) are
// forgotten and the source is remembered as one the user logs in from.
func (l *LoginLimits) Succeed(ctx context.Context, username, source string, now time.Time) error {
	u := throttleKey(username)
	now = now.UTC()
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('kluis login ' || $1, 0))`, u); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM auth_login_failures WHERE username = $1 AND source = $2`, u, source); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO auth_login_sources (username, source, last_login_at) VALUES ($1, $2, $3)
ON CONFLICT (username, source) DO UPDATE SET last_login_at = greatest(auth_login_sources.last_login_at, EXCLUDED.last_login_at)`, u, source, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM auth_login_sources WHERE username = $1 AND source NOT IN
    (SELECT source FROM auth_login_sources WHERE username = $1 ORDER BY last_login_at DESC, source LIMIT $2)`, u, maxKnownPerUser); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM auth_login_sources WHERE (username, source) IN
    (SELECT username, source FROM auth_login_sources WHERE last_login_at <= $1 ORDER BY last_login_at LIMIT $2)`, now.Add(-knownFor), pruneBatch)
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrLimitsUnavailable, err)
	}
	l.rememberKnown(username, source, now)
	return nil
}

// Prune deletes the failures older than the window and the addresses not
// logged in from for knownFor, as of now, pruneBatch rows per statement
// until none is left, and reports how many rows it deleted. Begin and
// Succeed prune a batch on every write; Prune does it when nobody logs in.
// Safe beside them and on every replica at once.
func (l *LoginLimits) Prune(ctx context.Context, now time.Time) (int, error) {
	now = now.UTC()
	total := 0
	for _, q := range []struct {
		sql    string
		before time.Time
	}{
		{`DELETE FROM auth_login_failures WHERE id IN
    (SELECT id FROM auth_login_failures WHERE at <= $1 ORDER BY at LIMIT $2)`, now.Add(-loginWindow)},
		{`DELETE FROM auth_login_sources WHERE (username, source) IN
    (SELECT username, source FROM auth_login_sources WHERE last_login_at <= $1 ORDER BY last_login_at LIMIT $2)`, now.Add(-knownFor)},
	} {
		for {
			tag, err := l.pool.Exec(ctx, q.sql, q.before, pruneBatch)
			if err != nil {
				return total, fmt.Errorf("auth: prune login limits: %w", err)
			}
			total += int(tag.RowsAffected())
			if tag.RowsAffected() < pruneBatch {
				break
			}
		}
	}
	return total, nil
}

// Clear forgets every counted attempt of username (from every source) and
// reports how many were dropped.
func (l *LoginLimits) Clear(ctx context.Context, username string) (int, error) {
	tag, err := l.pool.Exec(ctx, `DELETE FROM auth_login_failures WHERE username = $1`, throttleKey(username))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrLimitsUnavailable, err)
	}
	return int(tag.RowsAffected()), nil
}

// ClientSource is the address a request comes from, as the login throttle
// counts it: the peer address, or, when the peer is one of the trusted
// proxies, the right-most X-Forwarded-For address that is not itself a
// trusted proxy (the left part of the header is whatever the client
// wrote). IPv6 addresses count per /64, the block a single subscriber
// usually holds.
func ClientSource(r *http.Request, trusted []netip.Prefix) string {
	peer := parseAddr(r.RemoteAddr)
	if !peer.IsValid() {
		return "unknown"
	}
	addr := peer
	if inPrefixes(peer, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a := parseAddr(strings.TrimSpace(hops[i]))
			if !a.IsValid() {
				break // garbage: trust no further left than the last proxy
			}
			addr = a
			if !inPrefixes(a, trusted) {
				break
			}
		}
	}
	if addr.Is6() {
		p, err := addr.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return addr.String()
}

// parseAddr reads "ip", "ip:port" or "[ip]:port"; 4in6 addresses become IPv4.
func parseAddr(s string) netip.Addr {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies reads a comma list of addresses or CIDR prefixes
// ("10.0.0.5, 10.1.0.0/16, fd00::/8") for the trusted proxies of ClientSource; "" is
// none.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an IP address or a CIDR prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
