package notify

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSMSSegments(t *testing.T) {
	for _, c := range []struct {
		text string
		want int
		ucs2 bool
	}{
		{strings.Repeat("a", 160), 1, false},
		{strings.Repeat("a", 161), 2, false},
		{strings.Repeat("a", 306), 2, false},
		{strings.Repeat("a", 307), 3, false},
		{strings.Repeat("é", 160), 1, false}, // in the GSM-7 alphabet
		{strings.Repeat("€", 80), 1, false},  // 160 septets
		{strings.Repeat("€", 81), 2, false},  // 162 septets: 76 + 5 characters
		{strings.Repeat("€", 153), 3, false}, // 306 septets, but an escape pair is never split: 76 + 76 + 1
		{strings.Repeat("a", 152) + "€" + strings.Repeat("a", 152), 3, false},
		{strings.Repeat("я", 70), 1, true},
		{strings.Repeat("я", 71), 2, true},
		{strings.Repeat("я", 134), 2, true},
		{strings.Repeat("я", 135), 3, true},
		{strings.Repeat("ê", 70), 1, true},                                 // not in GSM-7
		{strings.Repeat("a", 67) + "😀" + "a", 1, true},                     // 70 UTF-16 units
		{strings.Repeat("a", 66) + "😀" + strings.Repeat("a", 68), 3, true}, // 136 units; the pair is not split at 67
		{strings.Repeat("a", 65) + "😀" + strings.Repeat("a", 67), 2, true}, // 134 units: 67 + 67
	} {
		n, ucs2 := SMSSegments(c.text)
		require.Equal(t, c.want, n, "%.20q… (%d runes)", c.text, len([]rune(c.text)))
		require.Equal(t, c.ucs2, ucs2, "%.20q…", c.text)
	}
	require.Equal(t, "aout École ... 'x' \"y\" - c", gsmFold.Replace("août École … ’x’ “y” – ç"))
	require.Equal(t, "Kortrijk  12", toGSM("Kortrijk Ратуша 12"))
	require.Equal(t, "Kortrijk 12", gsmName(" Kortrijk Ратуша 12"))
}

// Every SMS of every language and kind fits in one or two segments of
// GSM-7 with realistic worst-case values: the longest document, weekday
// and month names, a deadline in another year, a 12-digit PIN, long site
// and device names, French site names with characters outside GSM-7.
func TestSMSFitsTwoSegments(t *testing.T) {
	sites := []string{
		"Stadhuis Kortrijk",
		"Administratief Centrum Kortrijk Weide, Dienst Burgerzaken en Bevolking",
		"Hôtel de ville de Courtrai, service Population (bâtiment Côté Lys)",
		strings.Repeat("Stadhuis ", 22), // 198 characters, the most a site name may have
	}
	devices := []string{"K1", "Afhaalkluis Noordgevel Stadhuis Blok B", strings.Repeat("Ï", 200)}
	for _, lang := range Languages {
		for _, msg := range Messages {
			for _, kind := range []string{"eid", "residence_card", "driving_licence"} {
				for _, site := range sites {
					for _, dev := range devices {
						for _, devKind := range []string{"locker", "automaton"} {
							d := MessageData{FirstName: "Anne-Marie", DocumentKind: kind, SiteName: site, SiteAddress: "Grote Markt 54, 8500 Kortrijk",
								DeviceKind: devKind, DeviceName: dev, Compartment: 512, Deadline: brussels(2027, 9, 30, 0, 0), // Wednesday 29 September 2027
								When: brussels(2027, 9, 29, 23, 59), PIN: "123456789012",
								TrackURL: "https://kluis.kortrijk.be/t/" + strings.Repeat("A", 22), Sender: "Stad Kortrijk",
								Now: brussels(2026, 12, 30, 12, 0)}
							r, err := Render(lang, msg, d)
							require.NoError(t, err)
							n, ucs2 := SMSSegments(r.SMS)
							require.False(t, ucs2, "%s/%s: %q", lang, msg, r.SMS)
							require.GreaterOrEqual(t, n, 1)
							require.LessOrEqual(t, n, 2, "%s/%s %d segments: %q", lang, msg, n, r.SMS)
							require.Contains(t, r.SMS, "1777")
							switch msg {
							case MsgReady:
								require.Contains(t, r.SMS, "123 456 789 012", "the PIN is never cut")
								fallthrough
							case MsgReminder, MsgReturned:
								require.Contains(t, r.SMS, d.TrackURL, "the link is never cut")
							}
							if msg == MsgReady || msg == MsgReminder {
								require.Contains(t, r.SMS, "2027", "the deadline is never cut")
							}
						}
					}
				}
			}
		}
	}
	// Short names are kept whole.
	d := sampleData()
	r, err := Render("fr", MsgReady, d)
	require.NoError(t, err)
	require.Contains(t, r.SMS, "Stadhuis Kortrijk, consigne K1 casier 12")
	// A name in another script: its letters are left out, the SMS stays GSM-7.
	d.SiteName = "Ратуша Kortrijk"
	r, err = Render("en", MsgReminder, d)
	require.NoError(t, err)
	n, ucs2 := SMSSegments(r.SMS)
	require.False(t, ucs2)
	require.LessOrEqual(t, n, 2, r.SMS)
	require.Contains(t, r.SMS, "still at Kortrijk, locker K1")
}
