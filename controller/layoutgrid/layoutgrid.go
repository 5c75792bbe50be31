// Package layoutgrid resolves the front of a locker as people see it: a
// grid of columns by rows in which every compartment, and the kiosk screen,
// has a place. kluisd's configuration (controller/config, the kiosk
// screen's drawing) and the backend (backend/store, the staff console's and
// dashboard's map) both resolve a layout here, so the two drawings agree.
// It depends on the standard library only: kluisd links no backend code.
package layoutgrid

import (
	"fmt"
	"sort"
)

// Layout is the front of a locker: a grid of Columns by Rows cells in which
// every compartment has a place. The same fields in kluisd's YAML `layout:`
// section and in the backend's JSON:
//
//	{"columns": 3, "rows": 6,
//	 "screen": {"column": 2, "row": 2, "height": 2},
//	 "places": [{"number": 1, "column": 1, "row": 1, "height": 2}]}
//
// Compartments without a place fill the free cells column by column (top
// to bottom, then the next column to the right) in number order. Without a
// layout (nil) a device is drawn in columns of at most six. The height of
// a compartment above the floor, which decides whether it is low enough
// for a wheelchair user, is the compartment's, not the drawing's.
type Layout struct {
	// Columns and Rows of the grid, 1-40 each; when both are 0 they are
	// derived from the number of compartments (columns of at most 6).
	Columns int `json:"columns" yaml:"columns"`
	Rows    int `json:"rows" yaml:"rows"`
	// Screen is where the kiosk screen sits in the grid; optional.
	Screen *Place `json:"screen,omitempty" yaml:"screen"`
	// Places put compartments at a grid position.
	Places []Place `json:"places,omitempty" yaml:"places"`
}

// Place is a rectangle of the layout grid: Column and Row of its top left
// cell, from 1, and its Width and Height in cells (default 1).
type Place struct {
	// Number is the compartment (0 for the screen).
	Number int `json:"number,omitempty" yaml:"number"`
	Column int `json:"column" yaml:"column"`
	Row    int `json:"row" yaml:"row"`
	Width  int `json:"width,omitempty" yaml:"width"`
	Height int `json:"height,omitempty" yaml:"height"`
}

// MaxGrid bounds a layout's columns and rows.
const MaxGrid = 40

// Error names the field of a layout ("layout.places[2].row") that does not
// fit, and why.
type Error struct {
	Field, Message string
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

// Resolve returns in (nil: the default) with a place for every compartment
// number, in number order, with widths and heights filled in; or an *Error.
// in is not changed.
func Resolve(in *Layout, numbers []int) (Layout, error) {
	var l Layout
	if in != nil {
		l = *in
		l.Places = append([]Place(nil), in.Places...)
		if in.Screen != nil {
			s := *in.Screen
			l.Screen = &s
		}
	}
	bad := func(field, format string, args ...any) (Layout, error) {
		return Layout{}, &Error{Field: field, Message: fmt.Sprintf(format, args...)}
	}
	n := len(numbers)
	if n == 0 {
		return bad("compartments", "a device needs at least one compartment")
	}
	if l.Columns < 0 || l.Columns > MaxGrid {
		return bad("layout.columns", "%d must be 1-%d", l.Columns, MaxGrid)
	}
	if l.Rows < 0 || l.Rows > MaxGrid {
		return bad("layout.rows", "%d must be 1-%d", l.Rows, MaxGrid)
	}
	// Cells taken by explicit places count towards a derived size.
	cells := n
	for _, p := range l.Places {
		if p.Width > 1 || p.Height > 1 {
			cells += min(max(p.Width, 1)*max(p.Height, 1), MaxGrid*MaxGrid) - 1
		}
	}
	if l.Screen != nil {
		cells += min(max(l.Screen.Width, 1)*max(l.Screen.Height, 1), MaxGrid*MaxGrid)
	}
	switch {
	case l.Columns == 0 && l.Rows == 0:
		l.Columns = (cells + 5) / 6
		l.Rows = (cells + l.Columns - 1) / l.Columns
	case l.Columns == 0:
		l.Columns = (cells + l.Rows - 1) / l.Rows
	case l.Rows == 0:
		l.Rows = (cells + l.Columns - 1) / l.Columns
	}
	if l.Columns > MaxGrid || l.Rows > MaxGrid {
		return bad("layout", "%d compartments need a grid larger than %dx%d: set layout.columns and layout.rows", n, MaxGrid, MaxGrid)
	}
	taken := make([][]string, l.Rows)
	for r := range taken {
		taken[r] = make([]string, l.Columns)
	}
	claim := func(field string, p *Place, what string) error {
		if p.Width == 0 {
			p.Width = 1
		}
		if p.Height == 0 {
			p.Height = 1
		}
		switch {
		case p.Column < 1 || p.Column > l.Columns:
			return &Error{field + ".column", fmt.Sprintf("%d must be 1-%d (layout.columns)", p.Column, l.Columns)}
		case p.Row < 1 || p.Row > l.Rows:
			return &Error{field + ".row", fmt.Sprintf("%d must be 1-%d (layout.rows)", p.Row, l.Rows)}
		case p.Width < 1 || p.Column+p.Width-1 > l.Columns:
			return &Error{field + ".width", fmt.Sprintf("%d does not fit: column %d of %d", p.Width, p.Column, l.Columns)}
		case p.Height < 1 || p.Row+p.Height-1 > l.Rows:
			return &Error{field + ".height", fmt.Sprintf("%d does not fit: row %d of %d", p.Height, p.Row, l.Rows)}
		}
		for r := p.Row - 1; r < p.Row-1+p.Height; r++ {
			for col := p.Column - 1; col < p.Column-1+p.Width; col++ {
				if taken[r][col] != "" {
					return &Error{field, fmt.Sprintf("column %d row %d is taken by %s", col+1, r+1, taken[r][col])}
				}
				taken[r][col] = what
			}
		}
		return nil
	}
	if l.Screen != nil {
		if l.Screen.Number != 0 {
			return bad("layout.screen.number", "the screen is not a compartment")
		}
		if err := claim("layout.screen", l.Screen, "the screen"); err != nil {
			return Layout{}, err
		}
	}
	exists := make(map[int]bool, n)
	for _, num := range numbers {
		exists[num] = true
	}
	placed := map[int]bool{}
	for i := range l.Places {
		p := &l.Places[i]
		f := fmt.Sprintf("layout.places[%d]", i)
		if !exists[p.Number] {
			return bad(f+".number", "there is no compartment %d", p.Number)
		}
		if placed[p.Number] {
			return bad(f+".number", "compartment %d placed twice", p.Number)
		}
		placed[p.Number] = true
		if err := claim(f, p, fmt.Sprintf("compartment %d", p.Number)); err != nil {
			return Layout{}, err
		}
	}
	var rest []int
	for _, num := range numbers {
		if !placed[num] {
			rest = append(rest, num)
		}
	}
	sort.Ints(rest)
	for col := 0; col < l.Columns && len(rest) > 0; col++ {
		for r := 0; r < l.Rows && len(rest) > 0; r++ {
			if taken[r][col] != "" {
				continue
			}
			taken[r][col] = fmt.Sprintf("compartment %d", rest[0])
			l.Places = append(l.Places, Place{Number: rest[0], Column: col + 1, Row: r + 1, Width: 1, Height: 1})
			rest = rest[1:]
		}
	}
	if len(rest) > 0 {
		return bad("layout", "%d compartments do not fit in %d columns by %d rows", len(rest), l.Columns, l.Rows)
	}
	sort.Slice(l.Places, func(i, j int) bool { return l.Places[i].Number < l.Places[j].Number })
	return l, nil
}
