package pickupcode

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return pub, priv
}

func TestTokenRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	c := Claims{CodeID: FormatCodeID(bytes.Repeat([]byte{7}, 16)), DeviceID: "kortrijk-l1", Expires: now.Add(time.Hour).Unix()}
	tok, err := SignToken(priv, c)
	require.NoError(t, err)
	require.True(t, LooksLikeToken(tok))
	require.Less(t, len(tok), 220, "token must fit a small QR code")

	got, err := VerifyToken(pub, tok, "kortrijk-l1", now)
	require.NoError(t, err)
	require.Equal(t, c.CodeID, got.CodeID)
	require.Equal(t, 1, got.Version)

	_, err = VerifyToken(pub, tok, "kortrijk-l2", now)
	require.ErrorIs(t, err, ErrWrongDevice)
	_, err = VerifyToken(pub, tok, "kortrijk-l1", now.Add(time.Hour))
	require.ErrorIs(t, err, ErrExpired)

	otherPub, otherPriv := newKey(t)
	_, err = VerifyToken(otherPub, tok, "kortrijk-l1", now)
	require.ErrorIs(t, err, ErrWrongCode)

	// Changing the payload (another device) breaks the signature.
	parts := strings.Split(tok, ".")
	forged, _ := SignToken(otherPriv, Claims{CodeID: c.CodeID, DeviceID: "kortrijk-l2", Expires: c.Expires})
	fp := strings.Split(forged, ".")
	_, err = VerifyToken(pub, parts[0]+"."+fp[1]+"."+parts[2], "kortrijk-l2", now)
	require.ErrorIs(t, err, ErrWrongCode)

	// Other spellings of the same bytes: a line break, a changed unused bit.
	last := tok[len(tok)-1]
	alt := tok[:len(tok)-1] + string(last^1)
	for _, bad := range []string{"", "K1.", "K1..", "K1.abc.def", "X1.a.b", strings.Repeat("K1.", 300), tok + "x",
		tok[:10] + "\n" + tok[10:], alt} {
		_, err := VerifyToken(pub, bad, "kortrijk-l1", now)
		require.ErrorIs(t, err, ErrWrongCode, bad)
	}
	_, err = VerifyToken(ed25519.PublicKey{1}, tok, "kortrijk-l1", now)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = SignToken(ed25519.PrivateKey{1}, c)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = SignToken(priv, Claims{DeviceID: "kortrijk-l1", Expires: c.Expires})
	require.ErrorIs(t, err, ErrInvalid)

	// A token signed over a malformed code id is refused all the same.
	short, err := SignToken(priv, Claims{CodeID: "c2hvcnQ", DeviceID: "kortrijk-l1", Expires: c.Expires})
	require.NoError(t, err)
	_, err = VerifyToken(pub, short, "kortrijk-l1", now)
	require.ErrorIs(t, err, ErrWrongCode)
}

// A signed message of one kind never passes for another: the prefix is
// signed, so a door command (say "D1.") cannot be replayed as a QR token.
func TestSignedMessagesAreBoundToTheirPrefix(t *testing.T) {
	pub, priv := newKey(t)
	msg, err := Sign(priv, "D1.", []byte(`{"v":1,"cid":"x","dev":"kortrijk-l1","exp":1}`))
	require.NoError(t, err)
	p, err := Open(pub, "D1.", msg, 512)
	require.NoError(t, err)
	require.JSONEq(t, `{"v":1,"cid":"x","dev":"kortrijk-l1","exp":1}`, string(p))

	relabelled := TokenPrefix + strings.TrimPrefix(msg, "D1.")
	_, err = Open(pub, TokenPrefix, relabelled, 512)
	require.ErrorIs(t, err, ErrBadSignature)
	_, err = VerifyToken(pub, relabelled, "kortrijk-l1", time.Unix(0, 0))
	require.ErrorIs(t, err, ErrWrongCode)
	_, err = Open(pub, "D1.", msg, len(msg)-1)
	require.ErrorIs(t, err, ErrBadSignature, "longer than maxLen")
	_, err = Sign(priv, "D1", []byte("x"))
	require.ErrorIs(t, err, ErrInvalid, "a prefix ends with a dot")
	_, err = Sign(priv, "D1.", nil)
	require.ErrorIs(t, err, ErrInvalid)
}

// tokenFuzzSeed is a key, a token it signed for device d1 valid at now,
// and the seed corpus (that token, a malformed one) of the token fuzzers.
func tokenFuzzSeed(f *testing.F) (ed25519.PublicKey, ed25519.PrivateKey, string, time.Time) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok, _ := SignToken(priv, Claims{CodeID: FormatCodeID(make([]byte, 16)), DeviceID: "d1", Expires: now.Unix() + 60})
	f.Add(tok)
	f.Add("K1.e30.AAAA")
	return pub, priv, tok, now
}

func FuzzVerifyToken(f *testing.F) {
	pub, _, tok, now := tokenFuzzSeed(f)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := VerifyToken(pub, s, "d1", now)
		if err == nil && s != tok {
			t.Fatalf("accepted a token that was not signed: %q (%+v)", s, c)
		}
	})
}

func TestPublicKeyAndCodeIDForms(t *testing.T) {
	pub, _ := newKey(t)
	got, err := ParsePublicKey(" " + FormatPublicKey(pub) + "\n")
	require.NoError(t, err)
	require.Equal(t, pub, got)
	for _, bad := range []string{"", "not base64!", "c2hvcnQ="} {
		_, err := ParsePublicKey(bad)
		require.ErrorIs(t, err, ErrInvalid, bad)
	}
	id := bytes.Repeat([]byte{0xfb}, CodeIDSize)
	back, err := ParseCodeID(FormatCodeID(id))
	require.NoError(t, err)
	require.Equal(t, id, back)
	_, err = ParseCodeID(FormatCodeID(id[:15]))
	require.ErrorIs(t, err, ErrInvalid)
	require.NotEqual(t, QRHash("a"), QRHash("b"))
	require.Len(t, QRHash(FormatCodeID(id)), 43, "base64url of 32 bytes")
}

func TestPINHelpers(t *testing.T) {
	p, err := NormalizePIN(" 123 456-789 ", 9)
	require.NoError(t, err)
	require.Equal(t, "123456789", p)
	p, err = NormalizePIN("123.456.789", 9)
	require.NoError(t, err)
	require.Equal(t, "123456789", p)
	for _, bad := range []string{"", "12345678", "1234567890", "12345678a", "１２３４５６７８９", strings.Repeat("1", 100)} {
		_, err := NormalizePIN(bad, 9)
		require.ErrorIs(t, err, ErrWrongCode, bad)
	}
	d, err := ParseBirthDate("1990-2-28")
	require.ErrorIs(t, err, ErrInvalid, "only YYYY-MM-DD")
	require.Empty(t, d)
	require.NotContains(t, err.Error(), "1990", "a date of birth is personal data: not in errors (logs)")
	d, err = ParseBirthDate(" 1990-02-28 ")
	require.NoError(t, err)
	require.Equal(t, "1990-02-28", d)
}

func TestReasonMapping(t *testing.T) {
	cases := map[error]string{
		nil: "ok", ErrWrongCode: "wrong_code", ErrExpired: "expired", ErrAlreadyCollected: "already_collected",
		ErrDeviceLockedOut: "device_locked_out", ErrSecondFactorRequired: "second_factor_required",
		ErrWrongDevice: "wrong_device", ErrCodeLocked: "code_locked", ErrInvalid: "invalid", errors.New("x"): "error",
	}
	for err, want := range cases {
		require.Equal(t, want, Reason(err))
	}
}

func TestLimiterBurstAndDailyCap(t *testing.T) {
	cfg := DefaultConfig()
	t0 := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	l := NewLimiter(Config{}, LimiterState{})
	now := t0
	for i := 1; i < DeviceMaxFailures; i++ {
		require.True(t, l.Fail(now).IsZero(), "failure %d must not lock", i)
		now = now.Add(time.Minute)
	}
	until := l.Fail(now)
	require.Equal(t, now.Add(DeviceLockout), until, "the burst limit locks")
	require.Equal(t, until, l.LockedUntil(now.Add(DeviceLockout-time.Second)))
	require.True(t, l.LockedUntil(now.Add(DeviceLockout)).IsZero())

	// Daily cap: failures spaced wider than the burst window.
	l = NewLimiter(cfg, LimiterState{})
	now = t0
	first := now
	for i := 1; i <= DailyMaxFailures; i++ {
		u := l.Fail(now)
		if i < DailyMaxFailures {
			require.True(t, u.IsZero(), "failure %d", i)
			now = now.Add(DeviceWindow + time.Second)
		} else {
			require.Equal(t, first.Add(DailyWindow), u)
		}
	}
	require.False(t, l.LockedUntil(first.Add(DailyWindow-time.Second)).IsZero())
	require.True(t, l.LockedUntil(first.Add(DailyWindow)).IsZero())

	// The state survives a restart.
	l2 := NewLimiter(cfg, l.State())
	require.Equal(t, l.LockedUntil(now), l2.LockedUntil(now))
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	require.Equal(t, DefaultConfig(), Config{}.WithDefaults())
	require.NoError(t, DefaultConfig().Validate())
	c := DefaultConfig()
	c.PINDigits = 5
	require.ErrorIs(t, c.Validate(), ErrInvalid)
	c = DefaultConfig()
	c.DeviceWindow = -time.Second
	require.ErrorIs(t, c.Validate(), ErrInvalid)
	require.True(t, DefaultConfig().NeedsDOB("eid"))
	require.False(t, DefaultConfig().NeedsDOB("driving_licence"))
}

// Staff lift the burst lock: the failures before it no longer count towards
// the next burst, but still towards the daily cap, which stays.
func TestLimiterClearBurstKeepsDailyCap(t *testing.T) {
	cfg := DefaultConfig()
	t0 := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	l := NewLimiter(cfg, LimiterState{})
	now := t0
	for i := 0; i < DeviceMaxFailures; i++ {
		l.Fail(now)
	}
	require.False(t, l.LockedUntil(now).IsZero())
	require.True(t, l.ClearBurst(now), "a burst lock was in force")
	require.True(t, l.LockedUntil(now).IsZero(), "lifted")
	now = now.Add(time.Second)
	require.True(t, l.Fail(now).IsZero(), "the first mistake after the lift does not lock again")
	require.False(t, l.ClearBurst(now), "nothing to lift")
	st := l.State()
	require.Len(t, st.Failures, DeviceMaxFailures+1, "the lifted failures still count for the daily cap")
	require.Equal(t, now, st.BurstClearedAt)

	// The daily cap survives a lift.
	l = NewLimiter(cfg, LimiterState{})
	now = t0
	for i := 0; i < DailyMaxFailures; i++ {
		l.Fail(now)
		now = now.Add(DeviceWindow + time.Second)
	}
	l.ClearBurst(now)
	require.Equal(t, t0.Add(DailyWindow), l.LockedUntil(now), "nobody lifts the daily cap")

	// Lock follows the backend's answer and says whether it started a lock.
	l = NewLimiter(cfg, LimiterState{})
	require.True(t, l.Lock(t0, t0.Add(time.Minute)))
	require.False(t, l.Lock(t0, t0.Add(2*time.Minute)), "already locked")
	require.Equal(t, t0.Add(2*time.Minute), l.LockedUntil(t0))
}

// A device whose clock is set back (no real-time clock, power cut) keeps
// counting the failures it recorded "in the future".
func TestLimiterClockSetBack(t *testing.T) {
	cfg := DefaultConfig()
	t0 := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	l := NewLimiter(cfg, LimiterState{})
	for i := 0; i < DeviceMaxFailures-1; i++ {
		require.True(t, l.Fail(t0.Add(time.Duration(i)*time.Second)).IsZero())
	}
	back := t0.Add(-time.Hour)
	l = NewLimiter(cfg, l.State())
	require.False(t, l.Fail(back).IsZero(), "the fifth failure locks although the clock went back an hour")

	// The daily cap, too: fifty failures, then every reboot sets the clock
	// back to the same saved time.
	l = NewLimiter(cfg, LimiterState{})
	for i := 0; i < DailyMaxFailures; i++ {
		l.Fail(t0.Add(time.Duration(i) * (DeviceWindow + time.Second)))
	}
	require.False(t, NewLimiter(cfg, l.State()).LockedUntil(t0).IsZero())
}

func TestCheckBound(t *testing.T) {
	require.NoError(t, DefaultConfig().CheckBound())
	c := DefaultConfig()
	c.DailyMaxFailures = 69 // (30*69+1) * 48 / 10^9 = 9.94e-5
	require.NoError(t, c.CheckBound())
	c.DailyMaxFailures = 70
	require.ErrorIs(t, c.CheckBound(), ErrInvalid)
	require.ErrorContains(t, c.CheckBound(), "1.01e-04")
	c = DefaultConfig()
	c.DailyWindow = 12 * time.Hour // twice the windows in 30 days
	require.ErrorIs(t, c.CheckBound(), ErrInvalid)
	c = DefaultConfig()
	c.DailyMaxFailures = 0
	require.ErrorIs(t, c.CheckBound(), ErrInvalid)
}
