package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"kluis/backend/notify/mailread"
	"kluis/controller/engine"
)

// Doc is one citizen's document as the gauntlet knows it: what was done
// with it in the physical world.
type Doc struct {
	ID, Kind, Number, Email, Mobile, Birth, Label string
	Device                                        string
	Comp                                          int // compartment number, 0 while none
	Board, Channel, Slot                          int // where the item lies (Slot -1 on a locker)
	// Placed: the gauntlet put the item in; Taken: a citizen took it out;
	// Retrieved: staff took it back.
	Placed, Taken, Retrieved bool
	QR, PIN                  string
	Night                    int
	// Failed counts pickups that did not open the door: the citizen asks
	// the counter, and staff give new codes the next evening.
	Failed int
}

// where is the lock to open for the document and its carousel slot.
func (d *Doc) where(n *Node) (board, ch, slot int) {
	if n.Spec.Kind == "automaton" {
		return 0, 0, d.Comp - 1
	}
	return 0, d.Comp - 1, -1
}

// mailbox reads the citizens' e-mail from the gateway's directory, parsing
// each message once.
type mailbox struct {
	dir  string
	mu   sync.Mutex
	seen map[string]mailread.Mail
}

func (m *mailbox) all() ([]mailread.Mail, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	if m.seen == nil {
		m.seen = map[string]mailread.Mail{}
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		names = append(names, e.Name())
		if _, ok := m.seen[e.Name()]; ok {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(m.dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ml, err := mailread.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		ml.File = e.Name()
		m.seen[e.Name()] = ml
	}
	sort.Strings(names)
	out := make([]mailread.Mail, 0, len(names))
	for _, n := range names {
		out = append(out, m.seen[n])
	}
	return out, nil
}

// to returns the messages to addr, oldest first.
func (m *mailbox) to(addr string) ([]mailread.Mail, error) {
	all, err := m.all()
	if err != nil {
		return nil, err
	}
	var out []mailread.Mail
	for _, x := range all {
		if strings.EqualFold(x.To, addr) {
			out = append(out, x)
		}
	}
	return out, nil
}

// backendDoc is the part of the backend's document the gauntlet reads.
type backendDoc struct {
	ID            string     `json:"id"`
	State         string     `json:"state"`
	DeviceID      string     `json:"device_id"`
	CompartmentID int64      `json:"compartment_id"`
	Deadline      *time.Time `json:"deadline"`
}

// register registers a document through the REST API as staff.
// birthDate is the holder's date of birth of the seq-th document: 37 days
// apart, starting again after 600 holders (from 1950 to 2010), so that a
// long run never registers a holder born in the future (the API refuses
// it: a 100-night run stopped at night 61, past its 753rd document).
func birthDate(seq int) string {
	return time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 37*(seq%600)).Format(time.DateOnly)
}

func (g *Gauntlet) register(ctx context.Context, kind, device string) (*Doc, error) {
	g.docSeq++
	d := &Doc{Kind: kind, Device: device, Night: g.night, Slot: -1,
		Birth: birthDate(g.docSeq)}
	d.Number = fmt.Sprintf("C%s%05d", strings.ToUpper(g.w.RunID), g.docSeq)
	d.Email = fmt.Sprintf("holder%05d.%s@example.org", g.docSeq, g.w.RunID)
	if g.rng.IntN(3) == 0 {
		d.Mobile = fmt.Sprintf("+3247%07d", g.docSeq)
	}
	d.Label = kind + " " + d.Number
	body := map[string]any{"kind": kind, "number": d.Number,
		"holder_first_name": "Holder", "holder_last_name": fmt.Sprintf("Nr%d", g.docSeq), "holder_birth_date": d.Birth,
		"language": "en", "email": d.Email, "site_id": SiteID}
	if d.Mobile != "" {
		body["mobile"] = d.Mobile
	}
	var bd backendDoc
	if err := g.w.Staff.Do(ctx, http.MethodPost, "/api/v1/documents", body, &bd); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	d.ID = bd.ID
	g.docs = append(g.docs, d)
	return d, nil
}

func (g *Gauntlet) backendDoc(ctx context.Context, d *Doc) (backendDoc, error) {
	var bd backendDoc
	err := g.w.Staff.Do(ctx, http.MethodGet, "/api/v1/documents/"+url.PathEscape(d.ID), nil, &bd)
	return bd, err
}

// compNumber reads the number of the document's compartment from the
// backend.
func (g *Gauntlet) compNumber(ctx context.Context, d *Doc) (int, error) {
	var n int
	err := g.w.DB.QueryRow(ctx, `SELECT c.number FROM documents d JOIN compartments c ON c.id = d.compartment_id WHERE d.id = $1`, d.ID).Scan(&n)
	return n, err
}

// kioskPost posts to a kiosk; a dead kluisd is an error like any other.
func kioskPost(ctx context.Context, n *Node, path string, in any) (engine.Screen, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return n.Kiosk.Post(ctx, path, in)
}

// waitScreen waits until the kiosk shows one of states.
func waitScreen(ctx context.Context, n *Node, timeout time.Duration, states ...string) (engine.Screen, error) {
	var s engine.Screen
	err := waitFor(ctx, timeout, n.Spec.ID+" kiosk shows "+strings.Join(states, "|"), func(ctx context.Context) (bool, string, error) {
		var err error
		s, err = n.Kiosk.Session(ctx)
		if err != nil {
			return false, "", err
		}
		for _, st := range states {
			if s.State == st {
				return true, s.State, nil
			}
		}
		return false, s.State, nil
	})
	return s, err
}

// waitDoor waits until the door of (board, ch) is open (or shut), and on
// an automaton, when slot >= 0, until that slot is at the hatch first.
func (g *Gauntlet) waitDoor(ctx context.Context, dev string, board, ch int, open bool, timeout time.Duration) error {
	return waitFor(ctx, timeout, fmt.Sprintf("door b%d/c%d of %s open=%t", board, ch, dev, open), func(ctx context.Context) (bool, string, error) {
		st, err := g.w.Sim.State(ctx, dev)
		if err != nil {
			return false, "", err
		}
		for _, c := range st.Channels {
			if c.Board == board && c.Channel == ch {
				return c.DoorOpen == open, fmt.Sprintf("%+v", c), nil
			}
		}
		return false, "no such channel", nil
	})
}

// doorWait bounds the wait for a door to open after a code or a staff
// action (a pulse, or a carousel move and a pulse, and one retry).
const doorWait = 8 * time.Second

// humanPause is how long a person takes to reach in or push a door shut.
const humanPause = 150 * time.Millisecond

// put puts the document's item into the open door (the hatch's slot on an
// automaton: the simulator puts it in the slot at the hatch).
func (g *Gauntlet) put(ctx context.Context, d *Doc, board, ch int) error {
	_, err := g.w.Sim.Channel(ctx, d.Device, board, ch, "put", url.Values{"label": {d.Label}})
	return err
}

// take takes whatever is behind the open door and reports its label.
func (g *Gauntlet) take(ctx context.Context, dev string, board, ch int) (string, error) {
	r, err := g.w.Sim.Channel(ctx, dev, board, ch, "take", nil)
	return r.Item, err
}

func (g *Gauntlet) shut(ctx context.Context, dev string, board, ch int) error {
	_, err := g.w.Sim.Channel(ctx, dev, board, ch, "close", nil)
	return err
}

// staffLogin logs staff in at the kiosk (a session may still be open).
func (g *Gauntlet) staffLogin(ctx context.Context, n *Node) error {
	s, err := kioskPost(ctx, n, "/kiosk/v1/staff/login", map[string]string{"pin": g.w.StaffPIN})
	if err != nil {
		return err
	}
	if s.State != "staff" {
		return fmt.Errorf("staff login at %s: %s (%s)", n.Spec.ID, s.State, s.Message)
	}
	return nil
}

// load is staff loading d at its device's kiosk, with a few attempts when
// the kiosk, the backend or the door is not cooperating. It reports
// whether the item went in.
func (g *Gauntlet) load(ctx context.Context, d *Doc) bool {
	n := g.w.Node(d.Device)
	for attempt := 0; attempt < 4 && !d.Placed; attempt++ {
		if attempt > 0 {
			g.sleep(ctx, time.Second)
			g.waitNodeUp(ctx, n)
		}
		if err := g.staffLogin(ctx, n); err != nil {
			g.w.Logf("night %d: %s: %v", g.night, d.Number, err)
			continue
		}
		// The kiosk pulses the compartment before the gauntlet learns which
		// one it is (compNumber asks the backend, slow on a loaded
		// machine): the load's grant starts when the load was asked for.
		asked := time.Now()
		s, err := kioskPost(ctx, n, "/kiosk/v1/staff/load", map[string]string{"document_number": d.Number})
		if err != nil || (s.State != "loading" && s.State != "presenting") {
			g.w.Logf("night %d: load %s at %s: %s %s %v", g.night, d.Number, n.Spec.ID, s.State, s.Message, err)
			_, _ = kioskPost(ctx, n, "/kiosk/v1/staff/logout", nil)
			continue
		}
		comp, err := g.compNumber(ctx, d)
		if err != nil {
			g.w.Logf("night %d: load %s: no compartment: %v", g.night, d.Number, err)
			continue
		}
		d.Comp = comp
		board, ch, slot := d.where(n)
		gr := g.ledger.openSince(d.Device, board, ch, "load "+d.Number, asked)
		if err := g.waitDoor(ctx, d.Device, board, ch, true, doorWait); err != nil {
			g.ledger.close(gr)
			g.w.Logf("night %d: load %s: %v", g.night, d.Number, err)
			_, _ = kioskPost(ctx, n, "/kiosk/v1/staff/logout", nil)
			continue
		}
		g.sleep(ctx, humanPause)
		if err := g.put(ctx, d, board, ch); err == nil {
			d.Placed, d.Board, d.Channel, d.Slot = true, board, ch, slot
			if slot >= 0 {
				d.Channel = -1
			}
		} else {
			g.w.Logf("night %d: put %s: %v", g.night, d.Number, err)
		}
		g.sleep(ctx, humanPause)
		_ = g.shut(ctx, d.Device, board, ch)
		_, _ = waitScreen(ctx, n, 10*time.Second, "loaded", "idle", "staff")
		g.ledger.close(gr)
		_, _ = kioskPost(ctx, n, "/kiosk/v1/staff/logout", nil)
	}
	if d.Placed {
		g.stats.Loaded++
	}
	return d.Placed
}

// reissue is staff giving a citizen whose code did not open the door new
// codes (the old code may have been used up by a pickup cut short).
func (g *Gauntlet) reissue(ctx context.Context, d *Doc) bool {
	old, err := g.mail.to(d.Email)
	if err != nil {
		return false
	}
	if err := g.w.Staff.Do(ctx, http.MethodPost, "/api/v1/documents/"+url.PathEscape(d.ID)+"/reissue", nil, nil); err != nil {
		g.w.Logf("night %d: reissue %s: %v", g.night, d.Number, err)
		return false
	}
	g.stats.Reissued++
	d.Failed = 0
	err = waitFor(ctx, 20*time.Second, "new codes for "+d.Number, func(context.Context) (bool, string, error) {
		ms, err := g.mail.to(d.Email)
		if err != nil {
			return false, "", err
		}
		for _, m := range ms[len(old):] {
			if m.QR != "" && m.PIN != "" {
				d.QR, d.PIN = m.QR, m.PIN
				return true, "", nil
			}
		}
		return false, "", nil
	})
	return err == nil
}

// readCodes waits for the ready e-mail with QR and PIN.
func (g *Gauntlet) readCodes(ctx context.Context, d *Doc, timeout time.Duration) bool {
	err := waitFor(ctx, timeout, "ready e-mail to "+d.Email, func(context.Context) (bool, string, error) {
		ms, err := g.mail.to(d.Email)
		if err != nil {
			return false, "", err
		}
		for i := len(ms) - 1; i >= 0; i-- {
			if ms[i].QR != "" && ms[i].PIN != "" {
				d.QR, d.PIN = ms[i].QR, ms[i].PIN
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("%d messages", len(ms)), nil
	})
	return err == nil
}

// wrongPIN returns a PIN of the same length that is not pin.
func wrongPIN(pin string) string {
	b := []byte(pin)
	for i := range b {
		b[i] = '0' + (b[i]-'0'+1)%10
	}
	return string(b)
}

// Citizen behaviours at the door.
const (
	takeAndClose = iota // the normal pickup
	leaveOpen           // takes it, forgets the door for a while
	leaveBehind         // opens, closes without taking, comes back
)

// collect is a citizen collecting d with a QR code or PIN, trying again a
// few times when the kiosk or the door does not cooperate (faults). It
// reports whether the item was taken.
func (g *Gauntlet) collect(ctx context.Context, d *Doc, usePIN bool, behaviour int, during func(context.Context)) bool {
	n := g.w.Node(d.Device)
	board, ch, _ := d.where(n)
	req := map[string]string{"qr": d.QR}
	if usePIN {
		req = map[string]string{"pin": d.PIN, "birth_date": d.Birth}
	}
	for attempt := 0; attempt < 6 && !d.Taken; attempt++ {
		if attempt > 0 {
			g.sleep(ctx, 1500*time.Millisecond)
			g.waitNodeUp(ctx, n)
		}
		gr := g.ledger.open(d.Device, board, ch, "pickup "+d.Number)
		var s engine.Screen
		var err error
		if during != nil {
			// A fault strikes while the pickup runs (a kill between verify
			// and intent, or during the pulse).
			done := make(chan struct{})
			go func() { defer close(done); s, err = kioskPost(ctx, n, "/kiosk/v1/pickup", req) }()
			during(ctx)
			during = nil
			<-done
		} else {
			s, err = kioskPost(ctx, n, "/kiosk/v1/pickup", req)
		}
		if err != nil || (s.State != "open" && s.State != "presenting") {
			// The door may still have opened (a restarted kluisd finishing
			// its operation is not allowed to pulse again, but look).
			if derr := g.waitDoor(ctx, d.Device, board, ch, true, 1500*time.Millisecond); derr != nil {
				g.ledger.close(gr)
				g.w.Logf("night %d: pickup %s at %s: %s %s %v", g.night, d.Number, n.Spec.ID, s.State, s.Message, err)
				if s.State == "already_collected" || s.State == "expired" {
					return false
				}
				if s.State == "locked_out" {
					// PIN entry paused: the citizen scans the QR code instead.
					req = map[string]string{"qr": d.QR}
				}
				continue
			}
		}
		if err := g.waitDoor(ctx, d.Device, board, ch, true, doorWait); err != nil {
			g.ledger.close(gr)
			g.w.Logf("night %d: pickup %s: %v", g.night, d.Number, err)
			continue
		}
		g.sleep(ctx, humanPause)
		switch behaviour {
		case leaveBehind:
			_ = g.shut(ctx, d.Device, board, ch)
			g.stats.LeftBehind++
			behaviour = takeAndClose // comes back for it
			_, _ = waitScreen(ctx, n, 10*time.Second, "not_collected", "idle")
			g.ledger.close(gr)
			continue
		default:
			item, err := g.take(ctx, d.Device, board, ch)
			if err == nil && item == d.Label {
				d.Taken = true
			} else if err == nil && item != "" {
				g.violate("wrong item", fmt.Sprintf("%s: took %q from %s b%d/c%d, want %q", d.Number, item, d.Device, board, ch, d.Label))
			}
		}
		if behaviour == leaveOpen {
			g.stats.LeftOpen++
			g.sleep(ctx, 2500*time.Millisecond) // past door_left_open
		}
		g.sleep(ctx, humanPause)
		_ = g.shut(ctx, d.Device, board, ch)
		_, _ = waitScreen(ctx, n, 10*time.Second, "done", "idle", "not_collected")
		g.ledger.close(gr)
	}
	if !d.Taken {
		d.Failed++
	}
	if d.Taken {
		g.stats.Pickups++
		if usePIN {
			g.stats.PINPickups++
		} else {
			g.stats.QRPickups++
		}
	}
	return d.Taken
}

// wrongCode is a citizen typing a wrong PIN (or a made-up QR code): the
// door must stay shut.
func (g *Gauntlet) wrongCode(ctx context.Context, d *Doc) {
	n := g.w.Node(d.Device)
	req := map[string]string{"pin": wrongPIN(d.PIN), "birth_date": d.Birth}
	if g.rng.IntN(2) == 0 {
		req = map[string]string{"qr": "KL1." + randomHex(20)}
	}
	_, _ = kioskPost(ctx, n, "/kiosk/v1/pickup", req)
	g.stats.WrongCodes++
	_, _ = waitScreen(ctx, n, 5*time.Second, "idle", "wrong_code", "invalid_code", "locked_out")
}

// retrieve is staff taking an expired document back.
func (g *Gauntlet) retrieve(ctx context.Context, d *Doc) bool {
	n := g.w.Node(d.Device)
	board, ch, _ := d.where(n)
	for attempt := 0; attempt < 4 && !d.Retrieved; attempt++ {
		if attempt > 0 {
			g.sleep(ctx, time.Second)
			g.waitNodeUp(ctx, n)
		}
		if err := g.staffLogin(ctx, n); err != nil {
			continue
		}
		gr := g.ledger.open(d.Device, board, ch, "retrieve "+d.Number)
		s, err := kioskPost(ctx, n, "/kiosk/v1/staff/retrieve", map[string]string{"document_number": d.Number})
		if err != nil || (s.State != "retrieving" && s.State != "open" && s.State != "presenting") {
			if derr := g.waitDoor(ctx, d.Device, board, ch, true, 1500*time.Millisecond); derr != nil {
				g.ledger.close(gr)
				g.w.Logf("night %d: retrieve %s: %s %s %v", g.night, d.Number, s.State, s.Message, err)
				_, _ = kioskPost(ctx, n, "/kiosk/v1/staff/logout", nil)
				continue
			}
		}
		if err := g.waitDoor(ctx, d.Device, board, ch, true, doorWait); err != nil {
			g.ledger.close(gr)
			_, _ = kioskPost(ctx, n, "/kiosk/v1/staff/logout", nil)
			continue
		}
		g.sleep(ctx, humanPause)
		if item, err := g.take(ctx, d.Device, board, ch); err == nil && item == d.Label {
			d.Retrieved = true
		}
		g.sleep(ctx, humanPause)
		_ = g.shut(ctx, d.Device, board, ch)
		_, _ = waitScreen(ctx, n, 10*time.Second, "retrieved", "idle", "staff")
		g.ledger.close(gr)
		_, _ = kioskPost(ctx, n, "/kiosk/v1/staff/logout", nil)
	}
	if d.Retrieved {
		g.stats.Retrieved++
	}
	return d.Retrieved
}

// force forces an empty compartment's door open and shuts it again.
func (g *Gauntlet) force(ctx context.Context, n *Node, board, ch int) {
	if _, err := g.w.Sim.Channel(ctx, n.Spec.ID, board, ch, "force", nil); err != nil {
		return
	}
	g.stats.Forced++
	g.sleep(ctx, 500*time.Millisecond)
	_ = g.shut(ctx, n.Spec.ID, board, ch)
}

// waitNodeUp waits (bounded) until the node's kluisd answers its kiosk.
func (g *Gauntlet) waitNodeUp(ctx context.Context, n *Node) {
	_ = waitFor(ctx, 30*time.Second, n.Spec.ID+" kiosk up", func(ctx context.Context) (bool, string, error) {
		h, err := n.Kluisd.Health(ctx)
		return err == nil && h.Ready, "", err
	})
}

func (g *Gauntlet) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
