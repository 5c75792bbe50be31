// Package deviceops is the glue between the device link (backend/devicelink,
// MQTT) and the use cases, wired by backend/server:
//
//   - Verifier answers a kiosk's code verification with backend/codes and
//     maps every refusal to a result the kiosk can show without leaking:
//     wrong_code (also a code for another device, a locked code, malformed
//     input), expired, already_collected, second_factor_required,
//     device_locked_out (with retry_after_s), or unavailable when the
//     backend itself failed.
//   - Events turns device events into document transitions (loaded,
//     pickup_completed, retrieved) and audit records (door events,
//     alarms). When a device reports that the document is still in its
//     compartment after a citizen's code was accepted (pickup_not_collected,
//     or open_not_detected: the door never opened), it gives the code back
//     with codes.Service.Rearm: for a grace period after pickup_not_collected
//     (kluisd's timeouts.grace), as before after open_not_detected. The code
//     stays single use: it is consumed again by the next accepted attempt.
//   - Followup gives a code back when the device never acted on its
//     accepted verification (kluisd died before journaling its pulse):
//     online for the whole window (default 5 min) and silent about the
//     document and its compartment since the verification.
//   - CodeSync keeps every device's offline code cache current: a full
//     code_sync soon after a device's codes changed (its Issuer and
//     Notifier wrappers and Events mark the device), at once when the
//     device comes back online (it is devicelink's PresenceObserver), and a
//     periodic check. A bundle counts as delivered only when the device
//     answered done for that command or reported its version in a
//     heartbeat; an unanswered one is sent again (after a retry interval
//     that doubles, at once on reconnect), a refused or lost one at once.
//     Workers and a send rate bound the load when a fleet reconnects.
//   - Opener sends remote-open commands and waits for the device's answer.
//   - Staff answers kiosk staff logins (PIN or badge, throttled per device
//     in PostgreSQL, kiosklimit.go, so that every replica counts together)
//     and reservations of a scanned document at the kiosk's device. Its
//     document lookups are bounded per session and per device
//     (lookuplimit.go: the pause check, the lookup and the count of a miss
//     in one transaction under the device's lock). Both throttles count
//     with failureWindow (failurewindow.go): a per-device table of
//     failures whose max-th newest, leaving the window, ends the lock.
package deviceops
