package offline_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
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

// The cache file keeps the backend's signed code syncs, and Open checks
// them: every way of changing what a code opens without the backend's
// private key makes the whole file refused (ErrUntrusted), moved aside,
// and every code refused offline (the genuine QR code too) until the next
// full sync, also after a restart; a partial sync does not end it. Before,
// the file held bare entries and the planted PIN opened the compartment.
func TestTamperedCacheRefused(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	exp := t0.Add(24 * time.Hour)
	tok, cid := token(t, priv, "dev1", exp)
	genuine := wire.CodeEntry{DocumentID: "doc1", Addr: wire.Address{Board: 0, Channel: 3}, Expires: exp, QRHash: pickupcode.QRHash(cid)}
	planted := offlinetest.PINEntry("doc1", "dev1", "111222333", "1990-02-03", wire.Address{Board: 0, Channel: 3}, exp)
	sync1 := wire.CodeSync{Version: 1, Full: true, Entries: []wire.CodeEntry{genuine}}
	sync2 := wire.CodeSync{Version: 2, Entries: []wire.CodeEntry{offlinetest.PINEntry("doc2", "dev1", "123456789", "", wire.Address{Board: 0, Channel: 4}, exp)}}
	tampers := map[string]func(t *testing.T, f map[string]any){
		"an entry added to a signed sync": func(t *testing.T, f map[string]any) {
			codes := f["syncs"].([]any)[0].(map[string]any)["codes"].(map[string]any)
			codes["entries"] = append(codes["entries"].([]any), offlinetest.JSONValue(t, planted))
		},
		"an entry moved to another compartment": func(t *testing.T, f map[string]any) {
			codes := f["syncs"].([]any)[0].(map[string]any)["codes"].(map[string]any)
			codes["entries"].([]any)[0].(map[string]any)["addr"] = map[string]any{"board": 0, "channel": 5}
		},
		"entries beside the syncs": func(t *testing.T, f map[string]any) {
			f["entries"] = []any{offlinetest.JSONValue(t, planted)}
		},
		"a sync signed with another key": func(t *testing.T, f map[string]any) {
			f["syncs"] = []any{offlinetest.JSONValue(t, offlinetest.Sync(t, otherKey, "dev1", wire.CodeSync{Version: 1, Full: true,
				Entries: []wire.CodeEntry{genuine, planted}}))}
		},
		"a sync signed for another device": func(t *testing.T, f map[string]any) {
			f["syncs"] = []any{offlinetest.JSONValue(t, offlinetest.Sync(t, priv, "dev2", wire.CodeSync{Version: 1, Full: true,
				Entries: []wire.CodeEntry{genuine, planted}}))}
		},
		"the syncs out of order": func(t *testing.T, f map[string]any) {
			s := f["syncs"].([]any)
			f["syncs"] = []any{s[1], s[0]}
		},
		"the last sync dropped, its version left": func(t *testing.T, f map[string]any) {
			f["syncs"] = f["syncs"].([]any)[:1]
		},
		"its signature removed": func(t *testing.T, f map[string]any) {
			delete(f["syncs"].([]any)[0].(map[string]any), "sig")
		},
	}
	for name, tamper := range tampers {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c, err := offline.Open(dir, "dev1", pub)
			require.NoError(t, err)
			require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", sync1), t0))
			require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", sync2), t0))
			c, err = offline.Open(dir, "dev1", pub)
			require.NoError(t, err, "the file as written opens")
			require.Equal(t, 2, c.Len())
			_, err = c.VerifyQR(tok, t0)
			require.NoError(t, err)

			offlinetest.EditFile(t, filepath.Join(dir, offline.FileName), func(f map[string]any) { tamper(t, f) })
			c, err = offline.Open(dir, "dev1", pub)
			require.ErrorIs(t, err, offline.ErrUntrusted)
			require.Contains(t, err.Error(), offline.FileName+".bad-1")
			require.Zero(t, c.Len())
			require.Zero(t, c.Version(), "the heartbeat's cache_version 0 brings the whole bundle")
			_, err = c.VerifyPIN("111 222 333", "1990-02-03", t0)
			require.ErrorIs(t, err, offline.ErrUntrusted)
			_, err = c.VerifyQR(tok, t0)
			require.ErrorIs(t, err, offline.ErrUntrusted)

			// A restart refuses too (without moving anything aside
			// again), and a partial sync does not end it.
			c, err = offline.Open(dir, "dev1", pub)
			require.ErrorIs(t, err, offline.ErrUntrusted)
			_, err = os.Stat(filepath.Join(dir, offline.FileName+".bad-2"))
			require.ErrorIs(t, err, os.ErrNotExist)
			require.ErrorIs(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 3, Entries: []wire.CodeEntry{genuine}}), t0),
				offline.ErrUntrusted)
			_, err = c.VerifyQR(tok, t0)
			require.ErrorIs(t, err, offline.ErrUntrusted)

			// The backend's next full sync ends it, for good.
			require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 3, Full: true, Entries: []wire.CodeEntry{genuine}}), t0))
			c, err = offline.Open(dir, "dev1", pub)
			require.NoError(t, err)
			m, err := c.VerifyQR(tok, t0)
			require.NoError(t, err)
			require.Equal(t, 3, m.Addr.Channel)
			_, err = c.VerifyPIN("111 222 333", "1990-02-03", t0)
			require.ErrorIs(t, err, offline.ErrNoMaterial)
		})
	}
}

// The unsigned cache kluisd wrote before 2026-12-07 does not brick a device
// after the upgrade: it is refused (moved aside, every code refused
// offline), its withdrawn entries are kept (they only refuse codes), and
// the backend's next full sync, whatever its version, fills the cache
// again; an entry the device had withdrawn stays withdrawn.
func TestUnsignedCacheOfThePreviousVersion(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	exp := t0.Add(24 * time.Hour)
	kept := offlinetest.PINEntry("doc1", "dev1", "123456789", "", wire.Address{Board: 0, Channel: 1}, exp)
	gone := offlinetest.PINEntry("doc2", "dev1", "987654321", "", wire.Address{Board: 0, Channel: 2}, exp)
	old, err := json.Marshal(map[string]any{"version": 41, "entries": []wire.CodeEntry{kept}, "withdrawn": []wire.CodeEntry{gone}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, offline.FileName), old, 0o600))

	c, err := offline.Open(dir, "dev1", pub)
	require.ErrorIs(t, err, offline.ErrUntrusted)
	require.Contains(t, err.Error(), "kluisd before 2026-12-07")
	moved, err := os.ReadFile(filepath.Join(dir, offline.FileName+".bad-1"))
	require.NoError(t, err)
	require.Equal(t, old, moved)
	_, err = c.VerifyPIN("123456789", "1990-02-03", t0)
	require.ErrorIs(t, err, offline.ErrUntrusted)

	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 7, Full: true, Entries: []wire.CodeEntry{kept, gone}}), t0),
		"version 7 after the old file's 41: not stale")
	c, err = offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	m, err := c.VerifyPIN("123456789", "1990-02-03", t0)
	require.NoError(t, err)
	require.Equal(t, "doc1", m.DocumentID)
	_, err = c.VerifyPIN("987654321", "1990-02-03", t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)
}

// The cache takes only code syncs the backend signed for this device.
func TestApplyTakesOnlySignedSyncs(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	c, err := offline.Open(t.TempDir(), "dev1", pub)
	require.NoError(t, err)
	s := offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 1, Full: true})
	s.Codes.Version = 2
	require.ErrorIs(t, c.ApplyAt(s, t0), offline.ErrNotSigned)
	require.ErrorIs(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev2", wire.CodeSync{Version: 1, Full: true}), t0), offline.ErrNotSigned)
	require.Zero(t, c.Version())
}

// While the cache refuses its file, it does not know its entries, yet the
// device still sees compartments change (a forced door, a load, a damaged
// journal). Those withdrawals apply to the entries of the backend's next
// full sync, also across a restart: the backend does not know of a forced
// door, and its sync would otherwise bring back a code for a compartment
// that may hold another document now. Before, a withdrawal while the file
// was refused withdrew nothing, and the code opened offline after the
// sync.
func TestWithdrawalsWhileRefusedApplyToTheNextFullSync(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	exp := t0.Add(24 * time.Hour)
	at := func(ch int) wire.Address { return wire.Address{Board: 0, Channel: ch} }
	n := 0
	pin := func(doc string, ch int) (wire.CodeEntry, string) {
		n++
		p := fmt.Sprintf("%09d", 100000000+n)
		return offlinetest.PINEntry(doc, "dev1", p, "", at(ch), exp), p
	}
	a, aPIN := pin("docA", 3)  // its door forced while the file was refused
	b, bPIN := pin("docB", 4)  // untouched
	c5, cPIN := pin("docC", 5) // loaded at 5 while refused: kept
	d5, dPIN := pin("docD", 5) // the document that lay at 5 before
	e6, ePIN := pin("docE", 6) // at 6, on the board of a forced hatch
	refused := func(t *testing.T) (string, *offline.Cache) {
		dir := t.TempDir()
		old, err := json.Marshal(map[string]any{"version": 3, "entries": []wire.CodeEntry{a, b}})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, offline.FileName), old, 0o600))
		c, err := offline.Open(dir, "dev1", pub)
		require.ErrorIs(t, err, offline.ErrUntrusted)
		return dir, c
	}
	check := func(t *testing.T, c *offline.Cache, p string, want error) {
		t.Helper()
		_, err := c.VerifyPIN(p, "1990-02-03", t0)
		if want == nil {
			require.NoError(t, err)
			return
		}
		require.ErrorIs(t, err, want)
	}

	t.Run("forget", func(t *testing.T) {
		dir, c := refused(t)
		_, err := c.Forget(at(3), "")
		require.NoError(t, err)
		_, err = c.Forget(at(5), "docC")
		require.NoError(t, err)
		_, err = c.ForgetAll([]wire.Address{at(6)})
		require.NoError(t, err)
		c, err = offline.Open(dir, "dev1", pub)
		require.ErrorIs(t, err, offline.ErrUntrusted, "a restart before the sync")
		require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 1, Full: true,
			Entries: []wire.CodeEntry{a, b, c5, d5, e6}}), t0))
		check(t, c, aPIN, offline.ErrWithdrawn)
		check(t, c, bPIN, nil)
		check(t, c, cPIN, nil)
		check(t, c, dPIN, offline.ErrWithdrawn)
		check(t, c, ePIN, offline.ErrWithdrawn)
		// The next full sync is not touched: only what the device saw
		// before the first one.
		f, fPIN := pin("docF", 3)
		require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 2, Full: true,
			Entries: []wire.CodeEntry{a, b, f}}), t0))
		check(t, c, fPIN, nil)
		check(t, c, aPIN, offline.ErrWithdrawn)
	})
	t.Run("damaged journal", func(t *testing.T) {
		_, c := refused(t)
		_, err := c.WithdrawAll()
		require.NoError(t, err)
		require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 1, Full: true,
			Entries: []wire.CodeEntry{a, b}}), t0))
		check(t, c, aPIN, offline.ErrWithdrawn)
		check(t, c, bPIN, offline.ErrWithdrawn)
	})
}

// Floor refuses a file older than the last sync the device applied (an
// older copy put back, signed all the same), and ApplyAt takes no sync of
// that version or older, also while the refused cache is at version 0; a
// file at the mark, or holding no sync, is left alone.
func TestFloorRefusesAnOlderCopy(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	exp := t0.Add(24 * time.Hour)
	revoked := offlinetest.PINEntry("doc1", "dev1", "123456789", "1990-02-03", wire.Address{Board: 0, Channel: 3}, exp)
	c, err := offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	require.NoError(t, c.Floor(5), "no sync held: nothing to refuse")
	require.ErrorIs(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 5, Full: true, Entries: []wire.CodeEntry{revoked}}), t0),
		offline.ErrStale)
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 6, Full: true, Entries: []wire.CodeEntry{revoked}}), t0))
	old, err := os.ReadFile(filepath.Join(dir, offline.FileName))
	require.NoError(t, err)
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 7, Full: true}), t0))

	c, err = offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	require.NoError(t, c.Floor(7), "the file at the mark")
	require.NoError(t, os.WriteFile(filepath.Join(dir, offline.FileName), old, 0o600))
	c, err = offline.Open(dir, "dev1", pub)
	require.NoError(t, err, "an older copy is signed all the same")
	_, err = c.VerifyPIN("123456789", "1990-02-03", t0)
	require.NoError(t, err, "without the mark, the revoked code is back")
	require.ErrorIs(t, c.Floor(7), offline.ErrUntrusted)
	_, err = c.VerifyPIN("123456789", "1990-02-03", t0)
	require.ErrorIs(t, err, offline.ErrUntrusted)
	require.Zero(t, c.Version())
	require.ErrorIs(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 6, Full: true, Entries: []wire.CodeEntry{revoked}}), t0),
		offline.ErrStale, "an older sync sent again")
	require.NoError(t, c.ApplyAt(offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: 8, Full: true}), t0))
	_, err = c.VerifyPIN("123456789", "1990-02-03", t0)
	require.ErrorIs(t, err, offline.ErrNoMaterial, "the next full sync ends the refusal, without the revoked code")
}

// A withdrawal is handed to the recorder before the file is written (its
// error fails the withdrawal, the file unchanged), and KeepWithdrawn,
// given what the recorder got, withdraws again an entry deleted from the
// file's withdrawn list, also in a later sync carrying it again.
func TestWithdrawalsRecordedAndKept(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	exp := t0.Add(24 * time.Hour)
	entry := offlinetest.PINEntry("doc1", "dev1", "123456789", "1990-02-03", wire.Address{Board: 0, Channel: 3}, exp)
	sync := func(v int64) wire.Command {
		return offlinetest.Sync(t, priv, "dev1", wire.CodeSync{Version: v, Full: true, Entries: []wire.CodeEntry{entry}})
	}
	c, err := offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	require.NoError(t, c.ApplyAt(sync(1), t0))
	c.SetRecorder(func([]offline.WithdrawnKey) error { return fmt.Errorf("journal full") })
	_, err = c.Forget(entry.Addr, "")
	require.Error(t, err)
	require.Equal(t, 1, c.Len(), "not withdrawn when not recorded")
	var got []offline.WithdrawnKey
	c.SetRecorder(func(k []offline.WithdrawnKey) error { got = append(got, k...); return nil })
	n, err := c.Forget(entry.Addr, "")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, []offline.WithdrawnKey{{Key: offline.EntryKey(entry), Expires: exp}}, got)

	offlinetest.EditFile(t, filepath.Join(dir, offline.FileName), func(f map[string]any) { delete(f, "withdrawn") })
	c, err = offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	require.Equal(t, 1, c.Len(), "the file alone brings it back")
	n, err = c.KeepWithdrawn(got)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = c.VerifyPIN("123456789", "1990-02-03", t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn)
	require.NoError(t, c.ApplyAt(sync(2), t0))
	_, err = c.VerifyPIN("123456789", "1990-02-03", t0)
	require.ErrorIs(t, err, offline.ErrWithdrawn, "a later sync carrying it")
	c, err = offline.Open(dir, "dev1", pub)
	require.NoError(t, err)
	require.Zero(t, c.Len(), "withdrawn again durably")
}
