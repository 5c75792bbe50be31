// Package lifecycle is the document state machine, written down as data.
//
// A document (an ID card, passport or driving licence waiting for its
// holder) moves through these states. Every allowed move:
//
//	from         action     to
//	registered   reserve    reserved
//	reserved     unreserve  registered
//	reserved     load       loaded
//	loaded       notify     notified
//	notified     renotify   notified
//	loaded       collect    collected
//	notified     collect    collected
//	expired      collect    collected
//	loaded       expire     expired
//	notified     expire     expired
//	loaded       retrieve   retrieved
//	notified     retrieve   retrieved
//	expired      retrieve   retrieved
//	registered   cancel     cancelled
//	reserved     cancel     cancelled
//	loaded       reissue    loaded
//	notified     reissue    notified
//
// The rules, thought through as a city counter works:
//
//   - reserve picks a compartment for a registered document; unreserve gives
//     it back (staff changed their mind, the door would not close) and the
//     document is registered again.
//   - load happens when the door closes with the item inside (a device event)
//     or when staff confirm it; only a reserved document can be loaded. The
//     pickup deadline starts here.
//   - notify records that the holder was told; renotify sends a reminder and
//     keeps the state notified.
//   - collect is the holder taking the document out. It is allowed from
//     loaded (the citizen was quicker than the notification), notified, and
//     expired: a device working offline may not yet know the deadline
//     passed, and the physical truth must be recorded rather than refused.
//   - expire is the deadline sweep: loaded or notified documents past their
//     deadline. The item is still in the compartment.
//   - retrieve is staff taking the document back to the counter: always
//     after expiry, and early from loaded or notified (the holder came to
//     the counter, the document was recalled).
//   - cancel ends a document that never went into a compartment: from
//     registered or reserved only. A loaded document must be retrieved
//     first, so nothing is ever forgotten behind a door.
//   - reissue gives the holder new codes (the old ones stop working) and
//     keeps the state: loaded or notified only.
//
// collected, retrieved and cancelled are final: nothing leaves them. Every
// (state, action) pair not listed is refused with an error wrapping
// [ErrForbiddenTransition] that says what was tried, e.g.
// "cannot collect a document that is registered".
package lifecycle
