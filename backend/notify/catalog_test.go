package notify

import (
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var fieldRe = regexp.MustCompile(`{{\s*\.(\w+)\s*}}`)

func fields(e entry) map[string][]string {
	out := map[string][]string{}
	add := func(part, s string) {
		for _, m := range fieldRe.FindAllStringSubmatch(s, -1) {
			out[part] = append(out[part], m[1])
		}
		sort.Strings(out[part])
	}
	add("subject", e.Subject)
	add("body", strings.Join(e.Paragraphs, "\n"))
	add("sms", e.SMS)
	return out
}

func sampleData(lang string) MessageData {
	at := time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC)
	return MessageData{FirstName: "Ann", Doc: DocName(lang, "eid"), SiteName: "Stadhuis Kortrijk", SiteAddress: "Grote Markt 54, 8500 Kortrijk",
		DeviceName: "K1", Compartment: 12, Deadline: FormatTime(lang, at), When: FormatTime(lang, at), PIN: "123 456 789",
		TrackURL: "https://kluis.kortrijk.be/t/abc", Sender: "Stad Kortrijk"}
}

// Every message exists in every language, uses the same placeholders as the
// English one, renders without gaps, and says what the citizen needs.
func TestCatalogueComplete(t *testing.T) {
	msgs := []string{MsgReady, MsgReminder, MsgReceipt, MsgReturned}
	require.Len(t, catalogue, len(Languages))
	for _, lang := range Languages {
		require.Len(t, catalogue[lang], len(msgs), lang)
		require.Len(t, docNames[lang], 5, lang)
		require.Len(t, ui[lang], len(ui["en"]), lang)
		for k := range ui["en"] {
			require.NotEmpty(t, ui[lang][k], "%s %s", lang, k)
		}
		for _, m := range msgs {
			e, ok := catalogue[lang][m]
			require.True(t, ok, "%s/%s missing", lang, m)
			require.Equal(t, fields(catalogue["en"][m]), fields(e), "%s/%s placeholders differ from English", lang, m)
			r, err := Render(lang, m, sampleData(lang), "qr")
			require.NoError(t, err, "%s/%s", lang, m)
			for _, s := range []string{r.Subject, r.Text, r.HTML, r.SMS} {
				require.NotContains(t, s, "<no value>")
				require.NotContains(t, s, "{{")
			}
			require.Contains(t, r.Text, "1777", "%s/%s: the help line", lang, m)
			require.Contains(t, r.SMS, "1777")
			require.Contains(t, r.Text, "Ann")
			if m != MsgReceipt {
				require.Contains(t, r.Text, "Stadhuis Kortrijk")
				require.Contains(t, r.Text, "https://kluis.kortrijk.be/t/abc")
			}
			if m == MsgReady {
				require.Contains(t, r.Text, "123 456 789")
				require.Contains(t, r.SMS, "123 456 789")
				require.Contains(t, r.Text, "12")
				require.Contains(t, r.HTML, `src="cid:qr"`)
				require.Contains(t, r.Text, sampleData(lang).Deadline)
			} else {
				require.NotContains(t, r.Text, "123 456 789", "only the ready message carries the PIN")
			}
		}
	}
}

func TestRenderEscapesAndFallsBack(t *testing.T) {
	d := sampleData("en")
	d.FirstName = `<script>alert(1)</script>`
	r, err := Render("xx", MsgReady, d, "")
	require.NoError(t, err)
	require.Equal(t, "nl", r.Language)
	require.NotContains(t, r.HTML, "<script>")
	require.Contains(t, r.HTML, "&lt;script&gt;")
	require.NotContains(t, r.HTML, "cid:")
	_, err = Render("en", "nope", d, "")
	require.ErrorIs(t, err, ErrInvalid)
}

func TestFormatTimeBrussels(t *testing.T) {
	winter := time.Date(2026, 12, 4, 17, 5, 0, 0, time.UTC) // CET, UTC+1
	require.Equal(t, "4 december 2026 om 18.05 uur", FormatTime("nl", winter))
	require.Equal(t, "4 décembre 2026 à 18h05", FormatTime("fr", winter))
	require.Equal(t, "4 December 2026 at 18:05", FormatTime("en", winter))
	require.Equal(t, "4. Dezember 2026, 18:05 Uhr", FormatTime("de", winter))
	summer := time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC) // CEST, UTC+2
	require.Equal(t, "1 July 2026 at 12:00", FormatTime("en", summer))
}
