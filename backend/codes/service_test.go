package codes

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
)

// fixture is a migrated database with one site, two devices (l1 with 48
// compartments, l2 with 2) and a Service on a fake clock.
type fixture struct {
	t       testing.TB
	pool    *pgxpool.Pool
	svc     *Service
	clock   *storetest.Clock
	reg     *prometheus.Registry
	keys    Keys
	mu      sync.Mutex
	lockout []string
}

var t0 = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

// testArgon keeps the offline verifiers cheap under -race.
var testArgon = pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st := storetest.New(t)
	f := &fixture{t: t, pool: st.Pool(), clock: storetest.NewClock(t0), reg: prometheus.NewRegistry()}
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, `INSERT INTO sites (id, name, address, created_at) VALUES ('kortrijk', 'Stadhuis Kortrijk', 'Grote Markt 54, 8500 Kortrijk', now());
		INSERT INTO devices (id, site_id, kind, created_at) VALUES ('l1', 'kortrijk', 'locker', now()), ('l2', 'kortrijk', 'locker', now());
		INSERT INTO compartments (device_id, number, board, channel, size, height_cm)
			SELECT 'l1', n, (n-1)/16, (n-1)%16, 'M', 30 FROM generate_series(1, 48) n;
		INSERT INTO compartments (device_id, number, board, channel, size, height_cm) VALUES ('l2', 1, 0, 0, 'S', 20), ('l2', 2, 0, 1, 'S', 20);`)
	require.NoError(t, err)
	f.keys, err = GenerateKeys()
	require.NoError(t, err)
	f.svc, err = New(Options{
		Pool: f.pool, Keys: f.keys, Argon: testArgon, Clock: f.clock.Now, Registerer: f.reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnLockout: func(_ context.Context, dev string, _ time.Time) {
			f.mu.Lock()
			f.lockout = append(f.lockout, dev)
			f.mu.Unlock()
		},
	})
	require.NoError(t, err)
	return f
}

// document inserts a document of kind in compartment number n of device dev
// and returns its id and the compartment.
func (f *fixture) document(kind, dev string, n int) (string, Compartment) {
	f.t.Helper()
	ctx := context.Background()
	var c Compartment
	require.NoError(f.t, f.pool.QueryRow(ctx, `SELECT id, number, board, channel FROM compartments WHERE device_id = $1 AND number = $2`,
		dev, n).Scan(&c.ID, &c.Number, &c.Board, &c.Channel))
	var id string
	require.NoError(f.t, f.pool.QueryRow(ctx, `INSERT INTO documents (kind, holder_first_name, holder_birth_date, language, site_id,
		state, device_id, compartment_id, created_at, updated_at)
		VALUES ($1, 'An', '1990-02-28', 'nl', 'kortrijk', 'loaded', $2, $3, now(), now()) RETURNING id::text`, kind, dev, c.ID).Scan(&id))
	return id, c
}

func (f *fixture) issue(kind, dev string, n int) (string, Compartment, Credentials) {
	f.t.Helper()
	id, c := f.document(kind, dev, n)
	var cr Credentials
	err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		var err error
		cr, err = f.svc.Issue(context.Background(), tx, IssueRequest{DocumentID: id, DocumentKind: kind, BirthDate: "1990-02-28",
			DeviceID: dev, Compartment: c, ExpiresAt: f.clock.Now().Add(7 * 24 * time.Hour)})
		return err
	})
	require.NoError(f.t, err)
	return id, c, cr
}

func (f *fixture) verify(a Attempt) (Result, error) {
	return f.svc.Verify(context.Background(), a)
}

func wrongPIN(pin string) string {
	b := []byte(pin)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

func TestIssueAndVerifyQR(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	doc, c, cr := f.issue("driving_licence", "l1", 3)
	require.Len(t, cr.PIN, pickupcode.PINDigits)
	require.False(t, cr.NeedsDOB)
	claims, err := pickupcode.VerifyToken(f.keys.Public(), cr.QRToken, "l1", f.clock.Now())
	require.NoError(t, err, "the device can check the token offline")
	require.Equal(t, cr.CodeID, claims.CodeID)

	_, err = f.verify(Attempt{DeviceID: "l2", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrWrongDevice)

	res, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.NoError(t, err)
	require.Equal(t, doc, res.DocumentID)
	require.Equal(t, c.ID, res.CompartmentID)
	require.Equal(t, 3, res.CompartmentNumber)
	require.Equal(t, 0, res.Board)
	require.Equal(t, 2, res.Channel)

	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected, "single use")
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "2000-01-01"})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected, "the PIN of a used code is used too")

	require.Equal(t, 1.0, testutil.ToFloat64(f.svc.verified.WithLabelValues("ok")))
	require.Equal(t, 1.0, testutil.ToFloat64(f.svc.verified.WithLabelValues("wrong_device")))
	require.Equal(t, 2.0, testutil.ToFloat64(f.svc.verified.WithLabelValues("already_collected")))

	// Nothing secret in the stored rows or the audit trail.
	var dump string
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(row_to_json(c)::text, ''), '') FROM codes c`).Scan(&dump))
	require.NotContains(t, dump, cr.PIN)
	recs, err := audit.List(context.Background(), f.pool, audit.ListOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, recs)
	actions := map[string]int{}
	for _, r := range recs {
		actions[r.Action]++
		require.NotContains(t, string(r.Details), cr.PIN)
		require.NotContains(t, string(r.Details), cr.QRToken)
	}
	require.Equal(t, 1, actions["code.issued"])
	require.Equal(t, 1, actions["code.used"])
	require.Equal(t, 3, actions["code.denied"])
	rep, err := audit.Verify(context.Background(), f.pool)
	require.NoError(t, err)
	require.True(t, rep.OK())
}

func TestPINWithDateOfBirth(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("eid", "l1", 1)
	require.True(t, cr.NeedsDOB)

	// Any well-formed PIN without a date is asked for the date: existing or not.
	_, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN})
	require.ErrorIs(t, err, pickupcode.ErrSecondFactorRequired)
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: wrongPIN(cr.PIN)})
	require.ErrorIs(t, err, pickupcode.ErrSecondFactorRequired)
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: "12"})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "a malformed PIN is just wrong")

	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-27"})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "a wrong date looks like a wrong PIN")
	f.clock.Add(pickupcode.DeviceWindow) // keep clear of the device burst limit
	res, err := f.verify(Attempt{DeviceID: "l1", PIN: FormatPIN(cr.PIN), BirthDate: "1990-02-28"})
	require.NoError(t, err)
	require.Equal(t, 1, res.CompartmentNumber)
}

func TestCodeLocksAfterWrongDates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("passport", "l1", 1)
	for i := 0; i < pickupcode.CodeMaxFailures; i++ {
		_, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1980-01-01"})
		require.ErrorIs(t, err, pickupcode.ErrWrongCode)
		f.clock.Add(pickupcode.DeviceWindow + time.Second)
	}
	_, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrCodeLocked)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrCodeLocked, "a locked code needs a re-issue")
	entries, err := f.svc.OfflineBundle(context.Background(), "l1")
	require.NoError(t, err)
	require.Empty(t, entries, "locked codes are not shipped to the device")
}

func TestReissueRevokesEarlierCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	doc, c, old := f.issue("driving_licence", "l2", 1)
	var fresh Credentials
	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		var err error
		fresh, err = f.svc.Issue(context.Background(), tx, IssueRequest{DocumentID: doc, DocumentKind: "driving_licence",
			DeviceID: "l2", Compartment: c, ExpiresAt: t0.Add(48 * time.Hour)})
		return err
	}))
	_, err := f.verify(Attempt{DeviceID: "l2", QRToken: old.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	_, err = f.verify(Attempt{DeviceID: "l2", PIN: old.PIN, BirthDate: "1990-02-28"})
	if old.PIN != fresh.PIN {
		require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	}
	_, err = f.verify(Attempt{DeviceID: "l2", QRToken: fresh.QRToken})
	require.NoError(t, err)

	// Revoke (returned to the counter) kills the remaining code.
	doc2, _, cr2 := f.issue("driving_licence", "l2", 2)
	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		n, err := f.svc.Revoke(context.Background(), tx, doc2)
		require.Equal(t, 1, n)
		return err
	}))
	_, err = f.verify(Attempt{DeviceID: "l2", QRToken: cr2.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)

	// A stolen device: every open code goes, the documents come back for re-issue.
	doc3, _, cr3 := f.issue("eid", "l1", 1)
	var docs []string
	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		var err error
		docs, err = f.svc.RevokeDevice(context.Background(), tx, "l1")
		return err
	}))
	require.Equal(t, []string{doc3}, docs)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr3.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	entries, err := f.svc.OfflineBundle(context.Background(), "l1")
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("driving_licence", "l1", 5)
	f.clock.Add(7*24*time.Hour + time.Second)
	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrExpired)
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrExpired)
}

func TestIssueRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	doc, c := f.document("eid", "l1", 9)
	good := IssueRequest{DocumentID: doc, DocumentKind: "eid", BirthDate: "1990-02-28", DeviceID: "l1", Compartment: c, ExpiresAt: t0.Add(time.Hour)}
	bad := []func(r *IssueRequest){
		func(r *IssueRequest) { r.BirthDate = "" },
		func(r *IssueRequest) { r.DeviceID = "L 1" },
		func(r *IssueRequest) { r.ExpiresAt = t0.Add(MaxValidity + time.Hour) },
		func(r *IssueRequest) { r.Compartment.Number = 0 },
		func(r *IssueRequest) { r.DocumentID = "" },
		func(r *IssueRequest) { r.DocumentID = "not-a-uuid" },
	}
	for i, mut := range bad {
		r := good
		mut(&r)
		err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
			_, err := f.svc.Issue(context.Background(), tx, r)
			return err
		})
		require.ErrorIs(t, err, pickupcode.ErrInvalid, "case %d", i)
	}
	// An expiry that has passed at the time of issue is a conflict (a
	// reissue after the deadline, 409), not bad input; the time of issue
	// is the request's At (the transition's time) when given.
	for _, at := range []time.Time{{}, t0.Add(-time.Hour)} {
		r := good
		r.ExpiresAt, r.At = t0.Add(-time.Minute), at
		err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
			_, err := f.svc.Issue(context.Background(), tx, r)
			return err
		})
		if at.IsZero() {
			require.ErrorIs(t, err, ErrExpiryPassed)
			require.ErrorIs(t, err, store.ErrConflict)
		} else {
			require.NoError(t, err, "judged at At, an hour before the expiry")
		}
	}
	// A malformed date of birth typed by staff is personal data: the
	// error names the field, never the value (it may reach a log).
	r := good
	r.BirthDate = "28/02/1990"
	err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		_, err := f.svc.Issue(context.Background(), tx, r)
		return err
	})
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
	require.ErrorContains(t, err, "date of birth")
	require.NotContains(t, err.Error(), "1990")
	_, err = f.svc.Revoke(context.Background(), nil, "x")
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: "K1.x.y", PIN: "123456789"})
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
	_, err = f.verify(Attempt{DeviceID: "", PIN: "123456789"})
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
	_, err = f.verify(Attempt{DeviceID: "nosuch", PIN: "123456789", BirthDate: "1990-01-01"})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	recs, err := audit.List(context.Background(), f.pool, audit.ListOptions{Subject: "device:nosuch"})
	require.NoError(t, err)
	require.Len(t, recs, 1, "attempts at unknown devices are audited too")
	require.Equal(t, "code.denied", recs[0].Action)
	require.NotContains(t, string(recs[0].Details), "123456789")
}

// The per-device limit refuses the next attempt even with the right PIN and
// date, leaves QR codes working, and lifts after the lockout.
func TestDeviceBurstLockout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("eid", "l1", 1)
	_, _, qr := f.issue("driving_licence", "l1", 2)
	for i := 0; i < pickupcode.DeviceMaxFailures; i++ {
		_, err := f.verify(Attempt{DeviceID: "l1", PIN: wrongPIN(cr.PIN), BirthDate: "1990-02-28"})
		require.ErrorIs(t, err, pickupcode.ErrWrongCode)
		f.clock.Add(time.Minute)
	}
	f.mu.Lock()
	require.Equal(t, []string{"l1"}, f.lockout, "the alarm fires once")
	f.mu.Unlock()
	_, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrDeviceLockedOut)
	var d *Denial
	require.True(t, errors.As(err, &d))
	require.False(t, d.LockedUntil.IsZero())
	until, err := f.svc.LockedUntil(context.Background(), "l1")
	require.NoError(t, err)
	require.Equal(t, d.LockedUntil, until)

	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: qr.QRToken})
	require.NoError(t, err, "QR codes still work during a PIN lockout")
	_, err = f.verify(Attempt{DeviceID: "l2", PIN: wrongPIN(cr.PIN), BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "other devices are not locked")

	f.clock.Set(until)
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.NoError(t, err)
	require.Equal(t, 1.0, testutil.ToFloat64(f.svc.lockouts))

	recs, err := audit.List(context.Background(), f.pool, audit.ListOptions{Subject: "device:l1"})
	require.NoError(t, err)
	var locked int
	for _, r := range recs {
		if r.Action == "device.pin_locked" {
			locked++
		}
	}
	require.Equal(t, 1, locked)
}

// Staff lift a burst lockout (issue 10): the right PIN works at once, the
// next mistyped PIN does not lock the device again (the failures before
// the lift no longer count towards a burst), five new ones do; the lift is
// audited with who and why.
func TestClearBurstLock(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("eid", "l1", 1)
	_, _, cr2 := f.issue("eid", "l1", 2)
	clear := func() bool {
		var was bool
		require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
			var err error
			was, err = f.svc.ClearBurstLock(context.Background(), tx, "l1", "user:7", "citizen at the counter")
			return err
		}))
		return was
	}
	require.False(t, clear(), "nothing to lift")
	f.clock.Add(time.Second)
	for i := 0; i < pickupcode.DeviceMaxFailures; i++ {
		_, err := f.verify(Attempt{DeviceID: "l1", PIN: wrongPIN(cr.PIN), BirthDate: "1990-02-28"})
		require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	}
	_, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrDeviceLockedOut)
	require.True(t, clear())
	until, err := f.svc.LockedUntil(context.Background(), "l1")
	require.NoError(t, err)
	require.True(t, until.IsZero(), "open again")

	f.clock.Add(time.Second)
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: wrongPIN(cr.PIN), BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "one mistyped PIN after the lift")
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.NoError(t, err, "does not lock the device again")
	for i := 0; i < pickupcode.DeviceMaxFailures-1; i++ { // with the one above: a burst
		f.clock.Add(time.Second)
		_, err := f.verify(Attempt{DeviceID: "l1", PIN: wrongPIN(cr2.PIN), BirthDate: "1990-02-28"})
		require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	}
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr2.PIN, BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrDeviceLockedOut, "a new burst after the lift locks again")

	recs, err := audit.List(context.Background(), f.pool, audit.ListOptions{Subject: "device:l1"})
	require.NoError(t, err)
	var unlocked []string
	for _, r := range recs {
		if r.Action == "device.pin_unlocked" {
			require.Equal(t, "user:7", r.Actor)
			unlocked = append(unlocked, string(r.Details))
		}
	}
	require.Len(t, unlocked, 2)
	require.Contains(t, unlocked[1], "citizen at the counter")
	require.Contains(t, unlocked[1], `"was_locked":true`)
}

// The daily cap holds even when failures are spread to dodge the burst
// limit, and staff cannot lift it.
func TestDeviceDailyCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("eid", "l1", 1)
	first := f.clock.Now()
	for i := 0; i < pickupcode.DailyMaxFailures; i++ {
		_, err := f.verify(Attempt{DeviceID: "l1", PIN: wrongPIN(cr.PIN), BirthDate: "1990-02-28"})
		require.ErrorIs(t, err, pickupcode.ErrWrongCode, "failure %d", i+1)
		f.clock.Add(pickupcode.DeviceWindow + time.Second)
	}
	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		_, err := f.svc.ClearBurstLock(context.Background(), tx, "l1", "user:1", "citizen at the counter")
		return err
	}))
	_, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.ErrorIs(t, err, pickupcode.ErrDeviceLockedOut)
	f.clock.Set(first.Add(pickupcode.DailyWindow))
	_, err = f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN, BirthDate: "1990-02-28"})
	require.NoError(t, err)
}

func TestConcurrentVerifyOneWinner(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("driving_licence", "l1", 7)
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
		errs []error
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, wins)
	for _, err := range errs {
		require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected)
	}
}

func TestMaxActiveCodesAndUniquePINs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pins := map[string]bool{}
	for n := 1; n <= pickupcode.MaxActiveCodesPerDevice; n++ {
		_, _, cr := f.issue("driving_licence", "l1", n)
		require.False(t, pins[cr.PIN])
		pins[cr.PIN] = true
	}
	doc, c := f.document("driving_licence", "l2", 1)
	_, err := f.svc.Issue(context.Background(), nil, IssueRequest{}) // validation comes first: no tx needed
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
	// One more code on l1 is refused: the bound assumes at most 48.
	err = pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		_, err := f.svc.Issue(context.Background(), tx, IssueRequest{DocumentID: doc, DocumentKind: "driving_licence",
			DeviceID: "l1", Compartment: Compartment{ID: c.ID, Number: 49, Board: 3, Channel: 0}, ExpiresAt: t0.Add(time.Hour)})
		return err
	})
	require.ErrorIs(t, err, ErrTooManyCodes)
	require.ErrorIs(t, err, store.ErrConflict, "a 409 at the API, never a 500")
}

func TestOfflineBundle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	docA, _, a := f.issue("kids_id", "l1", 1)
	_, _, b := f.issue("driving_licence", "l1", 2)
	_, _, used := f.issue("driving_licence", "l1", 3)
	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: used.QRToken})
	require.NoError(t, err)
	entries, err := f.svc.OfflineBundle(context.Background(), "l1")
	require.NoError(t, err)
	require.Len(t, entries, 2)
	raw, err := json.Marshal(entries)
	require.NoError(t, err)
	require.NotContains(t, string(raw), a.PIN)
	require.NotContains(t, string(raw), b.PIN)

	now := f.clock.Now()
	e, err := pickupcode.VerifyOffline(entries, pickupcode.OfflineAttempt{DeviceID: "l1", PIN: a.PIN, BirthDate: "1990-02-28"}, now)
	require.NoError(t, err)
	require.Equal(t, docA, e.DocumentID)
	require.Equal(t, a.CodeID, e.CodeID)
	require.True(t, e.NeedsDOB)
	_, err = pickupcode.VerifyOffline(entries, pickupcode.OfflineAttempt{DeviceID: "l1", PIN: a.PIN, BirthDate: "1990-02-27"}, now)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	_, err = pickupcode.VerifyOffline(entries, pickupcode.OfflineAttempt{DeviceID: "l1", PIN: a.PIN}, now)
	require.ErrorIs(t, err, pickupcode.ErrSecondFactorRequired)
	e, err = pickupcode.VerifyOffline(entries, pickupcode.OfflineAttempt{DeviceID: "l1", PIN: b.PIN, BirthDate: "2001-01-01"}, now)
	require.NoError(t, err, "no date check for a driving licence")
	require.Equal(t, 2, e.CompartmentNumber)
	_, err = pickupcode.VerifyOffline(entries, pickupcode.OfflineAttempt{DeviceID: "l2", PIN: b.PIN, BirthDate: "2001-01-01"}, now)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "verifiers are bound to the device")
	_, err = pickupcode.VerifyOffline(entries, pickupcode.OfflineAttempt{DeviceID: "l1", PIN: b.PIN, BirthDate: "2001-01-01"}, now.Add(8*24*time.Hour))
	require.ErrorIs(t, err, pickupcode.ErrExpired)
	_, err = pickupcode.VerifyOffline(entries, pickupcode.OfflineAttempt{DeviceID: "l1", PIN: "x", BirthDate: "2001-01-01"}, now)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)

	_, err = f.svc.OfflineBundle(context.Background(), "Bad Id")
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
	require.True(t, strings.HasPrefix(testArgon.String(), "t=1"))
}

// Wrong PINs sent at once to one device count exactly: each attempt reads
// the device's failures after taking its lock (the reads go in one
// pipeline with the lock), so no more than the burst limit are judged and
// the lockout starts once.
func TestConcurrentWrongPINsCountExactly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("eid", "l1", 1)
	// The device's row exists before the burst (made on a first attempt).
	_, err := f.verify(Attempt{DeviceID: "l1", PIN: cr.PIN})
	require.ErrorIs(t, err, pickupcode.ErrSecondFactorRequired)
	n := pickupcode.DeviceMaxFailures + 4
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.verify(Attempt{DeviceID: "l1", PIN: wrongPIN(cr.PIN), BirthDate: "1990-02-28"})
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
		}()
	}
	wg.Wait()
	var wrong, locked int
	for _, err := range errs {
		switch {
		case errors.Is(err, pickupcode.ErrWrongCode):
			wrong++
		case errors.Is(err, pickupcode.ErrDeviceLockedOut):
			locked++
		default:
			t.Fatalf("unexpected result %v", err)
		}
	}
	require.Equal(t, pickupcode.DeviceMaxFailures, wrong)
	require.Equal(t, n-pickupcode.DeviceMaxFailures, locked)
	f.mu.Lock()
	require.Equal(t, []string{"l1"}, f.lockout, "the alarm fires once")
	f.mu.Unlock()
}

// A code used is logged at debug only (its audit row code.used and
// kluis_codes_verifications_total{reason="ok"} record it;
// docs/performance.md, "Sixteenth pass"); a denial at info, as before.
func TestCodeUsedLoggedAtDebugDenialAtInfo(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var logs strings.Builder
	var mu sync.Mutex
	level := new(slog.LevelVar) // info
	f.svc.log = slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(b)
	}), &slog.HandlerOptions{Level: level}))
	read := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }

	doc, _, cr := f.issue("passport", "l1", 4)
	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.NoError(t, err)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected)
	require.Contains(t, read(), `level=INFO msg="code denied" device=l1 method=qr reason=already_collected`)
	require.NotContains(t, read(), "code used", "an ok is not logged at info")
	_, err = audit.Chain(context.Background(), f.pool) // the records reach audit_log through the chain
	require.NoError(t, err)
	var used int
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'code.used'
		AND subject = 'document:' || $1 AND details->>'device' = 'l1' AND details->>'method' = 'qr' AND details->>'code_id' = $2`,
		doc, cr.CodeID).Scan(&used))
	require.Equal(t, 1, used, "the audit row records it")
	require.Equal(t, 1.0, testutil.ToFloat64(f.svc.verified.WithLabelValues("ok")), "the metric counts it")

	level.Set(slog.LevelDebug)
	doc2, _, cr2 := f.issue("passport", "l1", 5)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr2.QRToken})
	require.NoError(t, err)
	require.Contains(t, read(), `level=DEBUG msg="code used" device=l1 method=qr document=`+doc2+` code_id=`+cr2.CodeID)
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(b []byte) (int, error) { return w(b) }
