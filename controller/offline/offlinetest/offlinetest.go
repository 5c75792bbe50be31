// Package offlinetest builds offline cache entries (and signed code syncs)
// for tests the way the backend's offline bundle does, without a database.
package offlinetest

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// Params are cheap argon2id costs for tests.
var Params = pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}

// PINEntry returns a cache entry for pin (and dob when not empty) on device,
// with the verifier pickupcode.OfflineVerifier makes.
func PINEntry(docID, device, pin, dob string, addr wire.Address, exp time.Time) wire.CodeEntry {
	salt := []byte("0123456789abcdef")
	v := pickupcode.OfflineVerifier(Params, salt, device, pin, dob)
	b := base64.RawURLEncoding
	return wire.CodeEntry{DocumentID: docID, Addr: addr, Expires: exp,
		PINHash: pickupcode.FormatPINHash(Params, b.EncodeToString(salt), b.EncodeToString(v)), SecondFactor: dob != ""}
}

// Sync returns s as the code_sync command the backend sends device, signed
// with priv (wire.SignCommand; its id names the version, issued now and
// valid for a minute): what offline.Cache.Apply takes.
func Sync(t testing.TB, priv ed25519.PrivateKey, device string, s wire.CodeSync) wire.Command {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	c := wire.Command{ID: fmt.Sprintf("sync-%d", s.Version), Kind: wire.CmdCodeSync, Issued: now, Expires: now.Add(time.Minute), Codes: &s}
	if err := wire.SignCommand(priv, device, &c); err != nil {
		t.Fatalf("offlinetest: signing a code sync: %v", err)
	}
	return c
}

// EditFile rewrites the cache file at path through its JSON, as someone
// who can write the device's disk would (offline.FileName in kluisd's
// journal directory).
func EditFile(t testing.TB, path string, edit func(f map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("offlinetest: %v", err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("offlinetest: the cache file: %v", err)
	}
	edit(f)
	if b, err = json.Marshal(f); err != nil {
		t.Fatalf("offlinetest: %v", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("offlinetest: %v", err)
	}
}

// JSONValue is v as a decoded JSON value, what EditFile's map holds.
func JSONValue(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("offlinetest: %v", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("offlinetest: %v", err)
	}
	return out
}
