// Package safetext is the one rule for text that people read as a name or
// a short note: site, device, user and token names, addresses, holders'
// names, the reasons of staff actions. Such text must not carry characters
// that change how the text around it is shown:
//
//   - control characters (Unicode Cc: NUL, escape, newline, tab, ...);
//   - line and paragraph separators (U+2028, U+2029);
//   - bidirectional controls: embeddings and overrides (U+202A-U+202E),
//     isolates (U+2066-U+2069), the marks LRM, RLM and ALM (U+200E,
//     U+200F, U+061C): an override makes "exe.txt" read as "txt.exe";
//   - every other invisible format character (Unicode Cf: zero-width
//     space, soft hyphen, byte order mark, tags, ...), except the
//     zero-width joiner and non-joiner (U+200C, U+200D) that some scripts
//     and emoji need;
//   - the other default-ignorable characters that are not format
//     characters but show as nothing all the same (Unicode
//     Other_Default_Ignorable_Code_Point: the Hangul fillers U+115F,
//     U+1160, U+3164, U+FFA0, the combining grapheme joiner U+034F, the
//     Khmer inherent vowels U+17B4, U+17B5, unassigned U+2065, U+FFF0-U+FFF8
//     and the rest of the tag block): a name of Hangul fillers is blank
//     on the screen and "An\u3164" passes for "An".
//
// Invalid UTF-8 is refused as well. The backend's store, its API and
// kluisctl all call [Check]; kluisctl prints names from the server through
// [Escape], so that text stored before this rule cannot reorder a
// terminal line.
package safetext

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrRefused is wrapped by every error of [Check].
var ErrRefused = errors.New("safetext: refused text")

// Bidi reports whether r is a bidirectional formatting character
// (embedding, override, isolate or directional mark).
func Bidi(r rune) bool {
	switch {
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x200E, r == 0x200F, r == 0x061C:
		return true
	}
	return false
}

// Refused reports whether r may not appear in a name (see the package
// comment).
func Refused(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true // invalid UTF-8 decodes to it; a real U+FFFD is no name either
	case unicode.IsControl(r), r == 0x2028, r == 0x2029, Bidi(r):
		return true
	case r == 0x200C, r == 0x200D:
		return false
	}
	return unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r)
}

// Check returns nil when s is valid UTF-8 of at most max characters
// (runes; max <= 0: no limit) without a refused character; otherwise an
// error wrapping ErrRefused whose text says why ("contains a
// bidirectional control character (U+202E)"), fit to follow a field name.
func Check(s string, max int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: is not valid UTF-8", ErrRefused)
	}
	if max > 0 && utf8.RuneCountInString(s) > max {
		return fmt.Errorf("%w: is longer than %d characters", ErrRefused, max)
	}
	for _, r := range s {
		if !Refused(r) {
			continue
		}
		what := "an invisible format character"
		switch {
		case unicode.IsControl(r):
			what = "a control character"
		case Bidi(r):
			what = "a bidirectional control character"
		case r == 0x2028 || r == 0x2029:
			what = "a line or paragraph separator"
		case r == utf8.RuneError:
			what = "a replacement character"
		}
		return fmt.Errorf("%w: contains %s (U+%04X)", ErrRefused, what, r)
	}
	return nil
}

// Reason is the text of a Check error without the package prefix, e.g.
// "contains a control character (U+0000)"; "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	return strings.TrimPrefix(err.Error(), ErrRefused.Error()+": ")
}

// Escape returns s with every refused character written as \u{XXXX} and
// every invalid byte as \xNN, so that it can be printed safely.
func Escape(s string) string {
	if strings.IndexFunc(s, Refused) < 0 {
		return s // ranging over s yields utf8.RuneError for invalid bytes
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02X`, s[i])
		case Refused(r):
			fmt.Fprintf(&b, `\u{%04X}`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
