package layoutgrid

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// The default puts compartments in columns of at most six, in number
// order; a given layout places what it names and fills the rest column by
// column around the screen; the input is not changed.
func TestResolve(t *testing.T) {
	l, err := Resolve(nil, []int{3, 1, 2, 4, 5, 6, 7})
	require.NoError(t, err)
	require.Equal(t, [2]int{2, 4}, [2]int{l.Columns, l.Rows})
	require.Equal(t, Place{Number: 5, Column: 2, Row: 1, Width: 1, Height: 1}, l.Places[4])

	in := &Layout{Columns: 3, Rows: 3, Screen: &Place{Column: 2, Row: 1, Height: 3}, Places: []Place{{Number: 6, Column: 1, Row: 1}}}
	l, err = Resolve(in, []int{1, 2, 3, 4, 5, 6})
	require.NoError(t, err)
	require.Equal(t, []Place{
		{Number: 1, Column: 1, Row: 2, Width: 1, Height: 1}, {Number: 2, Column: 1, Row: 3, Width: 1, Height: 1},
		{Number: 3, Column: 3, Row: 1, Width: 1, Height: 1}, {Number: 4, Column: 3, Row: 2, Width: 1, Height: 1},
		{Number: 5, Column: 3, Row: 3, Width: 1, Height: 1}, {Number: 6, Column: 1, Row: 1, Width: 1, Height: 1},
	}, l.Places)
	require.Equal(t, Place{Column: 2, Row: 1, Width: 1, Height: 3}, *l.Screen)
	require.Equal(t, &Layout{Columns: 3, Rows: 3, Screen: &Place{Column: 2, Row: 1, Height: 3}, Places: []Place{{Number: 6, Column: 1, Row: 1}}}, in,
		"the input is not changed")
}

// What does not fit is named by its field.
func TestResolveErrors(t *testing.T) {
	for _, c := range []struct {
		l     Layout
		n     int
		field string
	}{
		{Layout{Columns: 41}, 3, "layout.columns"},
		{Layout{Rows: -1}, 3, "layout.rows"},
		{Layout{Columns: 1, Rows: 2}, 3, "layout"},
		{Layout{}, 0, "compartments"},
		{Layout{Columns: 1}, 41, "layout"},
		{Layout{Columns: 2, Rows: 2, Places: []Place{{Number: 9, Column: 1, Row: 1}}}, 3, "layout.places[0].number"},
		{Layout{Columns: 2, Rows: 2, Places: []Place{{Number: 1, Column: 1, Row: 1}, {Number: 1, Column: 2, Row: 1}}}, 3, "layout.places[1].number"},
		{Layout{Columns: 2, Rows: 2, Places: []Place{{Number: 1, Column: 3, Row: 1}}}, 3, "layout.places[0].column"},
		{Layout{Columns: 2, Rows: 2, Places: []Place{{Number: 1, Column: 1, Row: 2, Height: 2}}}, 3, "layout.places[0].height"},
		{Layout{Columns: 2, Rows: 2, Screen: &Place{Column: 1, Row: 1}, Places: []Place{{Number: 2, Column: 1, Row: 1}}}, 3, "layout.places[0]"},
		{Layout{Columns: 2, Rows: 2, Screen: &Place{Number: 1, Column: 1, Row: 1}}, 3, "layout.screen.number"},
	} {
		nums := make([]int, c.n)
		for i := range nums {
			nums[i] = i + 1
		}
		_, err := Resolve(&c.l, nums)
		var e *Error
		require.True(t, errors.As(err, &e), "%+v: %v", c.l, err)
		require.Equal(t, c.field, e.Field, "%+v: %v", c.l, err)
	}
}
