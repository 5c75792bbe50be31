package screen

import (
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/engine"
)

// The counter's hours read as sentences, a line per run of days with the
// same hours, on the 24 h clock, in every language.
func TestHoursLines(t *testing.T) {
	cat, err := NewCatalog()
	require.NoError(t, err)
	weekday := []config.Span{{From: 510, To: 750}, {From: 810, To: 960}}
	week := [][]config.Span{weekday, weekday, weekday, weekday, weekday, {{From: 540, To: 720}}, nil}
	want := map[string][]string{
		"nl": {"Maandag tot en met vrijdag: 08:30 tot 12:30 en 13:30 tot 16:00", "Zaterdag: 09:00 tot 12:00", "Zondag: gesloten"},
		"fr": {"Du lundi au vendredi\u00a0: de 08:30 à 12:30 et de 13:30 à 16:00", "Samedi\u00a0: de 09:00 à 12:00", "Dimanche\u00a0: fermé"},
		"en": {"Monday to Friday: 08:30 to 12:30 and 13:30 to 16:00", "Saturday: 09:00 to 12:00", "Sunday: closed"},
		"de": {"Montag bis Freitag: 08:30 bis 12:30 und 13:30 bis 16:00", "Samstag: 09:00 bis 12:00", "Sonntag: geschlossen"},
	}
	for _, l := range Langs() {
		got, err := hoursLines(cat, week, l)
		require.NoError(t, err)
		require.Equal(t, want[l], got, l)
	}
	two, err := hoursLines(cat, [][]config.Span{nil, nil, nil, nil, nil, nil, {{From: 0, To: 1440}}}, "en")
	require.NoError(t, err)
	require.Equal(t, []string{"Monday to Saturday: closed", "Sunday: 00:00 to 24:00"}, two)
	h := func(from, to int) config.Span { return config.Span{From: from * 60, To: to * 60} }
	three, err := hoursLines(cat, [][]config.Span{{h(0, 1), h(2, 3), h(4, 5)}, nil, nil, nil, nil, {h(0, 1)}, {h(0, 1)}}, "nl")
	require.NoError(t, err)
	require.Equal(t, []string{"Maandag: 00:00 tot 01:00, 02:00 tot 03:00 en 04:00 tot 05:00",
		"Dinsdag tot en met vrijdag: gesloten", "Zaterdag en zondag: 00:00 tot 01:00"}, three)
	none, err := hoursLines(cat, nil, "nl")
	require.NoError(t, err)
	require.Nil(t, none)
}

// The counter's closed dates (kiosk.counter_closed) are said on the help
// screens while one comes before the next opening: which dates, then
// when the counter opens again, in every language; nothing while the
// counter is open, when it opens before any closed date, or for a closed
// date that the weekly hours close anyway. fresh is when that may change.
func TestClosedNote(t *testing.T) {
	cat, err := NewCatalog()
	require.NoError(t, err)
	morning := []config.Span{{From: 510, To: 750}}
	week := [][]config.Span{morning, morning, morning, morning, morning, {{From: 540, To: 720}}, nil}
	day := func(s string) time.Time { v, _ := time.Parse(time.DateOnly, s); return v }
	closed := []time.Time{day("2026-12-25"), day("2026-12-26"), day("2026-12-27"), day("2027-01-01")}
	brussels := time.FixedZone("CET", 3600)
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, brussels)
		require.NoError(t, err)
		return v
	}
	christmas := map[string]string{
		"nl": "Het loket is gesloten op 25-12 en 26-12. Het is weer open op maandag 28-12 vanaf 08:30.",
		"fr": "Le guichet est fermé les 25/12 et 26/12. Il rouvre le lundi 28/12 à 08:30.",
		"en": "The counter is closed on 25/12 and 26/12. It opens again on Monday 28/12 at 08:30.",
		"de": "Der Schalter ist am 25.12. und 26.12. geschlossen. Er öffnet wieder am Montag, 28.12. um 08:30.",
	}
	newYear := map[string]string{
		"nl": "Het loket is gesloten op 01-01. Het is weer open op zaterdag 02-01 vanaf 09:00.",
		"fr": "Le guichet est fermé le 01/01. Il rouvre le samedi 02/01 à 09:00.",
		"en": "The counter is closed on 01/01. It opens again on Saturday 02/01 at 09:00.",
		"de": "Der Schalter ist am 01.01. geschlossen. Er öffnet wieder am Samstag, 02.01. um 09:00.",
	}
	none := map[string]string{"nl": "", "fr": "", "en": "", "de": ""}
	for _, c := range []struct {
		now, fresh string
		want       map[string]string
	}{
		{"2026-12-24 22:00", "2026-12-25 00:00", christmas}, // Thursday night
		{"2026-12-24 13:00", "2026-12-25 00:00", christmas}, // after Thursday's hours
		{"2026-12-25 03:00", "2026-12-25 08:30", christmas}, // Christmas night: today counts
		{"2026-12-26 13:00", "2026-12-27 00:00", none},      // Saturday after its hours: Sunday is closed anyway
		{"2026-12-24 10:00", "2026-12-24 12:30", none},      // open now
		{"2026-12-24 07:00", "2026-12-24 08:30", none},      // opens today first
		{"2026-12-31 20:00", "2027-01-01 00:00", newYear},
		{"2026-12-19 13:00", "2026-12-20 00:00", none}, // an ordinary weekend
	} {
		for _, l := range Langs() {
			note, fresh, err := closedNote(cat, week, closed, l, at(c.now))
			require.NoError(t, err)
			require.Equal(t, c.want[l], note, "%s in %s", c.now, l)
			require.True(t, at(c.fresh).Equal(fresh), "%s: fresh %v, want %s", c.now, fresh, c.fresh)
		}
	}
	// Open on Mondays alone, a Monday closed: the next Monday.
	only := [][]config.Span{morning, nil, nil, nil, nil, nil, nil}
	note, _, err := closedNote(cat, only, []time.Time{day("2026-12-28")}, "en", at("2026-12-27 12:00"))
	require.NoError(t, err)
	require.Equal(t, "The counter is closed on 28/12. It opens again on Monday 04/01 at 08:30.", note)
	note, _, err = closedNote(cat, week, nil, "en", at("2026-12-24 22:00"))
	require.NoError(t, err)
	require.Empty(t, note, "no closed dates")
}

// With kiosk.counter_closed, the help screens that give the counter's
// hours say first that it is closed on the coming dates and when it opens
// again, in the page's language at the page's time (the device's); the
// page says until when that holds (data-fresh-until: the script loads it
// again at the idle return after). Without closed dates: no note, 0.
func TestClosedDatesOnTheHelpScreens(t *testing.T) {
	y := "device_id: d1\nsite: s\nkind: locker\nmqtt: {url: tcp://127.0.0.1:1883}\nhardware: {driver: simfile, simfile: /dev/null}\n" +
		"compartments:\n  - {number: 1, board: 0, channel: 0}\n" +
		"kiosk:\n  counter_hours: {mon: [08:30-12:30], tue: [08:30-12:30], wed: [08:30-12:30], thu: [08:30-12:30], fri: [08:30-12:30]}\n"
	now := time.Date(2026, 12, 24, 22, 0, 0, 0, time.Local)
	for _, closed := range []bool{true, false} {
		yy := y
		if closed {
			yy += "  counter_closed: [2026-12-25, 2027-01-01]\n"
		}
		cfg, err := config.Parse([]byte(yy), config.ParseOptions{AllowTestDrivers: true})
		require.NoError(t, err)
		src := &fakeSource{}
		s, err := New(Options{Source: src, Config: cfg, Clock: func() time.Time { return now },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		want := map[string]string{
			"nl": "Het loket is gesloten op 25-12. Het is weer open op maandag 28-12 vanaf 08:30.",
			"fr": "Le guichet est fermé le 25/12. Il rouvre le lundi 28/12 à 08:30.",
			"en": "The counter is closed on 25/12. It opens again on Monday 28/12 at 08:30.",
			"de": "Der Schalter ist am 25.12. geschlossen. Er öffnet wieder am Montag, 28.12. um 08:30.",
		}
		for _, l := range Langs() {
			for _, st := range []string{engine.StateLockedOut, engine.StateExpired, engine.StateNotOpened} {
				src.sc = engine.Screen{State: st, Lang: l, Seq: 2, At: now}
				code, body := get(t, s, "/?lang="+l)
				require.Equal(t, http.StatusOK, code)
				sec := regexp.MustCompile(`(?s)<section id="s-` + st + `".*?</section>`).FindString(body)
				note := `<p class="closed-note">` + html.EscapeString(want[l]) + `</p>`
				fresh := fmt.Sprintf(`data-fresh-until="%d"`, time.Date(2026, 12, 25, 0, 0, 0, 0, time.Local).UnixMilli())
				if closed {
					require.Contains(t, sec, note, "%s in %s", st, l)
					require.Contains(t, body, fresh, l)
				} else {
					require.NotContains(t, body, "closed-note", "%s in %s", st, l)
					require.Contains(t, body, `data-fresh-until="0"`, l)
				}
				require.NotContains(t, regexp.MustCompile(`(?s)<section id="v-start".*?</section>`).FindString(body), "closed-note")
			}
		}
	}
}
