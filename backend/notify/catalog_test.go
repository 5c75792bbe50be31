package notify

import (
	"bytes"
	"fmt"
	"html"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/require"
)

var placeholderRe = regexp.MustCompile(`{{\s*\.(\w+)\s*}}`)

func placeholders(s string) []string {
	var out []string
	for _, m := range placeholderRe.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	sort.Strings(out)
	return out
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Every key exists in all four languages (no fallback is ever used), is
// not empty, uses the same placeholders as Dutch, and renders.
func TestCatalogueComplete(t *testing.T) {
	require.Equal(t, Languages, []string{"nl", "fr", "en", "de"})
	require.Len(t, catalogue, len(Languages))
	nl := keys(catalogue["nl"])
	for _, lang := range Languages {
		require.Equal(t, nl, keys(catalogue[lang]), "%s has other keys than nl", lang)
		for _, k := range nl {
			src := catalogue[lang][k]
			require.NotEmpty(t, strings.TrimSpace(src), "%s/%s", lang, k)
			require.Equal(t, placeholders(catalogue["nl"][k]), placeholders(src), "%s/%s: placeholders differ from nl", lang, k)
			got, err := execText(src, &vars{FirstName: "Ann"})
			require.NoError(t, err, "%s/%s", lang, k)
			require.NotContains(t, got, "<no value>")
		}
		for _, w := range []int{0, 1, 2, 3, 4, 5, 6} {
			require.Contains(t, catalogue[lang], fmt.Sprintf("weekday.%d", w))
		}
		for m := 1; m <= 12; m++ {
			require.Contains(t, catalogue[lang], fmt.Sprintf("month.%d", m))
		}
		for _, kind := range []string{"eid", "kids_id", "residence_card", "passport", "driving_licence"} {
			require.Contains(t, catalogue[lang], "doc."+kind)
			require.Contains(t, catalogue[lang], "docshort."+kind)
		}
		for _, m := range Messages {
			require.Contains(t, catalogue[lang], m+".subject")
			require.Contains(t, catalogue[lang], m+".lead")
			require.Contains(t, catalogue[lang], m+".sms")
		}
	}
}

// The SMS texts themselves are GSM-7 (names are folded when rendering),
// but for the non-breaking spaces the catalogue's rules ask for (French
// punctuation, the help number): GSM-7 has none, and rendering folds
// them to plain spaces (toGSM), which the rendered SMS shows.
func TestSMSTextsAreGSM7(t *testing.T) {
	for _, lang := range Languages {
		for k, src := range catalogue[lang] {
			if !strings.HasSuffix(k, ".sms") && !strings.HasPrefix(k, "sms.") {
				continue
			}
			_, ucs2 := SMSSegments(strings.ReplaceAll(placeholderRe.ReplaceAllString(src, ""), "\u00a0", " "))
			require.False(t, ucs2, "%s/%s is not GSM-7: %q", lang, k, src)
			_, ucs2 = SMSSegments(toGSM(src))
			require.False(t, ucs2, "%s/%s is not GSM-7 once folded: %q", lang, k, toGSM(src))
		}
	}
}

// TestFrenchPunctuationStaysWithItsWord: every French text of the
// catalogue has a non-breaking space (U+00A0) before : ? ! and ;, never a
// plain one, where a line could break and start with ":" ("Votre document
// est prêt" / ": eID"), as the kiosk's and the console's catalogues do.
func TestFrenchPunctuationStaysWithItsWord(t *testing.T) {
	plain := regexp.MustCompile(` [:?!;]`)
	for _, k := range keys(catalogue["fr"]) {
		if s := catalogue["fr"][k]; plain.MatchString(s) {
			t.Errorf("fr %s: %q has a plain space before a punctuation mark", k, s)
		}
	}
}

// TestHelpNumberStaysWithItsWord: in every language the help line's
// number 1777 follows a non-breaking space, never a plain one, so that
// "Appelez le" / "1777" cannot break over two lines.
func TestHelpNumberStaysWithItsWord(t *testing.T) {
	n := 0
	for _, lang := range Languages {
		for _, k := range keys(catalogue[lang]) {
			s := catalogue[lang][k]
			n += strings.Count(s, "1777")
			if strings.Contains(s, " 1777") {
				t.Errorf("%s %s: %q has a plain space before 1777", lang, k, s)
			}
		}
	}
	require.Greater(t, n, 0, "the catalogue names the help number")
}

// marked is the catalogue with every text replaced by a marker: a page
// rendered with it and with marker data must show no word at all, else a
// template or the Go code around it holds a word of its own.
func marked() cat {
	out := cat{}
	for lang, m := range catalogue {
		out[lang] = map[string]string{}
		for k := range m {
			out[lang][k] = "¤"
		}
	}
	return out
}

func markedData() MessageData {
	return MessageData{FirstName: "¤", DocumentKind: "passport", SiteName: "¤", SiteAddress: "¤", DeviceName: "¤", Directions: "¤",
		Compartment: 7, Deadline: time.Date(2026, 12, 15, 23, 0, 0, 0, time.UTC), When: time.Date(2026, 12, 7, 20, 14, 0, 0, time.UTC),
		PIN: "123456789", TrackURL: "¤", Sender: "¤", QRContentID: "qr@kluis", QRWidth: 305, CalendarAttached: true,
		Now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
}

// words returns the letters a person would read: text outside tags
// (<style> and <script> contents left out) and the alt, title, aria-label
// and placeholder attributes, entities decoded, markers removed.
func words(t *testing.T, page string) string {
	t.Helper()
	var out strings.Builder
	attrRe := regexp.MustCompile(`(?is)\s(alt|title|aria-label|placeholder|label)\s*=\s*("[^"]*"|'[^']*')`)
	for _, skip := range []string{"style", "script"} {
		page = regexp.MustCompile(`(?is)<`+skip+`[\s>].*?</`+skip+`>`).ReplaceAllString(page, " ")
	}
	page = regexp.MustCompile(`(?s)<!--.*?-->`).ReplaceAllString(page, " ")
	for len(page) > 0 {
		i := strings.IndexByte(page, '<')
		if i < 0 {
			out.WriteString(page)
			break
		}
		out.WriteString(page[:i] + " ")
		j := strings.IndexByte(page[i:], '>')
		require.GreaterOrEqual(t, j, 0, "unclosed tag in %q", page[i:])
		for _, m := range attrRe.FindAllStringSubmatch(page[i:i+j+1], -1) {
			out.WriteString(strings.Trim(m[2], `"'`) + " ")
		}
		page = page[i+j+1:]
	}
	return letters(html.UnescapeString(out.String()))
}

// letters keeps the letters of s, markers removed.
func letters(s string) string {
	var b strings.Builder
	for _, r := range strings.ReplaceAll(s, "¤", "") {
		if unicode.IsLetter(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// icsTextValues are the unfolded values of the calendar's human-readable
// properties.
func icsTextValues(ics string) string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(ics, "\r\n ", ""), "\r\n") {
		name, rest, _ := strings.Cut(l, ":")
		name, _, _ = strings.Cut(name, ";")
		if name == "SUMMARY" || name == "DESCRIPTION" || name == "LOCATION" {
			out = append(out, strings.ReplaceAll(rest, `\n`, " "))
		}
	}
	return strings.Join(out, " ")
}

// No citizen-facing word is written outside the catalogue: not in the
// templates of the e-mail, slip and track page, nor in the Go code that
// fills them, nor in the SMS and calendar texts.
func TestNoWordsOutsideCatalogue(t *testing.T) {
	c := marked()
	for _, lang := range Languages {
		for _, msg := range Messages {
			for _, d := range []MessageData{markedData(), func() MessageData {
				d := markedData()
				d.DeviceKind, d.Reissued, d.FirstName, d.QRContentID, d.CalendarAttached = "automaton", true, "", "", false
				return d
			}()} {
				r, err := render(c, lang, msg, d)
				require.NoError(t, err, "%s/%s", lang, msg)
				require.Empty(t, letters(r.Subject), "%s/%s subject", lang, msg)
				require.Empty(t, letters(r.Text), "%s/%s text:\n%s", lang, msg, r.Text)
				require.Empty(t, letters(r.SMS), "%s/%s sms: %s", lang, msg, r.SMS)
				require.Empty(t, letters(r.QRFilename+r.CalendarFilename))
				require.Empty(t, words(t, r.HTML), "%s/%s html:\n%s", lang, msg, r.HTML)
			}
		}
		ics, err := calendar(c, lang, markedData(), "uid@kluis")
		require.NoError(t, err)
		require.Empty(t, letters(icsTextValues(string(ics))), "%s calendar:\n%s", lang, ics)

		s, err := slip(c, SlipData{Language: lang, FirstName: "¤", DocumentKind: "eid", SiteName: "¤", SiteAddress: "¤", DeviceName: "¤",
			Directions: "¤", Compartment: 3, Deadline: markedData().Deadline, PIN: "123456789", QRToken: "K1.x.y"})
		require.NoError(t, err)
		require.Empty(t, words(t, string(s)), "%s slip:\n%s", lang, s)

		dl := markedData().Deadline
		for _, v := range []*TrackView{nil, trackSample("notified", &dl), trackSample("collected", nil), trackSample("retrieved", &dl),
			trackSample("registered", nil), trackSample("cancelled", nil), trackSample("expired", &dl)} {
			for _, missing := range []string{trackNotFound, trackUnavailable} {
				var b bytes.Buffer
				require.NoError(t, renderTrack(&b, c, lang, v, missing, markedData().Now))
				require.Empty(t, words(t, b.String()), "%s track page:\n%s", lang, b.String())
			}
		}
	}
}

// trackSample is a document in state with a full journey and marker names.
func trackSample(state string, deadline *time.Time) *TrackView {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	return &TrackView{Language: "nl", TrackingID: "AAAAAAAAAAAAAAAAAAAAAA", FirstName: "¤", State: state, DocumentKind: "eid",
		SiteName: "¤", SiteAddress: "¤", DeviceKind: "locker", DeviceName: "¤", Directions: map[string]string{"nl": "¤"}, Compartment: 7,
		Deadline: deadline, Steps: []Step{{StepRegistered, at}, {StepLoaded, at.Add(time.Hour)}, {StepNotified, at.Add(time.Hour)},
			{StepReissued, at.Add(2 * time.Hour)}, {StepReminder, at.Add(48 * time.Hour)}, {StepCollected, at.Add(50 * time.Hour)},
			{StepExpired, at.Add(60 * time.Hour)}, {StepRetrieved, at.Add(70 * time.Hour)}, {StepCancelled, at.Add(80 * time.Hour)}}}
}

// The words-outside-the-catalogue check finds a word when there is one.
func TestWordsFindsHardCodedText(t *testing.T) {
	require.Equal(t, "QR", words(t, `<p>¤</p><img alt="QR" src="cid:x">`))
	require.Equal(t, "Status", words(t, `<style>p{color:red}</style><b>Status:</b> ¤`))
	require.Equal(t, "", words(t, `<a href="?lang=fr" hreflang="fr">¤</a><time datetime="2026-12-01T10:00:00+01:00">¤ 1 ¤</time>`))
	require.Equal(t, "Taal", words(t, `<nav aria-label="Taal">&#43;</nav>`))
}
