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
// [Notifier] implements service.Notifier: it sends through the holder's
// channels, or writes a pickup slip for the counter when the holder has
// neither e-mail nor mobile, and records every notification (never its text,
// PIN or recipient) in the notifications table.
//
// The track page (/t/{tracking id}, [TrackHandler]) shows the document's
// state, what to do next and its journey as a timeline from the document
// history; only the random tracking id opens it.
package notify
