package offline_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/offline"
	"kluis/controller/offline/offlinetest"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func token(t *testing.T, priv ed25519.PrivateKey, device string, exp time.Time) (string, string) {
	id := make([]byte, pickupcode.CodeIDSize)
	_, _ = rand.Read(id)
	cid := base64.RawURLEncoding.EncodeToString(id)
	tok, err := pickupcode.SignToken(priv, pickupcode.Claims{CodeID: cid, DeviceID: device, Expires: exp.Unix()})
	require.NoError(t, err)
	return tok, cid
}

func TestCache(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	c, err := offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	tok, cid := token(t, priv, "dev1", t0.Add(time.Hour))
	other, _ := token(t, priv, "dev2", t0.Add(time.Hour))
	unsynced, _ := token(t, priv, "dev1", t0.Add(time.Hour))

	_, err = c.VerifyQR(tok, t0)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "not in the cache yet")
	require.NoError(t, c.Apply(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 1, Full: true, Entries: []wire.CodeEntry{
		{DocumentID: "doc1", Addr: wire.Address{Board: 0, Channel: 3}, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(cid)},
		offlinetest.PINEntry("doc2", "dev1", "123456789", "1990-02-03", wire.Address{Board: 0, Channel: 4}, t0.Add(time.Hour)),
	}})))
	m, err := c.VerifyQR(tok, t0)
	require.NoError(t, err)
	require.Equal(t, "doc1", m.DocumentID)
	require.Equal(t, 3, m.Addr.Channel)
	_, err = c.VerifyQR(other, t0)
	require.ErrorIs(t, err, pickupcode.ErrWrongDevice)
	_, err = c.VerifyQR(unsynced, t0)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	_, err = c.VerifyQR(tok+"x", t0)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	_, err = c.VerifyQR(tok, t0.Add(2*time.Hour))
	require.ErrorIs(t, err, pickupcode.ErrExpired)

	m, err = c.VerifyPIN("123 456 789", "1990-02-03", t0)
	require.NoError(t, err)
	require.Equal(t, "doc2", m.DocumentID)
	_, err = c.VerifyPIN("123456789", "1990-02-04", t0)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	_, err = c.VerifyPIN("123456789", "", t0)
	require.ErrorIs(t, err, pickupcode.ErrSecondFactorRequired)

	// Stale syncs are ignored; deltas revoke; the file survives a reopen.
	require.ErrorIs(t, c.Apply(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 1, Full: true})), offline.ErrStale)
	require.NoError(t, c.Apply(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 2, Revoke: []string{"doc1"}})))
	require.Equal(t, 1, c.Len())
	c2, err := offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	require.Equal(t, int64(2), c2.Version())
	_, err = c2.VerifyQR(tok, t0)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	_, err = c2.VerifyPIN("123456789", "1990-02-03", t0)
	require.NoError(t, err)

	// Without a public key QR codes cannot be checked offline.
	c3, err := offline.Open(t.TempDir(), "dev1", nil)
	require.NoError(t, err)
	_, err = c3.VerifyQR(tok, t0)
	require.ErrorIs(t, err, offline.ErrNoMaterial)
}

// A code the backend dropped after its expiry is still recognised offline:
// its PIN answers expired (not wrong) for ExpiredRetention; a code dropped
// before its expiry (revoked) is forgotten; a PIN drawn again for a new
// code finds the new code.
func TestExpiredEntriesKept(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	c, err := offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	a := wire.Address{Board: 0, Channel: 1}
	old := offlinetest.PINEntry("doc-old", "dev1", "111222333", "1990-02-03", a, t0.Add(time.Hour))
	revoked := offlinetest.PINEntry("doc-rev", "dev1", "444555666", "", a, t0.Add(48*time.Hour))
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 1, Full: true, Entries: []wire.CodeEntry{old, revoked}}), t0))
	// Two hours later the backend's bundle has neither.
	now := t0.Add(2 * time.Hour)
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 2, Full: true}), now))
	require.Zero(t, c.Len())
	m, err := c.VerifyPIN("111222333", "1990-02-03", now)
	require.ErrorIs(t, err, pickupcode.ErrExpired, "dropped after its expiry: expired")
	require.Equal(t, "doc-old", m.DocumentID)
	_, err = c.VerifyPIN("111222333", "1990-02-04", now)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "the date of birth still counts")
	_, err = c.VerifyPIN("444555666", "1990-02-03", now)
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "dropped before its expiry: revoked, forgotten")

	// The PIN drawn again for a new code: the new code opens.
	reused := offlinetest.PINEntry("doc-new", "dev1", "111222333", "1990-02-03", wire.Address{Board: 0, Channel: 2}, now.Add(time.Hour))
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 3, Full: true, Entries: []wire.CodeEntry{reused}}), now))
	m, err = c.VerifyPIN("111222333", "1990-02-03", now)
	require.NoError(t, err)
	require.Equal(t, "doc-new", m.DocumentID)

	// Kept across a reopen, forgotten after the retention.
	c2, err := offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	require.NoError(t, c2.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 4, Full: true}), now))
	_, err = c2.VerifyPIN("111222333", "1990-02-03", now.Add(30*24*time.Hour))
	require.ErrorIs(t, err, pickupcode.ErrExpired)
	late := t0.Add(time.Hour + offline.ExpiredRetention + time.Minute)
	require.NoError(t, c2.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 5, Full: true}), late))
	_, err = c2.VerifyPIN("111222333", "1990-02-03", late)
	require.ErrorIs(t, err, offline.ErrNoMaterial, "past the retention: forgotten (doc-new was revoked, not expired)")
}

// Forget withdraws a compartment's entries but one document's, durably and
// keeping the version: their codes open nothing offline any more and answer
// ErrWithdrawn (the device reports it); a later sync holding the same entry
// does not bring it back, a re-issued code (a new entry) opens.
func TestForgetACompartmentsCodes(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	c, err := offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	a, b := wire.Address{Board: 0, Channel: 3}, wire.Address{Board: 0, Channel: 4}
	oldTok, oldCID := token(t, priv, "dev1", t0.Add(time.Hour))
	newTok, newCID := token(t, priv, "dev1", t0.Add(time.Hour))
	otherTok, otherCID := token(t, priv, "dev1", t0.Add(time.Hour))
	require.NoError(t, c.Apply(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 7, Full: true, Entries: []wire.CodeEntry{
		{DocumentID: "doc-old", Addr: a, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(oldCID)},
		{DocumentID: "doc-new", Addr: a, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(newCID)},
		{DocumentID: "doc-b", Addr: b, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(otherCID)},
	}})))

	// doc-new loaded into a: doc-old's code goes.
	n, err := c.Forget(a, "doc-new")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	m0, err := c.VerifyQR(oldTok, t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)
	require.Equal(t, "doc-old", m0.DocumentID)
	m, err := c.VerifyQR(newTok, t0)
	require.NoError(t, err)
	require.Equal(t, "doc-new", m.DocumentID)
	n, err = c.Forget(a, "doc-new")
	require.NoError(t, err)
	require.Zero(t, n, "nothing more to forget")

	// Reopened: forgotten for good, version kept.
	c, err = offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	require.Equal(t, int64(7), c.Version())
	_, err = c.VerifyQR(oldTok, t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)

	// a emptied: everything of a goes, b stays.
	n, err = c.Forget(a, "")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = c.VerifyQR(newTok, t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)
	_, err = c.VerifyQR(otherTok, t0)
	require.NoError(t, err)
	require.Equal(t, 1, c.Len())

	// A PIN of a withdrawn entry answers ErrWithdrawn too; a sync still
	// holding the withdrawn entries does not bring them back, a new
	// code of the same document opens.
	pinEntry := offlinetest.PINEntry("doc-p", "dev1", "111222333", "1990-02-03", b, t0.Add(time.Hour))
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 8, Full: true, Entries: []wire.CodeEntry{pinEntry}}), t0))
	n, err = c.Forget(b, "")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	m, err = c.VerifyPIN("111222333", "1990-02-03", t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)
	require.Equal(t, "doc-p", m.DocumentID)
	reissuedTok, reissuedCID := token(t, priv, "dev1", t0.Add(time.Hour))
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 9, Full: true, Entries: []wire.CodeEntry{pinEntry,
		{DocumentID: "doc-new", Addr: a, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(newCID)},
		{DocumentID: "doc-new", Addr: a, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(reissuedCID)},
	}}), t0))
	require.Equal(t, 1, c.Len(), "only the re-issued code is valid")
	_, err = c.VerifyPIN("111222333", "1990-02-03", t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)
	_, err = c.VerifyQR(newTok, t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)
	m, err = c.VerifyQR(reissuedTok, t0)
	require.NoError(t, err)
	require.Equal(t, "doc-new", m.DocumentID)

	// Kept until ExpiredRetention after their expiry, then forgotten.
	late := t0.Add(time.Hour + offline.ExpiredRetention + time.Minute)
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 10, Full: true}), late.Add(-2*time.Minute)))
	_, err = c.VerifyPIN("111222333", "1990-02-03", late.Add(-2*time.Minute))
	require.ErrorIs(t, err, offline.ErrWithdrawn, "still kept within the retention")
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 11, Full: true}), late))
	_, err = c.VerifyPIN("111222333", "1990-02-03", late)
	require.ErrorIs(t, err, offline.ErrNoMaterial, "pruned past the retention")
}

// ForgetAll withdraws the entries of every address given, durably, and
// leaves the others: their codes answer ErrWithdrawn after a reopening.
func TestForgetAllWithdrawsEveryAddressGiven(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	c, err := offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	a, b, other := wire.Address{Board: 0, Channel: 3}, wire.Address{Board: 0, Channel: 4}, wire.Address{Board: 1, Channel: 3}
	aTok, aCID := token(t, priv, "dev1", t0.Add(time.Hour))
	bTok, bCID := token(t, priv, "dev1", t0.Add(time.Hour))
	oTok, oCID := token(t, priv, "dev1", t0.Add(time.Hour))
	require.NoError(t, c.Apply(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 3, Full: true, Entries: []wire.CodeEntry{
		{DocumentID: "doc-a", Addr: a, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(aCID)},
		{DocumentID: "doc-b", Addr: b, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(bCID)},
		{DocumentID: "doc-o", Addr: other, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(oCID)},
	}})))
	n, err := c.ForgetAll([]wire.Address{a, b, {Board: 0, Channel: 5}})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = c.ForgetAll(nil)
	require.NoError(t, err)
	require.Zero(t, n)

	c, err = offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	for _, tok := range []string{aTok, bTok} {
		_, err = c.VerifyQR(tok, t0)
		require.ErrorIs(t, err, offline.ErrWithdrawn)
	}
	m, err := c.VerifyQR(oTok, t0)
	require.NoError(t, err)
	require.Equal(t, "doc-o", m.DocumentID)
}

// A damaged cache file (a torn or tampered JSON) is not used, but neither is
// it lost: it is moved aside to offline-cache.json.bad-N for forensics, the
// error names that file (kluisd raises journal_damaged with it), and the
// next sync writes a fresh cache beside it without touching it. A second
// damage gets the next number.
func TestDamagedCacheMovedAside(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	path := filepath.Join(dir, offline.FileName)
	damaged := []byte(`{"version":7,"entries":[{"document_id":"doc1",`)
	require.NoError(t, os.WriteFile(path, damaged, 0o600))
	c, err := offline.Open(dir, "dev1", pub)
	require.ErrorIs(t, err, offline.ErrDamaged)
	require.Contains(t, err.Error(), offline.FileName+".bad-1")
	require.NotNil(t, c, "an empty cache: the device verifies online, the next sync fills it")
	require.Equal(t, 0, c.Len())
	require.Equal(t, int64(0), c.Version())
	kept, err := os.ReadFile(path + ".bad-1")
	require.NoError(t, err)
	require.Equal(t, damaged, kept)
	require.NoError(t, c.Apply(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 8, Full: true})))
	kept, err = os.ReadFile(path + ".bad-1")
	require.NoError(t, err)
	require.Equal(t, damaged, kept, "the sync leaves the damaged copy alone")

	require.NoError(t, os.WriteFile(path, []byte("garbage"), 0o600))
	_, err = offline.Open(dir, "dev1", pub)
	require.ErrorIs(t, err, offline.ErrDamaged)
	require.Contains(t, err.Error(), offline.FileName+".bad-2")
	fresh, err := os.ReadFile(path)
	require.NoError(t, err)
	require.JSONEq(t, `{"format":2,"version":0,"withdraw_synced":true}`, string(fresh),
		"an empty cache in its place, marked: its withdrawals were lost (TestDamagedCacheKeepsWithdrawals)")
	require.NoError(t, os.Remove(path))

	// A cache that cannot be read at all (here a directory in its place)
	// is an error too, with no cache.
	require.NoError(t, os.Mkdir(path, 0o700))
	c, err = offline.Open(dir, "dev1", pub)
	require.Error(t, err)
	require.Nil(t, c)
}

// A damaged cache file loses its withdrawn entries with it, and the
// backend, which does not know of them (the device withdrew them itself),
// sends the same entries again: a code withdrawn before the damage (its
// compartment reloaded, a forced door) then opened offline again. After a
// damaged cache every entry of the syncs up to and including the next full
// one is withdrawn (any of them may have been; the mark survives a restart
// before that sync); a code issued later opens.
func TestDamagedCacheKeepsWithdrawals(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	c, err := offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	sync := func(s wire.CodeSync) wire.Command { return offlinetest.Sync(t, priv, "dev1", s) }
	a := wire.Address{Board: 0, Channel: 3}
	tok, cid := token(t, priv, "dev1", t0.Add(time.Hour))
	entry := wire.CodeEntry{DocumentID: "doc-a", Addr: a, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(cid)}
	require.NoError(t, c.ApplyAt(sync(wire.CodeSync{Version: 7, Full: true, Entries: []wire.CodeEntry{entry}}), t0))
	n, err := c.Forget(a, "")
	require.NoError(t, err)
	require.Equal(t, 1, n)

	path := filepath.Join(dir, offline.FileName)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b[:len(b)/2], 0o600)) // torn
	_, err = offline.Open(dir, "dev1", pub)
	require.ErrorIs(t, err, offline.ErrDamaged)
	c, err = offline.Open(dir, "dev1", pub) // restarted before any sync
	require.NoError(t, err)

	require.NoError(t, c.ApplyAt(sync(wire.CodeSync{Version: 9, Full: true, Entries: []wire.CodeEntry{entry}}), t0))
	_, err = c.VerifyQR(tok, t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn, "the withdrawn code stays withdrawn")
	require.Zero(t, c.Len())
	c, err = offline.Open(dir, "dev1", pub) // and after a restart
	require.NoError(t, err)
	_, err = c.VerifyQR(tok, t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)

	newTok, newCID := token(t, priv, "dev1", t0.Add(time.Hour))
	reissued := wire.CodeEntry{DocumentID: "doc-a", Addr: a, Expires: t0.Add(time.Hour), QRHash: pickupcode.QRHash(newCID)}
	require.NoError(t, c.ApplyAt(sync(wire.CodeSync{Version: 10, Full: true, Entries: []wire.CodeEntry{entry, reissued}}), t0))
	m, err := c.VerifyQR(newTok, t0)
	require.NoError(t, err, "a code issued after the damage opens")
	require.Equal(t, "doc-a", m.DocumentID)
	_, err = c.VerifyQR(tok, t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)
}
