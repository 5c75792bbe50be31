package pickupcode

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// cheap keeps argon2id fast under -race.
var cheap = ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}

func TestArgonParamsForm(t *testing.T) {
	require.Equal(t, "t=2,m=19456,p=1", DefaultArgonParams.String())
	p, err := ParseArgonParams(DefaultArgonParams.String())
	require.NoError(t, err)
	require.Equal(t, DefaultArgonParams, p)
	for _, bad := range []string{"", "t=2", "m=19456,t=2,p=1", "t=0,m=64,p=1", "t=17,m=64,p=1", "t=1,m=4,p=1",
		"t=1,m=262145,p=1", "t=1,m=64,p=0", "t=1,m=64,p=9"} {
		_, err := ParseArgonParams(bad)
		require.ErrorIs(t, err, ErrInvalid, bad)
	}
}

func TestSecretPHCStrings(t *testing.T) {
	h, err := HashSecret("device-password-0123456789", cheap)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$"), h)
	ok, err := VerifySecret(h, "device-password-0123456789")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = VerifySecret(h, "device-password-0123456788")
	require.NoError(t, err)
	require.False(t, ok)
	h2, err := HashSecret("device-password-0123456789", cheap)
	require.NoError(t, err)
	require.NotEqual(t, h, h2, "a fresh salt every time")

	// Anything but an argon2id v19 PHC string with sane costs is refused.
	parts := strings.Split(h, "$")
	for _, bad := range []string{"", "argon2id", "$argon2i$v=19$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=16$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=999999999,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$t=1,m=64,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$!!$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$" + parts[4] + "$"} {
		_, err := VerifySecret(bad, "x")
		require.ErrorIs(t, err, ErrInvalid, bad)
	}
	_, err = HashSecret("x", ArgonParams{})
	require.ErrorIs(t, err, ErrInvalid)
}

func TestPINHashForm(t *testing.T) {
	s := FormatPINHash(DefaultArgonParams, "c2FsdA", "dmVyaWZpZXI")
	require.Equal(t, "argon2id$t=2,m=19456,p=1$c2FsdA$dmVyaWZpZXI", s)
	p, salt, v, err := ParsePINHash(s)
	require.NoError(t, err)
	require.Equal(t, DefaultArgonParams, p)
	require.Equal(t, "c2FsdA", salt)
	require.Equal(t, "dmVyaWZpZXI", v)
	for _, bad := range []string{"", "argon2id$t=2,m=19456,p=1$a", "argon2i$t=2,m=19456,p=1$a$b",
		"argon2id$t=99,m=19456,p=1$a$b", "argon2id$t=2,m=19456,p=1$$b", "argon2id$t=2,m=19456,p=1$a$b$c"} {
		_, _, _, err := ParsePINHash(bad)
		require.ErrorIs(t, err, ErrInvalid, bad)
	}
}

func TestVerifyOffline(t *testing.T) {
	b := base64.RawURLEncoding
	salt := []byte("0123456789abcdef")
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	entry := func(doc, pin, dob string, exp time.Time) OfflineEntry {
		return OfflineEntry{DocumentID: doc, ExpiresAt: exp, NeedsDOB: dob != "", Salt: b.EncodeToString(salt), Params: cheap,
			Verifier: b.EncodeToString(OfflineVerifier(cheap, salt, "d1", pin, dob))}
	}
	entries := []OfflineEntry{
		entry("eid", "123456789", "1990-02-28", now.Add(time.Hour)),
		entry("licence", "987654321", "", now.Add(time.Hour)),
		entry("old", "555555555", "", now),
		{DocumentID: "broken", Salt: "!!", Params: cheap, Verifier: "AAAA", ExpiresAt: now.Add(time.Hour)},
	}
	try := func(dev, pin, dob string) (string, error) {
		e, err := VerifyOffline(entries, OfflineAttempt{DeviceID: dev, PIN: pin, BirthDate: dob}, now)
		return e.DocumentID, err
	}
	doc, err := try("d1", "123 456 789", "1990-02-28")
	require.NoError(t, err)
	require.Equal(t, "eid", doc)
	doc, err = try("d1", "987-654-321", "2001-01-01")
	require.NoError(t, err)
	require.Equal(t, "licence", doc, "the date is asked but not checked for a driving licence")
	_, err = try("d1", "123456789", "1990-03-01")
	require.ErrorIs(t, err, ErrWrongCode, "wrong date of birth")
	_, err = try("d2", "123456789", "1990-02-28")
	require.ErrorIs(t, err, ErrWrongCode, "a verifier is bound to its device")
	_, err = try("d1", "123456789", "")
	require.ErrorIs(t, err, ErrSecondFactorRequired)
	_, err = try("d1", "123456789", "28/02/1990")
	require.ErrorIs(t, err, ErrSecondFactorRequired)
	_, err = try("d1", "12345", "1990-02-28")
	require.ErrorIs(t, err, ErrWrongCode)
	doc, err = try("d1", "555555555", "1990-02-28")
	require.ErrorIs(t, err, ErrExpired)
	require.Equal(t, "old", doc)
	require.Equal(t, "argon2id$t=1,m=64,p=1$"+entries[0].Salt+"$"+entries[0].Verifier, entries[0].PINHash())
}

// The PIN tag identifies a PIN whatever the date of birth typed with it,
// and is short.
func TestCheckOfflinePINTag(t *testing.T) {
	b := base64.RawURLEncoding
	salt := []byte("0123456789abcdef")
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	entries := []OfflineEntry{
		{DocumentID: "broken", Salt: "!!", Params: cheap, Verifier: "AAAA", ExpiresAt: now.Add(time.Hour)},
		{DocumentID: "eid", ExpiresAt: now.Add(time.Hour), NeedsDOB: true, Salt: b.EncodeToString(salt), Params: cheap,
			Verifier: b.EncodeToString(OfflineVerifier(cheap, salt, "d1", "123456789", "1990-02-28"))},
	}
	check := func(pin, dob string) (OfflineCheck, error) {
		return CheckOffline(entries, OfflineAttempt{DeviceID: "d1", PIN: pin, BirthDate: dob}, now)
	}
	right, err := check("123456789", "1990-02-28")
	require.NoError(t, err)
	require.Equal(t, "eid", right.Entry.DocumentID)
	wrongDOB, err := check("123456789", "1990-03-01")
	require.ErrorIs(t, err, ErrWrongCode)
	require.Equal(t, right.PINTag, wrongDOB.PINTag, "one PIN, one tag")
	other, err := check("123456780", "1990-02-28")
	require.ErrorIs(t, err, ErrWrongCode)
	require.NotEqual(t, right.PINTag, other.PINTag)
	raw, err := b.DecodeString(right.PINTag)
	require.NoError(t, err)
	require.Len(t, raw, PINTagBytes)
	v := OfflineVerifier(cheap, salt, "d1", "123456789", "")
	require.Equal(t, b.EncodeToString(v[:PINTagBytes]), right.PINTag, "the start of the verifier without date of birth")
	none, err := CheckOffline(nil, OfflineAttempt{DeviceID: "d1", PIN: "123456789", BirthDate: "1990-02-28"}, now)
	require.ErrorIs(t, err, ErrWrongCode)
	require.Empty(t, none.PINTag, "no material, no tag")
}

// A cache holding codes hashed with the former costs and with the current
// ones (an upgrade: old codes keep their verifiers until they expire):
// both verify, and a PIN's tag does not depend on the order of the entries.
func TestCheckOfflineMixedCosts(t *testing.T) {
	b := base64.RawURLEncoding
	salt := []byte("0123456789abcdef")
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	lanes := ArgonParams{Time: 1, MemoryKiB: 64, Threads: 4}
	entries := []OfflineEntry{
		{DocumentID: "old-eid", ExpiresAt: now.Add(time.Hour), NeedsDOB: true, Salt: b.EncodeToString(salt), Params: cheap,
			Verifier: b.EncodeToString(OfflineVerifier(cheap, salt, "d1", "123456789", "1990-02-28"))},
		{DocumentID: "new-eid", ExpiresAt: now.Add(time.Hour), NeedsDOB: true, Salt: b.EncodeToString(salt), Params: lanes,
			Verifier: b.EncodeToString(OfflineVerifier(lanes, salt, "d1", "222333444", "1985-12-31"))},
		{DocumentID: "new-licence", ExpiresAt: now.Add(time.Hour), Salt: b.EncodeToString(salt), Params: lanes,
			Verifier: b.EncodeToString(OfflineVerifier(lanes, salt, "d1", "555666777", ""))},
	}
	require.NotEqual(t, OfflineVerifier(cheap, salt, "d1", "1", ""), OfflineVerifier(lanes, salt, "d1", "1", ""), "lanes change the hash")
	reversed := []OfflineEntry{entries[2], entries[1], entries[0]}
	for _, tc := range []struct{ pin, dob, doc string }{
		{"123456789", "1990-02-28", "old-eid"}, {"222333444", "1985-12-31", "new-eid"}, {"555666777", "2000-01-01", "new-licence"},
	} {
		var tags []string
		for _, list := range [][]OfflineEntry{entries, reversed} {
			c, err := CheckOffline(list, OfflineAttempt{DeviceID: "d1", PIN: tc.pin, BirthDate: tc.dob}, now)
			require.NoError(t, err, tc.doc)
			require.Equal(t, tc.doc, c.Entry.DocumentID)
			tags = append(tags, c.PINTag)
			_, err = CheckOffline(list, OfflineAttempt{DeviceID: "d1", PIN: tc.pin, BirthDate: "1970-01-01"}, now)
			if tc.doc != "new-licence" {
				require.ErrorIs(t, err, ErrWrongCode, "wrong date of birth")
			}
		}
		require.Equal(t, tags[0], tags[1], "%s: one tag whatever the order", tc.doc)
	}
}

// BenchmarkVerifyOfflineDefaultCost measures one offline PIN check (a wrong
// PIN: two hashes, with and without date of birth, computed in parallel) at
// the production cost OfflineArgonParams, and at the former one (the same
// work in one lane) for comparison.
func BenchmarkVerifyOfflineDefaultCost(b *testing.B) {
	for _, p := range []ArgonParams{OfflineArgonParams, DefaultArgonParams} {
		b.Run(p.String(), func(b *testing.B) {
			salt := make([]byte, 16)
			now := time.Unix(1_800_000_000, 0)
			enc := base64.RawURLEncoding.EncodeToString
			entries := []OfflineEntry{
				{CodeID: "a", ExpiresAt: now.Add(time.Hour), NeedsDOB: true, Salt: enc(salt), Params: p,
					Verifier: enc(OfflineVerifier(p, salt, "d1", "123456789", "1990-02-28"))},
				{CodeID: "b", ExpiresAt: now.Add(time.Hour), Salt: enc(salt), Params: p,
					Verifier: enc(OfflineVerifier(p, salt, "d1", "987654321", ""))},
			}
			for b.Loop() {
				if _, err := VerifyOffline(entries, OfflineAttempt{DeviceID: "d1", PIN: "111111111", BirthDate: "1990-02-28"}, now); err == nil {
					b.Fatal("a wrong PIN matched")
				}
			}
		})
	}
}
