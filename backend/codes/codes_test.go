package codes

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTokenRoundTrip(t *testing.T) {
	k, err := GenerateKeys()
	require.NoError(t, err)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	c := Claims{CodeID: encodeB64(bytes.Repeat([]byte{7}, 16)), DeviceID: "kortrijk-l1", Expires: now.Add(time.Hour).Unix()}
	tok, err := SignToken(k.Signing, c)
	require.NoError(t, err)
	require.True(t, LooksLikeToken(tok))
	require.Less(t, len(tok), 220, "token must fit a small QR code")

	got, err := VerifyToken(k.Public(), tok, "kortrijk-l1", now)
	require.NoError(t, err)
	require.Equal(t, c.CodeID, got.CodeID)
	require.Equal(t, 1, got.Version)

	_, err = VerifyToken(k.Public(), tok, "kortrijk-l2", now)
	require.ErrorIs(t, err, ErrWrongDevice)
	_, err = VerifyToken(k.Public(), tok, "kortrijk-l1", now.Add(time.Hour))
	require.ErrorIs(t, err, ErrExpired)

	other, err := GenerateKeys()
	require.NoError(t, err)
	_, err = VerifyToken(other.Public(), tok, "kortrijk-l1", now)
	require.ErrorIs(t, err, ErrWrongCode)

	// Changing the payload (another device) breaks the signature.
	parts := strings.Split(tok, ".")
	forged, _ := SignToken(other.Signing, Claims{CodeID: c.CodeID, DeviceID: "kortrijk-l2", Expires: c.Expires})
	fp := strings.Split(forged, ".")
	_, err = VerifyToken(k.Public(), parts[0]+"."+fp[1]+"."+parts[2], "kortrijk-l2", now)
	require.ErrorIs(t, err, ErrWrongCode)

	// Other spellings of the same bytes: a line break, a changed unused bit.
	last := tok[len(tok)-1]
	alt := tok[:len(tok)-1] + string(last^1)
	for _, bad := range []string{"", "K1.", "K1..", "K1.abc.def", "X1.a.b", strings.Repeat("K1.", 300), tok + "x",
		tok[:10] + "\n" + tok[10:], alt} {
		_, err := VerifyToken(k.Public(), bad, "kortrijk-l1", now)
		require.ErrorIs(t, err, ErrWrongCode, bad)
	}
	_, err = VerifyToken(ed25519.PublicKey{1}, tok, "kortrijk-l1", now)
	require.ErrorIs(t, err, ErrInvalid)
}

func FuzzVerifyToken(f *testing.F) {
	k, err := GenerateKeys()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok, _ := SignToken(k.Signing, Claims{CodeID: encodeB64(make([]byte, 16)), DeviceID: "d1", Expires: now.Unix() + 60})
	f.Add(tok)
	f.Add("K1.e30.AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := VerifyToken(k.Public(), s, "d1", now)
		if err == nil && s != tok {
			t.Fatalf("accepted a token that was not signed: %q (%+v)", s, c)
		}
	})
}

func TestKeysFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k1, err := LoadOrCreateKeys(dir)
	require.NoError(t, err)
	for _, f := range []string{SigningKeyFile, PINKeyFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	k2, err := LoadOrCreateKeys(dir)
	require.NoError(t, err)
	require.Equal(t, k1.Signing, k2.Signing)
	require.Equal(t, k1.PIN, k2.PIN)
	pubText, err := os.ReadFile(filepath.Join(dir, PublicKeyFile))
	require.NoError(t, err)
	pub, err := ParsePublicKey(string(pubText))
	require.NoError(t, err)
	require.Equal(t, k1.Public(), pub)

	require.NoError(t, os.Chmod(filepath.Join(dir, PINKeyFile), 0o644))
	_, err = LoadKeys(dir)
	require.ErrorIs(t, err, ErrInvalid)

	require.NoError(t, os.WriteFile(filepath.Join(dir, PINKeyFile), []byte("not base64!"), 0o600))
	require.NoError(t, os.Chmod(filepath.Join(dir, PINKeyFile), 0o600))
	_, err = LoadKeys(dir)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = LoadKeys(filepath.Join(dir, "missing"))
	require.Error(t, err)
}

func TestPINHelpers(t *testing.T) {
	p, err := NormalizePIN(" 123 456-789 ", 9)
	require.NoError(t, err)
	require.Equal(t, "123456789", p)
	for _, bad := range []string{"", "12345678", "1234567890", "12345678a", "１２３４５６７８９", strings.Repeat("1", 100)} {
		_, err := NormalizePIN(bad, 9)
		require.ErrorIs(t, err, ErrWrongCode, bad)
	}
	require.Equal(t, "123 456 789", FormatPIN("123456789"))
	require.Equal(t, "12 345 678", FormatPIN("12345678"))

	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		pin, err := GeneratePIN(nil, 9)
		require.NoError(t, err)
		require.Len(t, pin, 9)
		_, err = NormalizePIN(pin, 9)
		require.NoError(t, err)
		seen[pin] = true
	}
	require.Greater(t, len(seen), 190)
	_, err = GeneratePIN(bytes.NewReader(nil), 9)
	require.Error(t, err)

	k := []byte("0123456789abcdef0123456789abcdef")
	require.NotEqual(t, PINDigest(k, "a", "123456789"), PINDigest(k, "b", "123456789"), "digest binds the device")
	d, err := ParseBirthDate("1990-2-28")
	require.Error(t, err, "only YYYY-MM-DD")
	require.Empty(t, d)
	d, err = ParseBirthDate("1990-02-28")
	require.NoError(t, err)
	require.Equal(t, "1990-02-28", d)
}

func TestReasonMapping(t *testing.T) {
	cases := map[error]string{
		nil: "ok", ErrWrongCode: "wrong_code", ErrExpired: "expired", ErrAlreadyCollected: "already_collected",
		ErrDeviceLockedOut: "device_locked_out", ErrSecondFactorRequired: "second_factor_required",
		ErrWrongDevice: "wrong_device", ErrCodeLocked: "code_locked", errors.New("x"): "error",
	}
	for err, want := range cases {
		require.Equal(t, want, Reason(err))
		if err != nil {
			require.Equal(t, want, Reason(&Denial{Err: err}))
		}
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

func TestKeysFromEnv(t *testing.T) {
	_, ok, err := KeysFromEnv(func(string) string { return "" })
	require.NoError(t, err)
	require.False(t, ok)
	k, err := GenerateKeys()
	require.NoError(t, err)
	env := map[string]string{
		EnvSigningKey: base64.StdEncoding.EncodeToString(k.Signing.Seed()),
		EnvPINKey:     base64.StdEncoding.EncodeToString(k.PIN),
	}
	got, ok, err := KeysFromEnv(func(n string) string { return env[n] })
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, k.Signing, got.Signing)
	pub, err := ParsePublicKey(got.PublicBase64())
	require.NoError(t, err)
	require.Equal(t, k.Public(), pub)
	env[EnvPINKey] = "c2hvcnQ="
	_, _, err = KeysFromEnv(func(n string) string { return env[n] })
	require.ErrorIs(t, err, ErrInvalid)
}
