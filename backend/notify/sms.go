package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf16"
)

// SMSSender sends a text message.
type SMSSender interface {
	SendSMS(ctx context.Context, to, text string) error
}

// SMSGateway posts {"to": ..., "text": ...} as JSON to URL with a bearer
// token. Neither the text nor the token appear in its errors.
type SMSGateway struct {
	// URL of the gateway's send endpoint.
	URL string
	// Token is sent as "Authorization: Bearer <Token>".
	Token string
	// Client; default one with a 15 s timeout.
	Client *http.Client
}

// SendSMS posts one message; any status other than 2xx is an error.
func (g *SMSGateway) SendSMS(ctx context.Context, to, text string) error {
	if to == "" || text == "" {
		return fmt.Errorf("notify: sms: recipient and text are required: %w", ErrInvalid)
	}
	body, err := json.Marshal(map[string]string{"to": to, "text": text})
	if err != nil {
		return fmt.Errorf("notify: sms: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify: sms: gateway URL: %w", ErrInvalid)
	}
	req.Header.Set("Content-Type", "application/json")
	if g.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.Token)
	}
	c := g.Client
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("notify: sms: gateway unreachable: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("notify: sms: gateway answered %d", resp.StatusCode)
	}
	return nil
}

// MaxSMSSegments is the most segments a text message may take: two
// segments are 306 GSM-7 characters (a little less with extension
// characters), or 134 UCS-2 ones.
const MaxSMSSegments = 2

// gsmBasic is the GSM 03.38 default alphabet (one septet each; the escape
// 0x1B is not a character).
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"

// gsmExtension are the characters sent as escape + septet (two septets).
const gsmExtension = "\f^{}\\[~]|€"

// SMSSegments returns how many segments text takes and whether it needs
// UCS-2: GSM-7 holds 160 septets in one segment or 153 per segment of a
// longer message, an extension character taking two septets that are never
// split over segments; UCS-2 holds 70 UTF-16 units, or 67 per segment, a
// surrogate pair never split.
func SMSSegments(text string) (segments int, ucs2 bool) {
	var costs []int
	for _, r := range text {
		switch {
		case strings.ContainsRune(gsmBasic, r):
			costs = append(costs, 1)
		case strings.ContainsRune(gsmExtension, r):
			costs = append(costs, 2)
		default:
			ucs2 = true
		}
	}
	single, multi := 160, 153
	if ucs2 {
		single, multi = 70, 67
		costs = costs[:0]
		for _, r := range text {
			costs = append(costs, utf16.RuneLen(r))
		}
	}
	total := 0
	for _, c := range costs {
		total += c
	}
	if total <= single {
		return 1, ucs2
	}
	segments, used := 1, 0
	for _, c := range costs {
		if used+c > multi {
			segments++
			used = 0
		}
		used += c
	}
	return segments, ucs2
}

// gsmFold replaces characters outside GSM-7 by their nearest GSM-7 spelling
// (ê → e, ç → c, ’ → ', … → ...), so that names and month names like
// "août" keep a message in GSM-7.
var gsmFold = strings.NewReplacer(
	"á", "a", "â", "a", "ã", "a", "ā", "a", "ą", "a", "Á", "A", "Â", "A", "À", "A", "Ã", "A",
	"ç", "c", "ć", "c", "č", "c", "Ć", "C", "Č", "C",
	"ê", "e", "ë", "e", "ē", "e", "ę", "e", "ě", "e", "È", "E", "Ê", "E", "Ë", "E",
	"í", "i", "î", "i", "ï", "i", "Í", "I", "Î", "I", "Ï", "I", "Ì", "I", "ĳ", "ij", "Ĳ", "IJ",
	"ó", "o", "ô", "o", "õ", "o", "ő", "o", "Ó", "O", "Ô", "O", "Ò", "O", "Õ", "O", "œ", "oe", "Œ", "OE",
	"ú", "u", "û", "u", "ű", "u", "ů", "u", "Ú", "U", "Û", "U", "Ù", "U",
	"ý", "y", "ÿ", "y", "Ý", "Y", "ł", "l", "Ł", "L", "ń", "n", "ň", "n", "ř", "r", "š", "s", "ś", "s", "Š", "S", "ž", "z", "ź", "z", "ż", "z", "Ž", "Z",
	"‘", "'", "’", "'", "‚", "'", "“", "\"", "”", "\"", "„", "\"", "«", "\"", "»", "\"",
	"–", "-", "—", "-", "…", "...", "\u00a0", " ", "\u202f", " ",
)

// shorten cuts s to at most n characters, ending in "..." when cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return strings.TrimSpace(string(r[:n-3])) + "..."
}

// toGSM spells s in the GSM-7 alphabet: folded (ê → e), characters
// without a GSM-7 spelling left out.
func toGSM(s string) string {
	s = gsmFold.Replace(s)
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(gsmBasic, r) || strings.ContainsRune(gsmExtension, r) {
			return r
		}
		return -1
	}, s)
}

// gsmName is a name in GSM-7 (see toGSM), its spaces tidied.
func gsmName(s string) string { return strings.Join(strings.Fields(toGSM(s)), " ") }

// fitSMS renders the SMS text key in GSM-7 (see toGSM) and keeps it within
// MaxSMSSegments: long site and device names (and at last the sender) are
// shortened step by step until it fits. The PIN, the deadline and the link
// are never cut.
func fitSMS(t *tr, key string, d MessageData) string {
	var s string
	for _, limit := range []int{0, 40, 30, 24, 18, 14, 10} {
		e := d
		e.SiteName, e.DeviceName, e.Sender = gsmName(e.SiteName), gsmName(e.DeviceName), gsmName(e.Sender)
		if limit > 0 {
			e.SiteName, e.DeviceName = shorten(e.SiteName, limit), shorten(e.DeviceName, limit)
		}
		if limit > 0 && limit <= 14 {
			e.Sender = shorten(e.Sender, limit+4)
		}
		v := baseVars(t, e, "sms.")
		s = toGSM(t.s(key, &v))
		if n, _ := SMSSegments(s); n <= MaxSMSSegments {
			return s
		}
	}
	return s
}
