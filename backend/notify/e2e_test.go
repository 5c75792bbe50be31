package notify

import (
	"context"
	"io"
	"log/slog"
	"mime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/notify/notifytest"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
)

// The real chain: the service loads a document, backend/codes issues the
// code, this package mails it; the QR in the mail opens the compartment at
// the device, and the collection sends a receipt.
func TestEndToEndLoadMailVerifyCollect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := storetest.NewClock(time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC))
	st := storetest.NewWithOptions(t, store.Options{Clock: clock.Now})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	keys, err := codes.GenerateKeys()
	require.NoError(t, err)
	cs, err := codes.New(codes.Options{Pool: st.Pool(), Keys: keys, Clock: clock.Now, Logger: quiet,
		Argon: pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	require.NoError(t, err)
	smtp := notifytest.NewSMTPServer(t, notifytest.SMTPOptions{StartTLS: true})
	var svc *service.Service
	n, err := New(Options{DB: st.Pool(), Mail: &SMTP{Addr: smtp.Addr, TLS: smtp.ClientTLS()}, From: "Stad Kortrijk <kluis@kortrijk.be>",
		Clock: clock.Now, Logger: quiet, OnNotified: func(ctx context.Context, id string) error {
			_, err := svc.MarkNotified(ctx, "system", id)
			return err
		}})
	require.NoError(t, err)
	svc, err = service.New(service.Options{Store: st, Clock: clock.Now, Logger: quiet, Codes: codes.Issuer{Service: cs}, Notifier: n, Purger: n})
	require.NoError(t, err)

	_, err = svc.CreateSite(ctx, "user:admin", store.NewSite{ID: "kortrijk", Name: "Stadhuis Kortrijk", Address: "Grote Markt 54, 8500 Kortrijk"})
	require.NoError(t, err)
	_, err = svc.CreateDevice(ctx, "user:admin", store.NewDevice{ID: "l1", SiteID: "kortrijk", Kind: store.Locker, Name: "K-Noord",
		Compartments: []store.NewCompartment{{Size: store.SizeM, HeightCM: 100}, {Channel: 1, Size: store.SizeM, HeightCM: 60}}})
	require.NoError(t, err)
	doc, err := svc.RegisterDocument(ctx, "user:counter", store.NewDocument{Kind: store.Passport, Number: "EP123456", FirstName: "Lotte",
		LastName: "Claes", BirthDate: new(time.Date(1985, 6, 1, 0, 0, 0, 0, time.UTC)), Language: "en", Email: "lotte@example.org", SiteID: "kortrijk"})
	require.NoError(t, err)
	doc, err = svc.Reserve(ctx, "user:counter", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	_, err = svc.Load(ctx, "user:counter", doc.ID)
	require.NoError(t, err)

	msgs := smtp.Messages()
	require.Len(t, msgs, 1)
	pm := parseMail(t, msgs[0].Data)
	subj, err := new(mime.WordDecoder).DecodeHeader(pm.header.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "Your passport is ready to collect", subj)
	require.Contains(t, pm.text, "Locker K-Noord, compartment")
	token := decodeQR(t, pm.inline["qr@kluis"])

	got, err := svc.GetDocument(ctx, doc.ID)
	require.NoError(t, err)
	require.EqualValues(t, "notified", got.State, "OnNotified marked the document")

	res, err := cs.Verify(ctx, codes.Attempt{DeviceID: "l1", QRToken: token})
	require.NoError(t, err)
	require.Equal(t, doc.ID, res.DocumentID)
	_, err = svc.Collect(ctx, "device:l1", doc.ID)
	require.NoError(t, err)
	msgs = smtp.Messages()
	require.Len(t, msgs, 2)
	receipt := parseMail(t, msgs[1].Data)
	require.Contains(t, receipt.text, "You have collected your passport. That was on Monday 23 March at 10:00.")
	_, err = cs.Verify(ctx, codes.Attempt{DeviceID: "l1", QRToken: token})
	require.Error(t, err, "used or revoked after collection")
}
