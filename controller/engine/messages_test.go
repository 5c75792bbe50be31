package engine

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Message fills {n} and {m} exactly as a strings.Replacer would, for every
// state and language and for texts with repeated, adjacent, unknown and
// unfinished placeholders.
func TestMessageFillsLikeAReplacer(t *testing.T) {
	want := func(text string, n, m int) string {
		return strings.NewReplacer("{n}", strconv.Itoa(n), "{m}", strconv.Itoa(m)).Replace(text)
	}
	placeholders := 0
	for _, st := range States() {
		for _, l := range Langs() {
			text, _ := MessageText(st, l)
			placeholders += strings.Count(text, "{n}") + strings.Count(text, "{m}")
			for _, nm := range [][2]int{{0, 0}, {7, 5}, {-3, 120}} {
				require.Equal(t, want(text, nm[0], nm[1]), Message(st, l, nm[0], nm[1]), "%s %s", st, l)
			}
		}
	}
	require.Positive(t, placeholders, "the catalogue has placeholders to fill")
	for _, text := range []string{"", "{", "{n", "{n}", "{m}{n}{n}", "a{{n}}b", "{x}{n}{", "}{m}{", "deur {n}, {m} min.", "é{n}ü"} {
		require.Equal(t, want(text, 12, 3), fillNM(text, 12, 3), "%q", text)
	}
}

func BenchmarkMessage(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range langs {
			_ = Message(StateOpen, l, 12, 5)
		}
	}
}
