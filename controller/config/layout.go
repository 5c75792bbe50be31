package config

import (
	"errors"

	"kluis/controller/layoutgrid"
)

// Layout is the front of a locker as the kiosk screen draws it
// (layoutgrid.Layout, resolved by the same code as the backend's, so the
// staff console's map agrees). The screen highlights the compartment that
// opens on this drawing, so it must look like the real thing.
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
type Layout = layoutgrid.Layout

// Place is a rectangle of the layout grid (layoutgrid.Place).
type Place = layoutgrid.Place

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
	numbers := make([]int, 0, len(c.Compartments))
	for _, cp := range c.Compartments {
		numbers = append(numbers, cp.Number)
	}
	l, err := layoutgrid.Resolve(c.Layout, numbers)
	if err != nil {
		var e *layoutgrid.Error
		if errors.As(err, &e) {
			return nil, bad(e.Field, "%s", e.Message)
		}
		return nil, bad("layout", "%v", err)
	}
	return &l, nil
}
