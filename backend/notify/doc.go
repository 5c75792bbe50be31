// Package notify tells citizens about their documents: e-mail (SMTP or an
// .eml drop directory), SMS through an HTTP gateway, a printable pickup slip
// and the public track-and-trace page, all in the holder's language (Dutch,
// French, English or German, plain B1 language).
//
// The messages live in one catalogue (catalog.go): per language and message
// a subject, paragraphs and an SMS text, each a text/template. Plain text
// joins the paragraphs; HTML puts each rendered paragraph through
// html/template, so citizen data is always escaped.
//
// The e-mail is one MIME message built by [BuildEmail]: multipart/related
// holding a multipart/alternative (text/plain, text/html) and the QR code as
// an inline PNG referenced by cid:. The SMTP sender and the drop directory
// write exactly the same bytes.
//
// [Notifier] implements service.Notifier: it sends through the holder's
// channels, or writes a pickup slip for the counter when the holder has
// neither e-mail nor mobile, and records every notification (never its text,
// PIN or recipient) in the notifications table.
package notify
