package web

import (
	"fmt"
	"html/template"
	"strings"

	"kluis/backend/store"
)

// Drawing units: one layout cell is cellW by cellH (as on the kiosk
// screen), with a margin around the device.
const (
	cellW  = 100
	cellH  = 64
	margin = 12
	gap    = 6
)

// drawMap draws a device's compartments on its layout: each compartment's
// state as a fill pattern and a word (not by colour alone), a door that is
// open as a dashed outline, an alarm as a triangle, the compartment to
// find (highlight) with a thick frame. The drawing is aria-hidden: the
// compartments table next to it says the same in words. Every text in it
// is escaped.
func drawMap(t *tr, d detail, highlight int) template.HTML {
	l := d.Layout
	w := l.Columns*cellW + 2*margin
	h := l.Rows*cellH + 2*margin
	byNum := map[int]compView{}
	for _, c := range d.Comps {
		byNum[c.Number] = c
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="map" viewBox="0 0 %d %d" width="%d" preserveAspectRatio="xMinYMin meet" focusable="false" aria-hidden="true">`, w, h, w)
	b.WriteString(`<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
		`<rect width="8" height="8" class="hatch-bg"/><line x1="0" y1="0" x2="0" y2="8" class="hatch-line"/></pattern></defs>`)
	fmt.Fprintf(&b, `<rect class="cabinet" x="1" y="1" width="%d" height="%d" rx="8"/>`, w-2, h-2)
	rect := func(p store.Place) (x, y, rw, rh int) {
		return margin + (p.Column-1)*cellW + gap/2, margin + (p.Row-1)*cellH + gap/2, p.Width*cellW - gap, p.Height*cellH - gap
	}
	if l.Screen != nil {
		x, y, rw, rh := rect(*l.Screen)
		fmt.Fprintf(&b, `<g class="screen"><rect x="%d" y="%d" width="%d" height="%d" rx="4"/>`, x, y, rw, rh)
		b.WriteString(label(x+rw/2, y+rh/2+5, rw-8, 13, t.S("map.screen"), "label"))
		b.WriteString(`</g>`)
	}
	for _, p := range l.Places {
		c, ok := byNum[p.Number]
		if !ok {
			continue
		}
		x, y, rw, rh := rect(p)
		cls := "comp st-" + c.Shown
		if c.DoorOpen {
			cls += " door-open"
		}
		if len(c.Alarms) > 0 {
			cls += " alarmed"
		}
		if c.Number == highlight {
			cls += " hl"
		}
		words := []string{t.S("map.state." + c.Shown)}
		if c.DoorOpen {
			words = append(words, t.S("map.door_open"))
		}
		for _, a := range c.Alarms {
			words = append(words, t.S("alarm."+string(a)))
		}
		fmt.Fprintf(&b, `<g class="%s" data-comp="%d"><title>%s</title>`, cls, c.Number,
			template.HTMLEscapeString(t.F("map.title", "n", c.Number, "what", strings.Join(words, ", "))))
		fmt.Fprintf(&b, `<rect class="body" x="%d" y="%d" width="%d" height="%d" rx="4"/>`, x, y, rw, rh)
		if c.Shown == "reserved" {
			fmt.Fprintf(&b, `<rect class="pattern" x="%d" y="%d" width="%d" height="%d" rx="4" fill="url(#hatch)"/>`, x, y, rw, rh)
		}
		if c.Shown == "out_of_service" {
			fmt.Fprintf(&b, `<path class="cross" d="M%d %dL%d %dM%d %dL%d %d"/>`, x+6, y+6, x+rw-6, y+rh-6, x+rw-6, y+6, x+6, y+rh-6)
		}
		if c.Number == highlight {
			fmt.Fprintf(&b, `<rect class="frame" x="%d" y="%d" width="%d" height="%d" rx="6"/>`, x-2, y-2, rw+4, rh+4)
		}
		fmt.Fprintf(&b, `<text class="num" x="%d" y="%d">%d</text>`, x+8, y+22, c.Number)
		b.WriteString(label(x+rw/2, y+rh-10, rw-12, 13, t.S("map.short."+c.Shown), "state"))
		if c.DoorOpen {
			fmt.Fprintf(&b, `<rect class="door" x="%d" y="%d" width="%d" height="%d" rx="3"/>`, x+3, y+3, rw-6, rh-6)
		}
		if len(c.Alarms) > 0 {
			ax, ay := x+rw-26, y+6
			fmt.Fprintf(&b, `<path class="alarm-mark" d="M%d %dL%d %dL%d %dZ"/><text class="alarm-bang" x="%d" y="%d">!</text>`,
				ax+10, ay, ax+20, ay+18, ax, ay+18, ax+10, ay+16)
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// label is an SVG text centred at x, y, squeezed into width when long.
func label(x, y, width, size int, s, class string) string {
	fit := ""
	if len([]rune(s))*size*55/100 > width {
		fit = fmt.Sprintf(` textLength="%d" lengthAdjust="spacingAndGlyphs"`, width)
	}
	return fmt.Sprintf(`<text class="%s" x="%d" y="%d" font-size="%d"%s>%s</text>`, class, x, y, size, fit, template.HTMLEscapeString(s))
}
