package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/lifecycle"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
)

func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// The default and the resolution of a layout are those of kluisd's kiosk
// screen (controller/config's layout), so both draw the same front.
func TestLayoutDefaultFillsColumnsOfAtMostSix(t *testing.T) {
	for _, tc := range []struct{ n, cols, rows int }{{1, 1, 1}, {2, 1, 2}, {6, 1, 6}, {10, 2, 5}, {16, 3, 6}, {24, 4, 6}} {
		l, err := store.ResolveLayout(nil, upTo(tc.n))
		require.NoError(t, err)
		require.Equal(t, [2]int{tc.cols, tc.rows}, [2]int{l.Columns, l.Rows}, "%d compartments", tc.n)
		require.Len(t, l.Places, tc.n)
		require.Equal(t, store.Place{Number: 1, Column: 1, Row: 1, Width: 1, Height: 1}, l.Places[0])
		if tc.n > tc.rows {
			require.Equal(t, store.Place{Number: tc.rows + 1, Column: 2, Row: 1, Width: 1, Height: 1}, l.Places[tc.rows])
		}
	}
}

func TestLayoutPlacesScreenAndFill(t *testing.T) {
	var in store.Layout
	// The JSON shape of kluisd's YAML section.
	require.NoError(t, json.Unmarshal([]byte(`{"columns": 3, "rows": 4, "screen": {"column": 2, "row": 1, "height": 2},
		"places": [{"number": 5, "column": 3, "row": 3, "height": 2}]}`), &in))
	l, err := store.ResolveLayout(&in, upTo(7))
	require.NoError(t, err)
	require.Equal(t, &store.Place{Column: 2, Row: 1, Width: 1, Height: 2}, l.Screen)
	got := map[int][2]int{}
	for _, p := range l.Places {
		got[p.Number] = [2]int{p.Column, p.Row}
	}
	require.Equal(t, map[int][2]int{1: {1, 1}, 2: {1, 2}, 3: {1, 3}, 4: {1, 4}, 6: {2, 3}, 7: {2, 4}, 5: {3, 3}}, got)
	require.Zero(t, in.Places[0].Width, "the input is not changed")
	require.Len(t, in.Places, 1)

	l, err = store.ResolveLayout(&store.Layout{Columns: 5}, upTo(10))
	require.NoError(t, err)
	require.Equal(t, [2]int{5, 2}, [2]int{l.Columns, l.Rows})
}

func TestLayoutErrorsNameTheField(t *testing.T) {
	p := func(num, col, row, w, h int) store.Place {
		return store.Place{Number: num, Column: col, Row: row, Width: w, Height: h}
	}
	for _, tc := range []struct {
		l     store.Layout
		field string
	}{
		{store.Layout{Columns: 41}, "layout.columns"},
		{store.Layout{Rows: -1}, "layout.rows"},
		{store.Layout{Columns: 1, Rows: 2}, "do not fit"},
		{store.Layout{Columns: 2, Rows: 2, Places: []store.Place{p(9, 1, 1, 0, 0)}}, "layout.places[0].number"},
		{store.Layout{Columns: 2, Rows: 2, Places: []store.Place{p(1, 3, 1, 0, 0)}}, "layout.places[0].column"},
		{store.Layout{Columns: 2, Rows: 2, Places: []store.Place{p(1, 1, 0, 0, 0)}}, "layout.places[0].row"},
		{store.Layout{Columns: 2, Rows: 2, Places: []store.Place{p(1, 1, 2, 0, 2)}}, "layout.places[0].height"},
		{store.Layout{Columns: 2, Rows: 2, Places: []store.Place{p(1, 2, 1, 2, 0)}}, "layout.places[0].width"},
		{store.Layout{Columns: 2, Rows: 2, Places: []store.Place{p(1, 1, 1, 0, 0), p(1, 2, 1, 0, 0)}}, "layout.places[1].number"},
		{store.Layout{Columns: 2, Rows: 2, Places: []store.Place{p(1, 1, 1, 0, 2), p(2, 1, 2, 0, 0)}}, "layout.places[1]: column 1 row 2 is taken by compartment 1"},
		{store.Layout{Columns: 2, Rows: 2, Screen: &store.Place{Column: 1, Row: 1}, Places: []store.Place{p(2, 1, 1, 0, 0)}}, "taken by the screen"},
		{store.Layout{Columns: 2, Rows: 2, Screen: &store.Place{Number: 1, Column: 1, Row: 1}}, "layout.screen.number"},
	} {
		_, err := store.ResolveLayout(&tc.l, upTo(3))
		require.Error(t, err, "%+v", tc.l)
		require.True(t, errors.Is(err, store.ErrInvalid), "%v", err)
		require.Contains(t, err.Error(), tc.field)
	}
}

// A layout is registered with the device, checked against its
// compartments, replaced and reset; a device out of service gets no
// reservation; documents are searched by number and name.
func TestDeviceLayoutServiceAndSearch(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	db := s.Pool()
	_, err := store.CreateSite(ctx, db, store.NewSite{ID: "k", Name: "K"}, now)
	require.NoError(t, err)
	comps := []store.NewCompartment{{Channel: 0, Size: store.SizeM, HeightCM: 40}, {Channel: 1, Size: store.SizeM, HeightCM: 100},
		{Channel: 2, Size: store.SizeM, HeightCM: 160}}
	var ve *store.ValidationError
	_, err = store.CreateDevice(ctx, db, store.NewDevice{ID: "l", SiteID: "k", Kind: store.Locker, Compartments: comps,
		Layout: &store.Layout{Columns: 1, Rows: 2}}, now)
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "layout", ve.Fields[0].Field)
	_, err = store.CreateDevice(ctx, db, store.NewDevice{ID: "a", SiteID: "k", Kind: store.Automaton, Compartments: comps,
		Layout: &store.Layout{Columns: 1}}, now)
	require.ErrorContains(t, err, "layout: an automaton")
	l := &store.Layout{Columns: 3, Rows: 1}
	d, err := store.CreateDevice(ctx, db, store.NewDevice{ID: "l", SiteID: "k", Kind: store.Locker, Compartments: comps, Layout: l}, now)
	require.NoError(t, err)
	require.Equal(t, l, d.Layout)
	require.Nil(t, d.OutOfService)
	got, err := store.GetDevice(ctx, db, "l")
	require.NoError(t, err)
	require.Equal(t, l, got.Layout)

	name := "Kluis inkomhal"
	d, err = store.UpdateDevice(ctx, db, "l", store.DeviceUpdate{Name: &name, SetLayout: true,
		Layout: &store.Layout{Columns: 2, Rows: 2, Places: []store.Place{{Number: 3, Column: 2, Row: 1, Height: 2}}}})
	require.NoError(t, err)
	require.Equal(t, name, d.Name)
	require.Equal(t, 2, d.Layout.Columns)
	require.Len(t, d.Compartments, 3)
	_, err = store.UpdateDevice(ctx, db, "l", store.DeviceUpdate{SetLayout: true, Layout: &store.Layout{Columns: 1, Rows: 1}})
	require.ErrorAs(t, err, &ve)
	_, err = store.UpdateDevice(ctx, db, "l", store.DeviceUpdate{Directions: map[string]string{"xx": "?"}})
	require.ErrorAs(t, err, &ve)
	_, err = store.UpdateDevice(ctx, db, "nope", store.DeviceUpdate{Name: &name})
	require.ErrorIs(t, err, store.ErrNotFound)
	d, err = store.UpdateDevice(ctx, db, "l", store.DeviceUpdate{SetLayout: true})
	require.NoError(t, err)
	require.Nil(t, d.Layout, "reset to the default")
	require.Equal(t, name, d.Name, "untouched")

	pick := func() error {
		return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			_, err := store.PickCompartment(ctx, tx, store.Pick{SiteID: "k", MinSize: store.SizeS, LowMaxHeightCM: 120})
			return err
		})
	}
	require.NoError(t, pick())
	d, changed, err := store.SetDeviceOutOfService(ctx, db, "l", true, "water damage", now)
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, &store.DeviceOutOfService{Since: now, Reason: "water damage"}, d.OutOfService)
	_, changed, err = store.SetDeviceOutOfService(ctx, db, "l", true, "again", now.Add(time.Hour))
	require.NoError(t, err)
	require.False(t, changed, "the first time and reason stay")
	require.ErrorIs(t, pick(), store.ErrNotFound, "a device out of service is never picked")
	d, changed, err = store.SetDeviceOutOfService(ctx, db, "l", false, "", now)
	require.NoError(t, err)
	require.True(t, changed)
	require.Nil(t, d.OutOfService)
	require.NoError(t, pick())

	// Search.
	reg := func(number, first, last string, noContact bool) store.Document {
		n := store.NewDocument{Kind: store.EID, Number: number, FirstName: first, LastName: last,
			BirthDate: new(time.Date(1980, 1, 2, 0, 0, 0, 0, time.UTC)), Language: "nl", SiteID: "k", NoContact: noContact}
		if !noContact {
			n.Email = "x@example.org"
		}
		doc, err := store.InsertDocument(ctx, db, n, "", now)
		require.NoError(t, err)
		return doc
	}
	a := reg("591-1234567-89", "Jan", "Peeters", false)
	b := reg("592 7654321 00", "Marie", "Dubois_x%", true)
	find := func(q string) []string {
		pg, err := store.ListDocuments(ctx, db, store.DocumentFilter{Query: q})
		require.NoError(t, err)
		var ids []string
		for _, d := range pg.Documents {
			ids = append(ids, d.ID)
		}
		return ids
	}
	require.Equal(t, []string{a.ID}, find("5911234567"))
	require.Equal(t, []string{a.ID}, find("591 12345"))
	require.Equal(t, []string{b.ID}, find("7654321-00"))
	require.Equal(t, []string{a.ID}, find("peeters jan"))
	require.Equal(t, []string{a.ID}, find("Jan  Peet"))
	require.Equal(t, []string{b.ID}, find("dubois_x%"))
	require.Empty(t, find("dubois%x"), "LIKE wildcards are plain characters")
	require.Len(t, find(""), 2)
	_, err = store.ListDocuments(ctx, db, store.DocumentFilter{States: []lifecycle.State{"lost"}})
	require.ErrorIs(t, err, store.ErrInvalid)
	pg, err := store.ListDocuments(ctx, db, store.DocumentFilter{States: []lifecycle.State{lifecycle.Loaded, lifecycle.Registered}})
	require.NoError(t, err)
	require.Equal(t, 2, pg.Total)
	cut := now.Add(time.Hour)
	pg, err = store.ListDocuments(ctx, db, store.DocumentFilter{DeadlineBefore: &cut, ByDeadline: true})
	require.NoError(t, err)
	require.Zero(t, pg.Total, "no deadlines yet")

	// No contact must be said, and then nothing else given.
	_, err = store.InsertDocument(ctx, db, store.NewDocument{Kind: store.EID, Number: "AB123", FirstName: "A", LastName: "B",
		BirthDate: new(time.Date(1980, 1, 2, 0, 0, 0, 0, time.UTC)), Language: "nl", SiteID: "k"}, "", now)
	require.ErrorContains(t, err, "no_contact")
	_, err = store.InsertDocument(ctx, db, store.NewDocument{Kind: store.EID, Number: "AB123", FirstName: "A", LastName: "B",
		BirthDate: new(time.Date(1980, 1, 2, 0, 0, 0, 0, time.UTC)), Language: "nl", SiteID: "k", NoContact: true, Mobile: "0470123456"}, "", now)
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "no_contact", ve.Fields[0].Field, fmt.Sprint(ve.Fields))
}
