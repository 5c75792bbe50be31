// Package codes issues and verifies the one-time pickup codes with which a
// citizen opens a compartment: a signed QR token and a numeric PIN. It is
// the database side; the formats, the offline checks and the attempt-limit
// arithmetic it shares with kluisd live in controller/pickupcode.
//
// # QR tokens
//
// [Service.Issue] signs a token (pickupcode.SignToken: "K1." +
// base64url(payload) + "." + base64url(Ed25519 signature)) with the
// backend's signing key ([Keys]). A device holding only the public key
// checks it offline (pickupcode.VerifyToken: signature, device, expiry). The
// code's row keeps a keyed digest of the token (Keys.TokenDigest), and the
// backend checks a token online against it instead of signing it again:
// the token's claims are read unverified, its code row read and locked,
// and only if the row's digest is the token's (in constant time) do its
// device and expiry count; a row without a digest (issued before it) has
// the token's signature checked. The backend additionally checks the code
// row (single use, revocation).
// Possession of the token (the e-mail, the slip) is the factor: a QR code
// alone opens the compartment.
//
// # PINs
//
// A PIN has pickupcode.PINDigits digits from crypto/rand, unique among the
// active codes of its device. It is returned once by [Service.Issue] (for
// the notification) and stored only as HMAC-SHA256(pinKey, deviceID ":"
// pin). With a PIN the kiosk always asks for the holder's date of birth too,
// whatever the document, so that the question never reveals whether a PIN
// exists; the date is checked for the kinds in pickupcode.Config.DOBKinds
// (identity documents by default) and ignored otherwise. It is stored only
// as an HMAC bound to the code id. During a rotation of the PIN key
// (Keys.PreviousPIN) both digests are looked up and Issue keeps a PIN unique
// on its device under both keys; nothing new is made under the previous
// key.
//
// # Limits
//
// Every failed PIN attempt on a device counts against that device: a burst
// limit (Config.DeviceMaxFailures in Config.DeviceWindow locks PIN entry
// for Config.DeviceLockout) and a daily cap (Config.DailyMaxFailures in any
// rolling Config.DailyWindow), computed by pickupcode.Config over the
// attempts recorded in the database. A code with Config.CodeMaxFailures
// wrong dates of birth is locked and needs a re-issue. docs/security.md
// derives the brute-force bound from these numbers;
// pickupcode.Config.BruteForceBound computes it and the tests pin it.
//
// # Offline
//
// [Service.OfflineBundle] gives a device, per active code, an argon2id
// verifier of the PIN (and date of birth) under a per-device salt
// (pickupcode.OfflineVerifier), which pickupcode.VerifyOffline checks
// without any backend key; pickupcode.Limiter applies the same attempt
// limits on the device.
package codes
