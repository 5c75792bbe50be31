package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/lifecycle"
	"kluis/backend/notify/notifytest"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
	"kluis/deploy/dev/testenv"
)

// ofix is a backend's notification path on real PostgreSQL: the service
// with real codes queues into the outbox; senders ("replicas") are made
// separately, as many as a test wants.
type ofix struct {
	ctx   context.Context
	clock *storetest.Clock
	st    *store.Store
	cs    *codes.Service
	smtp  *notifytest.SMTPServer
	sms   *notifytest.SMSGateway
	slips string
	key   []byte
	keys  codes.Keys
	svc   *service.Service
	quiet *slog.Logger
	seq   int
}

func newOfix(t *testing.T, compartments int) *ofix {
	t.Helper()
	f := &ofix{ctx: context.Background(), clock: storetest.NewClock(time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC)),
		smtp: notifytest.NewSMTPServer(t, notifytest.SMTPOptions{}), sms: notifytest.NewSMSGateway(t),
		slips: filepath.Join(t.TempDir(), "slips"), key: make([]byte, 32), quiet: slog.New(slog.NewTextHandler(io.Discard, nil))}
	_, _ = rand.Read(f.key)
	f.st = storetest.NewWithOptions(t, store.Options{Clock: f.clock.Now})
	keys, err := codes.GenerateKeys()
	require.NoError(t, err)
	f.keys = keys
	f.cs, err = codes.New(codes.Options{Pool: f.st.Pool(), Keys: keys, Clock: f.clock.Now, Logger: f.quiet,
		Argon: pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	require.NoError(t, err)
	// The transitions' own process: it queues, but neither its hook after
	// the commit (no Notifier) nor its sender runs: as if it died right
	// after each commit.
	_, queue := f.sender(t, OutboxOptions{})
	f.svc, err = service.New(service.Options{Store: f.st, Clock: f.clock.Now, Logger: f.quiet,
		Codes: codes.Issuer{Service: f.cs}, Outbox: queue})
	require.NoError(t, err)
	_, err = f.svc.CreateSite(f.ctx, "user:admin", store.NewSite{ID: "kortrijk", Name: "Stadhuis Kortrijk", Address: "Grote Markt 54, 8500 Kortrijk"})
	require.NoError(t, err)
	comps := make([]store.NewCompartment, compartments)
	for i := range comps {
		comps[i] = store.NewCompartment{Channel: i, Size: store.SizeM, HeightCM: 100}
	}
	_, err = f.svc.CreateDevice(f.ctx, "user:admin", store.NewDevice{ID: "l1", SiteID: "kortrijk", Kind: store.Locker, Name: "K-Noord",
		Compartments: comps})
	require.NoError(t, err)
	return f
}

// sender makes one replica's notifier and outbox (same keys, own metrics);
// its OnNotified marks the document notified through the service.
func (f *ofix) sender(t *testing.T, o OutboxOptions) (*Notifier, *Outbox) {
	t.Helper()
	n, err := New(Options{DB: f.st.Pool(), Mail: &SMTP{Addr: f.smtp.Addr, AllowPlain: true}, SMS: &SMSGateway{URL: f.sms.URL, Token: "t"},
		Slips: &DirSlips{Dir: f.slips}, From: "Stad Kortrijk <kluis@kortrijk.be>", Clock: f.clock.Now, Logger: f.quiet,
		OnNotified: func(ctx context.Context, id string) error {
			_, err := f.svc.MarkNotified(ctx, "system", id)
			return err
		}})
	require.NoError(t, err)
	o.Pool, o.Notifier, o.Clock, o.Logger = f.st.Pool(), n, f.clock.Now, f.quiet
	if o.SealKey == nil {
		o.SealKey = f.key
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Rand == nil {
		o.Rand = func() float64 { return 0 } // no jitter: the waits are the back-off (TestOutboxBackoffJitter)
	}
	x, err := NewOutbox(o)
	require.NoError(t, err)
	return n, x
}

// loaded registers, reserves and loads a passport: the ready message is
// queued in the load's transaction.
func (f *ofix) loaded(t *testing.T, email, mobile string) store.Document {
	t.Helper()
	f.seq++
	d, err := f.svc.RegisterDocument(f.ctx, "user:counter", store.NewDocument{Kind: store.Passport, Number: fmt.Sprintf("EP%06d", f.seq),
		FirstName: "Lotte", LastName: "Claes", BirthDate: new(time.Date(1985, 6, 1, 0, 0, 0, 0, time.UTC)), Language: "en",
		Email: email, Mobile: mobile, SiteID: "kortrijk"})
	require.NoError(t, err)
	_, err = f.svc.Reserve(f.ctx, "user:counter", d.ID, service.ReserveOptions{})
	require.NoError(t, err)
	d, err = f.svc.Load(f.ctx, "user:counter", d.ID)
	require.NoError(t, err)
	return d
}

// queued counts the document's rows in the outbox in state.
func (f *ofix) queued(t *testing.T, docID, state string) int {
	t.Helper()
	var n int
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT count(*) FROM notify_outbox WHERE document_id = $1 AND state = $2`, docID, state).Scan(&n))
	return n
}

// records lists the document's notifications as "kind/channel/status".
func (f *ofix) records(t *testing.T, docID string) []string {
	t.Helper()
	recs, err := History(f.ctx, f.st.Pool(), docID)
	require.NoError(t, err)
	var out []string
	for _, r := range recs {
		out = append(out, r.Kind+"/"+r.Channel+"/"+r.Status)
	}
	return out
}

var smsPIN = regexp.MustCompile(`PIN: ([0-9 ]+) \+`)

// The backend commits the load and dies before sending: nothing went out,
// but the ready message is in the outbox, its codes sealed (neither the PIN
// nor the QR token readable in the table). Another replica's sender sends
// it later; the PIN in the SMS and the QR token in the e-mail open the
// compartment; the document is marked notified, and nothing is sent twice.
func TestOutboxSurvivesCrashBetweenCommitAndSend(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 2)
	d := f.loaded(t, "lotte@example.org", "+32470123456")
	require.Empty(t, f.smtp.Messages(), "nothing sent: the process 'died' after the commit")
	require.Empty(t, f.sms.Received())
	require.Equal(t, 1, f.queued(t, d.ID, "pending"))
	var sealed []byte
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT sealed FROM notify_outbox WHERE document_id = $1`, d.ID).Scan(&sealed))
	require.NotEmpty(t, sealed)

	// Another replica, started later; it dies after the send's commit,
	// before marking the document notified.
	reg := prometheus.NewRegistry()
	n, other := f.sender(t, OutboxOptions{Registerer: reg})
	mark := n.opts.OnNotified
	n.opts.OnNotified = func(context.Context, string) error { return errors.New("killed") }
	require.Equal(t, 1, other.Drain(f.ctx))
	got, err := f.svc.GetDocument(f.ctx, d.ID)
	require.NoError(t, err)
	require.EqualValues(t, "loaded", got.State)
	n.opts.OnNotified = mark
	msgs, sms := f.smtp.Messages(), f.sms.Received()
	require.Len(t, msgs, 1)
	require.Len(t, sms, 1)
	m := smsPIN.FindStringSubmatch(sms[0].Text)
	require.NotNil(t, m, "the SMS carries the PIN: %q", sms[0].Text)
	pin := strings.ReplaceAll(m[1], " ", "")
	token := decodeQR(t, parseMail(t, msgs[0].Data).inline["qr@kluis"])
	for _, secret := range []string{pin, token} {
		require.False(t, bytes.Contains(sealed, []byte(secret)), "the outbox holds no code in clear")
	}
	res, err := f.cs.Verify(f.ctx, codes.Attempt{DeviceID: "l1", PIN: pin, BirthDate: "1985-06-01"})
	require.NoError(t, err, "the queued PIN is the one issued")
	require.Equal(t, d.ID, res.DocumentID)
	_, err = f.cs.Verify(f.ctx, codes.Attempt{DeviceID: "l1", QRToken: token})
	require.Error(t, err, "one code per document: the PIN used it")

	require.Zero(t, f.queued(t, d.ID, "pending"), "the row left with the send")
	require.ElementsMatch(t, []string{"loaded/email/sent", "loaded/sms/sent"}, f.records(t, d.ID))
	require.Zero(t, other.Drain(f.ctx), "sent once")
	got, err = f.svc.GetDocument(f.ctx, d.ID)
	require.NoError(t, err)
	require.EqualValues(t, "notified", got.State, "the next pass marks what was told")
	require.Len(t, f.smtp.Messages(), 1)
	require.InDelta(t, 1, testutil.ToFloat64(other.finished.WithLabelValues("delivered")), 0)
	require.InDelta(t, 0, testutil.ToFloat64(other.pending), 0)

	// A process that lives on sends from its hook after the commit, before
	// the use case returns.
	alive, err := service.New(service.Options{Store: f.st, Clock: f.clock.Now, Logger: f.quiet,
		Codes: codes.Issuer{Service: f.cs}, Outbox: other, Notifier: other})
	require.NoError(t, err)
	f.svc = alive
	d2 := f.loaded(t, "other@example.org", "")
	require.Len(t, f.smtp.Messages(), 2)
	require.Zero(t, f.queued(t, d2.ID, "pending"))
	got, err = f.svc.GetDocument(f.ctx, d2.ID)
	require.NoError(t, err)
	require.EqualValues(t, "notified", got.State)
}

// A failing SMS gateway: the e-mail goes out, the SMS is tried again after
// the back-off (not before) and then succeeds; the e-mail is not sent
// twice. Every attempt is in notifications.
func TestOutboxRetriesFailingGateway(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 2)
	d := f.loaded(t, "lotte@example.org", "+32470123456")
	_, x := f.sender(t, OutboxOptions{RetryBase: time.Minute})
	f.sms.SetStatus(http.StatusBadGateway)
	require.Equal(t, 1, x.Drain(f.ctx))
	require.Len(t, f.smtp.Messages(), 1)
	require.Len(t, f.sms.Received(), 1)
	require.Equal(t, 1, f.queued(t, d.ID, "pending"), "kept for the SMS")
	require.InDelta(t, 1, testutil.ToFloat64(x.retries), 0)

	f.clock.Add(59 * time.Second)
	require.Zero(t, x.Drain(f.ctx), "not before the back-off")
	require.InDelta(t, 1, testutil.ToFloat64(x.pending), 0)
	require.InDelta(t, 59, testutil.ToFloat64(x.oldest), 0)
	f.sms.SetStatus(http.StatusAccepted)
	f.clock.Add(2 * time.Second)
	require.Equal(t, 1, x.Drain(f.ctx))
	require.Len(t, f.sms.Received(), 2)
	require.Len(t, f.smtp.Messages(), 1, "the e-mail already went out")
	require.Zero(t, f.queued(t, d.ID, "pending"))
	require.Equal(t, []string{"loaded/email/sent", "loaded/sms/failed", "loaded/sms/sent"}, f.records(t, d.ID))
}

// A gateway that keeps failing: after the last attempt the message is given
// up (counted; its sealed codes erased), and since nothing reached the
// holder the counter gets a pickup slip to hand over.
func TestOutboxGivesUpToASlip(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 2)
	d := f.loaded(t, "", "+32470123456")
	_, x := f.sender(t, OutboxOptions{MaxAttempts: 3, RetryBase: time.Minute})
	f.sms.SetStatus(http.StatusServiceUnavailable)
	for range 3 {
		require.Equal(t, 1, x.Drain(f.ctx))
		f.clock.Add(time.Hour)
	}
	require.Zero(t, x.Drain(f.ctx))
	require.Len(t, f.sms.Received(), 3)
	require.Equal(t, 1, f.queued(t, d.ID, "gave_up"))
	var sealedLeft bool
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT sealed IS NOT NULL FROM notify_outbox WHERE document_id = $1`, d.ID).Scan(&sealedLeft))
	require.False(t, sealedLeft)
	require.InDelta(t, 1, testutil.ToFloat64(x.finished.WithLabelValues("gave_up")), 0)
	require.Equal(t, []string{"loaded/sms/failed", "loaded/sms/failed", "loaded/sms/failed", "loaded/slip/needed"}, f.records(t, d.ID))
	_, err := os.Stat(filepath.Join(f.slips, d.ID+".html"))
	require.NoError(t, err, "a slip for the counter")
}

// The waits double from RetryBase up to RetryMax, each shortened by a
// random part of at most Jitter of it, never lengthened: messages that
// failed together come back spread out, and RetryMax stays the longest
// wait. The seam chooses; a seeded source spreads; a failed row's next
// try is now plus the jittered wait.
func TestOutboxBackoffJitter(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 1)
	var r float64
	_, x := f.sender(t, OutboxOptions{RetryBase: time.Minute, RetryMax: 10 * time.Minute, Jitter: 0.25, Rand: func() float64 { return r }})
	for _, c := range []struct {
		attempts int
		r        float64
		want     time.Duration
	}{
		{1, 0, time.Minute}, {1, 0.5, 52500 * time.Millisecond}, {1, 0.999999, 45*time.Second + 15*time.Microsecond},
		{2, 0, 2 * time.Minute}, {4, 0, 8 * time.Minute}, {5, 0, 10 * time.Minute}, {5, 1, 7*time.Minute + 30*time.Second},
		{40, 0.5, 8*time.Minute + 45*time.Second},
		{1, 7, 45 * time.Second}, {1, -3, time.Minute}, // a seam out of range is held to [0, 1]
	} {
		r = c.r
		require.Equal(t, c.want, x.backoff(c.attempts), "attempts %d, r %g", c.attempts, c.r)
	}

	// A seeded source: within the bounds, and spread.
	src := mrand.New(mrand.NewPCG(1, 2))
	_, x = f.sender(t, OutboxOptions{RetryBase: time.Minute, RetryMax: 10 * time.Minute, Rand: src.Float64})
	seen := map[time.Duration]bool{}
	for range 200 {
		d := x.backoff(12)
		require.GreaterOrEqual(t, d, 8*time.Minute, "at most DefaultOutboxJitter shorter")
		require.LessOrEqual(t, d, 10*time.Minute, "never longer than RetryMax")
		seen[d.Truncate(time.Second)] = true
	}
	require.Greater(t, len(seen), 50, "spread over the two minutes")
	_, x = f.sender(t, OutboxOptions{RetryBase: time.Minute, Jitter: -1, Rand: src.Float64})
	require.Equal(t, time.Minute, x.backoff(1), "negative: no jitter")
	_, err := NewOutbox(OutboxOptions{Pool: f.st.Pool(), Notifier: &Notifier{}, SealKey: f.key, Jitter: 0.6})
	require.ErrorIs(t, err, ErrInvalid)

	// A failed row is due again after the jittered wait.
	d := f.loaded(t, "", "+32470123456")
	r = 0.5
	_, x = f.sender(t, OutboxOptions{RetryBase: time.Minute, Jitter: 0.2, Rand: func() float64 { return r }})
	f.sms.SetStatus(http.StatusBadGateway)
	require.Equal(t, 1, x.Drain(f.ctx))
	var next time.Time
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT next_at FROM notify_outbox WHERE document_id = $1`, d.ID).Scan(&next))
	require.Equal(t, f.clock.Now().Add(54*time.Second).UTC(), next.UTC())
}

// What staff see of the outbox: nothing while a message has not been
// tried; a failed one waiting with its attempts and next try; a given-up
// ready message of a document still in its compartment; nothing of a
// given-up message once its document is collected.
func TestListUndelivered(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 2)
	list := func() []Undelivered {
		t.Helper()
		u, err := ListUndelivered(f.ctx, f.st.Pool(), 10)
		require.NoError(t, err)
		return u
	}
	d := f.loaded(t, "", "+32470123456")
	require.Empty(t, list(), "not tried yet: being sent")
	_, x := f.sender(t, OutboxOptions{MaxAttempts: 2, RetryBase: time.Minute})
	f.sms.SetStatus(http.StatusServiceUnavailable)
	require.Equal(t, 1, x.Drain(f.ctx))
	u := list()
	require.Len(t, u, 1)
	require.NotEmpty(t, u[0].LastError)
	require.NotContains(t, u[0].LastError, "470123456", "no phone number")
	require.Equal(t, Undelivered{DocumentID: d.ID, Number: d.Number, FirstName: "Lotte", LastName: "Claes", DocumentState: lifecycle.Loaded,
		Kind: service.NotifyLoaded, Attempts: 1, Channels: []string{"sms"}, LastError: u[0].LastError,
		NextAt: f.clock.Now().Add(time.Minute), CreatedAt: f.clock.Now()},
		normalise(u[0]))
	f.clock.Add(time.Hour)
	require.Equal(t, 1, x.Drain(f.ctx))
	u = list()
	require.Len(t, u, 1)
	require.True(t, u[0].GaveUp)
	require.Equal(t, 2, u[0].Attempts)
	// A second document waits for its retry; the given-up one comes first.
	d2 := f.loaded(t, "", "+32470123457")
	require.Equal(t, 1, x.Drain(f.ctx))
	u = list()
	require.Len(t, u, 2)
	require.Equal(t, []string{d.ID, d2.ID}, []string{u[0].DocumentID, u[1].DocumentID})
	require.False(t, u[1].GaveUp)
	_, err := f.svc.Collect(f.ctx, "device:l1", d.ID)
	require.NoError(t, err)
	u = list()
	require.Len(t, u, 1, "collected: its given-up message is no longer staff's concern")
	require.Equal(t, d2.ID, u[0].DocumentID)
}

// One document's page: its messages that failed, with the channel that
// failed (not the one that worked), the attempts and the error in a safe
// form; a given-up one stays after the document left its compartment;
// another document's are not shown.
func TestListUndeliveredOf(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 2)
	of := func(id string) []Undelivered {
		t.Helper()
		u, err := ListUndeliveredOf(f.ctx, f.st.Pool(), id)
		require.NoError(t, err)
		return u
	}
	d := f.loaded(t, "lotte@example.org", "+32470123456")
	other := f.loaded(t, "", "+32470123457")
	require.Empty(t, of(d.ID), "not tried yet")
	_, x := f.sender(t, OutboxOptions{MaxAttempts: 2, RetryBase: time.Minute})
	f.sms.SetStatus(http.StatusServiceUnavailable)
	require.Equal(t, 2, x.Drain(f.ctx))
	u := of(d.ID)
	require.Len(t, u, 1)
	require.Equal(t, d.ID, u[0].DocumentID)
	require.Equal(t, []string{"sms"}, u[0].Channels, "the e-mail went out; the SMS did not")
	require.Equal(t, 1, u[0].Attempts)
	require.False(t, u[0].GaveUp)
	require.NotEmpty(t, u[0].LastError)
	f.clock.Add(time.Hour)
	require.Equal(t, 2, x.Drain(f.ctx))
	_, err := f.svc.Collect(f.ctx, "device:l1", d.ID)
	require.NoError(t, err)
	u = of(d.ID)
	require.Len(t, u, 1, "given up, and still shown on its page after the collection")
	require.True(t, u[0].GaveUp)
	require.Equal(t, 2, u[0].Attempts)
	require.EqualValues(t, "collected", u[0].DocumentState)
	require.Len(t, of(other.ID), 1)
	require.Equal(t, other.ID, of(other.ID)[0].DocumentID)
}

// A given-up row is out of the sender's due index (partial on pending
// rows), records when it was given up, and is deleted by the reminder pass
// once given up longer than the retention ago and its document left its
// compartment: not before, not while the document is still loaded, and a
// pending row never. Until then its document's page shows it.
func TestPruneGivenUp(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 3)
	var pred string
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT pg_get_expr(indpred, indrelid) FROM pg_index
		WHERE indexrelid = 'notify_outbox_due_idx'::regclass`).Scan(&pred))
	require.Equal(t, "(state = 'pending'::text)", pred, "given-up rows are not in the retry index")

	loaded := f.loaded(t, "", "+32470123456")
	collected := f.loaded(t, "", "+32470123457")
	_, once := f.sender(t, OutboxOptions{MaxAttempts: 1})
	f.sms.SetStatus(http.StatusServiceUnavailable)
	require.Equal(t, 2, once.Drain(f.ctx))
	gaveUp := f.clock.Now().UTC()
	waiting := f.loaded(t, "", "+32470123458")
	_, patient := f.sender(t, OutboxOptions{MaxAttempts: 5, RetryBase: time.Hour, RetryMax: time.Hour})
	require.Equal(t, 1, patient.Drain(f.ctx))
	for _, id := range []string{collected.ID, waiting.ID} {
		_, err := f.svc.Collect(f.ctx, "device:l1", id)
		require.NoError(t, err)
	}
	var at time.Time
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT gave_up_at FROM notify_outbox WHERE document_id = $1`, collected.ID).Scan(&at))
	require.Equal(t, gaveUp, at.UTC())
	_, err := f.st.Pool().Exec(f.ctx, `UPDATE notify_outbox SET gave_up_at = NULL WHERE document_id = $1`, collected.ID)
	require.Error(t, err, "a given-up row always says when")

	pending := f.queued(t, waiting.ID, "pending") // its ready message, and the receipt of the collection
	require.Equal(t, 2, pending)
	r, err := NewReminders(RemindersOptions{Pool: f.st.Pool(), Service: f.svc, GaveUpRetention: 30 * 24 * time.Hour,
		Clock: f.clock.Now, Logger: f.quiet})
	require.NoError(t, err)
	f.clock.Add(30*24*time.Hour - time.Second)
	require.True(t, r.Pass(f.ctx))
	require.Equal(t, 1, f.queued(t, collected.ID, "gave_up"), "kept for the retention")
	u, err := ListUndeliveredOf(f.ctx, f.st.Pool(), collected.ID)
	require.NoError(t, err)
	require.Len(t, u, 1, "and shown on its page meanwhile")

	f.clock.Add(time.Second)
	require.True(t, r.Pass(f.ctx))
	require.Zero(t, f.queued(t, collected.ID, "gave_up"), "pruned after the retention")
	u, err = ListUndeliveredOf(f.ctx, f.st.Pool(), collected.ID)
	require.NoError(t, err)
	require.Empty(t, u)
	require.Equal(t, 1, f.queued(t, loaded.ID, "gave_up"), "still in its compartment: kept")
	require.Equal(t, pending, f.queued(t, waiting.ID, "pending"), "a pending row is never pruned")

	_, err = f.svc.Collect(f.ctx, "device:l1", loaded.ID)
	require.NoError(t, err)
	n, err := PruneGivenUp(f.ctx, f.st.Pool(), f.clock.Now().Add(-30*24*time.Hour), 0)
	require.NoError(t, err)
	require.Equal(t, 1, n, "gone once its document left, the retention long past")
	require.Zero(t, f.queued(t, loaded.ID, "gave_up"))
	require.Equal(t, pending, f.queued(t, waiting.ID, "pending"))
}

// TestPruneHistory: the notifications of a document closed before the
// cutoff and made before it go, a batch at a time; those of a document
// still being handled stay whatever their age, and so do those of a
// document closed since the cutoff (the retention runs from its close).
// A closed document always has its closed_at.
func TestPruneHistory(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 3)
	_, x := f.sender(t, OutboxOptions{})
	closedLong := f.loaded(t, "", "+32470123456")
	open := f.loaded(t, "", "+32470123457")
	closedLate := f.loaded(t, "", "+32470123458")
	require.Equal(t, 3, x.Drain(f.ctx))
	_, err := f.svc.Collect(f.ctx, "device:l1", closedLong.ID)
	require.NoError(t, err)
	x.Drain(f.ctx) // the receipt
	require.Len(t, f.records(t, closedLong.ID), 2)
	const keep = 400 * 24 * time.Hour
	f.clock.Add(keep - 24*time.Hour)
	_, err = f.svc.Retrieve(f.ctx, "user:counter", closedLate.ID)
	require.NoError(t, err)
	x.Drain(f.ctx)
	before := map[string][]string{}
	for _, d := range []store.Document{closedLong, open, closedLate} {
		before[d.ID] = f.records(t, d.ID)
		require.NotEmpty(t, before[d.ID])
	}
	f.clock.Add(48 * time.Hour)

	cutoff := f.clock.Now().Add(-keep)
	n, err := PruneHistory(f.ctx, f.st.Pool(), cutoff, 1)
	require.NoError(t, err)
	require.Equal(t, 1, n, "a batch at most")
	n, err = PruneHistory(f.ctx, f.st.Pool(), cutoff, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, f.records(t, closedLong.ID), "closed before the cutoff: gone")
	require.Equal(t, before[open.ID], f.records(t, open.ID), "still in its compartment: kept")
	require.Equal(t, before[closedLate.ID], f.records(t, closedLate.ID), "closed after the cutoff: kept")
	n, err = PruneHistory(f.ctx, f.st.Pool(), cutoff, 100)
	require.NoError(t, err)
	require.Zero(t, n)

	// closed_at is what PruneHistory goes by: set by the transition to a
	// final state, and only then; a document without it is still being
	// handled, and its rows stay.
	var closed, unclosedFinal int
	var openClosedAt *time.Time
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT
		count(*) FILTER (WHERE closed_at IS NOT NULL AND state IN ('collected', 'retrieved', 'cancelled')),
		count(*) FILTER (WHERE closed_at IS NULL AND state IN ('collected', 'retrieved', 'cancelled')),
		(SELECT closed_at FROM documents WHERE id = $1::uuid) FROM documents`, open.ID).Scan(&closed, &unclosedFinal, &openClosedAt))
	require.Equal(t, 2, closed)
	require.Zero(t, unclosedFinal)
	require.Nil(t, openClosedAt)
}

// A document never closed keeps its notifications only until its
// holder's data was erased unclaimed (service.PurgeUnclaimed) more than the
// retention ago: they go like those of a closed one, not never.
func TestPruneHistoryOfADocumentErasedUnclaimed(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 1)
	_, x := f.sender(t, OutboxOptions{})
	d := f.loaded(t, "", "+32470123456")
	require.Equal(t, 1, x.Drain(f.ctx))
	f.clock.Set(d.Deadline.Add(service.DefaultUnclaimedRetention + time.Hour))
	_, err := f.svc.Housekeep(f.ctx)
	require.NoError(t, err)
	x.Drain(f.ctx) // the expiry notice
	got, err := f.svc.GetDocument(f.ctx, d.ID)
	require.NoError(t, err)
	require.Equal(t, "expired", string(got.State), "never taken back")
	require.NotNil(t, got.PurgedAt)
	before := f.records(t, d.ID)
	require.NotEmpty(t, before)

	const keep = 400 * 24 * time.Hour
	f.clock.Add(keep - time.Hour)
	n, err := PruneHistory(f.ctx, f.st.Pool(), f.clock.Now().Add(-keep), 100)
	require.NoError(t, err)
	require.Zero(t, n, "erased since the cutoff: kept")
	require.Equal(t, before, f.records(t, d.ID))
	f.clock.Add(2 * time.Hour)
	n, err = PruneHistory(f.ctx, f.st.Pool(), f.clock.Now().Add(-keep), 100)
	require.NoError(t, err)
	require.Equal(t, len(before), n)
	require.Empty(t, f.records(t, d.ID), "erased before the cutoff: gone")
}

// What staff read of a stored failure: no address, number, PIN or token.
func TestSafeError(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"smtp: 550 5.1.1 <lotte@example.org>: unknown user":            "smtp: 550 5.1.1 <[address]>: unknown user",
		"sms gateway: 503: +32 470 12 34 56 unreachable":               "sms gateway: 503: [number] unreachable",
		"gateway echoed: your PIN is 123 456 789":                      "gateway echoed: your PIN is [number]",
		"gateway echoed: PIN 123 456, 1234":                            "gateway echoed: PIN [digits], [digits]",
		"link https://kluis.example/t/AbCdEfGhIjKlMnOpQrStUv rejected": "link https://kluis.example/t/[hidden] rejected",
		"": "",
	} {
		require.Equal(t, want, SafeError(in), in)
	}
	long := SafeError(strings.Repeat("é", 300))
	require.LessOrEqual(t, len(long), 204)
	require.True(t, utf8.ValidString(long))
}

// normalise puts the times of u in UTC for comparison.
func normalise(u Undelivered) Undelivered {
	u.NextAt, u.CreatedAt = u.NextAt.UTC(), u.CreatedAt.UTC()
	return u
}

// Two replicas with two workers each drain one outbox through a slow
// gateway at the same time: every message goes out exactly once.
func TestOutboxTwoSendersNeverSendTheSameRow(t *testing.T) {
	t.Parallel()
	const docs = 12
	f := newOfix(t, docs)
	var (
		mu       sync.Mutex
		got      = map[string]int{}
		inFlight = map[string]bool{}
		overlap  []string
	)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ To string }
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		if inFlight[m.To] {
			overlap = append(overlap, m.To)
		}
		inFlight[m.To] = true
		got[m.To]++
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		inFlight[m.To] = false
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(slow.Close)
	for i := range docs {
		f.loaded(t, "", fmt.Sprintf("+3247000%04d", i))
	}
	var senders [2]*Outbox
	for i := range senders {
		n, x := f.sender(t, OutboxOptions{Workers: 2})
		n.opts.SMS = &SMSGateway{URL: slow.URL}
		senders[i] = x
	}
	var wg sync.WaitGroup
	var handled [2]int
	for i, x := range senders {
		wg.Go(func() { handled[i] = x.Drain(f.ctx) })
	}
	wg.Wait()
	require.Equal(t, docs, handled[0]+handled[1])
	require.Len(t, got, docs)
	for to, n := range got {
		require.Equal(t, 1, n, "%s got %d messages", to, n)
	}
	require.Empty(t, overlap)
	var left int
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT count(*) FROM notify_outbox`).Scan(&left))
	require.Zero(t, left)
}

// A document that leaves its compartment before its ready message went out
// (collected with codes from a reissue, retrieved by staff) takes its
// sealed codes with it in the same transaction; the sender drops such
// messages and sends what still applies (the receipt). A reissue forgets
// the earlier codes the same way.
func TestOutboxForgetsCodesThatNoLongerApply(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 2)
	d := f.loaded(t, "lotte@example.org", "")
	_, err := f.svc.Reissue(f.ctx, "user:counter", d.ID)
	require.NoError(t, err)
	var sealed []bool
	rows, err := f.st.Pool().Query(f.ctx, `SELECT sealed IS NOT NULL FROM notify_outbox WHERE document_id = $1 ORDER BY id`, d.ID)
	require.NoError(t, err)
	for rows.Next() {
		var b bool
		require.NoError(t, rows.Scan(&b))
		sealed = append(sealed, b)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []bool{false, true}, sealed, "the first codes are forgotten, the reissued ones kept")

	_, err = f.svc.Collect(f.ctx, "device:l1", d.ID)
	require.NoError(t, err)
	var n int
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT count(*) FROM notify_outbox WHERE sealed IS NOT NULL`).Scan(&n))
	require.Zero(t, n, "collected: no codes left in the outbox")

	_, x := f.sender(t, OutboxOptions{})
	require.Equal(t, 3, x.Drain(f.ctx))
	require.Equal(t, []string{"collected/email/sent"}, f.records(t, d.ID))
	require.InDelta(t, 2, testutil.ToFloat64(x.finished.WithLabelValues("obsolete")), 0)

	// A reminder waiting in the outbox is not queued again by the
	// reminder loop.
	d2 := f.loaded(t, "lotte@example.org", "")
	_, err = f.svc.Renotify(f.ctx, "system", d2.ID)
	require.ErrorIs(t, err, service.ErrForbiddenTransition, "renotify needs the ready message delivered")
	_, err = f.svc.MarkNotified(f.ctx, "system", d2.ID)
	require.NoError(t, err)
	_, err = f.svc.Renotify(f.ctx, "system", d2.ID)
	require.NoError(t, err)
	due, err := DueReminders(f.ctx, f.st.Pool(), f.clock.Now().Add(9*24*time.Hour), 14*24*time.Hour, 10)
	require.NoError(t, err)
	require.Empty(t, due)
}

// The outbox is part of the transition: a ready message that cannot be
// queued (no codes) rolls the load back.
func TestOutboxQueueFailureRollsBackTheTransition(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 1)
	_, x := f.sender(t, OutboxOptions{})
	svc, err := service.New(service.Options{Store: f.st, Clock: f.clock.Now, Logger: f.quiet, Outbox: x})
	require.NoError(t, err)
	d, err := svc.RegisterDocument(f.ctx, "user:counter", store.NewDocument{Kind: store.Passport, Number: "EP999999", FirstName: "Lotte",
		LastName: "Claes", BirthDate: new(time.Date(1985, 6, 1, 0, 0, 0, 0, time.UTC)), Language: "en", Email: "l@example.org", SiteID: "kortrijk"})
	require.NoError(t, err)
	_, err = svc.Reserve(f.ctx, "user:counter", d.ID, service.ReserveOptions{})
	require.NoError(t, err)
	_, err = svc.Load(f.ctx, "user:counter", d.ID)
	require.ErrorIs(t, err, ErrInvalid)
	got, err := svc.GetDocument(f.ctx, d.ID)
	require.NoError(t, err)
	require.EqualValues(t, "reserved", got.State)
	require.Zero(t, f.queued(t, d.ID, "pending"))
}

// Sealed codes open only under the same key, for the same document and
// kind, unaltered.
func TestSealBindsKeyDocumentAndKind(t *testing.T) {
	t.Parallel()
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	s1, err := newSealer(k1, nil)
	require.NoError(t, err)
	s2, err := newSealer(k2, nil)
	require.NoError(t, err)
	b, err := s1.seal([]byte(`{"PIN":"123456789"}`), "doc-a", "loaded")
	require.NoError(t, err)
	require.False(t, bytes.Contains(b, []byte("123456789")))
	plain, err := s1.open(b, "doc-a", "loaded")
	require.NoError(t, err)
	require.Equal(t, `{"PIN":"123456789"}`, string(plain))
	for name, open := range map[string]func() ([]byte, error){
		"other key":      func() ([]byte, error) { return s2.open(b, "doc-a", "loaded") },
		"other document": func() ([]byte, error) { return s1.open(b, "doc-b", "loaded") },
		"other kind":     func() ([]byte, error) { return s1.open(b, "doc-a", "reissued") },
		"altered": func() ([]byte, error) {
			c := bytes.Clone(b)
			c[len(c)-1] ^= 1
			return s1.open(c, "doc-a", "loaded")
		},
		"truncated": func() ([]byte, error) { return s1.open(b[:10], "doc-a", "loaded") },
	} {
		_, err := open()
		require.ErrorIs(t, err, errUnsealable, name)
	}
	_, err = newSealer(k1[:16], nil)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = newSealer(k2, k1[:16])
	require.ErrorIs(t, err, ErrInvalid)

	// After a rotation the previous key opens, never seals.
	rotated, err := newSealer(k2, k1)
	require.NoError(t, err)
	plain, err = rotated.open(b, "doc-a", "loaded")
	require.NoError(t, err, "sealed before the rotation")
	require.Equal(t, `{"PIN":"123456789"}`, string(plain))
	_, err = rotated.open(b, "doc-b", "loaded")
	require.ErrorIs(t, err, errUnsealable, "still bound to the document")
	nb, err := rotated.seal([]byte("x"), "doc-a", "loaded")
	require.NoError(t, err)
	_, err = s1.open(nb, "doc-a", "loaded")
	require.ErrorIs(t, err, errUnsealable, "new seals are under the new key only")
	_, err = s2.open(nb, "doc-a", "loaded")
	require.NoError(t, err)
}

// A gateway that hangs costs one send timeout, not the queue: the attempt
// ends, the e-mail still goes out, the SMS waits for its retry.
func TestOutboxSlowGatewayTimesOut(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 1)
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); hang.Close() })
	d := f.loaded(t, "lotte@example.org", "+32470123456")
	// The bound is the same for the e-mail, which must get through it on a
	// loaded machine too (300 ms did not at load 60: the SMTP conversation
	// itself timed out), and far below the gateway client's 15 s.
	n, x := f.sender(t, OutboxOptions{SendTimeout: 3 * time.Second})
	n.opts.SMS = &SMSGateway{URL: hang.URL}
	done := make(chan int, 1)
	go func() { done <- x.Drain(f.ctx) }()
	select {
	case handled := <-done:
		require.Equal(t, 1, handled)
	case <-time.After(10 * time.Second): // the gateway client's own timeout is 15 s
		t.Fatal("a hanging gateway blocked the sender beyond its send timeout")
	}
	require.Len(t, f.smtp.Messages(), 1)
	require.Equal(t, 1, f.queued(t, d.ID, "pending"))
	var lastErr string
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT last_error FROM notify_outbox WHERE document_id = $1`, d.ID).Scan(&lastErr))
	require.Contains(t, lastErr, "deadline exceeded")
	require.Equal(t, []string{"loaded/email/sent", "loaded/sms/failed"}, f.records(t, d.ID),
		"the timed-out attempt is recorded: the send's timeout does not bound its record")
}

// Rotating the PIN key: a message queued before the rotation is given up
// by a backend with the new key alone (its sealed codes do not open); with
// the previous key configured (codes.Keys.PreviousPIN, PreviousSealKey) it
// is sent, and its PIN and date of birth still open the compartment, while
// new codes are made under the new key only.
func TestOutboxSurvivesPINKeyRotation(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 3)
	lost := f.loaded(t, "", "+32470123456")
	kept := f.loaded(t, "", "+32470123457")
	newKeys, err := codes.GenerateKeys()
	require.NoError(t, err)
	newSeal := make([]byte, 32)
	_, _ = rand.Read(newSeal)

	_, alone := f.sender(t, OutboxOptions{SealKey: newSeal})
	require.NoError(t, f.st.Pool().QueryRow(f.ctx, `SELECT 1 FROM notify_outbox WHERE document_id = $1`, lost.ID).Scan(new(int)))
	_, err = f.st.Pool().Exec(f.ctx, `UPDATE notify_outbox SET next_at = next_at + interval '1 year' WHERE document_id = $1`, kept.ID)
	require.NoError(t, err)
	require.Equal(t, 1, alone.Drain(f.ctx))
	require.Equal(t, 1, f.queued(t, lost.ID, "gave_up"), "the new key alone cannot open the codes queued before")
	require.Empty(t, f.sms.Received())
	_, err = f.st.Pool().Exec(f.ctx, `UPDATE notify_outbox SET next_at = next_at - interval '1 year' WHERE document_id = $1`, kept.ID)
	require.NoError(t, err)

	rotated := codes.Keys{Signing: f.keys.Signing, PIN: newKeys.PIN, PreviousPIN: f.keys.PIN}
	cs, err := codes.New(codes.Options{Pool: f.st.Pool(), Keys: rotated, Clock: f.clock.Now, Logger: f.quiet,
		Argon: pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	require.NoError(t, err)
	_, x := f.sender(t, OutboxOptions{SealKey: newSeal, PreviousSealKey: f.key})
	require.Equal(t, 1, x.Drain(f.ctx))
	sms := f.sms.Received()
	require.Len(t, sms, 1, "the message queued before the rotation is sent")
	m := smsPIN.FindStringSubmatch(sms[0].Text)
	require.NotNil(t, m, sms[0].Text)
	pin := strings.ReplaceAll(m[1], " ", "")
	_, err = cs.Verify(f.ctx, codes.Attempt{DeviceID: "l1", PIN: pin, BirthDate: "1985-06-02"})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "the date of birth is still checked")
	res, err := cs.Verify(f.ctx, codes.Attempt{DeviceID: "l1", PIN: pin, BirthDate: "1985-06-01"})
	require.NoError(t, err, "the PIN made under the previous key opens")
	require.Equal(t, kept.ID, res.DocumentID)
	_, err = f.cs.Verify(f.ctx, codes.Attempt{DeviceID: "l1", PIN: pin, BirthDate: "1985-06-01"})
	require.ErrorIs(t, err, pickupcode.ErrAlreadyCollected, "single use")

	// New codes are made under the new key only: a backend that has the
	// old key alone does not know them.
	f.svc, err = service.New(service.Options{Store: f.st, Clock: f.clock.Now, Logger: f.quiet,
		Codes: codes.Issuer{Service: cs}, Outbox: x})
	require.NoError(t, err)
	fresh := f.loaded(t, "", "+32470123458")
	require.Equal(t, 1, x.Drain(f.ctx))
	sms = f.sms.Received()
	require.Len(t, sms, 2)
	m = smsPIN.FindStringSubmatch(sms[1].Text)
	require.NotNil(t, m, sms[1].Text)
	pin = strings.ReplaceAll(m[1], " ", "")
	_, err = f.cs.Verify(f.ctx, codes.Attempt{DeviceID: "l1", PIN: pin, BirthDate: "1985-06-01"})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "the old key does not know the new PIN")
	res, err = cs.Verify(f.ctx, codes.Attempt{DeviceID: "l1", PIN: pin, BirthDate: "1985-06-01"})
	require.NoError(t, err)
	require.Equal(t, fresh.ID, res.DocumentID)
}

// Run sends what is due at once, then whenever woken (here long before its
// poll interval of an hour), and returns ctx's error when it ends.
func TestOutboxRunSendsAtOnceAndWhenWoken(t *testing.T) {
	f := newOfix(t, 2)
	first := f.loaded(t, "lotte@example.be", "")
	_, x := f.sender(t, OutboxOptions{Poll: time.Hour})
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	sent := func(id string) func() bool {
		return func() bool { return f.queued(t, id, "pending") == 0 }
	}
	testenv.Eventually(t, "the first pass sends what was queued before the start", sent(first.ID))
	require.Equal(t, []string{"loaded/email/sent"}, f.records(t, first.ID))

	second := f.loaded(t, "jan@example.be", "")
	require.Equal(t, 1, f.queued(t, second.ID, "pending"))
	x.Wake()
	testenv.Eventually(t, "a wake-up sends at once", sent(second.ID))
	require.Equal(t, []string{"loaded/email/sent"}, f.records(t, second.ID))
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// The outbox queues nothing for a document whose holder's data was
// erased, and drops a message queued before the erasure instead of
// building it without a name.
func TestOutboxSendsNothingForAPurgedDocument(t *testing.T) {
	t.Parallel()
	f := newOfix(t, 2)
	d := f.loaded(t, "lotte@example.org", "")
	_, err := f.st.Pool().Exec(f.ctx, `UPDATE documents SET number = NULL, holder_first_name = NULL, holder_last_name = NULL,
		holder_birth_date = NULL, email = NULL, mobile = NULL, purged_at = $2 WHERE id = $1`, d.ID, f.clock.Now())
	require.NoError(t, err)
	require.Equal(t, 1, f.queued(t, d.ID, "pending"), "the ready message queued before the erasure")

	_, x := f.sender(t, OutboxOptions{})
	require.Equal(t, 1, x.Drain(f.ctx))
	require.Empty(t, f.records(t, d.ID), "nothing built or sent")
	require.InDelta(t, 1, testutil.ToFloat64(x.finished.WithLabelValues("obsolete")), 0)
	require.Zero(t, f.queued(t, d.ID, "pending"))
	_, err = os.Stat(filepath.Join(f.slips, d.ID+".html"))
	require.ErrorIs(t, err, os.ErrNotExist, "no nameless slip")

	purged, err := f.svc.GetDocument(f.ctx, d.ID)
	require.NoError(t, err)
	tx, err := f.st.Pool().Begin(f.ctx)
	require.NoError(t, err)
	require.NoError(t, x.Enqueue(f.ctx, tx, service.Notification{Kind: service.NotifyExpired, Document: purged}))
	require.NoError(t, tx.Commit(f.ctx))
	require.Zero(t, f.queued(t, d.ID, "pending"), "nothing queued")
}
