package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/codes"
	"kluis/backend/service"
	"kluis/backend/store"
)

// Channels recorded in the notifications table and the metrics.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
	ChannelSlip  = "slip"
)

// Options configure [New].
type Options struct {
	// DB is the database (a *pgxpool.Pool).
	DB store.DB
	// Mail sends e-mail; nil: no e-mail channel.
	Mail MailSender
	// SMS sends text messages; nil: no SMS channel.
	SMS SMSSender
	// Slips receives pickup slips when the holder has no channel; nil: none.
	Slips SlipSink
	// From is the sender address, e.g. "Stad Kortrijk <kluis@kortrijk.be>" (required with Mail).
	From string
	// Sender signs the messages; default "Stad Kortrijk".
	Sender string
	// TrackBaseURL prefixes the track link ("<base>/t/<id>"); default "http://localhost:8080".
	TrackBaseURL string
	// Clock gives the time; default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil: not registered.
	Registerer prometheus.Registerer
	// OnNotified is called when the holder was told that the document is
	// ready (e-mail or SMS accepted, or slip written); wire it to
	// service.Service.MarkNotified. nil: nothing.
	OnNotified func(ctx context.Context, documentID string) error
}

// ErrNotDelivered means no channel reached the holder.
var ErrNotDelivered = errors.New("notification reached nobody")

// ErrPurged is prepare's answer for a document whose holder's personal
// data was erased (service.Purge, PurgeUnclaimed): there is nobody to
// address and no name to write, so no message, slip or tracking link is
// made for it (Notify and the outbox drop such notifications before). It
// is service.ErrPurged, the service's refusal of the same documents.
var ErrPurged = service.ErrPurged

var (
	emailRe = regexp.MustCompile(`[^\s<>"'(),;:]+@[^\s<>"'(),;:]+`)
	phoneRe = regexp.MustCompile(`\+?[0-9](?:[ ./-]?[0-9]){7,}`)
)

// redact removes e-mail addresses and phone numbers a server may echo in
// its error text, before that text is logged or stored.
func redact(s string) string {
	s = emailRe.ReplaceAllString(s, "[address]")
	return phoneRe.ReplaceAllString(s, "[number]")
}

// Notifier implements service.Notifier and service.Purger.
type Notifier struct {
	opts Options
	log  *slog.Logger
	sent *prometheus.CounterVec
}

var (
	_ service.Notifier = (*Notifier)(nil)
	_ service.Purger   = (*Notifier)(nil)
)

// New checks opts and returns a Notifier.
func New(opts Options) (*Notifier, error) {
	if opts.DB == nil {
		return nil, fmt.Errorf("notify: no database: %w", ErrInvalid)
	}
	if opts.Mail != nil {
		if _, err := mail.ParseAddress(opts.From); err != nil {
			return nil, fmt.Errorf("notify: from address %q: %w", opts.From, ErrInvalid)
		}
	}
	if opts.Sender == "" {
		opts.Sender = "Stad Kortrijk"
	}
	if opts.TrackBaseURL == "" {
		opts.TrackBaseURL = "http://localhost:8080"
	}
	opts.TrackBaseURL = strings.TrimRight(opts.TrackBaseURL, "/")
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	n := &Notifier{opts: opts, log: opts.Logger.With("part", "notify"),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kluis_notify_messages_total",
			Help: "Notifications by channel (email, sms, slip) and outcome (sent, failed, needed).",
		}, []string{"channel", "outcome"})}
	// Every channel's outcomes start at 0, so that an alert on increase()
	// sees the first failure.
	for _, c := range [][2]string{{ChannelEmail, "sent"}, {ChannelEmail, "failed"}, {ChannelSMS, "sent"}, {ChannelSMS, "failed"},
		{ChannelSlip, "needed"}, {ChannelSlip, "failed"}} {
		n.sent.WithLabelValues(c[0], c[1])
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(n.sent); err != nil {
			return nil, fmt.Errorf("notify: register metrics: %w", err)
		}
	}
	return n, nil
}

// messageFor maps a service notification kind to a catalogue message.
func messageFor(kind string) (string, bool) {
	switch kind {
	case service.NotifyLoaded, service.NotifyReissued:
		return MsgReady, true
	case service.NotifyReminder:
		return MsgReminder, true
	case service.NotifyCollected:
		return MsgReceipt, true
	case service.NotifyExpired:
		return MsgReturned, true
	}
	return "", false
}

// Notify tells the holder through e-mail and/or SMS, or writes a slip for
// the counter when the holder has neither (ready messages only). Every
// attempt is recorded. It fails when nothing reached the holder. It sends
// at once, from memory; [Outbox] queues the same messages durably instead.
// Nothing is made or sent for a document whose holder's data was erased
// (ErrPurged).
func (n *Notifier) Notify(ctx context.Context, note service.Notification) error {
	if note.Document.PurgedAt != nil {
		n.log.Info("no message for a document whose holder's data was erased", "document", note.Document.ID, "kind", note.Kind)
		return nil
	}
	p, err := n.prepare(ctx, n.opts.DB, note)
	if err != nil {
		return err
	}
	var (
		delivered bool
		errs      []error
	)
	for _, ch := range n.channels(p.doc, p.msg) {
		if err := n.send(ctx, n.opts.DB, p, ch, 0); err != nil {
			errs = append(errs, err)
		} else {
			delivered = true
		}
	}
	if delivered && p.msg == MsgReady && n.opts.OnNotified != nil {
		if err := n.opts.OnNotified(ctx, p.doc.ID); err != nil {
			n.log.Warn("mark notified", "document", p.doc.ID, "err", err)
		}
	}
	if len(errs) > 0 && !delivered {
		return fmt.Errorf("notify: %s for %s: %w: %s", note.Kind, p.doc.ID, ErrNotDelivered, redact(errors.Join(errs...).Error()))
	}
	if len(errs) > 0 {
		n.log.Warn("a channel failed", "document", p.doc.ID, "kind", note.Kind, "err", redact(errors.Join(errs...).Error()))
	}
	return nil
}

// prepared is a rendered message, ready to go out on any channel.
type prepared struct {
	kind, msg string
	doc       store.Document
	site      store.Site
	dev       store.Device
	number    int
	deadline  time.Time
	cr        codes.Credentials
	r         Rendered
	att       mailParts
	now       time.Time
}

// prepare renders note's message, reading (and for the tracking id
// writing) through db.
func (n *Notifier) prepare(ctx context.Context, db store.DB, note service.Notification) (*prepared, error) {
	msg, ok := messageFor(note.Kind)
	if !ok {
		return nil, fmt.Errorf("notify: kind %q: %w", note.Kind, ErrInvalid)
	}
	doc := note.Document
	if doc.PurgedAt != nil {
		return nil, fmt.Errorf("notify: %s for %s: %w", note.Kind, doc.ID, ErrPurged)
	}
	p := &prepared{kind: note.Kind, msg: msg, doc: doc, number: note.Compartment.Number, now: n.opts.Clock()}
	if msg == MsgReady {
		c, ok := note.Secret.(codes.Credentials)
		if !ok || c.QRToken == "" || c.PIN == "" {
			return nil, fmt.Errorf("notify: %s for %s without credentials: %w", note.Kind, doc.ID, ErrInvalid)
		}
		p.cr = c
	}
	lang := Language(doc.Language)
	site, err := store.GetSite(ctx, db, doc.SiteID)
	if err != nil {
		return nil, fmt.Errorf("notify: site of %s: %w", doc.ID, err)
	}
	p.site = site
	p.dev = store.Device{ID: doc.DeviceID, Name: doc.DeviceID, Kind: store.Locker}
	if doc.DeviceID != "" {
		if d, err := store.GetDevice(ctx, db, doc.DeviceID); err == nil {
			p.dev.Kind, p.dev.Directions = d.Kind, d.Directions
			if d.Name != "" {
				p.dev.Name = d.Name
			}
		}
	}
	tid, err := TrackingID(ctx, db, doc.ID, p.now)
	if err != nil {
		return nil, err
	}
	if doc.Deadline != nil {
		p.deadline = *doc.Deadline
	} else if !p.cr.ExpiresAt.IsZero() {
		p.deadline = p.cr.ExpiresAt
	}
	when := p.now
	if doc.ClosedAt != nil {
		when = *doc.ClosedAt
	}
	data := MessageData{
		FirstName: doc.FirstName, DocumentKind: string(doc.Kind), SiteName: site.Name, SiteAddress: site.Address,
		DeviceKind: string(p.dev.Kind), DeviceName: p.dev.Name, Directions: DirectionsIn(p.dev.Directions, lang), Compartment: p.number,
		Deadline: p.deadline, When: when, PIN: p.cr.PIN, TrackURL: n.opts.TrackBaseURL + "/t/" + tid, Sender: n.opts.Sender,
		Reissued: note.Kind == service.NotifyReissued, Now: p.now, Location: site.Location(),
	}
	if msg == MsgReady {
		q, err := QRCode(p.cr.QRToken)
		if err != nil {
			return nil, err
		}
		p.att.qr = &q
		data.QRContentID, data.QRWidth = qrContentID, q.DisplayWidth()
	}
	if (msg == MsgReady || msg == MsgReminder) && !p.deadline.IsZero() {
		p.att.ics, err = Calendar(lang, data, CalendarUID(doc.ID, hostOf(n.opts.TrackBaseURL)))
		if err != nil {
			return nil, err
		}
		data.CalendarAttached = true
	}
	if p.r, err = Render(lang, msg, data); err != nil {
		return nil, err
	}
	return p, nil
}

// channels lists the channels that reach doc's holder: e-mail and SMS when
// the holder has them and they are configured, else, for a ready message,
// a pickup slip for the counter.
func (n *Notifier) channels(doc store.Document, msg string) []string {
	var out []string
	if doc.Email != "" && n.opts.Mail != nil {
		out = append(out, ChannelEmail)
	}
	if doc.Mobile != "" && n.opts.SMS != nil {
		out = append(out, ChannelSMS)
	}
	if len(out) == 0 && msg == MsgReady {
		out = append(out, ChannelSlip)
	}
	return out
}

// send sends p on one channel, bounded by timeout (0: only by ctx), and
// records the attempt through db under ctx: a send that ran out of time is
// recorded as failed, and the record does not break db's transaction.
func (n *Notifier) send(ctx context.Context, db store.DB, p *prepared, channel string, timeout time.Duration) error {
	sctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var err error
	switch channel {
	case ChannelEmail:
		err = n.sendEmail(sctx, p.doc.Email, p.r, p.att, p.now)
	case ChannelSMS:
		err = n.opts.SMS.SendSMS(sctx, p.doc.Mobile, p.r.SMS)
	case ChannelSlip:
		err = n.writeSlip(sctx, p.doc, p.site, p.dev, p.number, p.deadline, p.cr, p.now)
	default:
		err = fmt.Errorf("notify: channel %q: %w", channel, ErrInvalid)
	}
	n.record(ctx, db, p.doc.ID, p.kind, channel, err)
	return err
}

// qrContentID names the inline QR image in the ready e-mail.
const qrContentID = "qr@kluis"

// mailParts are the images and files that go with an e-mail.
type mailParts struct {
	qr  *QR
	ics []byte
}

func (n *Notifier) sendEmail(ctx context.Context, to string, r Rendered, p mailParts, now time.Time) error {
	e := Email{From: n.opts.From, To: to, Subject: r.Subject, Text: r.Text, HTML: r.HTML, Language: r.Language, Date: now}
	if p.qr != nil {
		e.Inline = []Inline{{ContentID: qrContentID, ContentType: "image/png", Filename: r.QRFilename, Data: p.qr.PNG}}
	}
	if p.ics != nil {
		e.Attachments = []Attachment{{ContentType: "text/calendar; charset=utf-8; method=PUBLISH", Filename: r.CalendarFilename, Data: p.ics}}
	}
	raw, err := BuildEmail(e)
	if err != nil {
		return err
	}
	from, _ := mail.ParseAddress(n.opts.From)
	rcpt, err := mail.ParseAddress(to)
	if err != nil {
		return fmt.Errorf("notify: recipient address: %w", ErrInvalid)
	}
	return n.opts.Mail.SendMail(ctx, from.Address, []string{rcpt.Address}, raw)
}

func (n *Notifier) writeSlip(ctx context.Context, doc store.Document, site store.Site, dev store.Device, number int, deadline time.Time, cr codes.Credentials, now time.Time) error {
	if n.opts.Slips == nil {
		return fmt.Errorf("notify: holder has no e-mail or mobile and no slip printer is configured: %w", ErrInvalid)
	}
	html, err := Slip(SlipData{Language: doc.Language, FirstName: doc.FirstName, DocumentKind: string(doc.Kind),
		SiteName: site.Name, SiteAddress: site.Address, DeviceKind: string(dev.Kind), DeviceName: dev.Name,
		Directions: DirectionsIn(dev.Directions, doc.Language), Compartment: number,
		Deadline: deadline, PIN: cr.PIN, QRToken: cr.QRToken, Now: now, Location: site.Location()})
	if err != nil {
		return err
	}
	return n.opts.Slips.PutSlip(ctx, doc.ID, html)
}

// DirectionsIn picks a device's directions in lang, else in the first of
// Languages that has them ("" when none).
func DirectionsIn(dirs map[string]string, lang string) string {
	if s := dirs[lang]; s != "" {
		return s
	}
	for _, l := range Languages {
		if s := dirs[l]; s != "" {
			return s
		}
	}
	return ""
}

// record stores one attempt (no text, no recipient) through db and counts it.
func (n *Notifier) record(ctx context.Context, db store.DB, documentID, kind, channel string, sendErr error) {
	status, errText := "sent", ""
	if channel == ChannelSlip {
		status = "needed"
	}
	if sendErr != nil {
		status, errText = "failed", redact(sendErr.Error())
		if len(errText) > 500 {
			errText = errText[:500]
		}
	}
	n.sent.WithLabelValues(channel, status).Inc()
	if _, err := db.Exec(ctx, `INSERT INTO notifications (document_id, kind, channel, status, error, created_at)
		VALUES ($1::uuid, $2, $3, $4, $5, $6)`, documentID, kind, channel, status, errText, n.opts.Clock()); err != nil {
		n.log.Error("record notification", "document", documentID, "channel", channel, "err", err)
	}
	n.log.Info("notification", "document", documentID, "kind", kind, "channel", channel, "status", status)
}

// Record is one row of the notifications table.
type Record struct {
	// Kind, Channel and Status as stored.
	Kind, Channel, Status string
	// Error is the failure, if any.
	Error string
	// At is when it was attempted.
	At time.Time
}

// History lists a document's notifications, oldest first.
func History(ctx context.Context, db store.DB, documentID string) ([]Record, error) {
	rows, err := db.Query(ctx, `SELECT kind, channel, status, error, created_at FROM notifications
		WHERE document_id = $1::uuid ORDER BY id`, documentID)
	if err != nil {
		return nil, fmt.Errorf("notify: history: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) {
		var x Record
		err := r.Scan(&x.Kind, &x.Channel, &x.Status, &x.Error, &x.At)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("notify: history: %w", err)
	}
	return out, nil
}

// PruneHistory deletes at most limit notifications (History's rows)
// made before cutoff whose document was closed (collected, retrieved,
// cancelled), or had its holder's data erased unclaimed, before cutoff
// too, oldest first, in one statement (rows
// another replica is deleting are skipped), and returns how many. A
// document still being handled keeps every row whatever its age (the
// reminder pass, the track page and the slips read them), and a closed
// one keeps them for the whole retention after it closed, for a holder
// who says they were never told; its transitions stay in the audit
// trail. The backend calls it with the device retention
// (backend/devicelink's Pruner, -device-retention). A document's
// closed_at is set by its transition to a final state (backend/service,
// the one path that changes a state) and only then: a document without
// one is still being handled. One that is never closed (registered and
// never loaded, or expired and never retrieved) keeps its rows until its
// holder's data was erased unclaimed (purged_at, service.PurgeUnclaimed)
// before cutoff: then they go as a closed one's do.
func PruneHistory(ctx context.Context, db store.DB, cutoff time.Time, limit int) (int, error) {
	tag, err := db.Exec(ctx, `WITH doomed AS (
		SELECT n.id FROM notifications n JOIN documents d ON d.id = n.document_id
		WHERE n.created_at < $1 AND ((d.state IN ('collected', 'retrieved', 'cancelled') AND d.closed_at < $1) OR d.purged_at < $1)
		ORDER BY n.created_at LIMIT $2 FOR UPDATE OF n SKIP LOCKED)
		DELETE FROM notifications n USING doomed WHERE n.id = doomed.id`, cutoff.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("notify: prune notifications: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PurgeDocuments forgets the tracking ids of purged documents (their track
// links stop working), clears stored error texts and drops their outbox
// rows, inside the purge transaction, and removes their pickup slips (a
// slip carries the holder's first name) when the slip sink can
// (SlipRemover). A slip removed in a purge that then rolls back is not
// made again: the document is past its retention and gets none anyway.
func (n *Notifier) PurgeDocuments(ctx context.Context, tx pgx.Tx, documentIDs []string) error {
	if len(documentIDs) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM notify_tracking WHERE document_id = ANY($1::uuid[])`, documentIDs); err != nil {
		return fmt.Errorf("notify: purge: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE notifications SET error = '' WHERE document_id = ANY($1::uuid[]) AND error <> ''`, documentIDs); err != nil {
		return fmt.Errorf("notify: purge: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM notify_outbox WHERE document_id = ANY($1::uuid[])`, documentIDs); err != nil {
		return fmt.Errorf("notify: purge: %w", err)
	}
	if r, ok := n.opts.Slips.(SlipRemover); ok {
		for _, id := range documentIDs {
			if err := r.RemoveSlip(ctx, id); err != nil {
				return err
			}
		}
	}
	return nil
}
