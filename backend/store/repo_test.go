package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/store"
	"kluis/backend/store/storetest"
)

var now = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func TestSitesAndDevices(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	db := s.Pool()
	site, err := store.CreateSite(ctx, db, store.NewSite{ID: "kortrijk", Name: " Stadhuis Kortrijk "}, now)
	require.NoError(t, err)
	require.Equal(t, "Europe/Brussels", site.TimeZone)
	require.Equal(t, "Stadhuis Kortrijk", site.Name)
	_, err = store.CreateSite(ctx, db, store.NewSite{ID: "kortrijk", Name: "again"}, now)
	require.ErrorIs(t, err, store.ErrConflict)
	_, err = store.CreateSite(ctx, db, store.NewSite{ID: "Bad Id", Name: "", TimeZone: "Mars/Olympus"}, now)
	var ve *store.ValidationError
	require.ErrorAs(t, err, &ve)
	require.ErrorIs(t, err, store.ErrInvalid)
	require.Len(t, ve.Fields, 3, err.Error())

	dev, err := store.CreateDevice(ctx, db, store.NewDevice{ID: "locker-1", SiteID: "kortrijk", Kind: store.Locker,
		Compartments: []store.NewCompartment{
			{Channel: 0, Size: store.SizeS, HeightCM: 40},
			{Channel: 1, Size: store.SizeM, HeightCM: 160},
		}}, now)
	require.NoError(t, err)
	require.Len(t, dev.Compartments, 2)
	require.Equal(t, 2, dev.Compartments[1].Number)
	require.Equal(t, store.CompartmentFree, dev.Compartments[1].State)

	_, err = store.CreateDevice(ctx, db, store.NewDevice{ID: "x", SiteID: "nowhere", Kind: store.Locker,
		Compartments: []store.NewCompartment{{Size: store.SizeS}}}, now)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = store.CreateDevice(ctx, db, store.NewDevice{ID: "y", SiteID: "kortrijk", Kind: "fridge",
		Compartments: []store.NewCompartment{{Size: "XL"}, {Number: 1, Size: store.SizeS}}}, now)
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Fields, 4, err.Error()) // kind, size, number twice, address twice

	got, err := store.GetDevice(ctx, db, "locker-1")
	require.NoError(t, err)
	require.Equal(t, dev, got)
	_, err = store.GetDevice(ctx, db, "nope")
	require.ErrorIs(t, err, store.ErrNotFound)
	c, err := store.CompartmentByAddress(ctx, db, "locker-1", 0, 1)
	require.NoError(t, err)
	require.Equal(t, 2, c.Number)
	c, err = store.CompartmentByNumber(ctx, db, "locker-1", 1)
	require.NoError(t, err)
	require.Equal(t, 0, c.Channel)
	_, err = store.CompartmentByNumber(ctx, db, "locker-1", 9)
	require.ErrorIs(t, err, store.ErrNotFound)
	ds, err := store.ListDevices(ctx, db, "kortrijk")
	require.NoError(t, err)
	require.Len(t, ds, 1)
	sites, err := store.ListSites(ctx, db)
	require.NoError(t, err)
	require.Len(t, sites, 1)
}

func TestPickCompartmentPreferences(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	db := s.Pool()
	_, err := store.CreateSite(ctx, db, store.NewSite{ID: "k", Name: "K"}, now)
	require.NoError(t, err)
	_, err = store.CreateDevice(ctx, db, store.NewDevice{ID: "d", SiteID: "k", Kind: store.Locker,
		Compartments: []store.NewCompartment{
			{Channel: 0, Size: store.SizeL, HeightCM: 30},  // 1
			{Channel: 1, Size: store.SizeM, HeightCM: 100}, // 2 low M
			{Channel: 2, Size: store.SizeM, HeightCM: 150}, // 3 high M
			{Channel: 3, Size: store.SizeS, HeightCM: 180}, // 4 high S
		}}, now)
	require.NoError(t, err)
	pick := func(p store.Pick) int {
		p.SiteID, p.LowMaxHeightCM = "k", 120
		var n int
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			c, err := store.PickCompartment(ctx, tx, p)
			n = c.Number
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return 0
		}
		require.NoError(t, err)
		return n
	}
	require.Equal(t, 4, pick(store.Pick{MinSize: store.SizeS}), "smallest fitting")
	require.Equal(t, 2, pick(store.Pick{MinSize: store.SizeS, Low: true}), "low wish: smallest low")
	require.Equal(t, 3, pick(store.Pick{MinSize: store.SizeM}), "no wish: keep low ones free")
	require.Equal(t, 1, pick(store.Pick{MinSize: store.SizeL}))
	require.Equal(t, 0, pick(store.Pick{MinSize: store.SizeL, DeviceID: "other"}))
	_, err = store.SetCompartmentState(ctx, db, 1, store.CompartmentOutOfService)
	require.NoError(t, err)
	require.Equal(t, 0, pick(store.Pick{MinSize: store.SizeL}), "out of service never picked")
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"0470 12 34 56":    "+32470123456",
		"+32 470/12.34.56": "+32470123456",
		"0033612345678":    "+33612345678",
		"470123456":        "",
		"+32abc":           "",
		"0":                "",
		"+0123456789":      "",
	} {
		require.Equal(t, want, store.NormalizeMobile(in), in)
	}
	for in, want := range map[string]string{
		"jan@example.be":       "jan@example.be",
		" jan@example.be ":     "jan@example.be",
		"Jan <jan@example.be>": "",
		"jan@localhost":        "",
		"not an address":       "",
		// A domain literal is nobody's address at a counter: the mail
		// relay would deliver to that host (an internal address).
		"jan@[127.0.0.1]":  "",
		"jan@[10.0.0.5]":   "",
		"jan@[IPv6:::1]":   "",
		"jan@[192.0.2.1.]": "",
		// An IPv4 address without brackets is a host too: no top-level
		// domain is all digits.
		"jan@127.0.0.1":  "",
		"jan@10.0.0.5":   "",
		"jan@example.42": "",
		// What the clerk cannot see or tell apart: an invisible
		// character, a direction override, a Cyrillic letter among Latin
		// ones (the QR code would go to a look-alike domain).
		"jan@ex\u200bample.be": "",
		"j\u200dan@example.be": "",
		"jan@example.be\u202e": "",
		"jan@ex\u0430mple.be":  "",
		"j\u0430n@example.be":  "",
		"jan@example.b\u0435":  "",
		"jan@exa\u03bfple.be":  "",
		"jan@ex_ample.be":      "",
		"jan@-example.be":      "",
		"jan@example-.be":      "",
		"jan@example..be":      "",
		// Still addresses: upper case, an accent, a domain in one other
		// script, its punycode, a plus, digits in a label.
		"JAN@EXAMPLE.BE":                                      "JAN@EXAMPLE.BE",
		"jan.peeters+kluis@example.be":                        "jan.peeters+kluis@example.be",
		"jan.\u0438\u0432\u0430\u043d\u043e\u0432@example.be": "jan.\u0438\u0432\u0430\u043d\u043e\u0432@example.be",
		"chlo\u00e9@ex\u00e4mple.be":                          "chlo\u00e9@ex\u00e4mple.be",
		"jan@\u043f\u0440\u0438\u043c\u0435\u0440.com":        "jan@\u043f\u0440\u0438\u043c\u0435\u0440.com",
		"jan@xn--exmple-cua.be":                               "jan@xn--exmple-cua.be",
		"jan@mail2.example-1.be":                              "jan@mail2.example-1.be",
	} {
		require.Equal(t, want, store.NormalizeEmail(in), in)
	}
}

// EmailDisguised tells the refusals for what a reader cannot see from the
// others, so the console can say which it is.
func TestEmailDisguised(t *testing.T) {
	for in, want := range map[string]bool{
		"jan@ex\u200bample.be": true,
		"j\u200dan@example.be": true,
		"jan@example.be\u202e": true,
		"jan@ex\u0430mple.be":  true,
		"j\u0430n@example.be":  true,
		"jan@example.b\u0435":  true,
		"jan@exa\u03bfple.be":  true,
		// Refused, but for what anyone reads: the usual text.
		"not an address":       false,
		"jan@localhost":        false,
		"jan@10.0.0.5":         false,
		"jan@[10.0.0.5]":       false,
		"jan@ex_ample.be":      false,
		"Jan <jan@example.be>": false,
		// Accepted.
		"jan@example.be": false,
		"jan.\u0438\u0432\u0430\u043d\u043e\u0432@example.be": false,
	} {
		require.Equal(t, want, store.EmailDisguised(in), in)
		if want {
			require.Empty(t, store.NormalizeEmail(in), in)
		}
	}
}

func TestNewDocumentValidate(t *testing.T) {
	good := store.NewDocument{Kind: store.EID, Number: " 592-1234567-89 ", FirstName: "Jan", LastName: "Peeters",
		BirthDate: new(time.Date(1980, 2, 3, 15, 0, 0, 0, time.UTC)), Language: "NL", Mobile: "0470123456", SiteID: "k"}
	n := good
	require.NoError(t, n.Validate(now))
	require.Equal(t, "592-1234567-89", n.Number)
	require.Equal(t, "nl", n.Language)
	require.Equal(t, "+32470123456", n.Mobile)
	require.Equal(t, time.Date(1980, 2, 3, 0, 0, 0, 0, time.UTC), *n.BirthDate)

	cases := map[string]struct {
		mod   func(*store.NewDocument)
		field string
	}{
		"kind":       {func(n *store.NewDocument) { n.Kind = "library_card" }, "kind"},
		"no number":  {func(n *store.NewDocument) { n.Number = "  " }, "number"},
		"bad number": {func(n *store.NewDocument) { n.Number = "12;DROP" }, "number"},
		"first":      {func(n *store.NewDocument) { n.FirstName = "" }, "holder_first_name"},
		"control":    {func(n *store.NewDocument) { n.LastName = "Pee\x00ters" }, "holder_last_name"},
		"long":       {func(n *store.NewDocument) { n.LastName = string(make([]byte, 101)) }, "holder_last_name"},
		"no birth":   {func(n *store.NewDocument) { n.BirthDate = nil }, "holder_birth_date"},
		"future":     {func(n *store.NewDocument) { n.BirthDate = new(now.AddDate(0, 0, 2)) }, "holder_birth_date"},
		"old":        {func(n *store.NewDocument) { n.BirthDate = new(time.Date(1850, 1, 1, 0, 0, 0, 0, time.UTC)) }, "holder_birth_date"},
		"language":   {func(n *store.NewDocument) { n.Language = "es" }, "language"},
		"no contact": {func(n *store.NewDocument) { n.Mobile = "" }, "email"},
		"bad email":  {func(n *store.NewDocument) { n.Email = "jan@" }, "email"},
		"bad mobile": {func(n *store.NewDocument) { n.Mobile = "call me" }, "mobile"},
		"site":       {func(n *store.NewDocument) { n.SiteID = "" }, "site_id"},
	}
	for name, c := range cases {
		n := good
		c.mod(&n)
		err := n.Validate(now)
		var ve *store.ValidationError
		require.ErrorAs(t, err, &ve, name)
		require.Len(t, ve.Fields, 1, "%s: %v", name, err)
		require.Equal(t, c.field, ve.Fields[0].Field, name)
	}

	// A date given is judged as a date, also time.Time's zero
	// (0001-01-01); only none given is missing.
	for _, c := range []struct {
		birth *time.Time
		want  string
	}{{new(time.Time{}), "is before 1900"}, {new(time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC)), "is before 1900"}, {nil, "is required"}} {
		n := good
		n.BirthDate = c.birth
		var ve *store.ValidationError
		require.ErrorAs(t, n.Validate(now), &ve)
		require.Equal(t, []store.FieldError{{Field: "holder_birth_date", Message: c.want}}, ve.Fields, "%v", c.birth)
	}
}

// The date of birth is bounded by now's calendar day in now's location:
// at 00:30 in Brussels (23:30 UTC the day before) today's date there is
// no date in the future; the next day is. With now in UTC, UTC's day.
func TestNewDocumentBirthDateByTheLocalDay(t *testing.T) {
	brussels, err := time.LoadLocation("Europe/Brussels")
	require.NoError(t, err)
	at := time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC)
	doc := func(y int, m time.Month, d int) store.NewDocument {
		return store.NewDocument{Kind: store.KidsID, Number: "592-1234567-89", FirstName: "Lien", LastName: "Peeters",
			BirthDate: new(time.Date(y, m, d, 0, 0, 0, 0, time.UTC)), Language: "nl", Mobile: "0470123456", SiteID: "k"}
	}
	n := doc(2026, 12, 7)
	require.NoError(t, n.Validate(at.In(brussels)), "today in Brussels")
	for _, c := range []struct {
		n   store.NewDocument
		now time.Time
	}{{doc(2026, 12, 8), at.In(brussels)}, {doc(2026, 12, 7), at}} {
		var ve *store.ValidationError
		require.ErrorAs(t, c.n.Validate(c.now), &ve, "%v at %v", c.n.BirthDate, c.now)
		require.Equal(t, "holder_birth_date", ve.Fields[0].Field)
	}
}

func TestSiteLocalTime(t *testing.T) {
	utc := time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)
	got := store.Site{}.LocalTime(utc)
	require.Equal(t, 12, got.Hour(), "Brussels is UTC+2 in summer")
	require.Equal(t, 11, store.Site{TimeZone: "Europe/London"}.LocalTime(utc).Hour())
	require.Equal(t, 12, store.Site{TimeZone: "Nowhere/Else"}.LocalTime(utc).Hour())
}

func TestReservedDeviceID(t *testing.T) {
	n := store.NewDevice{ID: store.ReservedDeviceID, SiteID: "kortrijk", Kind: store.Locker,
		Compartments: []store.NewCompartment{{Size: store.SizeS, HeightCM: 50}}}
	err := n.Validate()
	require.ErrorIs(t, err, store.ErrInvalid)
	require.Contains(t, err.Error(), "MQTT user name")
}

func TestDeviceDirections(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	db := s.Pool()
	_, err := store.CreateSite(ctx, db, store.NewSite{ID: "k", Name: "K"}, now)
	require.NoError(t, err)
	in := map[string]string{"nl": "  In de inkomhal, links van de trap. ", "fr": "Dans le hall d'entrée, à gauche.", "de": " "}
	d, err := store.CreateDevice(ctx, db, store.NewDevice{ID: "d", SiteID: "k", Kind: store.Locker, Directions: in,
		Compartments: []store.NewCompartment{{Size: store.SizeS}}}, now)
	require.NoError(t, err)
	want := map[string]string{"nl": "In de inkomhal, links van de trap.", "fr": "Dans le hall d'entrée, à gauche."}
	require.Equal(t, want, d.Directions, "trimmed, empty languages dropped")
	require.Equal(t, " ", in["de"], "the caller's map is not changed")
	got, err := store.GetDevice(ctx, db, "d")
	require.NoError(t, err)
	require.Equal(t, want, got.Directions)

	// Without directions: an empty object, never null.
	_, err = store.CreateDevice(ctx, db, store.NewDevice{ID: "e", SiteID: "k", Kind: store.Locker,
		Compartments: []store.NewCompartment{{Size: store.SizeS}}}, now)
	require.NoError(t, err)
	ds, err := store.ListDevices(ctx, db, "k")
	require.NoError(t, err)
	require.Len(t, ds, 2)
	require.Equal(t, map[string]string{}, ds[1].Directions)

	var ve *store.ValidationError
	_, err = store.CreateDevice(ctx, db, store.NewDevice{ID: "f", SiteID: "k", Kind: store.Locker,
		Directions:   map[string]string{"es": "aquí", "en": "line\nbreak", "fr": strings.Repeat("x", store.MaxDirections+1)},
		Compartments: []store.NewCompartment{{Size: store.SizeS}}}, now)
	require.ErrorAs(t, err, &ve)
	fields := []string{}
	for _, f := range ve.Fields {
		fields = append(fields, f.Field)
	}
	require.Equal(t, []string{"directions.en", "directions", "directions.fr"}, fields, err.Error())
}

// Names shown to people refuse control, bidirectional-control and
// invisible format characters (package safetext), in every entry point of
// the store: sites, devices and documents.
func TestNamesRefuseBidiAndControl(t *testing.T) {
	for _, bad := range []string{"Stad\u202Ehuis", "Stad\u2066huis\u2069", "Stad\u200Fhuis", "Stad\x00huis", "Stad\x1bhuis", "Stad\u200Bhuis"} {
		site := store.NewSite{ID: "k", Name: bad, Address: "Grote Markt 54"}
		err := site.Validate()
		var ve *store.ValidationError
		require.ErrorAs(t, err, &ve, "%q", bad)
		require.Equal(t, "name", ve.Fields[0].Field)
		site = store.NewSite{ID: "k", Name: "Stadhuis", Address: "Grote Markt " + bad}
		require.ErrorAs(t, site.Validate(), &ve, "%q", bad)
		require.Equal(t, "address", ve.Fields[0].Field)

		dev := store.NewDevice{ID: "d", SiteID: "k", Kind: store.Locker, Name: bad,
			Compartments: []store.NewCompartment{{Size: store.SizeS, HeightCM: 50}}}
		require.ErrorAs(t, dev.Validate(), &ve, "%q", bad)
		require.Equal(t, "name", ve.Fields[0].Field)

		doc := store.NewDocument{Kind: store.EID, Number: "592-1234567-89", FirstName: bad, LastName: "Peeters",
			BirthDate: new(time.Date(1980, 2, 3, 0, 0, 0, 0, time.UTC)), Language: "nl", Mobile: "0470123456", SiteID: "k"}
		require.ErrorAs(t, doc.Validate(now), &ve, "%q", bad)
		require.Equal(t, "holder_first_name", ve.Fields[0].Field)
	}
	site := store.NewSite{ID: "k", Name: "Hôtel de Ville — Zoë's"}
	require.NoError(t, site.Validate())
	s := storetest.New(t)
	_, err := store.CreateSite(context.Background(), s.Pool(), store.NewSite{ID: "k", Name: "evil\u202Etxt.exe"}, now)
	require.ErrorIs(t, err, store.ErrInvalid)
	require.Contains(t, err.Error(), "bidirectional control character (U+202E)")
}
