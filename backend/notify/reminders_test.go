package notify

import (
	"context"
	"mime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/service"
)

func TestDueReminders(t *testing.T) {
	t.Parallel()
	f := newNfix(t)
	d, c := f.doc(t, "nl", "ann@example.org", "")                      // deadline now0 + 10 days
	ids, err := DueReminders(context.Background(), f.pool, now0, 0, 0) // the deadline is ten days and a half away
	require.NoError(t, err)
	require.Empty(t, ids, "not yet within 48 hours")
	later := now0.Add(9 * 24 * time.Hour)
	ids, err = DueReminders(context.Background(), f.pool, later, 0, 0)
	require.NoError(t, err)
	require.Equal(t, []string{d.ID}, ids)
	require.NoError(t, f.n.Notify(context.Background(), service.Notification{Kind: service.NotifyReminder, Document: d, Compartment: c}))
	pm := parseMail(t, f.smtp.Messages()[0].Data)
	subj, err := new(mime.WordDecoder).DecodeHeader(pm.header.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "Herinnering: haal uw eID op", subj)
	require.Contains(t, pm.text, "U hebt nog tijd tot en met dinsdag 1 december (tot middernacht).")
	require.Contains(t, pm.text, "In de inkomhal, links van de trap.")
	require.Empty(t, pm.inline, "no QR code: it is not stored")
	cal := parseICS(t, pm.attached["ophalen.ics"])
	uid, _ := cal.Subs[0].get("UID")
	require.Equal(t, CalendarUID(d.ID, "kluis.example"), uid.Value, "the same entry as the ready message's")
	ids, err = DueReminders(context.Background(), f.pool, later, 0, 0)
	require.NoError(t, err)
	require.Empty(t, ids, "one reminder per document")
	ids, err = DueReminders(context.Background(), f.pool, now0.Add(11*24*time.Hour), 0, 0)
	require.NoError(t, err)
	require.Empty(t, ids, "past the deadline: no reminder")
}
