package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"kluis/backend/pgtest"
	"kluis/backend/store"
)

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// migratedBefore opens a new database migrated up to, not including,
// migration version (which must exist), for a test of that migration; it
// returns the pool and every migration, version's at index next.
func migratedBefore(t *testing.T, version int) (pool *pgxpool.Pool, ms []store.Migration, next int) {
	t.Helper()
	pool = openPool(t, pgtest.NewDatabase(t))
	ms, err := store.Migrations()
	require.NoError(t, err)
	for next < len(ms) && ms[next].Version < version {
		next++
	}
	require.Less(t, next, len(ms), "no migration %04d", version)
	require.Equal(t, version, ms[next].Version)
	require.NoError(t, store.MigrateList(context.Background(), pool, ms[:next]))
	return pool, ms, next
}

func TestMigrateConcurrentReplicasApplyOnce(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	const replicas = 6
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := 0; i < replicas; i++ {
		pool := openPool(t, url)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = store.Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "replica %d", i)
	}
	ms, err := store.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	pool := openPool(t, url)
	got, err := store.AppliedVersions(ctx, pool)
	require.NoError(t, err)
	want := make([]int, len(ms))
	for i, m := range ms {
		want[i] = m.Version
	}
	require.Equal(t, want, got)
	// A second run is a no-op.
	require.NoError(t, store.Migrate(ctx, pool))
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n))
	require.Equal(t, len(ms), n)
}

func TestMigrateFailingMigrationRollsBackAndStops(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	pool := openPool(t, url)
	fsys := fstest.MapFS{
		"0001_a.sql": {Data: []byte("CREATE TABLE a (x int);")},
		"0002_b.sql": {Data: []byte("CREATE TABLE b (x int); SELECT no_such_function();")},
		"0003_c.sql": {Data: []byte("CREATE TABLE c (x int);")},
	}
	err := store.MigrateFS(ctx, pool, fsys)
	require.Error(t, err)
	require.Contains(t, err.Error(), "0002_b.sql")
	got, err := store.AppliedVersions(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []int{1}, got)
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('b','c')").Scan(&n))
	require.Equal(t, 0, n, "failed migration must leave nothing behind")
	// The lock was released: fixing the file lets a later run finish.
	fsys["0002_b.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE b (x int);")}
	require.NoError(t, store.MigrateFS(ctx, pool, fsys))
	got, err = store.AppliedVersions(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3}, got)
}

func TestMigrateRefusesBadFileNames(t *testing.T) {
	pool := openPool(t, pgtest.NewDatabase(t))
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":  {"1_a.sql": {Data: []byte("SELECT 1")}},
		"duplicate": {"0001_a.sql": {Data: []byte("SELECT 1")}, "0001_b.sql": {Data: []byte("SELECT 1")}},
	} {
		err := store.MigrateFS(context.Background(), pool, fsys)
		require.True(t, errors.Is(err, store.ErrInvalid), "%s: %v", name, err)
	}
}

func TestOpenBadURL(t *testing.T) {
	_, err := store.Open(context.Background(), "postgres://%zz", store.Options{})
	require.Error(t, err)
}

// Migration 0100: API tokens issued without an expiry get one 90 days after
// the upgrade (revoked ones their revocation time), and from then on a
// token without expiry cannot be stored (docs/security.md, "Staff
// accounts").
func TestMigrationGivesEveryTokenAnExpiry(t *testing.T) {
	ctx := context.Background()
	pool, ms, _ := migratedBefore(t, 100)
	_, err := pool.Exec(ctx, `INSERT INTO auth_users (id, username, role, password_hash, created_at) VALUES (1, 'ci', 'technician', 'x', now())`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO auth_tokens (user_id, kind, name, token_hash, created_at, expires_at, revoked_at) VALUES
		(1, 'api', 'live', '\x01', now() - interval '2 years', NULL, NULL),
		(1, 'api', 'revoked', '\x02', now() - interval '2 years', NULL, now() - interval '1 year'),
		(1, 'session', 'sess', '\x03', now(), now() + interval '12 hours', NULL)`)
	require.NoError(t, err)

	require.NoError(t, store.MigrateList(ctx, pool, ms))
	var liveDays, revokedAgo, sessHours float64
	require.NoError(t, pool.QueryRow(ctx, `SELECT
		extract(epoch FROM (SELECT expires_at FROM auth_tokens WHERE name = 'live') - now()) / 86400,
		extract(epoch FROM now() - (SELECT expires_at FROM auth_tokens WHERE name = 'revoked')) / 86400,
		extract(epoch FROM (SELECT expires_at FROM auth_tokens WHERE name = 'sess') - now()) / 3600`).Scan(&liveDays, &revokedAgo, &sessHours))
	require.InDelta(t, 90, liveDays, 0.1, "a live token without expiry gets 90 days from the upgrade")
	require.InDelta(t, 365, revokedAgo, 1, "a revoked token expires at its revocation")
	require.InDelta(t, 12, sessHours, 0.1, "tokens with an expiry keep it")
	_, err = pool.Exec(ctx, `INSERT INTO auth_tokens (user_id, kind, name, token_hash, created_at) VALUES (1, 'api', 'forever', '\x04', now())`)
	require.Error(t, err, "a token without expiry is refused")
}

// Migration 0220: a final document gets the closed_at the retention purge
// reads (the time of the transition that closed it, else its last
// update), an open one loses a stray closed_at, a purged one its leftover
// personal data; from then on the database refuses any of them.
func TestMigrationClosedAtAndPurgedInvariants(t *testing.T) {
	ctx := context.Background()
	pool, ms, _ := migratedBefore(t, 220)
	_, err := pool.Exec(ctx, `INSERT INTO sites (id, name, created_at) VALUES ('kortrijk', 'Kortrijk', now())`)
	require.NoError(t, err)
	doc := func(state, extra string) string {
		var id string
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO documents (kind, number, holder_last_name, email, language, site_id, state,
			created_at, updated_at) VALUES ('eid', gen_random_uuid()::text, 'Peeters', 'jan@example.be', 'nl', 'kortrijk', $1,
			'2025-01-01', '2025-03-01') RETURNING id::text`, state).Scan(&id))
		if extra != "" {
			_, err := pool.Exec(ctx, "UPDATE documents SET "+extra+" WHERE id = $1", id)
			require.NoError(t, err)
		}
		return id
	}
	withHistory := doc("collected", "")
	_, err = pool.Exec(ctx, `INSERT INTO document_transitions (document_id, at, action, from_state, to_state, actor)
		VALUES ($1, '2025-02-10', 'collect', 'loaded', 'collected', 'device:d')`, withHistory)
	require.NoError(t, err)
	noHistory := doc("cancelled", "")
	stray := doc("registered", "closed_at = '2025-02-01'")
	leftover := doc("retrieved", "closed_at = '2025-02-01', purged_at = '2025-03-05'")

	require.NoError(t, store.MigrateList(ctx, pool, ms))
	closedAt := func(id string) *time.Time {
		var at *time.Time
		require.NoError(t, pool.QueryRow(ctx, "SELECT closed_at FROM documents WHERE id = $1", id).Scan(&at))
		return at
	}
	require.Equal(t, time.Date(2025, 2, 10, 0, 0, 0, 0, time.UTC), closedAt(withHistory).UTC(), "the transition that closed it")
	require.Equal(t, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), closedAt(noHistory).UTC(), "else its last update")
	require.Nil(t, closedAt(stray), "an open document is not closed")
	var personal int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM documents WHERE id = $1
		AND (number IS NOT NULL OR number_key IS NOT NULL OR holder_last_name IS NOT NULL OR email IS NOT NULL)`, leftover).Scan(&personal))
	require.Zero(t, personal, "a purged document keeps no personal data")

	for what, stmt := range map[string]string{
		"final without closed_at":      "UPDATE documents SET closed_at = NULL WHERE id = '" + withHistory + "'",
		"closed while open":            "UPDATE documents SET closed_at = now() WHERE id = '" + stray + "'",
		"final state without closing":  "UPDATE documents SET state = 'cancelled' WHERE id = '" + stray + "'",
		"personal data after purge":    "UPDATE documents SET holder_last_name = 'Peeters' WHERE id = '" + leftover + "'",
		"purged keeping personal data": "UPDATE documents SET purged_at = now() WHERE id = '" + stray + "'",
	} {
		_, err := pool.Exec(ctx, stmt)
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe) && pe.Code == "23514", "%s: want a check violation, got %v", what, err)
	}
}

// Migration 0222: the dead codes of documents purged before 0221 lose
// their date-of-birth digest and offline verifier, as the purge does
// since; a live code, and the codes of a document not purged, keep both.
// Running it again changes nothing.
func TestMigrationErasesTheBirthDateOfCodesPurgedBefore(t *testing.T) {
	ctx := context.Background()
	pool, ms, next := migratedBefore(t, 222)
	backfill := ms[next]
	require.Equal(t, "0222_code_purge_backfill.sql", backfill.Name)
	_, err := pool.Exec(ctx, `INSERT INTO sites (id, name, created_at) VALUES ('kortrijk', 'Kortrijk', now());
		INSERT INTO devices (id, site_id, kind, created_at) VALUES ('l1', 'kortrijk', 'locker', now());
		INSERT INTO compartments (device_id, number, board, channel, size, height_cm) VALUES ('l1', 1, 0, 0, 'S', 20);
		INSERT INTO code_devices (device_id, offline_salt, created_at) VALUES ('l1', '\x00112233445566778899aabbccddeeff', now())`)
	require.NoError(t, err)
	doc := func(purged bool) string {
		var id string
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO documents (kind, number, holder_last_name, holder_birth_date, language,
			site_id, state, created_at, updated_at, closed_at) VALUES ('eid', gen_random_uuid()::text, 'Peeters', '1980-02-03', 'nl',
			'kortrijk', 'collected', '2025-01-01', '2025-03-01', '2025-02-01') RETURNING id::text`).Scan(&id))
		if purged {
			_, err := pool.Exec(ctx, `UPDATE documents SET number = NULL, holder_last_name = NULL, holder_birth_date = NULL,
				purged_at = '2025-03-05' WHERE id = $1`, id)
			require.NoError(t, err)
		}
		return id
	}
	var n byte
	code := func(docID, state string) []byte {
		n++
		id := append(make([]byte, 15), n)
		_, err := pool.Exec(ctx, `INSERT INTO codes (id, document_id, document_kind, device_id, compartment_id, compartment_number,
			board, channel, pin_digest, needs_dob, dob_digest, offline_verifier, offline_params, expires_at, created_at)
			SELECT $1, $2, 'eid', 'l1', c.id, 1, 0, 0, sha256($1), true, sha256('dob' || $1), '\x0102', 'argon2id',
				now() + interval '10 days', '2025-01-20' FROM compartments c WHERE c.device_id = 'l1'`, id, docID)
		require.NoError(t, err)
		switch state {
		case "used":
			_, err = pool.Exec(ctx, `UPDATE codes SET used_at = '2025-02-01' WHERE id = $1`, id)
		case "revoked":
			_, err = pool.Exec(ctx, `UPDATE codes SET revoked_at = '2025-02-01' WHERE id = $1`, id)
		case "expired":
			_, err = pool.Exec(ctx, `UPDATE codes SET expires_at = '2025-02-01' WHERE id = $1`, id)
		}
		require.NoError(t, err)
		return id
	}
	purged, kept := doc(true), doc(false)
	used, revoked, expired, live := code(purged, "used"), code(purged, "revoked"), code(purged, "expired"), code(purged, "live")
	other := code(kept, "used")

	require.NoError(t, store.MigrateList(ctx, pool, ms))
	type row struct {
		digest   []byte
		verifier []byte
		purgedAt *time.Time
	}
	read := func(id []byte) row {
		var r row
		require.NoError(t, pool.QueryRow(ctx, `SELECT dob_digest, offline_verifier, purged_at FROM codes WHERE id = $1`, id).
			Scan(&r.digest, &r.verifier, &r.purgedAt))
		return r
	}
	for what, id := range map[string][]byte{"used": used, "revoked": revoked, "expired": expired} {
		r := read(id)
		require.Nil(t, r.digest, "%s: the date of birth's digest is erased", what)
		require.Empty(t, r.verifier, "%s: the offline verifier is erased", what)
		require.NotNil(t, r.purgedAt, what)
		require.Equal(t, time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC), r.purgedAt.UTC(), "%s: when its document was purged", what)
	}
	for what, id := range map[string][]byte{"a live code": live, "a document not purged": other} {
		r := read(id)
		require.NotNil(t, r.digest, what)
		require.NotEmpty(t, r.verifier, what)
		require.Nil(t, r.purgedAt, what)
	}

	// Idempotent: a second run finds nothing to do.
	tag, err := pool.Exec(ctx, backfill.SQL)
	require.NoError(t, err)
	require.Zero(t, tag.RowsAffected())
}
