// Package notify tells citizens about their documents: e-mail (SMTP or an
// .eml drop directory), SMS through an HTTP gateway, a calendar entry, a
// printable pickup slip and the public track-and-trace page, all in the
// holder's language (Dutch, French, English or German, plain B1 language).
//
// Every word a citizen reads lives in one catalogue (catalog.go): language
// → key → text, where a text may be a text/template over a few
// placeholders. The templates of the e-mail, the slip and the track page
// hold markup only; a test renders them with a catalogue whose texts are
// all a marker and finds no other words. Another test checks that every
// key exists in every language with the same placeholders.
//
// Dates are written as people say them, in the site's time zone
// (Europe/Brussels by default): weekday and date in the holder's language,
// and a deadline at midnight is the end of the day before ("tot en met
// dinsdag 15 december (tot middernacht)").
//
// The e-mail is one MIME message built by [BuildEmail]: multipart/mixed
// holding multipart/related (a multipart/alternative of text/plain and
// text/html, and the QR code as an inline PNG referenced by cid:) and the
// .ics calendar entry ([Calendar]: the last day with a reminder the day
// before). The SMTP sender and the drop directory write exactly the same
// bytes; package mailread reads them back.
//
// SMS texts are GSM-7 where they can be (names are folded: ê → e) and at
// most two segments: long site and device names are shortened until the
// text fits ([SMSSegments]).
//
// [Notifier] sends through the holder's channels, or writes a pickup slip
// for the counter when the holder has neither e-mail nor mobile, and records
// every notification (never its text, PIN or recipient) in the
// notifications table.
//
// # The outbox
//
// In kluis-backend nothing is sent from memory: [Outbox] implements
// service.Outbox, so every transition that tells the holder something
// inserts a notify_outbox row in its own transaction (the codes of a ready
// message sealed with AES-256-GCM under a key derived from the backend's
// keys, bound to the document and kind). [Outbox.Run], on every replica,
// claims due rows one at a time per worker with FOR UPDATE SKIP LOCKED,
// renders the message from the document as it is now, sends on the
// channels not yet done (each send bounded by a timeout), records the
// attempts in notifications and deletes the row, or schedules a retry with
// exponential back-off (each wait shortened at random by up to
// OutboxOptions.Jitter, so that messages that failed together do not come
// back together), in the same transaction. Delivery is at least once:
// a crash after a gateway accepted a message and before that commit sends
// it again; exactly once cannot be had from an SMTP server or an SMS
// gateway. After the last attempt the row is kept as gave_up, without its
// secret, and a ready message that reached nobody becomes a pickup slip. A
// ready message whose document left its compartment (its codes forgotten
// by a trigger in that transaction) or got new codes is dropped, and so is
// a reminder for a document no longer waiting.
//
// The track page (/t/{tracking id}, [TrackHandler]) shows the document's
// state, what to do next and its journey as a timeline from the document
// history; only the random tracking id opens it.
package notify
