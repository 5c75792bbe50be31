// Package pickupcode is what kluisd and kluis-backend share about the codes
// that open a compartment: their formats, the checks either side can make
// without a database, and the attempt limits. It depends on the standard
// library and golang.org/x/crypto only, so that kluisd links none of the
// backend (backend/codes keeps the database side: issuing, single use,
// revocation, re-arming, the offline bundles).
//
// # Signed messages and QR tokens
//
// A signed message is prefix + base64url(payload) + "." +
// base64url(Ed25519 signature over everything before the last dot). The
// prefix names the format and its version and is covered by the signature,
// so a message of one kind never passes for another ([Sign], [Open]). A QR
// token is the signed message "K1." with the JSON payload [Claims]
// {v, cid, dev, exp}: the backend signs it ([SignToken]); a device holding
// only the public key ([ParsePublicKey]) checks signature, device and expiry
// offline ([VerifyToken]).
//
// # PINs
//
// A PIN has [PINDigits] digits; [NormalizePIN] drops the spaces, dots and
// dashes a citizen may type. With a PIN the kiosk always asks for the
// holder's date of birth ([ParseBirthDate]); [Config.NeedsDOB] tells for
// which document kinds it is checked.
//
// # Offline verification
//
// For each active code a device holds an argon2id verifier of the PIN (and
// date of birth) under a per-device salt ([OfflineVerifier]), shipped in the
// offline cache as "argon2id$t=..,m=..,p=..$<salt>$<verifier>"
// ([FormatPINHash], [ParsePINHash]), and the hash of the QR token's code id
// ([QRHash]). [VerifyOffline] checks a PIN against them.
//
// # Attempt limits
//
// [Config] holds the limits docs/security.md derives its brute-force bound
// from ([Config.CheckBound] refuses limits that break it); [Config.LockUntil]
// and [Config.BurstAfterFailure] are the arithmetic the backend applies in
// its database and [Limiter] applies on a device, which persists its
// [LimiterState]. [CheckOffline] tags a PIN so that a device can count the
// wrong dates of birth typed with it offline.
//
// # Argon2id hash strings
//
// [ArgonParams] are argon2id costs: [OfflineArgonParams] those of the
// offline verifiers, [DefaultArgonParams] those of the MQTT passwords; [HashSecret] and
// [VerifySecret] store a secret as a PHC string
// ("$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>").
package pickupcode
