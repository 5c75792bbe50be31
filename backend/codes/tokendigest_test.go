package codes

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/controller/pickupcode"
)

// storedDigest returns the token digest kept in code cid's row (nil: none).
func (f *fixture) storedDigest(cid string) []byte {
	f.t.Helper()
	id, err := pickupcode.ParseCodeID(cid)
	require.NoError(f.t, err)
	var d []byte
	require.NoError(f.t, f.pool.QueryRow(context.Background(), `SELECT token_digest FROM codes WHERE id = $1`, id).Scan(&d))
	return d
}

// setDigest writes d (nil: NULL) into code cid's row.
func (f *fixture) setDigest(cid string, d []byte) {
	f.t.Helper()
	id, err := pickupcode.ParseCodeID(cid)
	require.NoError(f.t, err)
	_, err = f.pool.Exec(context.Background(), `UPDATE codes SET token_digest = $2 WHERE id = $1`, id, d)
	require.NoError(f.t, err)
}

// lastAttempt is the newest code_attempts row: its reason and whether it
// names a code.
func (f *fixture) lastAttempt() (reason string, withCode bool) {
	f.t.Helper()
	require.NoError(f.t, f.pool.QueryRow(context.Background(),
		`SELECT reason, code_id IS NOT NULL FROM code_attempts ORDER BY id DESC LIMIT 1`).Scan(&reason, &withCode))
	return reason, withCode
}

// lastDenial is the newest code.denied audit record's subject and details
// (waiting for the chain or chained).
func (f *fixture) lastDenial() (subject string, details map[string]any) {
	f.t.Helper()
	var raw string
	require.NoError(f.t, f.pool.QueryRow(context.Background(), `SELECT subject, details::text FROM (
		SELECT subject, details, at, 1 AS o, id FROM audit_pending WHERE action = 'code.denied'
		UNION ALL SELECT subject, details, at, 0, seq FROM audit_log WHERE action = 'code.denied') r
		ORDER BY o DESC, id DESC LIMIT 1`).Scan(&subject, &raw))
	require.NoError(f.t, json.Unmarshal([]byte(raw), &details))
	return subject, details
}

// fixtureVerifying is a fixture whose service verifies QR tokens in
// batches (mode "batched") or each alone ("alone": no batcher).
func fixtureVerifying(t *testing.T, mode string) *fixture {
	t.Helper()
	f := newFixture(t)
	if mode == "alone" {
		svc, err := New(Options{Pool: f.pool, Keys: f.keys, Argon: testArgon, Clock: f.clock.Now, VerifyBatch: 1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		require.Nil(t, svc.batch)
		f.svc = svc
	}
	return f
}

// otherKeysToken is a forged token for the code of token (for l1): the
// same claims, well-formed, signed by another key.
func (f *fixture) otherKeysToken(token string) string {
	f.t.Helper()
	claims, err := pickupcode.VerifyToken(f.keys.Public(), token, "l1", f.clock.Now())
	require.NoError(f.t, err)
	other, err := GenerateKeys()
	require.NoError(f.t, err)
	forged, err := pickupcode.SignToken(other.Signing, claims)
	require.NoError(f.t, err)
	return forged
}

// TestIssueKeepsATokenDigest: a code's row keeps Keys.TokenDigest of its
// QR token (HMAC-SHA256 under a key derived from the signing key), never
// the token; a re-issue's new code keeps its own.
func TestIssueKeepsATokenDigest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	doc, c, cr := f.issue("driving_licence", "l1", 3)
	d := f.storedDigest(cr.CodeID)
	require.Len(t, d, 32)
	require.Equal(t, f.keys.TokenDigest(cr.QRToken), d)

	other, err := GenerateKeys()
	require.NoError(t, err)
	other.PIN = f.keys.PIN
	require.NotEqual(t, d, other.TokenDigest(cr.QRToken), "keyed by the signing key")
	rotated := Keys{Signing: f.keys.Signing, PIN: make([]byte, 32), PreviousPIN: f.keys.PIN}
	require.Equal(t, d, rotated.TokenDigest(cr.QRToken), "a PIN key rotation leaves the digests alone")

	var dump string
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT string_agg(row_to_json(c)::text, '') FROM codes c`).Scan(&dump))
	sig := cr.QRToken[strings.LastIndexByte(cr.QRToken, '.')+1:]
	require.NotContains(t, dump, sig, "the token is not stored")

	var cr2 Credentials
	require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		var err error
		cr2, err = f.svc.Issue(context.Background(), tx, IssueRequest{DocumentID: doc, DocumentKind: "driving_licence",
			DeviceID: "l1", Compartment: c, ExpiresAt: f.clock.Now().Add(24 * time.Hour)})
		return err
	}))
	require.Equal(t, f.keys.TokenDigest(cr2.QRToken), f.storedDigest(cr2.CodeID), "a re-issue's code")
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "the re-issue revoked the first code")
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr2.QRToken})
	require.NoError(t, err)
}

// TestTokenCheckedByItsDigest: online, a token is checked against its
// code's digest instead of its signature, and every token that is not the
// one issued for the code it names answers wrong_code, recorded and
// audited without the code, as when its signature was checked first:
// never wrong_device or expired, and the code stays unused. Both ways a
// verification goes: in a batch and alone.
func TestTokenCheckedByItsDigest(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"batched", "alone"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := fixtureVerifying(t, mode)
			_, _, cr := f.issue("driving_licence", "l1", 3)
			_, _, cr2 := f.issue("driving_licence", "l1", 4)
			claims, err := pickupcode.VerifyToken(f.keys.Public(), cr.QRToken, "l1", f.clock.Now())
			require.NoError(t, err)

			otherKeys, err := GenerateKeys()
			require.NoError(t, err)
			signOther := func(c pickupcode.Claims) string {
				tok, err := pickupcode.SignToken(otherKeys.Signing, c)
				require.NoError(t, err)
				return tok
			}
			parts := strings.Split(cr.QRToken, ".")
			flipSig := []byte(parts[2])
			flipSig[20] = map[bool]byte{true: 'B', false: 'A'}[flipSig[20] == 'A']
			payload, err := base64.RawURLEncoding.DecodeString(parts[1])
			require.NoError(t, err)
			later := strings.Replace(string(payload), `"exp":`, `"exp":1`, 1) // a later expiry under the real signature
			require.NotEqual(t, string(payload), later)
			expired := claims
			expired.Expires = f.clock.Now().Add(-time.Hour).Unix()
			onL2 := claims
			onL2.DeviceID = "l2"

			refused := func(name, dev, tok string) {
				t.Helper()
				_, err := f.verify(Attempt{DeviceID: dev, QRToken: tok})
				require.ErrorIs(t, err, pickupcode.ErrWrongCode, name)
				reason, withCode := f.lastAttempt()
				require.Equal(t, "wrong_code", reason, name)
				require.False(t, withCode, "%s: the attempt names no code", name)
				subject, details := f.lastDenial()
				require.Equal(t, "device:"+dev, subject, name)
				require.NotContains(t, details, "code_id", name)
			}
			refused("a flipped byte of the signature", "l1", parts[0]+"."+parts[1]+"."+string(flipSig))
			refused("another payload under the real signature", "l1",
				parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(later))+"."+parts[2])
			refused("the same claims signed by another key", "l1", signOther(claims))
			refused("an expired token signed by another key", "l1", signOther(expired))
			refused("another key's token for l2, at l2", "l2", signOther(onL2))
			refused("another key's token for l2, at l1", "l1", signOther(onL2))
			refused("another code's token with this code's id", "l1",
				strings.Replace(cr2.QRToken, strings.Split(cr2.QRToken, ".")[1], parts[1], 1))

			// The row keeps another code's digest: its own token is refused,
			// the other code's token is not it either.
			f.setDigest(cr.CodeID, f.storedDigest(cr2.CodeID))
			refused("the real token against another code's digest", "l1", cr.QRToken)
			f.setDigest(cr.CodeID, f.keys.TokenDigest(cr.QRToken))

			// A malformed token is refused before any database.
			for _, bad := range []string{"K1.not-a-token", cr.QRToken + "x", cr.QRToken[:len(cr.QRToken)-2]} {
				look := f.svc.lookup(Attempt{DeviceID: "l1", QRToken: bad}, "qr", f.clock.Now())
				require.NotNil(t, look.early, bad)
				require.Empty(t, look.sql, "%s: no code read", bad)
				refused("malformed", "l1", bad)
			}
			// The real token at another device: wrong_device, decided by its
			// signature before any code is read, as before.
			look := f.svc.lookup(Attempt{DeviceID: "l2", QRToken: cr.QRToken}, "qr", f.clock.Now())
			require.NotNil(t, look.early)
			require.ErrorIs(t, look.early.err, pickupcode.ErrWrongDevice)
			_, err = f.verify(Attempt{DeviceID: "l2", QRToken: cr.QRToken})
			require.ErrorIs(t, err, pickupcode.ErrWrongDevice)

			used, _, _ := f.counts("")
			require.Zero(t, used, "nothing refused was claimed")
			res, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
			require.NoError(t, err)
			require.Equal(t, cr.CodeID, res.CodeID)
			_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
			require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected, "single use")

			// The digest decides, then the expiry: the real token after its
			// expiry answers expired.
			f.clock.Add(8 * 24 * time.Hour)
			_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr2.QRToken})
			require.ErrorIs(t, err, pickupcode.ErrExpired)
			f.chainIntact()
		})
	}
}

// TestTokenOfACodeWithoutDigest: a code issued before migration 0217 has
// no token digest; its token is checked by its signature, as before: the
// real token opens, a forged one answers wrong_code.
func TestTokenOfACodeWithoutDigest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, _, cr := f.issue("driving_licence", "l1", 3)
	_, _, cr2 := f.issue("driving_licence", "l1", 4)
	f.setDigest(cr.CodeID, nil)
	f.setDigest(cr2.CodeID, nil)
	forged := f.otherKeysToken(cr.QRToken)

	_, err := f.verify(Attempt{DeviceID: "l1", QRToken: forged})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	reason, withCode := f.lastAttempt()
	require.Equal(t, "wrong_code", reason)
	require.False(t, withCode)
	_, err = f.verify(Attempt{DeviceID: "l2", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrWrongDevice)

	res, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.NoError(t, err)
	require.Equal(t, cr.CodeID, res.CodeID)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected)

	f.clock.Add(8 * 24 * time.Hour)
	_, err = f.verify(Attempt{DeviceID: "l1", QRToken: cr2.QRToken})
	require.ErrorIs(t, err, pickupcode.ErrExpired, "its signature holds, then its expiry counts")
	f.chainIntact()
}

// BenchmarkTokenCheck: the online check of a token in the process, by
// signing it again (what a code without a digest still gets) against
// reading its claims and comparing its digest (the database read is the
// same either way).
func BenchmarkTokenCheck(b *testing.B) {
	keys, err := GenerateKeys()
	require.NoError(b, err)
	now := time.Unix(1_800_000_000, 0)
	tok, err := pickupcode.SignToken(keys.Signing, pickupcode.Claims{Version: 1,
		CodeID: pickupcode.FormatCodeID(make([]byte, 16)), DeviceID: "kortrijk-l1", Expires: now.Unix() + 3600})
	require.NoError(b, err)
	s := &Service{tokenKey: keys.TokenDigestKey()}
	stored := keys.TokenDigest(tok)
	b.Run("signature", func(b *testing.B) {
		for b.Loop() {
			if _, err := pickupcode.VerifyOwnToken(keys.Signing, tok, "kortrijk-l1", now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("digest", func(b *testing.B) {
		for b.Loop() {
			c, err := pickupcode.ParseUnverifiedToken(tok)
			if err != nil || c.Check("kortrijk-l1", now) != nil || !sameDigest(s.tokenDigest(tok), stored) {
				b.Fatal("refused")
			}
		}
	})
}

// TestForgedTokenLocksNoCode: a well-formed token for this device whose
// digest is not its code's neither takes nor waits for the code's row
// lock: while a genuine claim of the code holds the row, the forged token
// is refused (wrong_code, without the code) at once instead of waiting
// behind it, and a genuine claim never waits for a forger. Two genuine
// claims at once still give exactly one ok. Both ways a verification
// goes: in a batch and alone.
func TestForgedTokenLocksNoCode(t *testing.T) {
	bothWays(t, func(t *testing.T, f *fixture) {
		_, _, cr := f.issue("driving_licence", "l1", 3)
		forged := f.otherKeysToken(cr.QRToken)
		id, err := pickupcode.ParseCodeID(cr.CodeID)
		require.NoError(t, err)

		// The code's row held as a genuine claim holds it.
		ctx := context.Background()
		holder, err := f.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = holder.Rollback(ctx) }()
		_, err = holder.Exec(ctx, `SELECT 1 FROM codes WHERE id = $1 FOR NO KEY UPDATE`, id)
		require.NoError(t, err)

		vctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := f.svc.Verify(vctx, Attempt{DeviceID: "l1", QRToken: forged})
			done <- err
		}()
		deadline := time.Now().Add(30 * time.Second)
		var verr error
		for answered := false; !answered; {
			select {
			case verr = <-done:
				answered = true
			case <-time.After(20 * time.Millisecond):
				if f.rowWaits() > 0 {
					cancel()
					<-done
					t.Fatal("the forged token waits for its code's row lock")
				}
				require.True(t, time.Now().Before(deadline), "the forged token was not answered")
			}
		}
		require.ErrorIs(t, verr, pickupcode.ErrWrongCode)
		reason, withCode := f.lastAttempt()
		require.Equal(t, "wrong_code", reason)
		require.False(t, withCode)
		require.NoError(t, holder.Rollback(ctx))

		// Two genuine claims at once: exactly one ok.
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := f.verify(Attempt{DeviceID: "l1", QRToken: cr.QRToken})
				errs <- err
			}()
		}
		e1, e2 := <-errs, <-errs
		require.True(t, (e1 == nil) != (e2 == nil), "exactly one claim: %v, %v", e1, e2)
		if e1 != nil {
			e1, e2 = e2, e1
		}
		require.ErrorIs(t, e2, pickupcode.ErrAlreadyCollected)
		f.chainIntact()
	})
}

// bothWays runs test in parallel on a fixture verifying in batches and
// on one verifying each attempt alone.
func bothWays(t *testing.T, test func(t *testing.T, f *fixture)) {
	t.Parallel()
	for _, mode := range []string{"batched", "alone"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			test(t, fixtureVerifying(t, mode))
		})
	}
}
