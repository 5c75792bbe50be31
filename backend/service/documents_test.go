package service_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
)

func TestRegisterValidationAndErrors(t *testing.T) {
	e := newEnv(t, nil)
	n := e.newDoc(store.EID, false)
	doc, err := e.svc.RegisterDocument(e.ctx, "user:counter1", n)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Registered, doc.State)
	require.Equal(t, "+32470123456", doc.Mobile)
	require.Len(t, doc.NumberPseudonym, 64)
	require.Equal(t, t0, doc.CreatedAt)

	_, err = e.svc.RegisterDocument(e.ctx, "user:counter1", n)
	require.ErrorIs(t, err, service.ErrConflict, "same document twice")

	bad := n
	bad.Email, bad.Mobile, bad.Language, bad.FirstName = "nope", "", "xx", ""
	_, err = e.svc.RegisterDocument(e.ctx, "user:counter1", bad)
	var ve *store.ValidationError
	require.ErrorAs(t, err, &ve)
	require.ErrorIs(t, err, service.ErrInvalid)
	require.Len(t, ve.Fields, 3, err.Error())

	other := e.newDoc(store.EID, false)
	other.SiteID = "brugge"
	_, err = e.svc.RegisterDocument(e.ctx, "user:counter1", other)
	require.ErrorIs(t, err, service.ErrNotFound)

	_, err = e.svc.RegisterDocument(e.ctx, "root", e.newDoc(store.EID, false))
	require.ErrorIs(t, err, service.ErrInvalid, "actor must be named")
	_, err = e.svc.Collect(e.ctx, "", doc.ID)
	require.ErrorIs(t, err, service.ErrInvalid)

	for _, id := range []string{"", "not-a-uuid", "00000000-0000-0000-0000-000000000000", "'; DROP TABLE documents; --"} {
		_, err = e.svc.GetDocument(e.ctx, id)
		require.ErrorIs(t, err, service.ErrNotFound, id)
		_, err = e.svc.Collect(e.ctx, "user:x", id)
		require.ErrorIs(t, err, service.ErrNotFound, id)
		_, err = e.svc.History(e.ctx, id)
		require.ErrorIs(t, err, service.ErrNotFound, id)
	}
	_, err = e.svc.Cancel(e.ctx, "user:x", doc.ID, string(make([]byte, 501)))
	require.ErrorIs(t, err, service.ErrInvalid)

	// After cancellation the same number can be registered again.
	_, err = e.svc.Cancel(e.ctx, "user:x", doc.ID, "wrong holder")
	require.NoError(t, err)
	again, err := e.svc.RegisterDocument(e.ctx, "user:counter1", n)
	require.NoError(t, err)
	require.Equal(t, doc.NumberPseudonym, again.NumberPseudonym)
	hist, err := e.svc.History(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, "wrong holder", hist[len(hist)-1].Note)
}

func TestListDocumentsAndCounts(t *testing.T) {
	e := newEnv(t, nil)
	e.device("a", uniform(3, store.SizeS, 150)...)
	e.device("b", uniform(3, store.SizeS, 150)...)
	var ids []string
	for i := 0; i < 7; i++ {
		e.clock.Add(time.Second) // a stable order
		ids = append(ids, e.register(store.EID, false).ID)
	}
	for i, dev := range []string{"a", "a", "b"} {
		_, err := e.svc.Reserve(e.ctx, "user:c", ids[i], service.ReserveOptions{DeviceID: dev})
		require.NoError(t, err)
	}
	_, err := e.svc.Load(e.ctx, "device:a", ids[0])
	require.NoError(t, err)

	page, err := e.svc.ListDocuments(e.ctx, store.DocumentFilter{Limit: 3})
	require.NoError(t, err)
	require.Equal(t, 7, page.Total)
	require.Len(t, page.Documents, 3)
	require.Equal(t, ids[6], page.Documents[0].ID, "newest first")
	page, err = e.svc.ListDocuments(e.ctx, store.DocumentFilter{Limit: 3, Offset: 6})
	require.NoError(t, err)
	require.Len(t, page.Documents, 1)
	require.Equal(t, ids[0], page.Documents[0].ID)

	page, err = e.svc.ListDocuments(e.ctx, store.DocumentFilter{State: lifecycle.Reserved})
	require.NoError(t, err)
	require.Equal(t, 2, page.Total)
	page, err = e.svc.ListDocuments(e.ctx, store.DocumentFilter{DeviceID: "a"})
	require.NoError(t, err)
	require.Equal(t, 2, page.Total)
	page, err = e.svc.ListDocuments(e.ctx, store.DocumentFilter{DeviceID: "b", State: lifecycle.Reserved, SiteID: "kortrijk"})
	require.NoError(t, err)
	require.Equal(t, 1, page.Total)
	require.Equal(t, ids[2], page.Documents[0].ID)
	_, err = e.svc.ListDocuments(e.ctx, store.DocumentFilter{State: "lost"})
	require.ErrorIs(t, err, service.ErrInvalid)
	_, err = e.svc.ListDocuments(e.ctx, store.DocumentFilter{Offset: -1})
	require.ErrorIs(t, err, service.ErrInvalid)

	counts, err := e.svc.DocumentCountsByState(e.ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"registered": 4, "reserved": 2, "loaded": 1, "notified": 0,
		"collected": 0, "expired": 0, "retrieved": 0, "cancelled": 0}, counts)
}

func TestFindActiveByNumber(t *testing.T) {
	e := newEnv(t, nil)
	n := e.newDoc(store.EID, false)
	doc, err := e.svc.RegisterDocument(e.ctx, "user:c", n)
	require.NoError(t, err)
	got, err := e.svc.FindActiveByNumber(e.ctx, " "+strings.ToLower(n.Number)+" ", "kortrijk")
	require.NoError(t, err)
	require.Equal(t, doc.ID, got.ID)
	_, err = e.svc.FindActiveByNumber(e.ctx, n.Number, "gent")
	require.ErrorIs(t, err, service.ErrNotFound)
	_, err = e.svc.FindActiveByNumber(e.ctx, "", "")
	require.ErrorIs(t, err, service.ErrNotFound)

	// The same number on a passport makes it ambiguous.
	p := n
	p.Kind = store.Passport
	_, err = e.svc.RegisterDocument(e.ctx, "user:c", p)
	require.NoError(t, err)
	_, err = e.svc.FindActiveByNumber(e.ctx, n.Number, "")
	require.ErrorIs(t, err, service.ErrConflict)

	// A finished document is not found.
	_, err = e.svc.Cancel(e.ctx, "user:c", doc.ID, "")
	require.NoError(t, err)
	got, err = e.svc.FindActiveByNumber(e.ctx, n.Number, "")
	require.NoError(t, err)
	require.Equal(t, store.Passport, got.Kind)
}

// Numbers compare without case, spaces or dashes, at lookup and at
// registration (the same document cannot be registered twice by writing
// its number differently); the number is kept as entered.
func TestDocumentNumbersAreNormalised(t *testing.T) {
	e := newEnv(t, nil)
	n := e.newDoc(store.EID, false)
	n.Number = "591-1234567-89"
	doc, err := e.svc.RegisterDocument(e.ctx, "user:c", n)
	require.NoError(t, err)
	require.Equal(t, "591-1234567-89", doc.Number)
	for _, scanned := range []string{"591 1234567 89", "5911234567 89", " 591123456789\n", "591–1234567–89"} {
		got, err := e.svc.FindActiveByNumber(e.ctx, scanned, "kortrijk")
		require.NoError(t, err, "%q", scanned)
		require.Equal(t, doc.ID, got.ID, "%q", scanned)
	}
	_, err = e.svc.FindActiveByNumber(e.ctx, "591-1234567-8", "kortrijk")
	require.ErrorIs(t, err, service.ErrNotFound)

	again := n
	again.Number = "591 1234567 89"
	_, err = e.svc.RegisterDocument(e.ctx, "user:c", again)
	require.ErrorIs(t, err, service.ErrConflict, "the same eID written with spaces")

	pass := e.newDoc(store.Passport, false)
	pass.Number = "ep 123-456"
	p, err := e.svc.RegisterDocument(e.ctx, "user:c", pass)
	require.NoError(t, err)
	got, err := e.svc.FindActiveByNumber(e.ctx, "EP123456", "")
	require.NoError(t, err)
	require.Equal(t, p.ID, got.ID)
	require.NotEmpty(t, doc.NumberPseudonym)

	// The pseudonym follows the canonical number too: a later registration
	// of the same document links up in the audit trail after a purge.
	_, err = e.svc.Cancel(e.ctx, "user:c", doc.ID, "")
	require.NoError(t, err)
	again2, err := e.svc.RegisterDocument(e.ctx, "user:c", again)
	require.NoError(t, err)
	require.Equal(t, doc.NumberPseudonym, again2.NumberPseudonym)
}
