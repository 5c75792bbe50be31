package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// brussels is a wall-clock time in Europe/Brussels.
func brussels(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, Brussels)
}

func TestDeadlineAsPeopleSayIt(t *testing.T) {
	now := brussels(2026, 12, 4, 18, 5)
	midnight := brussels(2026, 12, 16, 0, 0) // the end of Tuesday 15 December
	for lang, want := range map[string]string{
		"nl": "tot en met dinsdag 15 december (tot middernacht)",
		"fr": "jusqu'au mardi 15 décembre inclus (jusqu'à minuit)",
		"en": "until midnight on Tuesday 15 December",
		"de": "bis einschließlich Dienstag, 15. Dezember (bis Mitternacht)",
	} {
		require.Equal(t, want, FormatDeadline(lang, midnight, now), lang)
	}
	// In UTC the same deadline is 23:00 the day before: still Tuesday's midnight.
	require.Equal(t, "until midnight on Tuesday 15 December", FormatDeadline("en", midnight.UTC(), now))

	afternoon := brussels(2026, 12, 16, 14, 30)
	for lang, want := range map[string]string{
		"nl": "tot woensdag 16 december om 14.30 uur",
		"fr": "jusqu'au mercredi 16 décembre à 14h30",
		"en": "until Wednesday 16 December at 14:30",
		"de": "bis Mittwoch, 16. Dezember, um 14:30 Uhr",
	} {
		require.Equal(t, want, FormatDeadline(lang, afternoon, now), lang)
	}

	// Another year shows the year; the turn of the year is the end of 31 December.
	require.Equal(t, "tot en met donderdag 7 januari 2027 (tot middernacht)", FormatDeadline("nl", brussels(2027, 1, 8, 0, 0), now))
	require.Equal(t, "until midnight on Thursday 31 December", FormatDeadline("en", brussels(2027, 1, 1, 0, 0), now))
	// Across the change to summer time (29 March 2026): the last day is still the day before.
	require.Equal(t, "bis einschließlich Sonntag, 29. März 2026 (bis Mitternacht)",
		FormatDeadline("de", brussels(2026, 3, 30, 0, 0), brussels(2025, 12, 30, 0, 0)))
	require.Equal(t, "jusqu'au samedi 1 août inclus (jusqu'à minuit)", FormatDeadline("fr", brussels(2026, 8, 2, 0, 0), brussels(2026, 7, 20, 0, 0)))
	// An unknown language is Dutch.
	require.Equal(t, FormatDeadline("nl", midnight, now), FormatDeadline("xx", midnight, now))
}

func TestFormatTimeBrussels(t *testing.T) {
	now := brussels(2026, 12, 1, 0, 0)
	winter := time.Date(2026, 12, 7, 20, 14, 0, 0, time.UTC) // CET, UTC+1
	require.Equal(t, "maandag 7 december om 21.14 uur", FormatTime("nl", winter, now))
	require.Equal(t, "lundi 7 décembre à 21h14", FormatTime("fr", winter, now))
	require.Equal(t, "Monday 7 December at 21:14", FormatTime("en", winter, now))
	require.Equal(t, "Montag, 7. Dezember, um 21:14 Uhr", FormatTime("de", winter, now))
	summer := time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC) // CEST, UTC+2
	require.Equal(t, "Wednesday 1 July at 12:00", FormatTime("en", summer, brussels(2026, 6, 1, 0, 0)))
}

func sampleData() MessageData {
	return MessageData{FirstName: "Ann", DocumentKind: "eid", SiteName: "Stadhuis Kortrijk", SiteAddress: "Grote Markt 54, 8500 Kortrijk",
		DeviceName: "K1", Directions: "In de inkomhal, links van de trap.", Compartment: 12, Deadline: brussels(2026, 12, 16, 0, 0),
		When: brussels(2026, 12, 7, 21, 14), PIN: "123456789", TrackURL: "https://kluis.kortrijk.be/t/abc", Sender: "Stad Kortrijk",
		QRContentID: "qr@kluis", QRWidth: 305, CalendarAttached: true, Now: brussels(2026, 12, 4, 18, 0)}
}

// Each message says what the citizen needs, in each language.
func TestRenderEveryMessage(t *testing.T) {
	for _, lang := range Languages {
		for _, msg := range Messages {
			d := sampleData()
			r, err := Render(lang, msg, d)
			require.NoError(t, err, "%s/%s", lang, msg)
			require.Equal(t, lang, r.Language)
			for _, s := range []string{r.Subject, r.Text, r.HTML, r.SMS} {
				require.NotContains(t, s, "<no value>")
				require.NotContains(t, s, "{{")
			}
			require.Contains(t, r.HTML, `<html lang="`+lang+`"`)
			require.Contains(t, r.Text, "1777", "%s/%s: the help line", lang, msg)
			require.Contains(t, r.SMS, "1777")
			require.Contains(t, r.Text, "Ann")
			require.Contains(t, r.Text, "Stadhuis Kortrijk")
			require.Contains(t, r.Subject, "eID", "the subject names the document")
			until := FormatDeadline(lang, d.Deadline, d.Now)
			switch msg {
			case MsgReady:
				require.Contains(t, r.Text, "123 456 789")
				require.Contains(t, r.SMS, "123 456 789")
				require.Contains(t, r.HTML, `src="cid:qr@kluis"`)
				require.Contains(t, r.HTML, `width="305"`)
				require.Contains(t, r.Text, until)
				require.Contains(t, r.SMS, until)
				require.Contains(t, r.Text, d.Directions)
				require.Contains(t, r.Text, "https://kluis.kortrijk.be/t/abc")
				require.Contains(t, r.HTML, `href="https://kluis.kortrijk.be/t/abc"`)
				require.Contains(t, r.Text, T(lang, "mail.calendar"))
				require.Contains(t, r.Text, T(lang, "ready.bring"))
			case MsgReminder:
				require.Contains(t, r.Text, until)
				require.Contains(t, r.Text, d.Directions)
				require.Contains(t, r.Text, T(lang, "mail.lost_codes"))
				require.NotContains(t, r.Text, "123 456 789", "only the ready message carries the PIN")
			case MsgReceipt:
				require.Contains(t, r.Text, FormatTime(lang, d.When, d.Now))
				require.Contains(t, r.Text, T(lang, "receipt.not_you"))
				require.NotContains(t, r.Text, "123 456 789")
			case MsgReturned:
				require.Contains(t, r.Text, until)
				require.Contains(t, r.Text, "Grote Markt 54")
				require.NotContains(t, r.Text, "123 456 789")
			}
			if msg != MsgReady {
				require.NotContains(t, r.HTML, "cid:", "only the ready message shows the QR code")
			}
		}
	}
	_, err := Render("en", MsgReady, MessageData{})
	require.ErrorIs(t, err, ErrInvalid, "a ready message needs the PIN")
	_, err = Render("en", "nope", sampleData())
	require.ErrorIs(t, err, ErrInvalid)
}

func TestRenderEscapesAndFallsBack(t *testing.T) {
	d := sampleData()
	d.FirstName = `<script>alert(1)</script>`
	d.SiteName = `"><img src=x onerror=alert(1)>`
	d.QRContentID = ""
	r, err := Render("xx", MsgReady, d)
	require.NoError(t, err)
	require.Equal(t, "nl", r.Language)
	require.NotContains(t, r.HTML, "<script>")
	require.NotContains(t, r.HTML, "<img src=x")
	require.Contains(t, r.HTML, "&lt;script&gt;")
	require.NotContains(t, r.HTML, "cid:")
	require.Contains(t, r.Text, "<script>", "plain text is not escaped")

	d = sampleData()
	d.Reissued = true
	r, err = Render("en", MsgReady, d)
	require.NoError(t, err)
	require.Equal(t, "New codes for your eID", r.Subject)
	require.Contains(t, r.Text, "The old codes no longer work.")

	d = sampleData()
	d.DeviceKind, d.FirstName = "automaton", ""
	r, err = Render("de", MsgReady, d)
	require.NoError(t, err)
	require.Contains(t, r.Text, "Abholautomat K1")
	require.NotContains(t, r.Text, "Fach 12", "an automaton brings the document to its hatch")
	require.True(t, strings.HasPrefix(r.Text, "Guten Tag,\n"))
}

// The text body reads top to bottom as a person needs it: greeting, what,
// until when, how to open, where, what to bring, the link, help.
func TestReadyTextOrder(t *testing.T) {
	r, err := Render("en", MsgReady, sampleData())
	require.NoError(t, err)
	order := []string{"Dear Ann,", "Your electronic identity card (eID) is ready.", "Until when?",
		"You have until midnight on Tuesday 15 December.", "How to open the compartment", "Type your PIN: 123 456 789",
		"Then type your date of birth.", "Where?", "Locker K1, compartment 12", "In de inkomhal", "What to bring",
		"Follow your document", "See where your document is\nhttps://kluis.kortrijk.be/t/abc", "Need help?", "Call\u00a01777 for free.",
		"Kind regards\nStad Kortrijk"}
	at := 0
	for _, s := range order {
		i := strings.Index(r.Text[at:], s)
		require.GreaterOrEqual(t, i, 0, "%q after position %d in:\n%s", s, at, r.Text)
		at += i + len(s)
	}
}
