package pickupcode

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"github.com/stretchr/testify/require"
)

// sameAnswer fails unless the issuer's check and the public check agree:
// the same claims and the same kind of error.
func sameAnswer(t testing.TB, pub ed25519.PublicKey, priv ed25519.PrivateKey, tok, device string, now time.Time) error {
	t.Helper()
	want, wantErr := VerifyToken(pub, tok, device, now)
	got, gotErr := VerifyOwnToken(priv, tok, device, now)
	if want != got {
		t.Fatalf("token %q: claims %+v, VerifyToken gave %+v", tok, got, want)
	}
	for _, kind := range []error{nil, ErrWrongCode, ErrWrongDevice, ErrExpired, ErrInvalid} {
		if kind == nil {
			if (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("token %q: error %v, VerifyToken gave %v", tok, gotErr, wantErr)
			}
			continue
		}
		if errors.Is(wantErr, kind) != errors.Is(gotErr, kind) {
			t.Fatalf("token %q: error %v, VerifyToken gave %v", tok, gotErr, wantErr)
		}
	}
	return gotErr
}

func TestVerifyOwnTokenAnswersLikeVerifyToken(t *testing.T) {
	pub, priv := newKey(t)
	require.True(t, Deterministic(priv))
	now := time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC)
	c := Claims{CodeID: FormatCodeID(bytes.Repeat([]byte{9}, 16)), DeviceID: "kortrijk-l1", Expires: now.Add(time.Hour).Unix()}
	tok, err := SignToken(priv, c)
	require.NoError(t, err)

	require.NoError(t, sameAnswer(t, pub, priv, tok, "kortrijk-l1", now))
	require.ErrorIs(t, sameAnswer(t, pub, priv, tok, "kortrijk-l2", now), ErrWrongDevice)
	require.ErrorIs(t, sameAnswer(t, pub, priv, tok, "kortrijk-l1", now.Add(time.Hour)), ErrExpired)

	// Another issuer's token, a forged payload under a real signature,
	// other spellings and garbage: all wrong codes, for both.
	_, otherPriv := newKey(t)
	other, err := SignToken(otherPriv, c)
	require.NoError(t, err)
	parts := strings.Split(tok, ".")
	later, err := SignToken(otherPriv, Claims{CodeID: c.CodeID, DeviceID: c.DeviceID, Expires: c.Expires + 86400})
	require.NoError(t, err)
	fp := strings.Split(later, ".")
	last := tok[len(tok)-1]
	short, err := SignToken(priv, Claims{CodeID: "c2hvcnQ", DeviceID: "kortrijk-l1", Expires: c.Expires})
	require.NoError(t, err)
	for _, bad := range []string{other, parts[0] + "." + fp[1] + "." + parts[2], tok[:len(tok)-1] + string(last^1),
		"", "K1.", "K1..", "K1.abc.def", "X1.a.b", strings.Repeat("K1.", 300), tok + "x", tok[:10] + "\n" + tok[10:], short} {
		require.ErrorIs(t, sameAnswer(t, pub, priv, bad, "kortrijk-l1", now), ErrWrongCode, bad)
	}

	_, err = VerifyOwnToken(ed25519.PrivateKey{1}, tok, "kortrijk-l1", now)
	require.ErrorIs(t, err, ErrInvalid)
	require.False(t, Deterministic(ed25519.PrivateKey{1}))
}

// signWithNonce makes a valid Ed25519 signature of msg with priv but a nonce
// of its own instead of RFC 8032's deterministic one: what only the key's
// holder can make, and Sign never does.
func signWithNonce(t *testing.T, priv ed25519.PrivateKey, msg []byte) []byte {
	t.Helper()
	h := sha512.Sum512(priv.Seed())
	a, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	require.NoError(t, err)
	nonce := make([]byte, 64)
	_, err = rand.Read(nonce)
	require.NoError(t, err)
	r, err := edwards25519.NewScalar().SetUniformBytes(nonce)
	require.NoError(t, err)
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	kh := sha512.New()
	kh.Write(R)
	kh.Write(priv.Public().(ed25519.PublicKey))
	kh.Write(msg)
	k, err := edwards25519.NewScalar().SetUniformBytes(kh.Sum(nil))
	require.NoError(t, err)
	S := edwards25519.NewScalar().MultiplyAdd(k, a, r)
	return append(R, S.Bytes()...)
}

// The one difference: a signature that verifies under the public key but
// is not the deterministic one is refused by the issuer's check. Nobody
// without the private key can make one, and the issuer never does.
func TestVerifyOwnTokenRefusesAnotherNonce(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC)
	tok, err := SignToken(priv, Claims{CodeID: FormatCodeID(bytes.Repeat([]byte{3}, 16)), DeviceID: "d1", Expires: now.Add(time.Hour).Unix()})
	require.NoError(t, err)
	head := tok[:strings.LastIndexByte(tok, '.')]
	sig := signWithNonce(t, priv, []byte(head))
	require.True(t, ed25519.Verify(pub, []byte(head), sig), "the test's signature is valid")
	alt := head + "." + b64.EncodeToString(sig)
	require.NotEqual(t, tok, alt)

	_, err = VerifyToken(pub, alt, "d1", now)
	require.NoError(t, err, "the public check accepts any valid signature")
	_, err = VerifyOwnToken(priv, alt, "d1", now)
	require.ErrorIs(t, err, ErrWrongCode)
	_, err = VerifyOwnToken(priv, tok, "d1", now)
	require.NoError(t, err)
}

func FuzzVerifyOwnToken(f *testing.F) {
	pub, priv, tok, now := tokenFuzzSeed(f)
	f.Fuzz(func(t *testing.T, s string) {
		if err := sameAnswer(t, pub, priv, s, "d1", now); err == nil && s != tok {
			t.Fatalf("accepted a token that was not signed: %q", s)
		}
	})
}

func BenchmarkVerifyToken(b *testing.B) {
	pub, priv := newKey(b)
	now := time.Unix(1_800_000_000, 0)
	tok, _ := SignToken(priv, Claims{CodeID: FormatCodeID(make([]byte, 16)), DeviceID: "d1", Expires: now.Unix() + 60})
	b.Run("public", func(b *testing.B) {
		for b.Loop() {
			if _, err := VerifyToken(pub, tok, "d1", now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("issuer", func(b *testing.B) {
		for b.Loop() {
			if _, err := VerifyOwnToken(priv, tok, "d1", now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// unverifiedLikeVerified fails unless ParseUnverifiedToken refuses every
// token VerifyToken refuses for its form, and reads the claims VerifyToken
// reads from a token it opens.
func unverifiedLikeVerified(t testing.TB, pub ed25519.PublicKey, tok, device string, now time.Time) {
	t.Helper()
	got, gotErr := ParseUnverifiedToken(tok)
	want, wantErr := VerifyToken(pub, tok, device, now)
	switch {
	case wantErr == nil || errors.Is(wantErr, ErrWrongDevice) || errors.Is(wantErr, ErrExpired):
		if gotErr != nil || got != want {
			t.Fatalf("token %q: %+v %v, VerifyToken read %+v %v", tok, got, gotErr, want, wantErr)
		}
		if err := got.Check(device, now); (err == nil) != (wantErr == nil) ||
			errors.Is(err, ErrWrongDevice) != errors.Is(wantErr, ErrWrongDevice) || errors.Is(err, ErrExpired) != errors.Is(wantErr, ErrExpired) {
			t.Fatalf("token %q: Check %v, VerifyToken %v", tok, err, wantErr)
		}
	case gotErr != nil:
		if !errors.Is(gotErr, ErrWrongCode) {
			t.Fatalf("token %q: %v, want a wrong code", tok, gotErr)
		}
	default:
		// Well formed: only the signature is wrong.
		if !errors.Is(wantErr, ErrWrongCode) || !strings.Contains(wantErr.Error(), "signature invalid") {
			t.Fatalf("token %q parsed, but VerifyToken refused it for its form: %v", tok, wantErr)
		}
	}
}

// signedFor is a token of priv for device, valid for an hour after now,
// and its claims.
func signedFor(t testing.TB, priv ed25519.PrivateKey, device string, now time.Time) (Claims, string) {
	t.Helper()
	c := Claims{Version: 1, CodeID: FormatCodeID(bytes.Repeat([]byte{9}, 16)), DeviceID: device, Expires: now.Add(time.Hour).Unix()}
	tok, err := SignToken(priv, c)
	require.NoError(t, err)
	return c, tok
}

func TestParseUnverifiedTokenRefusesWhatIsMalformed(t *testing.T) {
	pub, priv := newKey(t)
	now := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	c, tok := signedFor(t, priv, "kortrijk-l1", now)
	got, err := ParseUnverifiedToken(tok)
	require.NoError(t, err)
	require.Equal(t, c, got)
	require.NoError(t, got.Check("kortrijk-l1", now))
	require.ErrorIs(t, got.Check("kortrijk-l2", now), ErrWrongDevice)
	require.ErrorIs(t, got.Check("kortrijk-l1", now.Add(time.Hour)), ErrExpired)

	_, otherPriv := newKey(t)
	other, err := SignToken(otherPriv, Claims{CodeID: c.CodeID, DeviceID: c.DeviceID, Expires: c.Expires + 86400})
	require.NoError(t, err)
	got, err = ParseUnverifiedToken(other)
	require.NoError(t, err, "another key's token is well formed: the caller's check must refuse it")
	require.Equal(t, c.Expires+86400, got.Expires)

	short, err := SignToken(priv, Claims{CodeID: "c2hvcnQ", DeviceID: "kortrijk-l1", Expires: c.Expires})
	require.NoError(t, err)
	last := tok[len(tok)-1]
	for _, bad := range []string{"", "K1.", "K1..", "K1.abc.def", "X1.a.b", strings.Repeat("K1.", 300), tok + "x",
		tok[:10] + "\n" + tok[10:], short, tok[:len(tok)-1] + string(last^1), tok[:strings.LastIndexByte(tok, '.')] + ".AAAA"} {
		_, err := ParseUnverifiedToken(bad)
		require.ErrorIs(t, err, ErrWrongCode, bad)
		unverifiedLikeVerified(t, pub, bad, "kortrijk-l1", now)
	}
	for _, good := range []string{tok, other} {
		unverifiedLikeVerified(t, pub, good, "kortrijk-l1", now)
		unverifiedLikeVerified(t, pub, good, "kortrijk-l2", now)
	}
}

func FuzzParseUnverifiedToken(f *testing.F) {
	pub, _, _, now := tokenFuzzSeed(f)
	f.Fuzz(func(t *testing.T, s string) { unverifiedLikeVerified(t, pub, s, "d1", now) })
}
