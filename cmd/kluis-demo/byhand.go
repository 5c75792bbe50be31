package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// handDevice is where a document waits, after the night, for a person to
// collect it by hand at the kiosk screen in a browser (docs/demo.md).
const handDevice = "kortrijk-hall-a"

// kioskURL is the kiosk screen of n.
func kioskURL(n *node) string { return "http://" + n.kioskAddr + "/" }

// kioskScreens checks that every running kluisd serves its kiosk screen
// and puts its address on the timeline.
func (d *demo) kioskScreens(ctx context.Context) {
	for _, id := range d.order {
		n := d.nodes[id]
		if !n.ready {
			continue
		}
		u := kioskURL(n)
		d.tl.check(id, "kiosk screen (open it in a browser)", "served by kluisd", u, screenServed(ctx, u))
	}
}

// screenServed fetches the kiosk page at u.
func screenServed(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "data-build=") {
		return fmt.Errorf("GET %s: %d %s: not the kiosk screen", u, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return nil
}

// leaveForYou registers and loads one more document at handDevice (staff
// at the kiosk, as in the night) and reads its e-mail, so that a person
// can collect it by hand. nil when that did not work.
func (d *demo) leaveForYou(ctx context.Context, run string) *citizen {
	n := d.nodes[handDevice]
	if n == nil || !n.ready {
		return nil
	}
	c := &citizen{First: "Karel", Last: "Vermeulen", Birth: "1947-06-15", Kind: "eid", Device: handDevice, Plan: "by-hand",
		Number: fmt.Sprintf("591-%s-99", run), Email: "karel.vermeulen@example.org"}
	c.Label = fmt.Sprintf("%s %s (%s %s)", c.Kind, c.Number, c.First, c.Last)
	err := d.staff.Do(ctx, http.MethodPost, "/api/v1/documents", map[string]any{"kind": c.Kind, "number": c.Number,
		"holder_first_name": c.First, "holder_last_name": c.Last, "holder_birth_date": c.Birth, "language": "en",
		"email": c.Email, "site_id": siteID}, &c.doc)
	if !d.tl.check("staff", "register a document left for you to collect by hand", "registered", "document "+short(c.doc.ID), err) {
		return nil
	}
	if d.kioskStaff {
		scr, err := n.kiosk.Post(ctx, "/kiosk/v1/staff/login", map[string]string{"pin": d.staffPIN})
		if err == nil && scr.State != "staff" {
			err = fmt.Errorf("kiosk shows %s: %s", scr.State, scr.Message)
		}
		if err != nil {
			d.kioskStaff = false // load through the REST API instead
		}
	}
	got, err := d.load(ctx, c)
	if d.kioskStaff {
		_, _ = n.kiosk.Post(ctx, "/kiosk/v1/staff/logout", nil)
	}
	if !d.tl.check("staff", "load it into "+handDevice, "door opens, item in, notified", got, err) {
		return nil
	}
	if _, err := d.readMail(ctx, []*citizen{c}); err != nil {
		d.tl.check(c.First, "the e-mail for the document left for you", "QR image and PIN", "", err)
		return nil
	}
	return c
}

// printByHand tells how to collect c's document in a browser.
func (d *demo) printByHand(w io.Writer, c *citizen) {
	n := d.nodes[c.Device]
	board, ch, _ := d.place(c)
	fmt.Fprintf(w, "\nCollect a document by hand (docs/demo.md): %s's %s waits in compartment %d of %s\n", c.First, c.Kind, c.comp.Number, c.Device)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  1. open the kiosk screen\t%s (a browser window of 800x480 or 1080x1920)\n", kioskURL(n))
	fmt.Fprintf(tw, "  2. touch \"Type your PIN\"\t%s, then the date of birth if asked: %s\n", c.mail.PIN, dobForPeople(c.Birth))
	fmt.Fprintf(tw, "  3. the door opens: take the document\tcurl -X POST '%s/v1/devices/%s/channels/%d/take?board=%d'\n", d.simBase(), c.Device, ch, board)
	fmt.Fprintf(tw, "     and close the door\tcurl -X POST '%s/v1/devices/%s/channels/%d/close?board=%d'\n", d.simBase(), c.Device, ch, board)
	fmt.Fprintf(tw, "  4. the screen says thank you\tthe backend shows it collected (GET %s/api/v1/documents/%s)\n", d.apiBase, c.doc.ID)
	fmt.Fprintf(tw, "  the e-mail, with the QR code\t%s\n", filepath.Join(d.mailDir, filepath.Base(c.mail.File)))
	if d.staffPIN != "" {
		fmt.Fprintf(tw, "  staff at the screen\t\"Staff\" at the bottom of the start screen, staff PIN %s\n", d.staffPIN)
	}
	tw.Flush()
}

// dobForPeople writes YYYY-MM-DD as day, month, year (as the keypad asks).
func dobForPeople(iso string) string {
	p := strings.Split(iso, "-")
	if len(p) != 3 {
		return iso
	}
	return p[2] + " " + p[1] + " " + p[0]
}
