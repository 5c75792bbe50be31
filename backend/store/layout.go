package store

import (
	"errors"

	"kluis/controller/layoutgrid"
)

// Layout is the front of a locker as people see it (layoutgrid.Layout):
// the staff console and the technician dashboard draw a device's
// compartments on it, and the kiosk screen draws the same front from
// kluisd's configuration, resolved by the same code, so the two agree.
type Layout = layoutgrid.Layout

// Place is a rectangle of the layout grid (layoutgrid.Place).
type Place = layoutgrid.Place

// MaxLayoutGrid bounds a layout's columns and rows.
const MaxLayoutGrid = layoutgrid.MaxGrid

// ResolveLayout returns l (nil: the default) with a place for every
// compartment number, in number order, or a *ValidationError naming the
// field ("layout...") that does not fit.
func ResolveLayout(l *Layout, numbers []int) (Layout, error) {
	var c checker
	out, ok := resolveLayout(&c, l, numbers)
	if !ok {
		return Layout{}, c.err()
	}
	return out, nil
}

func resolveLayout(c *checker, in *Layout, numbers []int) (Layout, bool) {
	if in != nil && len(in.Places) > MaxCompartments {
		c.add("layout.places", "at most %d places", MaxCompartments)
		return Layout{}, false
	}
	l, err := layoutgrid.Resolve(in, numbers)
	if err != nil {
		var e *layoutgrid.Error
		if errors.As(err, &e) {
			c.add(e.Field, "%s", e.Message)
		} else {
			c.add("layout", "%v", err)
		}
		return Layout{}, false
	}
	return l, true
}
