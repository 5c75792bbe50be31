package screen

import (
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
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
