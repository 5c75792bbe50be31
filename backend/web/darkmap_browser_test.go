package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/deploy/dev/browsertest"
)

// TestMapFollowsTheDarkSetting: a technician's phone set to dark shows a
// device's compartment map dark too (a white cabinet dazzled on the dark
// page), its legend matching it, each compartment's number readable on
// it (7:1); a laptop set to light keeps the light map. k1 has a free, a
// reserved and a loaded compartment. Zero axe-core violations;
// screenshots var/screenshots/console/night-map-*.
func TestMapFollowsTheDarkSetting(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	e.register("591-0000071-70", false)
	loaded := e.register("591-0000072-71", false)
	require.NoError(t, e.b.Call(context.Background(), "POST", "/api/v1/documents/"+loaded+"/load", nil, nil))

	b, phone := techPhone(t, e)
	laptop := b.NewTab(t, 1366, 768)
	darkScheme(t, phone)
	base := e.b.URL("")
	contrast := func(tab *browsertest.Tab, a, pa, b, pb string) float64 {
		t.Helper()
		x, y := luminance(t, tab, a, pa), luminance(t, tab, b, pb)
		if x < y {
			x, y = y, x
		}
		return (x + 0.05) / (y + 0.05)
	}
	for _, v := range []struct {
		tab  *browsertest.Tab
		name string
		dark bool
	}{{phone, "phone-dark", true}, {laptop, "laptop", false}} {
		tab := v.tab
		tab.Do(t, chromedp.Navigate(base+"/staff/devices/"+lockerID))
		tab.WaitFor(t, `!!document.querySelector("svg.map .comp.st-loaded") && !!document.querySelector("svg.map .comp.st-reserved")`, 10*time.Second)
		lookAt(t, tab, "map-"+v.name)
		cabinet := luminance(t, tab, "svg.map .cabinet", "fill")
		if v.dark {
			assert.Less(t, cabinet, 0.05, "%s: a dark cabinet", v.name)
		} else {
			assert.Greater(t, cabinet, 0.8, "%s: a light cabinet", v.name)
		}
		for _, st := range []string{"free", "loaded", "expired"} { // out_of_service: a gradient
			// The legend's swatch is the map's compartment.
			body := evalString(t, tab, `(function(){var r=document.createElementNS("http://www.w3.org/2000/svg","svg"); r.innerHTML='<g class="comp st-`+st+`"><rect class="body"/></g>'; r.setAttribute("class","map"); document.body.appendChild(r); var f=getComputedStyle(r.querySelector(".body")).fill; r.remove(); return f})()`)
			assert.Equal(t, body, evalString(t, tab, `getComputedStyle(document.querySelector(".legend .swatch.st-`+st+`")).backgroundColor`), "%s: the legend of %s", v.name, st)
		}
		for _, st := range []string{"free", "loaded"} {
			c := contrast(tab, "svg.map .comp.st-"+st+" .num", "fill", "svg.map .comp.st-"+st+" .body", "fill")
			assert.GreaterOrEqual(t, c, 7.0, "%s: the number on a %s compartment", v.name, st)
		}
	}
}
