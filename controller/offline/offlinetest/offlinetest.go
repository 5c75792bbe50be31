// Package offlinetest builds offline cache entries for tests the way the
// backend's offline bundle does, without a database.
package offlinetest

import (
	"encoding/base64"
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
