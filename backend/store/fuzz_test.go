package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"kluis/backend/store"
)

// FuzzNewDocumentValidate: any input gives nil or a *ValidationError (never
// a panic), and validation is idempotent: a validated document validates
// again unchanged.
func FuzzNewDocumentValidate(f *testing.F) {
	f.Add("eid", "592-1234567-89", "Jan", "Peeters", int64(318384000), "nl", "jan@example.be", "0470 12 34 56", "k")
	f.Add("passport", "EH123456", "Zoë", "D'Hondt-Vanhoutte", int64(0), "FR", "", "+32 470/12.34.56", "kortrijk")
	f.Add("", "", "", "", int64(-1), "", "a@b", "00", "")
	f.Fuzz(func(t *testing.T, kind, number, first, last string, birth int64, lang, email, mobile, site string) {
		n := store.NewDocument{Kind: store.DocumentKind(kind), Number: number, FirstName: first, LastName: last,
			BirthDate: new(time.Unix(birth, 0).UTC()), Language: lang, Email: email, Mobile: mobile, SiteID: site}
		err := n.Validate(now)
		if err != nil {
			var ve *store.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, store.ErrInvalid) || len(ve.Fields) == 0 {
				t.Fatalf("error %v is not a field list", err)
			}
			return
		}
		again := n
		if err := again.Validate(now); err != nil {
			t.Fatalf("validated document refused the second time: %v", err)
		}
		// BirthDate is a pointer Validate replaces: compare the dates.
		if again.BirthDate == nil || n.BirthDate == nil || !again.BirthDate.Equal(*n.BirthDate) {
			t.Fatalf("validation not idempotent: birth date %v then %v", n.BirthDate, again.BirthDate)
		}
		againSame := again
		againSame.BirthDate = n.BirthDate
		if againSame != n {
			t.Fatalf("validation not idempotent: %+v then %+v", n, again)
		}
		if n.Email == "" && n.Mobile == "" {
			t.Fatal("accepted without any contact")
		}
		// The key the code looks numbers up by is the one the database
		// computes (documents.number_key: upper(translate(number, ' -', ''))).
		if k := store.DocumentNumberKey(n.Number); k != strings.ToUpper(strings.NewReplacer(" ", "", "-", "").Replace(n.Number)) || k == "" {
			t.Fatalf("number %q: key %q differs from the database's", n.Number, k)
		}
	})
}

// FuzzNormalizeMobile: the result is "" or E.164, and normalising it again
// changes nothing.
func FuzzNormalizeMobile(f *testing.F) {
	for _, s := range []string{"0470 12 34 56", "+32470123456", "0033612345678", "++1", "0", "+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m := store.NormalizeMobile(s)
		if m == "" {
			return
		}
		if m[0] != '+' || len(m) < 9 || len(m) > 16 {
			t.Fatalf("%q -> %q is not E.164", s, m)
		}
		for _, r := range m[1:] {
			if r < '0' || r > '9' {
				t.Fatalf("%q -> %q has a non-digit", s, m)
			}
		}
		if store.NormalizeMobile(m) != m {
			t.Fatalf("%q -> %q not stable", s, m)
		}
	})
}
