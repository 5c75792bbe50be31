package safetext

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	for _, ok := range []string{"", "Stadhuis Kortrijk", "Hôtel de Ville — Gent", "Zoë's locker 2", "ملف", "מיכאל",
		"می\u200cخواهم", "👩\u200d🔧 technician"} {
		assert.NoError(t, Check(ok, 100), "%q", ok)
	}
	for s, why := range map[string]string{
		"a\x00b":                 "control character (U+0000)",
		"a\nb":                   "control character (U+000A)",
		"\x1b[31mred":            "control character (U+001B)",
		"evil\u202Etxt.exe":      "bidirectional control character (U+202E)",
		"\u202Aembed":            "bidirectional control character (U+202A)",
		"iso\u2066late":          "bidirectional control character (U+2066)",
		"mark\u200F":             "bidirectional control character (U+200F)",
		"alm\u061C":              "bidirectional control character (U+061C)",
		"zero\u200Bwidth":        "invisible format character (U+200B)",
		"\ufeffbom":              "invisible format character (U+FEFF)",
		"soft\u00ADhyphen":       "invisible format character (U+00AD)",
		"line\u2028sep":          "line or paragraph separator (U+2028)",
		"bad\xffutf8":            "not valid UTF-8",
		"repl\uFFFDacement":      "replacement character (U+FFFD)",
		"tag\U000E0041":          "invisible format character (U+E0041)",
		"c1\u0085control":        "control character (U+0085)",
		"An\u3164":               "invisible format character (U+3164)",
		"\u115F\u1160":           "invisible format character (U+115F)",
		"half\uFFA0width":        "invisible format character (U+FFA0)",
		"cgj\u034F":              "invisible format character (U+034F)",
		"khmer\u17B4":            "invisible format character (U+17B4)",
		"unassigned\u2065":       "invisible format character (U+2065)",
		"tagx\U000E0080":         "invisible format character (U+E0080)",
		strings.Repeat("é", 101): "longer than 100 characters",
	} {
		err := Check(s, 100)
		require.Error(t, err, "%q", s)
		assert.True(t, errors.Is(err, ErrRefused))
		assert.Contains(t, Reason(err), why, "%q", s)
		assert.False(t, strings.HasPrefix(Reason(err), "safetext"), Reason(err))
	}
	assert.NoError(t, Check(strings.Repeat("é", 100), 100), "the limit counts characters, not bytes")
	assert.NoError(t, Check(strings.Repeat("x", 5000), 0), "max 0: no limit")
	assert.Equal(t, "", Reason(nil))
}

func TestEscape(t *testing.T) {
	assert.Equal(t, "Stadhuis Kortrijk", Escape("Stadhuis Kortrijk"))
	assert.Equal(t, `evil\u{202E}txt.exe`, Escape("evil\u202Etxt.exe"))
	assert.Equal(t, `a\u{0000}b\u{001B}[31m`, Escape("a\x00b\x1b[31m"))
	assert.Equal(t, `bad\xFFutf8 ok`, Escape("bad\xffutf8 ok"))
	assert.Equal(t, "می\u200cخواهم", Escape("می\u200cخواهم"))
	// Whatever goes in, what comes out passes Check.
	for _, s := range []string{"\u202E\u2066\x00\xff\xfe", "a\u200Bb", "\U000E0041", "\u3164\u034F"} {
		out := Escape(s)
		assert.True(t, utf8.ValidString(out))
		assert.NoError(t, Check(out, 0), "%q -> %q", s, out)
	}
}

func FuzzEscapeIsSafe(f *testing.F) {
	for _, s := range []string{"", "x", "\u202E", "\xff", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := Check(Escape(s), 0); err != nil {
			t.Fatalf("Escape(%q) = %q: %v", s, Escape(s), err)
		}
		if Check(s, 0) == nil && Escape(s) != s {
			t.Fatalf("Escape changed accepted text %q", s)
		}
	})
}
