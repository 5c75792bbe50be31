package notify

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"kluis/backend/service"
	"kluis/deploy/dev/browsertest"
)

// The real track page (and the e-mails' HTML) in headless Chromium: axe-core finds no WCAG 2.1 A
// or AA violation in any language or state; at 360 CSS pixels (a small
// phone) and at 640 (a 1280 px window at 200% zoom) and 320 (the WCAG
// reflow width) nothing scrolls sideways; the timeline is an ordered list
// whose current and upcoming steps are named in words; the language links
// work with a real click. Screenshots go to var/screenshots/notify/.
func TestTrackPageInBrowser(t *testing.T) {
	f := newJourney(t)
	ctx := context.Background()
	tid := func(id string) string {
		s, err := TrackingID(ctx, f.st.Pool(), id, f.clock.Now())
		require.NoError(t, err)
		return s
	}
	// Taken back to the counter: loaded, the deadline passed, retrieved.
	back := f.register(t, "nl", "lotte@example.org", "")
	_, err := f.svc.Reserve(ctx, "user:counter", back.ID, service.ReserveOptions{})
	require.NoError(t, err)
	_, err = f.svc.Load(ctx, "user:counter", back.ID)
	require.NoError(t, err)
	f.clock.Add(11 * 24 * time.Hour)
	_, err = f.svc.Expire(ctx, "system", back.ID)
	require.NoError(t, err)
	f.clock.Add(20 * time.Hour)
	_, err = f.svc.Retrieve(ctx, "user:counter", back.ID)
	require.NoError(t, err)
	// Collected after a reminder.
	collected := f.register(t, "nl", "lotte@example.org", "")
	_, err = f.svc.Reserve(ctx, "user:counter", collected.ID, service.ReserveOptions{})
	require.NoError(t, err)
	_, err = f.svc.Load(ctx, "user:counter", collected.ID)
	require.NoError(t, err)
	f.clock.Add(8 * 24 * time.Hour)
	_, err = f.svc.Renotify(ctx, "system", collected.ID)
	require.NoError(t, err)
	f.clock.Add(30 * time.Hour)
	_, err = f.svc.Collect(ctx, "device:l1", collected.ID)
	require.NoError(t, err)
	// Ready in the locker, the deadline ahead.
	ready := f.register(t, "nl", "lotte@example.org", "")
	_, err = f.svc.Reserve(ctx, "user:counter", ready.ID, service.ReserveOptions{})
	require.NoError(t, err)
	f.clock.Add(time.Hour)
	_, err = f.svc.Load(ctx, "user:counter", ready.ID)
	require.NoError(t, err)

	readyDoc, err := f.svc.GetDocument(ctx, ready.ID)
	require.NoError(t, err)
	require.NotNil(t, readyDoc.Deadline)

	srv := httptest.NewServer(f.page)
	t.Cleanup(srv.Close)
	pages := []struct{ name, path string }{
		{"ready", "/t/" + tid(ready.ID)},
		{"collected", "/t/" + tid(collected.ID)},
		{"counter", "/t/" + tid(back.ID)},
		{"unknown", "/t/AAAAAAAAAAAAAAAAAAAAAA"},
	}

	b := browsertest.New(t, browsertest.Options{})
	phone := b.NewTab(t, 360, 800)
	for _, lang := range Languages {
		for _, p := range pages {
			name := fmt.Sprintf("track %s %s at 360 px", p.name, lang)
			phone.Do(t, chromedp.Navigate(srv.URL+p.path+"?lang="+lang))
			phone.WaitFor(t, fmt.Sprintf(`document.documentElement.lang === %q`, lang), 5*time.Second)
			phone.CheckAxe(t, name)
			noSideScroll(t, phone, name)
			phone.Screenshot(t, fmt.Sprintf("notify/track-%s-%s-360", p.name, lang))
			if p.name == "unknown" {
				require.Contains(t, phone.Text(t, "main"), T(lang, "track.unknown"))
				continue
			}
			require.Contains(t, phone.Text(t, "h1"), T(lang, "track.title"))
			cur := phone.Text(t, `ol.steps > li[aria-current="step"]`)
			require.Contains(t, cur, T(lang, "track.now"), "%s: the current step says so in words", name)
		}
		// The ready page: registered, in the locker, told, and the deadline to come.
		phone.Do(t, chromedp.Navigate(srv.URL+pages[0].path+"?lang="+lang))
		phone.WaitFor(t, `document.querySelectorAll("main ol.steps > li").length === 4`, 5*time.Second)
		up := phone.Text(t, "ol.steps > li.upcoming")
		require.Contains(t, up, T(lang, "track.upcoming"), "%s: the upcoming step says so in words", lang)
		require.Contains(t, phone.Text(t, "section.next"), FormatDeadline(lang, *readyDoc.Deadline, f.clock.Now()))
	}
	// The collected page has the reminder among its five steps.
	phone.Do(t, chromedp.Navigate(srv.URL+pages[1].path+"?lang=en"))
	phone.WaitFor(t, `document.querySelectorAll("main ol.steps > li").length === 5`, 5*time.Second)
	require.Contains(t, phone.Text(t, "ol.steps > li:nth-child(4)"), "Reminder sent")

	// A real click on a language link.
	phone.Do(t, chromedp.Navigate(srv.URL+pages[0].path))
	phone.WaitFor(t, `document.documentElement.lang === "nl"`, 5*time.Second)
	phone.Do(t, chromedp.Click(chromedp.CSS(`nav a[hreflang="fr"]`)))
	phone.WaitFor(t, `document.documentElement.lang === "fr"`, 5*time.Second)
	require.Contains(t, phone.Text(t, "h1"), "Suivre votre document")

	// The e-mails' HTML as a phone's mail program would show it (the
	// inline QR image given as a data: URL): no axe violation, no
	// sideways scrolling, the QR code at least 280 CSS pixels wide. Every
	// message in Dutch, the ready one in each language (one template).
	for _, lang := range Languages {
		for _, msg := range Messages {
			if lang != "nl" && msg != MsgReady {
				continue
			}
			d := sampleData()
			q, err := QRCode(strings.Repeat("K1.token-of-a-realistic-length.", 6))
			require.NoError(t, err)
			d.QRWidth = q.DisplayWidth()
			r, err := Render(lang, msg, d)
			require.NoError(t, err)
			page := strings.Replace(r.HTML, "cid:qr@kluis", "data:image/png;base64,"+base64.StdEncoding.EncodeToString(q.PNG), 1)
			name := fmt.Sprintf("mail %s %s at 360 px", msg, lang)
			phone.Do(t, chromedp.Navigate("data:text/html;charset=utf-8;base64,"+base64.StdEncoding.EncodeToString([]byte(page))))
			phone.WaitFor(t, fmt.Sprintf(`document.documentElement.lang === %q`, lang), 5*time.Second)
			phone.CheckAxe(t, name)
			noSideScroll(t, phone, name)
			if msg == MsgReady {
				phone.WaitFor(t, `document.querySelector("img").complete && document.querySelector("img").getBoundingClientRect().width >= 280`, 5*time.Second)
			}
			phone.Screenshot(t, fmt.Sprintf("notify/mail-%s-%s-360", msg, lang))
		}
	}

	// 200% zoom of a 1280 px window, the 320 px reflow width, a desktop.
	for _, w := range []int64{640, 320, 1280} {
		tab := b.NewTab(t, w, 900)
		for _, p := range pages[:3] {
			name := fmt.Sprintf("track %s nl at %d px", p.name, w)
			tab.Do(t, chromedp.Navigate(srv.URL+p.path))
			tab.WaitFor(t, `document.documentElement.lang === "nl"`, 5*time.Second)
			tab.CheckAxe(t, name)
			noSideScroll(t, tab, name)
			tab.Screenshot(t, fmt.Sprintf("notify/track-%s-nl-%d", p.name, w))
		}
	}
}

// noSideScroll fails when the page is wider than the window.
func noSideScroll(t *testing.T, tab *browsertest.Tab, name string) {
	t.Helper()
	w, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](
		`document.documentElement.scrollWidth + " " + document.documentElement.clientWidth`))
	require.NoError(t, err)
	var scroll, client int
	_, err = fmt.Sscan(w, &scroll, &client)
	require.NoError(t, err)
	require.LessOrEqual(t, scroll, client, "%s scrolls sideways (%s)", name, strings.TrimSpace(w))
}

// In a real browser, the track page's style applies under its CSP (the
// style element's hash, no 'unsafe-inline'): the body's font is 1.25rem.
func TestTrackPageStyleAppliesUnderItsCSP(t *testing.T) {
	f := newJourney(t)
	srv := httptest.NewServer(f.page)
	t.Cleanup(srv.Close)
	b := browsertest.New(t, browsertest.Options{})
	tab := b.NewTab(t, 360, 800)
	tab.Do(t, chromedp.Navigate(srv.URL+"/t/AAAAAAAAAAAAAAAAAAAAAA?lang=en"))
	tab.WaitFor(t, `document.documentElement.lang === "en"`, 5*time.Second)
	tab.WaitFor(t, `getComputedStyle(document.body).fontSize === "20px" && getComputedStyle(document.querySelector(".page")).maxWidth === "640px"`, 5*time.Second)
}
