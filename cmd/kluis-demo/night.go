package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"kluis/backend/api/apiclient"
	"kluis/backend/lifecycle"
	"kluis/backend/notify/mailread"
	"kluis/controller/engine"
	"kluis/deploy/dev/testenv"
)

// citizen is one document holder of the night and what they will do.
type citizen struct {
	First, Last, Birth, Kind string
	Device                   string
	Plan                     string // qr, pin, wrong-pin, left-open, expiry, offline
	Number, Email, Label     string

	doc  document
	comp compartment
	mail mailread.Mail
}

const (
	planQR       = "qr"
	planPIN      = "pin"
	planWrongPIN = "wrong-pin" // a wrong PIN first, then the right one
	planLeftOpen = "left-open"
	planExpiry   = "expiry"
	planOffline  = "offline"
)

// expiryKind is the one kind the demo's backend gets a short exact pickup
// period for (kluis-backend -pickup-period expiryKind=expiryPeriod); only
// the document that is to expire has it, and it is loaded first, so the
// backend's own housekeeping expires it while the other steps run.
const (
	expiryKind   = "residence_card"
	expiryPeriod = 40 * time.Second
)

func citizens(run string) []*citizen {
	cs := []*citizen{
		{First: "Hans", Last: "De Smet", Birth: "1973-04-01", Kind: expiryKind, Device: "kortrijk-hall-b", Plan: planExpiry},
		{First: "An", Last: "Peeters", Birth: "1984-03-12", Kind: "eid", Device: "kortrijk-hall-a", Plan: planQR},
		{First: "Bart", Last: "Janssens", Birth: "1979-11-02", Kind: "driving_licence", Device: "kortrijk-hall-a", Plan: planPIN},
		{First: "Chloé", Last: "Dubois", Birth: "1992-07-30", Kind: "eid", Device: "kortrijk-hall-a", Plan: planWrongPIN},
		{First: "Dries", Last: "Maes", Birth: "2001-01-19", Kind: "kids_id", Device: "kortrijk-hall-a", Plan: planLeftOpen},
		{First: "Els", Last: "Claes", Birth: "1968-05-05", Kind: "eid", Device: "kortrijk-automaton", Plan: planPIN},
		{First: "Frank", Last: "Wouters", Birth: "1955-09-23", Kind: "eid", Device: "kortrijk-hall-b", Plan: planPIN},
		{First: "Griet", Last: "Goossens", Birth: "1988-12-24", Kind: "driving_licence", Device: "kortrijk-hall-b", Plan: planQR},
		{First: "Inge", Last: "Willems", Birth: "1999-08-08", Kind: "eid", Device: "kortrijk-hall-b", Plan: planOffline},
		{First: "Jan", Last: "Mertens", Birth: "1961-02-14", Kind: "driving_licence", Device: "kortrijk-automaton", Plan: planQR},
	}
	for i, c := range cs {
		c.Number = fmt.Sprintf("591-%s-%02d", run, i+1)
		c.Email = fmt.Sprintf("%s.%s@example.org", strings.ToLower(asciiName(c.First)), strings.ToLower(strings.ReplaceAll(c.Last, " ", "")))
		c.Label = fmt.Sprintf("%s %s (%s %s)", c.Kind, c.Number, c.First, c.Last)
	}
	return cs
}

func asciiName(s string) string {
	return strings.NewReplacer("é", "e", "è", "e", "ë", "e").Replace(s)
}

func (c *citizen) who() string { return c.First + " " + c.Last }

// place is where the document physically is in the simulator: the
// compartment's channel on a locker, the hatch (channel 0) and a slot on an
// automaton.
func (d *demo) place(c *citizen) (board, channel, slot int) {
	if d.nodes[c.Device].spec.Kind == "automaton" {
		return c.comp.Board, 0, c.comp.Channel
	}
	return c.comp.Board, c.comp.Channel, -1
}

// night runs the scripted night and records every step on the timeline.
func (d *demo) night(ctx context.Context, runID string) {
	cs := citizens(runID)
	byDevice := map[string]bool{}
	for id, n := range d.nodes {
		byDevice[id] = n.ready
	}

	// 1. Staff register the documents.
	for _, c := range cs {
		if ctx.Err() != nil {
			return
		}
		err := d.staff.Do(ctx, http.MethodPost, "/api/v1/documents", map[string]any{"kind": c.Kind, "number": c.Number,
			"holder_first_name": c.First, "holder_last_name": c.Last, "holder_birth_date": c.Birth, "language": "en",
			"email": c.Email, "site_id": siteID}, &c.doc)
		if err == nil && c.doc.State != "registered" {
			err = fmt.Errorf("state %q, want registered", c.doc.State)
		}
		d.tl.check("staff", "register "+c.Kind+" of "+c.who(), "registered", "document "+short(c.doc.ID)+" registered", err)
	}

	// 2. Staff log in at the kiosks and load every document.
	d.kioskStaff = false
	if d.staffPIN != "" {
		for _, id := range d.order {
			if ctx.Err() != nil {
				return
			}
			n := d.nodes[id]
			if !n.ready {
				continue
			}
			scr, err := n.kiosk.Post(ctx, "/kiosk/v1/staff/login", map[string]string{"pin": d.staffPIN})
			if err == nil && scr.State != "staff" {
				err = fmt.Errorf("kiosk shows %s: %s", scr.State, scr.Message)
			}
			if d.tl.check("staff", "log in at the kiosk of "+id+" with the staff PIN", "staff mode", "staff mode as "+scr.Staff, err) {
				d.kioskStaff = true
			}
		}
	}
	for _, c := range cs {
		if ctx.Err() != nil {
			return
		}
		if c.doc.ID == "" {
			continue
		}
		if !byDevice[c.Device] {
			d.tl.check("staff", "load "+c.Number+" into "+c.Device, "loaded", "", fmt.Errorf("kluisd of %s is not running", c.Device))
			continue
		}
		got, err := d.load(ctx, c)
		d.tl.check("staff", "load "+c.Kind+" of "+c.who()+" into "+c.Device, "door opens, item in, notified", got, err)
	}
	if d.kioskStaff {
		// Staff log out when the loading is done: a kiosk takes no
		// citizen's code while a staff member is logged in.
		for _, id := range d.order {
			if n := d.nodes[id]; n.ready {
				_, _ = n.kiosk.Post(ctx, "/kiosk/v1/staff/logout", nil)
			}
		}
	}

	if ctx.Err() != nil {
		return
	}
	// 3. Citizens read their e-mail.
	mails, err := d.readMail(ctx, cs)
	d.tl.check("citizens", "e-mails in the .eml drop", "one ready message per loaded document", fmt.Sprintf("%d messages", mails), err)

	// 4. The night's pickups and incidents.
	for _, c := range cs {
		if ctx.Err() != nil {
			return
		}
		if c.doc.ID == "" || c.mail.File == "" {
			continue
		}
		switch c.Plan {
		case planQR:
			got, err := d.collect(ctx, c, map[string]string{"qr": c.mail.QR}, false)
			d.tl.check(c.First, "collect at "+c.Device+" with the QR code from the e-mail", "door opens, item taken, collected", got, err)
		case planPIN:
			got, err := d.collect(ctx, c, map[string]string{"pin": c.mail.PIN, "birth_date": c.Birth}, false)
			d.tl.check(c.First, "collect at "+c.Device+" with PIN and date of birth", "door opens, item taken, collected", got, err)
		case planWrongPIN:
			got, err := d.wrongPIN(ctx, c)
			d.tl.check(c.First, "types a wrong PIN at "+c.Device, "refused, no pulse, every door shut", got, err)
			got, err = d.collect(ctx, c, map[string]string{"pin": c.mail.PIN, "birth_date": c.Birth}, false)
			d.tl.check(c.First, "then the right PIN and date of birth", "door opens, item taken, collected", got, err)
		case planLeftOpen:
			got, err := d.collect(ctx, c, map[string]string{"qr": c.mail.QR}, true)
			d.tl.check(c.First, "collects with QR and leaves the door open", "door_left_open alarm, then collected", got, err)
		}
	}
	for _, c := range cs {
		if ctx.Err() != nil {
			return
		}
		if c.doc.ID == "" || c.mail.File == "" {
			continue
		}
		switch c.Plan {
		case planExpiry:
			got, err := d.expire(ctx, c)
			d.tl.check("backend", "the "+expiryPeriod.String()+" pickup period of "+c.who()+"'s "+c.Kind+" passes", "expired by housekeeping, code refused, no pulse", got, err)
			if err == nil {
				got, err = d.retrieve(ctx, c, d.kioskStaff)
				d.tl.check("staff", "retrieve "+c.who()+"'s expired document from "+c.Device, "door opens, item out, retrieved", got, err)
				if errors.Is(err, errKioskRefused) {
					// The item is still in: take it back the other way.
					got, err = d.retrieve(ctx, c, false)
					d.tl.check("staff", "retrieve it instead by remote open + REST retrieve", "door opens, item out, retrieved", got, err)
				}
			}
		case planOffline:
			got, err := d.offline(ctx, c)
			d.tl.check(c.First, "collects with QR while "+c.Device+" is cut from the backend", "offline pickup, synced after the cut", got, err)
		}
	}
	if ctx.Err() != nil {
		return
	}
	d.reconcile(ctx, cs)
}

// humanPause is how long a person takes to reach into a compartment or to
// push the door shut; polled hardware (Kerong, Tasmota) must see the door
// open between two polls, as it would with a real person.
const humanPause = 700 * time.Millisecond

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// reconcile compares, at the end of the night, every document's state in
// the backend with what is physically behind its door in the simulator,
// and verifies the audit chain.
func (d *demo) reconcile(ctx context.Context, cs []*citizen) {
	var bad []string
	checked := 0
	for _, c := range cs {
		if c.doc.ID == "" || c.comp.ID == 0 {
			continue
		}
		doc, err := d.staff.Document(ctx, c.doc.ID)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		board, ch, slot := d.place(c)
		item := ""
		if slot >= 0 {
			st, err := d.sim.State(ctx, c.Device)
			if err != nil {
				bad = append(bad, err.Error())
				continue
			}
			for _, m := range st.Mechanisms {
				if m.Board == board && slot < len(m.Slots) {
					item = m.Slots[slot]
				}
			}
		} else {
			t, err := d.sim.Truth(ctx, c.Device, board, ch)
			if err != nil {
				bad = append(bad, err.Error())
				continue
			}
			item = t.Item
			if t.DoorOpen {
				bad = append(bad, fmt.Sprintf("%s compartment %d: door open", c.Device, c.comp.Number))
			}
		}
		want := ""
		if lifecycle.State(doc.State).InCompartment() {
			want = c.Label
		}
		if item != want {
			bad = append(bad, fmt.Sprintf("%s compartment %d: backend says %s, simulator holds %q", c.Device, c.comp.Number, doc.State, item))
		}
		checked++
	}
	var err error
	if len(bad) > 0 {
		err = errors.New(strings.Join(bad, "; "))
	}
	d.tl.check("demo", "backend states against the simulator's doors and items", "all agree, all doors shut",
		fmt.Sprintf("%d compartments agree", checked), err)
	var rep struct {
		OK      bool   `json:"ok"`
		Records int    `json:"records"`
		Reason  string `json:"reason"`
	}
	err = d.admin.Do(ctx, http.MethodGet, "/api/v1/audit/verify", nil, &rep)
	if err == nil && !rep.OK {
		err = fmt.Errorf("audit chain broken: %s", rep.Reason)
	}
	d.tl.check("admin", "verify the audit trail's hash chain", "intact", fmt.Sprintf("%d records, chain intact", rep.Records), err)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// comp finds a document's compartment through the API.
func (d *demo) compOf(ctx context.Context, c *citizen) error {
	doc, err := d.staff.Document(ctx, c.doc.ID)
	if err != nil {
		return err
	}
	c.doc = doc
	if doc.DeviceID != c.Device || doc.CompartmentID == 0 {
		return fmt.Errorf("document is on %q compartment id %d, want a compartment of %s", doc.DeviceID, doc.CompartmentID, c.Device)
	}
	dev, err := d.staff.device(ctx, c.Device)
	if err != nil {
		return err
	}
	for _, cp := range dev.Compartments {
		if cp.ID == doc.CompartmentID {
			c.comp = cp
			return nil
		}
	}
	return fmt.Errorf("compartment id %d is not on device %s", doc.CompartmentID, c.Device)
}

// waitDoor waits until the simulator's door at board/channel is open (or shut).
func (d *demo) waitDoor(ctx context.Context, dev string, board, ch int, open bool) error {
	want := "open"
	if !open {
		want = "shut"
	}
	_, err := testenv.Poll(ctx, 20*time.Second, fmt.Sprintf("door b%d/c%d of %s %s (simulator truth)", board, ch, dev, want), func(ctx context.Context) (bool, string, error) {
		t, err := d.sim.Truth(ctx, dev, board, ch)
		if err != nil {
			return false, "", err
		}
		return t.DoorOpen == open, fmt.Sprintf("door_open=%t energised=%t item=%q", t.DoorOpen, t.Energised, t.Item), nil
	})
	return err
}

// waitPresence waits until the backend shows the device online (or not).
func (d *demo) waitPresence(ctx context.Context, dev string, online bool) error {
	_, err := testenv.Poll(ctx, 20*time.Second, fmt.Sprintf("backend shows %s online=%t", dev, online), func(ctx context.Context) (bool, string, error) {
		info, err := d.staff.device(ctx, dev)
		if err != nil {
			return false, "", err
		}
		return info.online() == online, fmt.Sprintf("online=%t", info.online()), nil
	})
	return err
}

// waitState waits until the backend shows the document in one of states.
func (d *demo) waitState(ctx context.Context, c *citizen, timeout time.Duration, states ...string) error {
	_, err := testenv.Poll(ctx, timeout, "document of "+c.who()+" "+strings.Join(states, " or ")+" in the backend", func(ctx context.Context) (bool, string, error) {
		doc, err := d.staff.Document(ctx, c.doc.ID)
		if err != nil {
			return false, "", err
		}
		c.doc.State, c.doc.History = doc.State, doc.History
		for _, s := range states {
			if doc.State == s {
				return true, doc.State, nil
			}
		}
		return false, "state " + doc.State, nil
	})
	return err
}

// newPulses returns the pulses of dev after the first n.
func (d *demo) pulsesSince(ctx context.Context, dev string, n int) ([]string, int, error) {
	ps, err := d.sim.Pulses(ctx, dev)
	if err != nil {
		return nil, 0, err
	}
	var out []string
	for i := n; i < len(ps); i++ {
		out = append(out, fmt.Sprintf("b%d/c%d", ps[i].Board, ps[i].Channel))
	}
	return out, len(ps), nil
}

func (d *demo) pulseCount(ctx context.Context, dev string) (int, error) {
	ps, err := d.sim.Pulses(ctx, dev)
	return len(ps), err
}

// checkPulses verifies that the pulses since n hit only board/ch, at least once.
func (d *demo) checkPulses(ctx context.Context, dev string, n, board, ch int) (string, error) {
	got, _, err := d.pulsesSince(ctx, dev, n)
	if err != nil {
		return "", err
	}
	want := fmt.Sprintf("b%d/c%d", board, ch)
	if len(got) == 0 {
		return "", fmt.Errorf("no pulse recorded at %s", want)
	}
	for _, g := range got {
		if g != want {
			return "", fmt.Errorf("pulses %v: want only %s", got, want)
		}
	}
	return fmt.Sprintf("%d pulse(s) at %s", len(got), want), nil
}

// load puts a document in its compartment: staff mode at the kiosk when
// it works, otherwise REST reserve + remote open + REST load.
func (d *demo) load(ctx context.Context, c *citizen) (string, error) {
	n := d.nodes[c.Device]
	p0, err := d.pulseCount(ctx, c.Device)
	if err != nil {
		return "", err
	}
	pr0, err := d.presentCount(ctx, c)
	if err != nil {
		return "", err
	}
	via := "kiosk staff mode"
	if d.kioskStaff {
		scr, retried, err := d.kioskTry(ctx, n, "/kiosk/v1/staff/load", map[string]string{"document_number": c.Number})
		via += retried
		if err != nil {
			return "", err
		}
		if scr.State != "loading" && scr.State != "presenting" {
			return "", fmt.Errorf("kiosk shows %s: %s", scr.State, scr.Message)
		}
		if err := d.compOf(ctx, c); err != nil {
			return "", err
		}
	} else {
		via = "REST reserve + remote open + REST load"
		if err := d.staff.Do(ctx, http.MethodPost, "/api/v1/documents/"+c.doc.ID+"/reserve", map[string]string{"device_id": c.Device}, &c.doc); err != nil {
			return "", err
		}
		if err := d.compOf(ctx, c); err != nil {
			return "", err
		}
		if err := d.tech.Do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/devices/%s/compartments/%d/open", c.Device, c.comp.Number),
			map[string]string{"reason": "load " + c.Number}, nil); err != nil {
			return "", err
		}
	}
	board, ch, slot := d.place(c)
	if err := d.waitDoor(ctx, c.Device, board, ch, true); err != nil {
		return "", err
	}
	pause(ctx, humanPause)
	if slot >= 0 {
		if err := d.waitAtHatch(ctx, c.Device, board, slot); err != nil {
			return "", err
		}
	}
	if _, err := d.sim.Channel(ctx, c.Device, board, ch, "put", url.Values{"label": {c.Label}}); err != nil {
		return "", fmt.Errorf("put the document in: %w", err)
	}
	pause(ctx, humanPause)
	if _, err := d.sim.Channel(ctx, c.Device, board, ch, "close", nil); err != nil {
		return "", fmt.Errorf("close the door: %w", err)
	}
	pulses, err := d.checkPulses(ctx, c.Device, p0, board, ch)
	if err != nil {
		return "", err
	}
	presented, err := d.checkPresents(ctx, c, pr0, board, slot)
	if err != nil {
		return "", err
	}
	pulses += presented
	if !d.kioskStaff {
		if err := d.staff.Do(ctx, http.MethodPost, "/api/v1/documents/"+c.doc.ID+"/load", map[string]any{}, &c.doc); err != nil {
			return "", err
		}
	}
	if err := d.waitState(ctx, c, 20*time.Second, "notified"); err != nil {
		return "", err
	}
	if d.kioskStaff {
		if a := c.doc.ActorOf("loaded"); a != "device:"+c.Device {
			return "", fmt.Errorf("loaded by %q, want the kluisd report (device:%s)", a, c.Device)
		}
		via += ", kluisd reported loaded"
	}
	t, err := d.sim.Truth(ctx, c.Device, board, ch)
	if err != nil {
		return "", err
	}
	if slot < 0 && t.Item != c.Label {
		return "", fmt.Errorf("simulator: compartment holds %q, want %q", t.Item, c.Label)
	}
	return fmt.Sprintf("compartment %d (%s), %s, backend: %s", c.comp.Number, via, pulses, c.doc.State), nil
}

// waitAtHatch waits until the automaton's carousel shows slot at the hatch.
func (d *demo) waitAtHatch(ctx context.Context, dev string, board, slot int) error {
	_, err := testenv.Poll(ctx, 20*time.Second, fmt.Sprintf("slot %d of %s at the hatch", slot, dev), func(ctx context.Context) (bool, string, error) {
		st, err := d.sim.State(ctx, dev)
		if err != nil {
			return false, "", err
		}
		for _, m := range st.Mechanisms {
			if m.Board == board {
				return m.AtHatch == slot && !m.Busy, fmt.Sprintf("at_hatch=%d busy=%t fault=%t", m.AtHatch, m.Busy, m.Fault), nil
			}
		}
		return false, "no mechanism", nil
	})
	return err
}

// readMail waits for the ready message of every loaded document and
// decodes its QR code and PIN.
func (d *demo) readMail(ctx context.Context, cs []*citizen) (int, error) {
	want := map[string]*citizen{}
	for _, c := range cs {
		if c.doc.State == "notified" {
			want[c.Email] = c
		}
	}
	if len(want) == 0 {
		return 0, errors.New("no document was loaded and notified")
	}
	found := 0
	_, err := testenv.Poll(ctx, 20*time.Second, "a ready e-mail for every loaded document", func(context.Context) (bool, string, error) {
		ms, err := mailread.ReadDir(d.mailDir)
		if err != nil {
			return false, "", err
		}
		found = 0
		for _, m := range ms {
			if c := want[m.To]; c != nil && m.QR != "" && m.PIN != "" {
				if c.mail.File == "" {
					c.mail = m
				}
				found++
			}
		}
		return found >= len(want), fmt.Sprintf("%d of %d", found, len(want)), nil
	})
	for _, c := range cs {
		if c.mail.File != "" {
			d.tl.check(c.First, "reads the e-mail "+c.mail.File, "QR image and PIN", fmt.Sprintf("%q: QR decoded (%d characters), PIN of %d digits",
				c.mail.Subject, len(c.mail.QR), len(c.mail.PIN)), nil)
		}
	}
	return found, err
}

// collect runs a pickup at the kiosk and checks the physical world and the
// backend. leaveOpen leaves the door open until the alarm is seen.
func (d *demo) collect(ctx context.Context, c *citizen, req map[string]string, leaveOpen bool) (string, error) {
	n := d.nodes[c.Device]
	board, ch, slot := d.place(c)
	p0, err := d.pulseCount(ctx, c.Device)
	if err != nil {
		return "", err
	}
	pr0, err := d.presentCount(ctx, c)
	if err != nil {
		return "", err
	}
	req["lang"] = "en"
	scr, retried, err := d.kioskTry(ctx, n, "/kiosk/v1/pickup", req)
	if err != nil {
		return "", err
	}
	extra := retried
	if scr.State != "open" && scr.State != "presenting" {
		return "", fmt.Errorf("kiosk shows %s: %s", scr.State, scr.Message)
	}
	if err := d.waitDoor(ctx, c.Device, board, ch, true); err != nil {
		return "", err
	}
	pause(ctx, humanPause)
	if slot >= 0 {
		if err := d.waitAtHatch(ctx, c.Device, board, slot); err != nil {
			return "", err
		}
	}
	item, err := d.sim.Channel(ctx, c.Device, board, ch, "take", nil)
	if err != nil {
		return "", fmt.Errorf("take the document: %w", err)
	}
	if got := item.Item; got != c.Label {
		return "", fmt.Errorf("took %q, want %q", got, c.Label)
	}
	if leaveOpen {
		a0, _ := n.kluisd.Metric(ctx, "kluisd_alarms_total", `alarm="door_left_open"`)
		obs, err := testenv.Poll(ctx, 20*time.Second, "door_left_open alarm", func(ctx context.Context) (bool, string, error) {
			m, err := n.kluisd.Metric(ctx, "kluisd_alarms_total", `alarm="door_left_open"`)
			if err != nil {
				return false, "", err
			}
			recs, err := d.admin.Audit(ctx, apiclient.AuditQuery{Subject: "device:" + c.Device, Max: maxAudit})
			if err != nil {
				return false, "", err
			}
			inAudit := false
			for _, r := range recs {
				if r.Action == "device.alarm" && r.Details["alarm"] == "door_left_open" {
					inAudit = true
				}
			}
			return m > a0 && inAudit, fmt.Sprintf("kluisd alarms_total=%v, backend audit device.alarm door_left_open=%t", m, inAudit), nil
		})
		if err != nil {
			return "", err
		}
		t, err := d.sim.Truth(ctx, c.Device, board, ch)
		if err != nil || !t.DoorOpen {
			return "", fmt.Errorf("door should still be open in the simulator (err %v)", err)
		}
		extra += "; alarm seen: " + obs
	}
	pause(ctx, humanPause)
	if _, err := d.sim.Channel(ctx, c.Device, board, ch, "close", nil); err != nil {
		return "", fmt.Errorf("close the door: %w", err)
	}
	pulses, err := d.checkPulses(ctx, c.Device, p0, board, ch)
	if err != nil {
		return "", err
	}
	presented, err := d.checkPresents(ctx, c, pr0, board, slot)
	if err != nil {
		return "", err
	}
	pulses += presented
	if err := d.waitState(ctx, c, 20*time.Second, "collected"); err != nil {
		return "", err
	}
	if a := c.doc.ActorOf("collected"); a != "device:"+c.Device {
		return "", fmt.Errorf("collected by %q, want the kluisd report (device:%s)", a, c.Device)
	}
	return fmt.Sprintf("compartment %d, %s, took %q, backend: collected by device:%s%s", c.comp.Number, pulses, c.Label, c.Device, extra), nil
}

// presentCount counts the carousel commands an automaton received (0 for
// a locker).
func (d *demo) presentCount(ctx context.Context, c *citizen) (int, error) {
	if d.nodes[c.Device].spec.Kind != "automaton" {
		return 0, nil
	}
	ps, err := d.sim.Presents(ctx, c.Device)
	return len(ps), err
}

// checkPresents verifies that an automaton's carousel commands since n all
// asked for slot of board (at least one); "" for a locker.
func (d *demo) checkPresents(ctx context.Context, c *citizen, n, board, slot int) (string, error) {
	if slot < 0 {
		return "", nil
	}
	ps, err := d.sim.Presents(ctx, c.Device)
	if err != nil {
		return "", err
	}
	if len(ps) <= n {
		return "", fmt.Errorf("no carousel command recorded for slot %d", slot)
	}
	for _, p := range ps[n:] {
		if p.Board != board || p.Slot != slot {
			return "", fmt.Errorf("carousel asked for b%d slot %d, want slot %d", p.Board, p.Slot, slot)
		}
	}
	return fmt.Sprintf(", slot %d presented", slot), nil
}

// kioskTry posts to a kiosk and, when it answers busy or out of order (a
// board briefly unreachable), tries again like a person would, at most
// twice; the note says so.
func (d *demo) kioskTry(ctx context.Context, n *node, path string, in map[string]string) (engine.Screen, string, error) {
	note := ""
	for attempt := 0; ; attempt++ {
		scr, err := n.kiosk.Post(ctx, path, in)
		if err != nil || attempt == 2 || (scr.State != "busy" && scr.State != "out_of_order") {
			return scr, note, err
		}
		note += fmt.Sprintf(" (kiosk said %s, tried again)", scr.State)
		pause(ctx, 2500*time.Millisecond)
	}
}

// wrongPIN types a wrong PIN: refused, no pulse, every door shut.
func (d *demo) wrongPIN(ctx context.Context, c *citizen) (string, error) {
	n := d.nodes[c.Device]
	p0, err := d.pulseCount(ctx, c.Device)
	if err != nil {
		return "", err
	}
	wrong := []byte(c.mail.PIN)
	for i := range wrong {
		wrong[i] = '0' + (wrong[i]-'0'+1)%10
	}
	scr, err := n.kiosk.Post(ctx, "/kiosk/v1/pickup", map[string]string{"pin": string(wrong), "birth_date": c.Birth, "lang": "en"})
	if err != nil {
		return "", err
	}
	if scr.State != "wrong_code" {
		return "", fmt.Errorf("kiosk shows %s: %s", scr.State, scr.Message)
	}
	// Give a (wrong) pulse time to show up before checking there was none.
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(1500 * time.Millisecond):
	}
	got, _, err := d.pulsesSince(ctx, c.Device, p0)
	if err != nil {
		return "", err
	}
	if len(got) > 0 {
		return "", fmt.Errorf("pulses after a wrong PIN: %v", got)
	}
	st, err := d.sim.State(ctx, c.Device)
	if err != nil {
		return "", err
	}
	for _, t := range st.Channels {
		if t.DoorOpen {
			return "", fmt.Errorf("door b%d/c%d is open", t.Board, t.Channel)
		}
	}
	doc, err := d.staff.Document(ctx, c.doc.ID)
	if err != nil {
		return "", err
	}
	if doc.State != "notified" {
		return "", fmt.Errorf("document state %s after a wrong PIN, want notified", doc.State)
	}
	return fmt.Sprintf("kiosk: %q; no pulse, all %d doors shut, document still notified", scr.Message, len(st.Channels)), nil
}

// expire checks that the backend gave the document the demo's short exact
// pickup period, waits for that real deadline and for the backend's own
// housekeeping to expire the document ("system"); the citizen's code is then
// refused without a pulse.
func (d *demo) expire(ctx context.Context, c *citizen) (string, error) {
	if c.Kind != expiryKind {
		return "", fmt.Errorf("kind %s has no short pickup period in the demo (only %s)", c.Kind, expiryKind)
	}
	doc, err := d.staff.Document(ctx, c.doc.ID)
	if err != nil {
		return "", err
	}
	if doc.Deadline == nil || doc.LoadedAt == nil {
		return "", fmt.Errorf("document in state %s has no deadline or load time", doc.State)
	}
	if got := doc.Deadline.Sub(*doc.LoadedAt); got != expiryPeriod {
		return "", fmt.Errorf("deadline %s after loading, want %s", got, expiryPeriod)
	}
	// No clock is moved: wait for the real deadline and the backend's
	// housekeeping (every 2 s).
	wait := max(time.Until(*doc.Deadline), 0)
	if err := d.waitState(ctx, c, wait+20*time.Second, "expired"); err != nil {
		return "", err
	}
	doc, err = d.staff.Document(ctx, c.doc.ID)
	if err != nil {
		return "", err
	}
	if a := doc.ActorOf("expired"); a != "system" {
		return "", fmt.Errorf("expired by %q, want system (housekeeping)", a)
	}
	n := d.nodes[c.Device]
	p0, err := d.pulseCount(ctx, c.Device)
	if err != nil {
		return "", err
	}
	scr, err := n.kiosk.Post(ctx, "/kiosk/v1/pickup", map[string]string{"qr": c.mail.QR, "lang": "en"})
	if err != nil {
		return "", err
	}
	if scr.State == "open" || scr.State == "presenting" {
		return "", fmt.Errorf("kiosk opens for an expired document: %s", scr.Message)
	}
	time.Sleep(time.Second)
	got, _, err := d.pulsesSince(ctx, c.Device, p0)
	if err != nil {
		return "", err
	}
	if len(got) > 0 {
		return "", fmt.Errorf("pulses for an expired code: %v", got)
	}
	return fmt.Sprintf("deadline = load + %s (-pickup-period %s=%s), waited %s for it; housekeeping: expired; QR at the kiosk: %s (%s), no pulse",
		expiryPeriod, expiryKind, expiryPeriod, wait.Round(time.Second), scr.State, scr.Message), nil
}

// errKioskRefused: the kiosk did not open the door for staff.
var errKioskRefused = errors.New("kiosk refused")

// retrieve takes an expired document back: staff mode at the kiosk, or an
// admin's remote open and the REST retrieve (a compartment holding a
// document opens remotely for admins only, docs/security.md).
func (d *demo) retrieve(ctx context.Context, c *citizen, viaKiosk bool) (string, error) {
	n := d.nodes[c.Device]
	board, ch, _ := d.place(c)
	p0, err := d.pulseCount(ctx, c.Device)
	if err != nil {
		return "", err
	}
	via := "kiosk staff mode"
	if viaKiosk {
		// Staff log out when done: the kiosk takes no citizen's code
		// while they are logged in.
		defer func() { _, _ = n.kiosk.Post(context.WithoutCancel(ctx), "/kiosk/v1/staff/logout", nil) }()
		// The kiosk's staff session may have ended since the loads: log in again.
		if cur, err := n.kiosk.Session(ctx); err != nil || cur.Staff == "" {
			if _, err := n.kiosk.Post(ctx, "/kiosk/v1/staff/login", map[string]string{"pin": d.staffPIN}); err != nil {
				return "", err
			}
		}
		scr, err := n.kiosk.Post(ctx, "/kiosk/v1/staff/retrieve", map[string]string{"document_number": c.Number})
		if err != nil {
			return "", err
		}
		if scr.State != "retrieving" && scr.State != "presenting" {
			return "", fmt.Errorf("%w: kiosk shows %s: %s", errKioskRefused, scr.State, scr.Message)
		}
	} else {
		via = "remote open + REST retrieve"
		if err := d.admin.Do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/devices/%s/compartments/%d/open", c.Device, c.comp.Number),
			map[string]string{"reason": "retrieve expired " + c.Number}, nil); err != nil {
			return "", err
		}
	}
	if err := d.waitDoor(ctx, c.Device, board, ch, true); err != nil {
		return "", err
	}
	pause(ctx, humanPause)
	item, err := d.sim.Channel(ctx, c.Device, board, ch, "take", nil)
	if err != nil {
		return "", fmt.Errorf("take the document out: %w", err)
	}
	if got := item.Item; got != c.Label {
		return "", fmt.Errorf("took %q, want %q", got, c.Label)
	}
	pause(ctx, humanPause)
	if _, err := d.sim.Channel(ctx, c.Device, board, ch, "close", nil); err != nil {
		return "", err
	}
	pulses, err := d.checkPulses(ctx, c.Device, p0, board, ch)
	if err != nil {
		return "", err
	}
	if !viaKiosk {
		if err := d.staff.Do(ctx, http.MethodPost, "/api/v1/documents/"+c.doc.ID+"/retrieve", map[string]any{}, nil); err != nil {
			return "", err
		}
	}
	if err := d.waitState(ctx, c, 20*time.Second, "retrieved"); err != nil {
		return "", err
	}
	if viaKiosk {
		if a := c.doc.ActorOf("retrieved"); a != "device:"+c.Device {
			return "", fmt.Errorf("retrieved by %q, want the kluisd report (device:%s)", a, c.Device)
		}
		via += ", kluisd reported retrieved"
	}
	return fmt.Sprintf("compartment %d (%s), %s, compartment empty, backend: retrieved", c.comp.Number, via, pulses), nil
}

// offline cuts the device's link, collects with the QR code (verified
// offline), checks the backend has not heard of it yet, restores the link
// and waits for the sync.
func (d *demo) offline(ctx context.Context, c *citizen) (string, error) {
	n := d.nodes[c.Device]
	// The backend syncs offline codes to the device when they change; the
	// cut comes once the device holds some.
	cache, err := testenv.Poll(ctx, 30*time.Second, c.Device+" holds offline codes", func(ctx context.Context) (bool, string, error) {
		v, err := n.kluisd.Metric(ctx, "kluisd_offline_cache_entries", "")
		return v >= 1, fmt.Sprintf("%v entries", v), err
	})
	if err != nil {
		return "", err
	}
	n.proxy.Cut()
	restored := false
	defer func() {
		if !restored {
			n.proxy.Restore()
		}
	}()
	if _, err := testenv.Poll(ctx, 30*time.Second, c.Device+" sees the link down", func(ctx context.Context) (bool, string, error) {
		h, err := n.kluisd.Health(ctx)
		return err == nil && !h.MQTTConnected, fmt.Sprintf("mqtt_connected=%t", h.MQTTConnected), err
	}); err != nil {
		return "", err
	}
	if err := d.waitPresence(ctx, c.Device, false); err != nil {
		return "", err
	}
	board, ch, _ := d.place(c)
	p0, err := d.pulseCount(ctx, c.Device)
	if err != nil {
		return "", err
	}
	off0, err := n.kluisd.Metric(ctx, "kluisd_verifications_total", `result="ok",source="offline"`)
	if err != nil {
		return "", err
	}
	scr, retried, err := d.kioskTry(ctx, n, "/kiosk/v1/pickup", map[string]string{"qr": c.mail.QR, "lang": "en"})
	if err != nil {
		return "", err
	}
	if scr.State != "open" {
		return "", fmt.Errorf("offline: kiosk shows %s: %s", scr.State, scr.Message)
	}
	if off, err := n.kluisd.Metric(ctx, "kluisd_verifications_total", `result="ok",source="offline"`); err != nil || off != off0+1 {
		return "", fmt.Errorf("kluisd_verifications_total{result=ok,source=offline} went from %v to %v (err %v), want one more", off0, off, err)
	}
	if err := d.waitDoor(ctx, c.Device, board, ch, true); err != nil {
		return "", err
	}
	pause(ctx, humanPause)
	item, err := d.sim.Channel(ctx, c.Device, board, ch, "take", nil)
	if err != nil {
		return "", err
	}
	if got := item.Item; got != c.Label {
		return "", fmt.Errorf("took %q, want %q", got, c.Label)
	}
	pause(ctx, humanPause)
	if _, err := d.sim.Channel(ctx, c.Device, board, ch, "close", nil); err != nil {
		return "", err
	}
	pulses, err := d.checkPulses(ctx, c.Device, p0, board, ch)
	if err != nil {
		return "", err
	}
	time.Sleep(time.Second)
	doc, err := d.staff.Document(ctx, c.doc.ID)
	if err != nil {
		return "", err
	}
	if doc.State != "notified" {
		return "", fmt.Errorf("backend already shows %s during the cut", doc.State)
	}
	h, _ := n.kluisd.Health(ctx)
	n.proxy.Restore()
	restored = true
	if _, err := testenv.Poll(ctx, 60*time.Second, c.Device+" reconnects", func(ctx context.Context) (bool, string, error) {
		h, err := n.kluisd.Health(ctx)
		return err == nil && h.MQTTConnected, fmt.Sprintf("mqtt_connected=%t backlog=%d", h.MQTTConnected, h.Backlog), err
	}); err != nil {
		return "", err
	}
	if err := d.waitPresence(ctx, c.Device, true); err != nil {
		return "", err
	}
	if err := d.waitState(ctx, c, 30*time.Second, "collected"); err != nil {
		return "", err
	}
	if a := c.doc.ActorOf("collected"); a != "device:"+c.Device {
		return "", fmt.Errorf("collected by %q, want the kluisd report (device:%s)", a, c.Device)
	}
	return fmt.Sprintf("offline cache %s; compartment %d opened after an offline check of the QR code%s, %s; backend saw the device offline and the document still notified (kluisd backlog %d); after reconnect: online, collected",
		cache, c.comp.Number, retried, pulses, h.Backlog), nil
}
