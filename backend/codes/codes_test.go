package codes

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/controller/pickupcode"
)

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
	pub, err := pickupcode.ParsePublicKey(string(pubText))
	require.NoError(t, err)
	require.Equal(t, k1.Public(), pub)

	require.NoError(t, os.Chmod(filepath.Join(dir, PINKeyFile), 0o644))
	_, err = LoadKeys(dir)
	require.ErrorIs(t, err, pickupcode.ErrInvalid)

	require.NoError(t, os.WriteFile(filepath.Join(dir, PINKeyFile), []byte("not base64!"), 0o600))
	require.NoError(t, os.Chmod(filepath.Join(dir, PINKeyFile), 0o600))
	_, err = LoadKeys(dir)
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
	_, err = LoadKeys(filepath.Join(dir, "missing"))
	require.Error(t, err)
}

func TestPINHelpers(t *testing.T) {
	require.Equal(t, "123 456 789", FormatPIN("123456789"))
	require.Equal(t, "12 345 678", FormatPIN("12345678"))

	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		pin, err := GeneratePIN(nil, 9)
		require.NoError(t, err)
		require.Len(t, pin, 9)
		_, err = pickupcode.NormalizePIN(pin, 9)
		require.NoError(t, err)
		seen[pin] = true
	}
	require.Greater(t, len(seen), 190)
	_, err := GeneratePIN(bytes.NewReader(nil), 9)
	require.Error(t, err)

	k := []byte("0123456789abcdef0123456789abcdef")
	require.NotEqual(t, PINDigest(k, "a", "123456789"), PINDigest(k, "b", "123456789"), "digest binds the device")
}

// A Denial maps to the reason of the sentinel it wraps.
func TestDenialReason(t *testing.T) {
	for _, err := range []error{pickupcode.ErrWrongCode, pickupcode.ErrExpired, pickupcode.ErrAlreadyCollected,
		pickupcode.ErrDeviceLockedOut, pickupcode.ErrSecondFactorRequired, pickupcode.ErrWrongDevice, pickupcode.ErrCodeLocked} {
		require.Equal(t, pickupcode.Reason(err), pickupcode.Reason(&Denial{Err: err}))
		require.NotEqual(t, pickupcode.ReasonError, pickupcode.Reason(&Denial{Err: err}))
	}
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
	pub, err := pickupcode.ParsePublicKey(got.PublicBase64())
	require.NoError(t, err)
	require.Equal(t, k.Public(), pub)
	env[EnvPINKey] = "c2hvcnQ="
	_, _, err = KeysFromEnv(func(n string) string { return env[n] })
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
}

// The previous PIN key of a rotation is read from pin.key.previous (mode
// 0600) or KLUIS_CODES_PIN_KEY_PREVIOUS; it is optional.
func TestPreviousPINKeyLoaded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k, err := LoadOrCreateKeys(dir)
	require.NoError(t, err)
	require.Nil(t, k.PreviousPIN)
	require.Len(t, k.PINKeys(), 1)
	old := bytes.Repeat([]byte{7}, 32)
	prev := filepath.Join(dir, PreviousPINKeyFile)
	require.NoError(t, os.WriteFile(prev, []byte(base64.StdEncoding.EncodeToString(old)+"\n"), 0o600))
	got, err := LoadKeys(dir)
	require.NoError(t, err)
	require.Equal(t, old, got.PreviousPIN)
	require.Equal(t, [][]byte{k.PIN, old}, got.PINKeys(), "the current key first")
	require.NoError(t, os.Chmod(prev, 0o644))
	_, err = LoadKeys(dir)
	require.ErrorIs(t, err, pickupcode.ErrInvalid, "a readable previous key is refused like the others")

	env := map[string]string{
		EnvSigningKey:     base64.StdEncoding.EncodeToString(k.Signing.Seed()),
		EnvPINKey:         base64.StdEncoding.EncodeToString(k.PIN),
		EnvPreviousPINKey: base64.StdEncoding.EncodeToString(old),
	}
	got, ok, err := KeysFromEnv(func(n string) string { return env[n] })
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, old, got.PreviousPIN)
	env[EnvPreviousPINKey] = env[EnvPINKey]
	_, _, err = KeysFromEnv(func(n string) string { return env[n] })
	require.ErrorIs(t, err, pickupcode.ErrInvalid, "the same key twice")
	env[EnvPreviousPINKey] = "c2hvcnQ="
	_, _, err = KeysFromEnv(func(n string) string { return env[n] })
	require.ErrorIs(t, err, pickupcode.ErrInvalid)
}
