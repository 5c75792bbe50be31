// Package offlinetest builds offline cache entries for tests the way the
// backend's offline bundle does, without a database.
package offlinetest

import (
	"encoding/base64"
	"time"

	"golang.org/x/crypto/argon2"

	"kluis/backend/codes"
	"kluis/controller/offline"
	"kluis/controller/wire"
)

// Params are cheap argon2id costs for tests.
var Params = codes.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}

// PINEntry returns a cache entry for pin (and dob when not empty) on device:
// argon2id(salt, "kluis-offline-v1:" device ":" pin [":" dob]).
func PINEntry(docID, device, pin, dob string, addr wire.Address, exp time.Time) wire.CodeEntry {
	salt := []byte("0123456789abcdef")
	in := "kluis-offline-v1:" + device + ":" + pin
	if dob != "" {
		in += ":" + dob
	}
	v := argon2.IDKey([]byte(in), salt, Params.Time, Params.MemoryKiB, Params.Threads, 32)
	b := base64.RawURLEncoding
	return wire.CodeEntry{DocumentID: docID, Addr: addr, Expires: exp,
		PINHash: offline.PINHash(Params, b.EncodeToString(salt), b.EncodeToString(v)), SecondFactor: dob != ""}
}
