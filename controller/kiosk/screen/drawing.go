package screen

import (
	"fmt"
	"strings"

	"kluis/controller/config"
	"kluis/controller/kiosk/screen/pagetmpl"
)

// Drawing units: one layout cell is cellW by cellH, with a margin around
// the device.
const (
	cellW  = 100
	cellH  = 64
	margin = 12
	gap    = 6
)

// drawLocker draws a locker's front from its resolved layout: one
// rectangle per compartment with its number (data-comp, for the page to
// highlight) and the screen's place labelled here. The result is trusted
// SVG: every text in it is escaped.
func drawLocker(l *config.Layout, here string) pagetmpl.HTML {
	w := l.Columns*cellW + 2*margin
	h := l.Rows*cellH + 2*margin
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="device" viewBox="0 0 %d %d" preserveAspectRatio="xMidYMid meet" focusable="false" aria-hidden="true">`, w, h)
	fmt.Fprintf(&b, `<rect class="cabinet" x="1" y="1" width="%d" height="%d" rx="8"/>`, w-2, h-2)
	rect := func(p config.Place) (x, y, rw, rh int) {
		return margin + (p.Column-1)*cellW + gap/2, margin + (p.Row-1)*cellH + gap/2, p.Width*cellW - gap, p.Height*cellH - gap
	}
	if l.Screen != nil {
		x, y, rw, rh := rect(*l.Screen)
		fmt.Fprintf(&b, `<g class="here"><rect x="%d" y="%d" width="%d" height="%d" rx="4"/>`, x, y, rw, rh)
		fmt.Fprintf(&b, `<rect class="glass" x="%d" y="%d" width="%d" height="%d" rx="2"/>`, x+8, y+8, rw-16, max(rh-40, 12))
		b.WriteString(label(x+rw/2, y+rh-12, rw-8, 14, here))
		b.WriteString(`</g>`)
	}
	for _, p := range l.Places {
		x, y, rw, rh := rect(p)
		fmt.Fprintf(&b, `<g class="comp" data-comp="%d"><rect x="%d" y="%d" width="%d" height="%d" rx="4"/>`, p.Number, x, y, rw, rh)
		// A handle, as on the real doors, and the number people see.
		fmt.Fprintf(&b, `<rect class="handle" x="%d" y="%d" width="6" height="18" rx="3"/>`, x+rw-14, y+rh/2-9)
		fmt.Fprintf(&b, `<text class="num" x="%d" y="%d">%d</text></g>`, x+rw/2-4, y+rh/2+10, p.Number)
	}
	b.WriteString(`</svg>`)
	return pagetmpl.HTML(b.String())
}

// drawAutomaton draws a vending automaton: its screen (here) and the hatch
// (data-comp="hatch") where every document comes out.
func drawAutomaton(here, hatch string) pagetmpl.HTML {
	var b strings.Builder
	b.WriteString(`<svg class="device" viewBox="0 0 240 360" preserveAspectRatio="xMidYMid meet" focusable="false" aria-hidden="true">`)
	b.WriteString(`<rect class="cabinet" x="1" y="1" width="238" height="358" rx="10"/>`)
	b.WriteString(`<g class="here"><rect x="50" y="30" width="140" height="90" rx="4"/><rect class="glass" x="58" y="38" width="124" height="56" rx="2"/>`)
	b.WriteString(label(120, 112, 132, 14, here))
	b.WriteString(`</g>`)
	b.WriteString(`<g class="comp" data-comp="hatch"><rect x="40" y="190" width="160" height="100" rx="6"/>`)
	b.WriteString(`<rect class="handle" x="100" y="272" width="40" height="8" rx="4"/>`)
	b.WriteString(label(120, 248, 150, 20, hatch))
	b.WriteString(`</g></svg>`)
	return pagetmpl.HTML(b.String())
}

// label is an SVG text centred at x, y, squeezed into width when long.
func label(x, y, width, size int, s string) string {
	fit := ""
	// About 0.55 em per character in a sans-serif face.
	if len([]rune(s))*size*55/100 > width {
		fit = fmt.Sprintf(` textLength="%d" lengthAdjust="spacingAndGlyphs"`, width)
	}
	return fmt.Sprintf(`<text class="label" x="%d" y="%d" font-size="%d"%s>%s</text>`, x, y, size, fit, pagetmpl.HTMLEscapeString(s))
}
