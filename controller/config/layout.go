package config

import (
	"fmt"
	"sort"
)

// Layout is the front of a locker as the kiosk screen draws it: a grid of
// Columns by Rows cells in which every compartment has a place. The screen
// highlights the compartment that opens on this drawing, so it must look
// like the real thing.
//
//	layout:
//	  columns: 3
//	  rows: 6
//	  screen: {column: 2, row: 2, height: 2}   # where this screen is ("you are here")
//	  places:                                  # compartments that are not one cell, or not in order
//	    - {number: 1, column: 1, row: 1, height: 2}
//
// Compartments without a place fill the free cells column by column (top
// to bottom, then the next column to the right) in number order.
type Layout struct {
	// Columns and Rows of the grid, 1-40 each; when both are 0 they are
	// derived from the number of compartments (columns of at most 6).
	Columns int `yaml:"columns"`
	Rows    int `yaml:"rows"`
	// Screen is where the kiosk screen sits in the grid; optional.
	Screen *Place `yaml:"screen"`
	// Places put compartments at a grid position.
	Places []Place `yaml:"places"`
}

// Place is a rectangle of the layout grid: Column and Row of its top left
// cell, from 1, and its Width and Height in cells (default 1).
type Place struct {
	// Number is the compartment (not set for the screen).
	Number int `yaml:"number"`
	Column int `yaml:"column"`
	Row    int `yaml:"row"`
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
}

// maxGrid bounds columns and rows.
const maxGrid = 40

// ResolvedLayout returns the layout with a place for every compartment, in
// compartment number order: the configured one, or the default when the
// configuration has none. An automaton has no layout (the screen draws its
// hatch): nil.
func (c *Config) ResolvedLayout() (*Layout, error) {
	if c.Kind == KindAutomaton {
		if c.Layout != nil {
			return nil, bad("layout", "an automaton is drawn with its hatch; layout is for lockers")
		}
		return nil, nil
	}
	var l Layout
	if c.Layout != nil {
		l = *c.Layout
		l.Places = append([]Place(nil), c.Layout.Places...)
		if c.Layout.Screen != nil {
			s := *c.Layout.Screen
			l.Screen = &s
		}
	}
	n := len(c.Compartments)
	if n == 0 {
		return nil, bad("compartments", "must list at least one compartment")
	}
	if l.Columns < 0 || l.Columns > maxGrid {
		return nil, bad("layout.columns", "%d must be 1-%d", l.Columns, maxGrid)
	}
	if l.Rows < 0 || l.Rows > maxGrid {
		return nil, bad("layout.rows", "%d must be 1-%d", l.Rows, maxGrid)
	}
	// Cells taken by explicit places count towards a derived size.
	cells := n
	for _, p := range l.Places {
		if p.Width > 1 || p.Height > 1 {
			cells += max(p.Width, 1)*max(p.Height, 1) - 1
		}
	}
	if l.Screen != nil {
		cells += max(l.Screen.Width, 1) * max(l.Screen.Height, 1)
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
	if l.Columns > maxGrid || l.Rows > maxGrid {
		return nil, bad("layout", "%d compartments need a grid larger than %dx%d: set layout.columns and layout.rows", n, maxGrid, maxGrid)
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
			return bad(field+".column", "%d must be 1-%d (layout.columns)", p.Column, l.Columns)
		case p.Row < 1 || p.Row > l.Rows:
			return bad(field+".row", "%d must be 1-%d (layout.rows)", p.Row, l.Rows)
		case p.Width < 1 || p.Column+p.Width-1 > l.Columns:
			return bad(field+".width", "%d does not fit: column %d of %d", p.Width, p.Column, l.Columns)
		case p.Height < 1 || p.Row+p.Height-1 > l.Rows:
			return bad(field+".height", "%d does not fit: row %d of %d", p.Height, p.Row, l.Rows)
		}
		for r := p.Row - 1; r < p.Row-1+p.Height; r++ {
			for col := p.Column - 1; col < p.Column-1+p.Width; col++ {
				if taken[r][col] != "" {
					return bad(field, "column %d row %d is taken by %s", col+1, r+1, taken[r][col])
				}
				taken[r][col] = what
			}
		}
		return nil
	}
	if l.Screen != nil {
		if l.Screen.Number != 0 {
			return nil, bad("layout.screen.number", "the screen is not a compartment")
		}
		if err := claim("layout.screen", l.Screen, "the screen"); err != nil {
			return nil, err
		}
	}
	placed := map[int]bool{}
	for i := range l.Places {
		p := &l.Places[i]
		f := fmt.Sprintf("layout.places[%d]", i)
		if _, ok := c.Compartment(p.Number); !ok {
			return nil, bad(f+".number", "there is no compartment %d", p.Number)
		}
		if placed[p.Number] {
			return nil, bad(f+".number", "compartment %d placed twice", p.Number)
		}
		placed[p.Number] = true
		if err := claim(f, p, fmt.Sprintf("compartment %d", p.Number)); err != nil {
			return nil, err
		}
	}
	var rest []int
	for _, cp := range c.Compartments {
		if !placed[cp.Number] {
			rest = append(rest, cp.Number)
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
		return nil, bad("layout", "%d compartments do not fit in %d columns by %d rows", len(rest), l.Columns, l.Rows)
	}
	sort.Slice(l.Places, func(i, j int) bool { return l.Places[i].Number < l.Places[j].Number })
	return &l, nil
}
