package store

import (
	"fmt"
	"net/mail"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"

	"kluis/backend/store/safetext"
	"kluis/hardware"
)

// FieldError is one refused field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every refused field; it wraps ErrInvalid.
type ValidationError struct {
	Fields []FieldError
}

// Error lists the fields, e.g. "invalid input: email: not an e-mail address".
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

type checker struct{ fields []FieldError }

func (c *checker) add(field, format string, args ...any) {
	c.fields = append(c.fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	if len(c.fields) == 0 {
		return nil
	}
	return &ValidationError{Fields: c.fields}
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func (c *checker) id(field, v string) {
	if !idPattern.MatchString(v) {
		c.add(field, "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
	}
}

// text checks a required or optional free-text field with the one rule for
// text people read (package safetext): valid UTF-8, at most max runes, no
// control, bidirectional-control or invisible format characters.
func (c *checker) text(field, v string, required bool, max int) {
	if v == "" {
		if required {
			c.add(field, "is required")
		}
		return
	}
	if err := safetext.Check(v, max); err != nil {
		c.add(field, "%s", safetext.Reason(err))
	}
}

var docNumberPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9 -]{1,30}[A-Z0-9]$`)

// ReservedDeviceID is the MQTT user name of kluis-backend itself (the
// embedded broker's backend user and the Mosquitto ACL's full-access
// user); no device may be called so, since a device's MQTT user name is
// its id.
const ReservedDeviceID = "kluis-backend"

// NormalizeDocumentNumber upper-cases and trims a document number; this is
// the form stored and shown.
func NormalizeDocumentNumber(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

// DocumentNumberKey is the canonical form documents are found and told
// apart by: upper case without white space or dashes, so that "591 1234567
// 89", "591-1234567-89" and "59112345678 9" are one number. The database
// computes the same key (documents.number_key) from the stored number.
func DocumentNumberKey(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if unicode.IsSpace(r) || unicode.Is(unicode.Pd, r) {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// NormalizeMobile turns a phone number into E.164: spaces, dots, dashes,
// slashes and brackets go; "00" becomes "+"; a Belgian national number
// starting with a single 0 gets +32. It returns "" when the result is not
// "+" followed by 8 to 15 digits.
func NormalizeMobile(s string) string {
	var b strings.Builder
	for i, r := range strings.TrimSpace(s) {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ' || r == '.' || r == '-' || r == '/' || r == '(' || r == ')':
		default:
			return ""
		}
	}
	n := b.String()
	switch {
	case strings.HasPrefix(n, "+"):
	case strings.HasPrefix(n, "00"):
		n = "+" + n[2:]
	case strings.HasPrefix(n, "0"):
		n = "+32" + n[1:]
	default:
		return ""
	}
	digits := n[1:]
	if len(digits) < 8 || len(digits) > 15 || strings.ContainsRune(digits, '+') || digits[0] == '0' {
		return ""
	}
	return n
}

// NormalizeEmail trims an address and checks it is a bare address
// (no display name); it returns "" when it is not.
func NormalizeEmail(s string) string {
	a, _ := checkEmail(s)
	return a
}

// EmailDisguised reports whether NormalizeEmail refuses s for what a
// reader cannot see: a character nobody sees (a zero-width space, a
// direction override) or letters of look-alike scripts mixed in one word
// of the local part or one label of the domain. The console then says so:
// "fill in a valid address" under an address that reads as valid leaves
// the clerk nothing to correct.
func EmailDisguised(s string) bool {
	_, disguised := checkEmail(s)
	return disguised
}

// checkEmail is NormalizeEmail, and whether a refusal was for what a
// reader cannot see (EmailDisguised).
func checkEmail(s string) (addr string, disguised bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 254 {
		return "", false
	}
	// The clerk reads the address back to the holder and the console
	// shows it: a character nobody sees (a zero-width space, a direction
	// override) or a letter of another script among Latin ones (a
	// Cyrillic 'а' in "exаmple.be") sends the QR code, which opens the
	// door, to another mailbox than the one everyone reads.
	for _, r := range s {
		if safetext.Refused(r) || unicode.Is(unicode.Cf, r) { // the joiners too: no address needs one
			return "", true
		}
	}
	a, err := mail.ParseAddress(s)
	at := strings.LastIndex(s, "@")
	domain := s[at+1:]
	// A domain literal (jan@[10.0.0.5]) is nobody's address at a counter:
	// the mail relay would deliver to that host, an internal one as well.
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(domain, ".") || strings.HasPrefix(domain, "[") {
		return "", false
	}
	// The local part by its words (letters between dots, digits, '+',
	// '-'): "jan.иванов" is two names, "jаn" one disguised.
	for _, w := range strings.FieldsFunc(s[:at], func(r rune) bool { return !unicode.IsLetter(r) }) {
		if mixedScripts(w) {
			return "", true
		}
	}
	for _, l := range strings.Split(domain, ".") {
		if mixedScripts(l) {
			return "", true
		}
	}
	if !hostName(domain) {
		return "", false
	}
	return s, false
}

// hostName reports whether domain is a host name a mail relay looks up
// by name: labels of letters (any script), digits and inner hyphens (each
// in one script: checkEmail looked before), and a top-level domain that is not all digits (so no
// IPv4 address: jan@10.0.0.5 is a host, as jan@[10.0.0.5] is).
func hostName(domain string) bool {
	labels := strings.Split(domain, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				return false
			}
		}
	}
	return strings.TrimLeft(labels[len(labels)-1], "0123456789") != ""
}

// mixedScripts reports whether the letters of s come from more than one of
// the scripts whose letters look alike (Latin, Greek, Cyrillic).
func mixedScripts(s string) bool {
	seen := 0
	for _, r := range s {
		for i, sc := range lookAlikeScripts {
			if unicode.Is(sc, r) {
				seen |= 1 << i
			}
		}
	}
	return seen&(seen-1) != 0
}

var lookAlikeScripts = []*unicode.RangeTable{unicode.Latin, unicode.Greek, unicode.Cyrillic}

// NewSite is the input of CreateSite.
type NewSite struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	TimeZone string `json:"time_zone"` // default Europe/Brussels
	Address  string `json:"address"`
}

// Validate checks and normalises the site.
func (n *NewSite) Validate() error {
	var c checker
	c.id("id", n.ID)
	n.Name = strings.TrimSpace(n.Name)
	c.text("name", n.Name, true, 200)
	c.text("address", n.Address, false, 500)
	if n.TimeZone == "" {
		n.TimeZone = DefaultTimeZone
	}
	if _, err := time.LoadLocation(n.TimeZone); err != nil || n.TimeZone == "Local" {
		c.add("time_zone", "unknown time zone %q", n.TimeZone)
	}
	return c.err()
}

// NewCompartment is one compartment of a NewDevice.
type NewCompartment struct {
	// Number is the label people see (1-based); 0 means position+1.
	Number int `json:"number"`
	// Board and Channel are the 0-based hardware address.
	Board    int  `json:"board"`
	Channel  int  `json:"channel"`
	Size     Size `json:"size"`
	HeightCM int  `json:"height_cm"`
}

// NewDevice is the input of CreateDevice.
type NewDevice struct {
	ID     string     `json:"id"`
	SiteID string     `json:"site_id"`
	Kind   DeviceKind `json:"kind"`
	Name   string     `json:"name"`
	// Directions (optional) say, per language (nl, fr, en, de), where
	// citizens find the device and how to get there: plain text, at most
	// MaxDirections characters each.
	Directions   map[string]string `json:"directions,omitempty"`
	Compartments []NewCompartment  `json:"compartments"`
	// Layout (optional, lockers only) is the front as people see it, for
	// the staff console's map; nil: the default grid (see Layout).
	Layout *Layout `json:"layout,omitempty"`
}

// MaxDirections bounds a device's directions in one language.
const MaxDirections = 500

// MaxCompartments caps a device's compartments.
const MaxCompartments = 512

// Validate checks and normalises the device.
func (n *NewDevice) Validate() error {
	var c checker
	c.id("id", n.ID)
	if n.ID == ReservedDeviceID {
		c.add("id", "%q is the backend's own MQTT user name, not a device", n.ID)
	}
	c.id("site_id", n.SiteID)
	if !n.Kind.Valid() {
		c.add("kind", "must be locker or automaton, not %q", n.Kind)
	}
	c.text("name", n.Name, false, 200)
	dirs := make(map[string]string, len(n.Directions)) // a copy: the caller's map stays as it was
	for _, l := range sortedKeys(n.Directions) {
		v := strings.TrimSpace(n.Directions[l])
		switch {
		case !ValidLanguage(l):
			c.add("directions", "language must be nl, fr, en or de, not %q", l)
		case v != "":
			c.text("directions."+l, v, false, MaxDirections)
			dirs[l] = v
		}
	}
	n.Directions = dirs
	if len(n.Compartments) == 0 {
		c.add("compartments", "a device needs at least one compartment")
	}
	if len(n.Compartments) > MaxCompartments {
		c.add("compartments", "at most %d compartments", MaxCompartments)
	}
	numbers := map[int]bool{}
	addrs := map[[2]int]bool{}
	for i := range n.Compartments {
		cp := &n.Compartments[i]
		f := fmt.Sprintf("compartments[%d]", i)
		if cp.Number == 0 {
			cp.Number = i + 1
		}
		if cp.Number < 1 || cp.Number > MaxCompartments {
			// The compartment routes take numbers 1 to MaxCompartments.
			c.add(f+".number", "must be from 1 to %d", MaxCompartments)
		} else if numbers[cp.Number] {
			c.add(f+".number", "number %d is used twice", cp.Number)
		}
		numbers[cp.Number] = true
		// The addresses a device can report and be told to pulse
		// (hardware.Address.Validate; the wire refuses others).
		boardOK := cp.Board >= 0 && cp.Board < hardware.MaxBoards
		channelOK := cp.Channel >= 0 && cp.Channel < hardware.MaxChannels
		if !boardOK {
			c.add(f+".board", "must be from 0 to %d (boards count from 0)", hardware.MaxBoards-1)
		}
		if !channelOK {
			c.add(f+".channel", "must be from 0 to %d (channels count from 0)", hardware.MaxChannels-1)
		}
		if boardOK && channelOK && addrs[[2]int{cp.Board, cp.Channel}] {
			c.add(f, "board %d channel %d is used twice", cp.Board, cp.Channel)
		}
		addrs[[2]int{cp.Board, cp.Channel}] = true
		if !cp.Size.Valid() {
			c.add(f+".size", "must be S, M or L, not %q", cp.Size)
		}
		if cp.HeightCM < 0 || cp.HeightCM > 300 {
			c.add(f+".height_cm", "must be between 0 and 300")
		}
	}
	if n.Layout != nil && len(c.fields) == 0 {
		checkLayout(&c, n.Kind, n.Layout, numbersOf(n.Compartments))
	}
	return c.err()
}

// checkLayout adds what is wrong with a device's layout to c.
func checkLayout(c *checker, kind DeviceKind, l *Layout, numbers []int) {
	if kind == Automaton {
		c.add("layout", "an automaton hands everything out at its hatch; a layout is for lockers")
		return
	}
	resolveLayout(c, l, numbers)
}

func numbersOf(cs []NewCompartment) []int {
	out := make([]int, len(cs))
	for i, cp := range cs {
		out[i] = cp.Number
	}
	return out
}

// NewDocument is the input of RegisterDocument.
type NewDocument struct {
	Kind      DocumentKind `json:"kind"`
	Number    string       `json:"number"`
	FirstName string       `json:"holder_first_name"`
	LastName  string       `json:"holder_last_name"`
	// BirthDate is a calendar date; only year, month and day count. Nil:
	// none was given (refused: "is required"); any date given, also
	// 0001-01-01 (time.Time's zero), is judged as a date.
	BirthDate *time.Time `json:"holder_birth_date"`
	Language  string     `json:"language"`
	Email     string     `json:"email"`
	Mobile    string     `json:"mobile"`
	WantsLow  bool       `json:"wants_low"`
	SiteID    string     `json:"site_id"`
	// NoContact says the holder has neither e-mail nor mobile: nobody is
	// messaged, and when the document is loaded the counter prints a
	// pickup slip with the codes. Without it an e-mail address or a mobile
	// number is required.
	NoContact bool `json:"no_contact"`
}

// Validate checks and normalises every field and returns a
// *ValidationError naming all refused fields. now bounds the birth date:
// a date after now's calendar day, in now's location, is in the future;
// pass now in the site's time zone (at 00:30 in Brussels, 23:30 UTC the
// day before, today's date there is no date in the future).
func (n *NewDocument) Validate(now time.Time) error {
	var c checker
	if !n.Kind.Valid() {
		c.add("kind", "must be one of eid, kids_id, residence_card, passport, driving_licence, not %q", n.Kind)
	}
	n.Number = NormalizeDocumentNumber(n.Number)
	if n.Number == "" {
		c.add("number", "is required")
	} else if !docNumberPattern.MatchString(n.Number) {
		c.add("number", "must be 3-32 letters, digits, spaces or '-'")
	}
	n.FirstName = strings.TrimSpace(n.FirstName)
	n.LastName = strings.TrimSpace(n.LastName)
	c.text("holder_first_name", n.FirstName, true, 100)
	c.text("holder_last_name", n.LastName, true, 100)
	if n.BirthDate == nil {
		c.add("holder_birth_date", "is required")
	} else {
		y, m, d := n.BirthDate.Date()
		n.BirthDate = new(time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
		if y < 1900 {
			c.add("holder_birth_date", "is before 1900")
		} else if ny, nm, nd := now.Date(); n.BirthDate.After(time.Date(ny, nm, nd, 0, 0, 0, 0, time.UTC)) {
			c.add("holder_birth_date", "is in the future")
		}
	}
	n.Language = strings.ToLower(strings.TrimSpace(n.Language))
	if !ValidLanguage(n.Language) {
		c.add("language", "must be nl, fr, en or de, not %q", n.Language)
	}
	if n.Email != "" {
		e := NormalizeEmail(n.Email)
		if e == "" {
			c.add("email", "is not an e-mail address")
		}
		n.Email = e
	}
	if n.Mobile != "" {
		m := NormalizeMobile(n.Mobile)
		if m == "" {
			c.add("mobile", "is not a phone number (e.g. +32470123456 or 0470 12 34 56)")
		}
		n.Mobile = m
	}
	switch {
	case n.NoContact && (n.Email != "" || n.Mobile != "" || hasField(c.fields, "email") || hasField(c.fields, "mobile")):
		c.add("no_contact", "is for a holder without e-mail and mobile: leave both empty")
	case n.NoContact:
	case n.Email == "" && n.Mobile == "" && !hasField(c.fields, "email") && !hasField(c.fields, "mobile"):
		c.add("email", "an e-mail address or a mobile number is required (or no_contact: the counter prints a pickup slip)")
	}
	c.id("site_id", n.SiteID)
	return c.err()
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func hasField(fs []FieldError, name string) bool {
	for _, f := range fs {
		if f.Field == name {
			return true
		}
	}
	return false
}
