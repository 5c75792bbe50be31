package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// locker returns a valid locker configuration with compartments 1..n on
// board 0 and the given layout section.
func locker(n int, layout string) string {
	var b strings.Builder
	b.WriteString("device_id: l1\nsite: s\nkind: locker\nmqtt: {url: tcp://127.0.0.1:1883}\n")
	b.WriteString("hardware: {driver: kluis, serial: {port: /dev/ttyUSB0, baud: 9600}}\ncompartments:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - {number: %d, board: 0, channel: %d}\n", i, i-1)
	}
	b.WriteString(layout)
	return b.String()
}

func TestLayoutDefaultFillsColumnsOfAtMostSix(t *testing.T) {
	for _, tc := range []struct{ n, cols, rows int }{{1, 1, 1}, {2, 1, 2}, {6, 1, 6}, {10, 2, 5}, {16, 3, 6}, {24, 4, 6}} {
		c, err := Parse([]byte(locker(tc.n, "")), ParseOptions{})
		require.NoError(t, err)
		l, err := c.ResolvedLayout()
		require.NoError(t, err)
		require.Equal(t, [2]int{tc.cols, tc.rows}, [2]int{l.Columns, l.Rows}, "%d compartments", tc.n)
		require.Len(t, l.Places, tc.n)
		// Down the first column, then the next.
		require.Equal(t, Place{Number: 1, Column: 1, Row: 1, Width: 1, Height: 1}, l.Places[0])
		if tc.n > tc.rows {
			require.Equal(t, Place{Number: tc.rows + 1, Column: 2, Row: 1, Width: 1, Height: 1}, l.Places[tc.rows])
		}
	}
}

func TestLayoutPlacesScreenAndFill(t *testing.T) {
	c, err := Parse([]byte(locker(7, `layout:
  columns: 3
  rows: 4
  screen: {column: 2, row: 1, height: 2}
  places:
    - {number: 5, column: 3, row: 3, height: 2}
`)), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, 2*60e9, float64(c.Kiosk.StaffIdle), "default staff idle")
	l, err := c.ResolvedLayout()
	require.NoError(t, err)
	require.Equal(t, &Place{Column: 2, Row: 1, Width: 1, Height: 2}, l.Screen)
	got := map[int][2]int{}
	for _, p := range l.Places {
		got[p.Number] = [2]int{p.Column, p.Row}
	}
	// Column 1 takes 1-4, column 2 (below the screen) 6-7, 5 is where it was put.
	require.Equal(t, map[int][2]int{1: {1, 1}, 2: {1, 2}, 3: {1, 3}, 4: {1, 4}, 6: {2, 3}, 7: {2, 4}, 5: {3, 3}}, got)
	require.Zero(t, c.Layout.Places[0].Width, "the configuration itself is not changed")
	require.Len(t, c.Layout.Places, 1)

	// Only columns: rows follow.
	c, err = Parse([]byte(locker(10, "layout: {columns: 5}\n")), ParseOptions{})
	require.NoError(t, err)
	l, _ = c.ResolvedLayout()
	require.Equal(t, [2]int{5, 2}, [2]int{l.Columns, l.Rows})
}

func TestLayoutErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ layout, field string }{
		{"layout: {columns: 41}\n", "layout.columns"},
		{"layout: {rows: -1}\n", "layout.rows"},
		{"layout: {columns: 1, rows: 2}\n", "do not fit"},
		{"layout: {columns: 2, rows: 2, places: [{number: 9, column: 1, row: 1}]}\n", "layout.places[0].number"},
		{"layout: {columns: 2, rows: 2, places: [{number: 1, column: 3, row: 1}]}\n", "layout.places[0].column"},
		{"layout: {columns: 2, rows: 2, places: [{number: 1, column: 1, row: 0}]}\n", "layout.places[0].row"},
		{"layout: {columns: 2, rows: 2, places: [{number: 1, column: 1, row: 2, height: 2}]}\n", "layout.places[0].height"},
		{"layout: {columns: 2, rows: 2, places: [{number: 1, column: 2, row: 1, width: 2}]}\n", "layout.places[0].width"},
		{"layout: {columns: 2, rows: 2, places: [{number: 1, column: 1, row: 1}, {number: 1, column: 2, row: 1}]}\n", "layout.places[1].number"},
		{"layout: {columns: 2, rows: 2, places: [{number: 1, column: 1, row: 1, height: 2}, {number: 2, column: 1, row: 2}]}\n", "layout.places[1]: column 1 row 2 is taken by compartment 1"},
		{"layout: {columns: 2, rows: 2, screen: {column: 1, row: 1}, places: [{number: 2, column: 1, row: 1}]}\n", "taken by the screen"},
		{"layout: {columns: 2, rows: 2, screen: {number: 1, column: 1, row: 1}}\n", "layout.screen.number"},
		{"layout: {columns: 2, rows: 2, colour: red}\n", "colour"},
		{"kiosk: {staff_idle: 2h}\n", "kiosk.staff_idle"},
		{"timeouts: {session: 10ms}\n", "timeouts.session"},
	} {
		_, err := Parse([]byte(locker(3, tc.layout)), ParseOptions{})
		require.Error(t, err, tc.layout)
		require.True(t, errors.Is(err, ErrInvalid), "%v", err)
		require.Contains(t, err.Error(), tc.field)
	}
}

func TestAutomatonHasNoLayout(t *testing.T) {
	in := strings.NewReplacer("kind: locker", "kind: automaton", "channel: 0}", "slot: 0}", "channel: 1}", "slot: 1}").Replace(locker(2, ""))
	c, err := Parse([]byte(in), ParseOptions{})
	require.NoError(t, err)
	l, err := c.ResolvedLayout()
	require.NoError(t, err)
	require.Nil(t, l)
	_, err = Parse([]byte(in+"layout: {columns: 1}\n"), ParseOptions{})
	require.ErrorContains(t, err, "layout: an automaton")
}
