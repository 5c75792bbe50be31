package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"kluis/backend/api"
	"kluis/backend/audit"
	"kluis/backend/lifecycle"
	"kluis/backend/notify"
	"kluis/backend/service"
	"kluis/backend/store"
)

// home sends people to where their role starts: documents for counter
// staff and admins, the fleet for technicians.
func (w *Web) home(rw http.ResponseWriter, q *req) error {
	if q.may("documents.list") {
		http.Redirect(rw, q.r, Prefix+"documents", http.StatusSeeOther)
		return nil
	}
	http.Redirect(rw, q.r, Prefix+"devices", http.StatusSeeOther)
	return nil
}

// docRow is a document in a list.
type docRow struct {
	store.Document
	Device string
	Comp   int
}

type documentsData struct {
	Query    string
	Searched bool
	Results  []docRow
	Total    int
	Soon     []docRow
	Expired  []docRow
	Reserved []docRow
	// Unplaced are registered documents without a compartment (none was
	// free or fit when they were registered, or it was given back): they
	// wait for staff to reserve one, listed so that none is forgotten.
	Unplaced []docRow
	SoonDays int
	// Day is the day whose registered documents the results list
	// (?day=2026-12-06, in the console's time zone; "" for none), Days
	// the links to the last week's days.
	Day, DayText string
	Days         []dayLink
	// Undelivered are the messages to holders that failed (waiting for a
	// retry, or given up: the counter hands over a slip or new codes).
	Undelivered []notify.Undelivered
}

// dayLink is a link to the documents registered on one day.
type dayLink struct {
	Value, Text string
	Current     bool
}

// linkedDays is how many days back the documents page links to (today
// included): "yesterday's documents" one click away, a week's at most.
const linkedDays = 7

// soonWithin is what "expires soon" means on the documents page.
const soonWithin = 48 * time.Hour

func (w *Web) documents(rw http.ResponseWriter, q *req) error {
	ctx := q.r.Context()
	d := documentsData{Query: strings.TrimSpace(q.r.URL.Query().Get("q")), SoonDays: int(soonWithin.Hours() / 24)}
	if len(d.Query) > 100 {
		return fail(http.StatusBadRequest, "error.bad_request")
	}
	comps, err := w.compNumbers(ctx)
	if err != nil {
		return err
	}
	devs, err := w.o.Service.ListDevices(ctx, "")
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, d := range devs {
		names[d.ID] = displayName(d)
	}
	list := func(f store.DocumentFilter) ([]docRow, int, error) {
		pg, err := w.o.Service.ListDocuments(ctx, f)
		if err != nil {
			return nil, 0, err
		}
		out := make([]docRow, 0, len(pg.Documents))
		for _, doc := range pg.Documents {
			out = append(out, docRow{Document: doc, Device: names[doc.DeviceID], Comp: comps[doc.CompartmentID]})
		}
		return out, pg.Total, nil
	}
	now := w.o.Clock().In(w.o.Location)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, w.o.Location)
	var from, before *time.Time
	if v := q.r.URL.Query().Get("day"); v != "" {
		day, err := time.ParseInLocation(time.DateOnly, v, w.o.Location)
		if err != nil {
			return fail(http.StatusBadRequest, "error.bad_request")
		}
		next := day.AddDate(0, 0, 1)
		from, before, d.Day, d.DayText = &day, &next, day.Format(time.DateOnly), day.Format(q.t.S("fmt.date"))
	}
	for i := 0; i < linkedDays; i++ {
		day := today.AddDate(0, 0, -i)
		l := dayLink{Value: day.Format(time.DateOnly), Text: day.Format(q.t.S("fmt.date"))}
		switch i {
		case 0:
			l.Text = q.t.S("documents.day_today")
		case 1:
			l.Text = q.t.S("documents.day_yesterday")
		}
		l.Current = l.Value == d.Day
		d.Days = append(d.Days, l)
	}
	if d.Query != "" || d.Day != "" {
		d.Searched = true
		limit := 50
		if d.Day != "" {
			limit = 200 // a day's batch
		}
		if d.Results, d.Total, err = list(store.DocumentFilter{Query: d.Query, CreatedFrom: from, CreatedBefore: before, Limit: limit}); err != nil {
			return err
		}
	}
	soon := w.o.Clock().Add(soonWithin)
	if d.Soon, _, err = list(store.DocumentFilter{States: []lifecycle.State{lifecycle.Loaded, lifecycle.Notified},
		DeadlineBefore: &soon, ByDeadline: true, Limit: 100}); err != nil {
		return err
	}
	if d.Expired, _, err = list(store.DocumentFilter{State: lifecycle.Expired, ByDeadline: true, Limit: 200}); err != nil {
		return err
	}
	if d.Reserved, _, err = list(store.DocumentFilter{State: lifecycle.Reserved, Limit: 100}); err != nil {
		return err
	}
	if d.Unplaced, _, err = list(store.DocumentFilter{State: lifecycle.Registered, Limit: 100}); err != nil {
		return err
	}
	if d.Undelivered, err = notify.ListUndelivered(ctx, w.o.Pool, 100); err != nil {
		return err
	}
	w.render(rw, q, http.StatusOK, "documents", q.t.S("documents.title"), d)
	return nil
}

// compNumbers maps compartment ids to the numbers people see.
func (w *Web) compNumbers(ctx context.Context) (map[int64]int, error) {
	rows, err := w.o.Pool.Query(ctx, `SELECT id, number FROM compartments`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// registerForm is the register page's form, as typed.
type registerForm struct {
	Kind, Number, FirstName, LastName, Language string
	// Birth is the date of birth as typed: day, month, year.
	Birth                                    dateInput
	Contact, Email, Mobile, SiteID, DeviceID string
	WantsLow                                 bool
}

type siteOption struct {
	store.Site
	Devices []deviceOption
}

type registerData struct {
	Form   registerForm
	Errors map[string]string
	// BirthBad marks the date of birth's fields to correct.
	BirthBad dateProblem
	Summary  []fieldMessage
	Kinds    []store.DocumentKind
	Sites    []siteOption
	LowMax   int
	// UnfitDevice, UnfitProblems: the device chosen by hand cannot serve
	// now (what is wrong, in words); the form asks for an explicit
	// confirmation (confirm_unfit naming the device) before it registers.
	UnfitDevice   *store.Device
	UnfitProblems string
	// Duplicate links to what is already registered under the number
	// typed (the document itself, or the search for the number when it
	// cannot say which): a card scanned twice in a batch is one click
	// from its page, not a dead end.
	Duplicate string
}

// fieldMessage is a line of the error summary: Field is the id (after
// "f-") of the input it links to.
type fieldMessage struct{ Field, Text string }

func (w *Web) registerData(ctx context.Context, q *req, f registerForm) (registerData, error) {
	d := registerData{Form: f, Errors: map[string]string{}, Kinds: store.DocumentKinds(), LowMax: w.o.Service.LowMaxHeightCM()}
	sites, err := w.o.Service.ListSites(ctx)
	if err != nil {
		return d, err
	}
	devs, err := w.o.Service.ListDevices(ctx, "")
	if err != nil {
		return d, err
	}
	opts, err := w.deviceOptions(ctx, q, devs)
	if err != nil {
		return d, err
	}
	for _, s := range sites {
		so := siteOption{Site: s}
		for _, o := range opts {
			if o.SiteID == s.ID {
				so.Devices = append(so.Devices, o)
			}
		}
		d.Sites = append(d.Sites, so)
	}
	return d, nil
}

func (w *Web) registerPage(rw http.ResponseWriter, q *req) error {
	// No way of reaching the holder is chosen in advance: the holder
	// says (e-mail, text message, or only the slip), and a form sent
	// without a choice asks for one.
	f := registerForm{Language: q.lang, Kind: string(store.EID)}
	d, err := w.registerData(q.r.Context(), q, f)
	if err != nil {
		return err
	}
	if len(d.Sites) > 0 {
		d.Form.SiteID = d.Sites[0].ID
	}
	// The next document of a batch (the link after a registration): the
	// same site and device, when they still exist.
	for _, s := range d.Sites {
		if s.ID != q.r.URL.Query().Get("site_id") {
			continue
		}
		d.Form.SiteID = s.ID
		for _, o := range s.Devices {
			if o.ID == q.r.URL.Query().Get("device_id") {
				d.Form.DeviceID = o.ID
			}
		}
	}
	w.render(rw, q, http.StatusOK, "register", q.t.S("register.title"), d)
	return nil
}

// nameTextKey is the message of a holder's name that is filled in but
// refused (too long, or holding a character that cannot be seen).
var nameTextKey = map[string]string{"holder_first_name": "register.name_text.first", "holder_last_name": "register.name_text.last"}

// registerFields are the form's fields in page order, for the error
// summary.
var registerFields = []string{"kind", "number", "holder_first_name", "holder_last_name", "holder_birth_date", "language",
	"contact", "email", "mobile", "site_id", "device_id"}

func (w *Web) register(rw http.ResponseWriter, q *req) error {
	ctx := q.r.Context()
	pf := q.r.PostForm
	f := registerForm{Kind: pf.Get("kind"), Number: pf.Get("number"), FirstName: pf.Get("holder_first_name"),
		LastName: pf.Get("holder_last_name"), Language: pf.Get("language"),
		Birth:   dateInput{Day: pf.Get("holder_birth_date_day"), Month: pf.Get("holder_birth_date_month"), Year: pf.Get("holder_birth_date_year")},
		Contact: pf.Get("contact"), Email: strings.TrimSpace(pf.Get("email")), Mobile: strings.TrimSpace(pf.Get("mobile")),
		SiteID: pf.Get("site_id"), DeviceID: pf.Get("device_id"), WantsLow: pf.Get("wants_low") == "yes"}
	// bad maps the fields to correct to their message's key ("" for
	// register.invalid.<field>).
	bad := map[string]string{}
	n := store.NewDocument{Kind: store.DocumentKind(f.Kind), Number: f.Number, FirstName: f.FirstName, LastName: f.LastName,
		Language: f.Language, WantsLow: f.WantsLow, SiteID: f.SiteID}
	switch f.Contact {
	case "email":
		n.Email = f.Email
		if f.Email == "" {
			bad["email"] = ""
		}
	case "mobile":
		n.Mobile = f.Mobile
		if f.Mobile == "" {
			bad["mobile"] = ""
		}
	case "none":
		n.NoContact = true
	default:
		bad["contact"] = ""
	}
	now := w.o.Clock().In(w.o.Location) // a date of birth is judged by the day here
	birth, birthBad := parseBirthDate(f.Birth, now)
	if birthBad != nil {
		bad["holder_birth_date"] = birthBad.Key
	} else {
		n.BirthDate = &birth
	}
	if err := n.Validate(now); err != nil {
		var ve *store.ValidationError
		if !errors.As(err, &ve) {
			return err
		}
		for _, fe := range ve.Fields {
			field := fe.Field
			if field == "no_contact" {
				field = "contact"
			}
			if field == "email" && f.Contact != "email" {
				field = "contact"
			}
			if _, ok := bad[field]; !ok {
				bad[field] = ""
			}
		}
		// A name that is filled in but refused (too long, or holding
		// what cannot be seen: a direction override, a zero-width
		// space, often pasted along) is told so, not "fill in".
		for field, v := range map[string]string{"holder_first_name": f.FirstName, "holder_last_name": f.LastName} {
			if key, ok := bad[field]; ok && key == "" && strings.TrimSpace(v) != "" {
				bad[field] = nameTextKey[field]
			}
		}
		// So is an address that reads as valid but holds a character
		// nobody sees or a look-alike letter of another alphabet.
		if key, ok := bad["email"]; ok && key == "" && store.EmailDisguised(f.Email) {
			bad["email"] = "register.email_text"
		}
	}
	var dev store.Device
	if f.DeviceID != "" {
		var err error
		dev, err = w.o.Service.GetDevice(ctx, f.DeviceID)
		if errors.Is(err, store.ErrNotFound) || err == nil && dev.SiteID != f.SiteID {
			bad["device_id"] = ""
		} else if err != nil {
			return err
		}
	}
	if len(bad) > 0 {
		d, err := w.registerData(ctx, q, f)
		if err != nil {
			return err
		}
		if birthBad != nil {
			d.BirthBad = *birthBad
		} else if _, ok := bad["holder_birth_date"]; ok {
			d.BirthBad = dateProblem{Day: true, Month: true, Year: true}
		}
		for _, field := range registerFields {
			key, ok := bad[field]
			if !ok {
				continue
			}
			if key == "" {
				key = "register.invalid." + field
			}
			msg := q.t.S(key)
			d.Errors[field] = msg
			anchor := field
			if field == "holder_birth_date" {
				anchor = d.BirthBad.Anchor(field)
			}
			d.Summary = append(d.Summary, fieldMessage{Field: anchor, Text: msg})
		}
		w.render(rw, q, http.StatusBadRequest, "register", q.t.S("register.title"), d)
		return nil
	}
	if f.DeviceID != "" && pf.Get("confirm_unfit") != f.DeviceID {
		// Chosen by hand, a device the automatic choice would skip:
		// asked, nothing registered until confirmed for this device.
		unfit, err := w.unfitProblems(ctx, q, f.DeviceID)
		if err != nil {
			return err
		}
		if unfit != "" {
			d, err := w.registerData(ctx, q, f)
			if err != nil {
				return err
			}
			d.UnfitDevice, d.UnfitProblems = &dev, unfit
			w.render(rw, q, http.StatusOK, "register", q.t.S("register.title"), d)
			return nil
		}
	}
	doc, err := w.o.Service.RegisterDocument(ctx, q.actor(), n)
	if errors.Is(err, store.ErrConflict) {
		d, derr := w.registerData(ctx, q, f)
		if derr != nil {
			return derr
		}
		msg := q.t.S("register.duplicate")
		d.Errors["number"] = msg
		d.Summary = []fieldMessage{{Field: "number", Text: msg}}
		d.Duplicate = Prefix + "documents?q=" + url.QueryEscape(f.Number)
		if same, err := w.o.Service.FindActiveByNumber(ctx, f.Number, ""); err == nil && string(same.Kind) == f.Kind {
			d.Duplicate = Prefix + "documents/" + same.ID
		} else if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			return err
		}
		w.render(rw, q, http.StatusConflict, "register", q.t.S("register.title"), d)
		return nil
	}
	if err != nil {
		return err
	}
	// On a refusal Reserve answers a zero document: keep doc's id for the
	// redirect to the registered document.
	_, err = w.o.Service.Reserve(ctx, q.actor(), doc.ID, service.ReserveOptions{DeviceID: f.DeviceID})
	// The next document of a batch goes to the same site and device.
	next := url.Values{"site_id": {f.SiteID}}
	if f.DeviceID != "" {
		next.Set("device_id", f.DeviceID)
	}
	if errors.Is(err, service.ErrNoOnlineDevice) {
		w.redirectNext(rw, q.r, Prefix+"documents/"+doc.ID, "notice.no_online_device", 0, next)
		return nil
	}
	if errors.Is(err, service.ErrNoCompartment) {
		w.redirectNext(rw, q.r, Prefix+"documents/"+doc.ID, "notice.no_compartment", 0, next)
		return nil
	}
	if err != nil {
		return err
	}
	w.redirectNext(rw, q.r, Prefix+"documents/"+doc.ID, "notice.registered", 0, next)
	return nil
}

// step is one line of a document's timeline.
type step struct {
	At     time.Time
	Text   string
	Who    string
	Detail string
}

// deviceOption is a device in a form's list, with what is wrong with it
// now (Problems, in words; empty when it is fit to serve).
type deviceOption struct {
	store.Device
	Problems string
}

// Label is the option's text: the name, out of service or what is wrong.
func (o deviceOption) Label(t *tr) string {
	switch {
	case o.OutOfService != nil:
		return t.F("register.device_out", "device", displayName(o.Device))
	case o.Problems != "":
		return t.F("device.unfit_option", "device", displayName(o.Device), "problems", o.Problems)
	}
	return displayName(o.Device)
}

// problems says in words what is wrong with a device now (the warnings of
// service.Health), "" when it is fit to serve.
func problems(t *tr, h service.Health) string {
	var out []string
	for _, w := range h.Warnings() {
		switch w.Code {
		case "device_never_connected":
			out = append(out, t.S("status.never"))
		case "device_offline":
			out = append(out, t.S("status.offline"))
		case "device_late":
			out = append(out, t.S("status.late"))
		case "device_alarm":
			out = append(out, t.S("alarm."+string(w.Alarm)))
		}
	}
	return strings.Join(out, ", ")
}

// unfitProblems says in words what is wrong now with the device id ("":
// it is fit to serve).
func (w *Web) unfitProblems(ctx context.Context, q *req, id string) (string, error) {
	h, err := w.o.Service.DeviceHealth(ctx, id)
	if err != nil {
		return "", err
	}
	return problems(q.t, h[id]), nil
}

// deviceOptions lists devs with what is wrong with each now.
func (w *Web) deviceOptions(ctx context.Context, q *req, devs []store.Device) ([]deviceOption, error) {
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	health, err := w.o.Service.DeviceHealth(ctx, ids...)
	if err != nil {
		return nil, err
	}
	out := make([]deviceOption, len(devs))
	for i, d := range devs {
		out[i] = deviceOption{Device: d, Problems: problems(q.t, health[d.ID])}
	}
	return out, nil
}

type documentData struct {
	Doc     store.Document
	Site    store.Site
	Device  *store.Device
	Comp    *store.Compartment
	Devices []deviceOption
	// Unfit says what is wrong now with the device a reserved document
	// is in ("": nothing): staff chose it by hand, or it failed since.
	Unfit string
	// ReserveRefused is the reservation form's message when no
	// compartment was found, ReserveDevice the device chosen, kept.
	ReserveRefused, ReserveDevice string
	// ConfirmUnfit is the device chosen by hand that cannot serve now
	// (UnfitProblems: what is wrong): the page asks before it reserves.
	ConfirmUnfit  *store.Device
	UnfitProblems string
	Timeline      []step
	// Undelivered are this document's messages that did not reach its
	// holder: waiting for a retry, or given up (until pruned).
	Undelivered []notify.Undelivered
	Contact     string
	SlipOnly    bool
	CanReserve  bool
	CanUnres    bool
	CanCancel   bool
	CanRenotify bool
	CanReissue  bool
	CanSlip     bool
	// CanRetrieve, CanHandOver: the document can be recorded as back at
	// the counter (retrieve) or handed over to its holder there
	// (collect): taken out of its compartment without the kiosk's staff
	// menu, which records it by itself.
	CanRetrieve, CanHandOver bool
	// ConfirmAtCounter is the counter action asked for ("retrieve",
	// "collect"; "" none): it frees the compartment, stops the codes and
	// cannot be undone, so the page asks first and the confirmation posts.
	ConfirmAtCounter string
	// ConfirmReissue asks before new codes are made (the old ones stop
	// working): the button leads here, the confirmation posts.
	ConfirmReissue bool
	// ReissueOffline: the document's device is offline now, so the old
	// code still opens the compartment there until it reconnects; the
	// re-issue hint and confirmation say so.
	ReissueOffline bool
	// ConfirmCancel asks before the pickup is cancelled (a final state),
	// with the reason typed (CancelReason) kept for the confirmed post.
	ConfirmCancel bool
	CancelReason  string
	// Unclaimed: the holder's personal data was erased while the document
	// was still open (service.PurgeUnclaimed: never handed over within the
	// retention), not after it was closed.
	Unclaimed bool
	// TakeBack: such a document is still behind its door; the page says
	// to take it back and never to hand it over.
	TakeBack bool
}

func (w *Web) document(rw http.ResponseWriter, q *req) error {
	ctx := q.r.Context()
	doc, err := w.o.Service.GetDocument(ctx, q.r.PathValue("id"))
	if err != nil {
		return err
	}
	d := documentData{Doc: doc, SlipOnly: doc.Email == "" && doc.Mobile == "" && doc.PurgedAt == nil,
		Unclaimed: doc.PurgedAt != nil && (doc.ClosedAt == nil || doc.PurgedAt.Before(*doc.ClosedAt))}
	if d.Site, err = w.o.Service.GetSite(ctx, doc.SiteID); err != nil {
		return err
	}
	if doc.DeviceID != "" {
		dev, err := w.o.Service.GetDevice(ctx, doc.DeviceID)
		if err != nil {
			return err
		}
		d.Device = &dev
		for i := range dev.Compartments {
			if dev.Compartments[i].ID == doc.CompartmentID {
				d.Comp = &dev.Compartments[i]
			}
		}
	}
	if doc.State == lifecycle.Registered {
		devs, err := w.o.Service.ListDevices(ctx, doc.SiteID)
		if err != nil {
			return err
		}
		if d.Devices, err = w.deviceOptions(ctx, q, devs); err != nil {
			return err
		}
	}
	if doc.State == lifecycle.Reserved && d.Device != nil {
		if d.Unfit, err = w.unfitProblems(ctx, q, d.Device.ID); err != nil {
			return err
		}
	}
	if q.reserveRefused != "" {
		d.ReserveRefused, d.ReserveDevice = q.t.F(q.reserveRefused, "site", d.Site.Name), q.reserveDevice
	}
	if q.unfitAsked && doc.State == lifecycle.Registered {
		for _, o := range d.Devices {
			if o.ID == q.reserveDevice {
				d.ConfirmUnfit, d.UnfitProblems, d.ReserveDevice = &o.Device, q.unfitProblems, q.reserveDevice
			}
		}
	}
	st := doc.State
	live := st.AwaitsHolder()
	// A document whose holder's data was erased cannot be reserved
	// (service.Reserve refuses: nobody could be told); it is cancelled,
	// and registered again if it turns up.
	d.CanReserve = st == lifecycle.Registered && doc.PurgedAt == nil && q.may("documents.reserve")
	d.CanUnres = st == lifecycle.Reserved && q.may("documents.unreserve")
	d.CanCancel = (st == lifecycle.Registered || st == lifecycle.Reserved) && q.may("documents.cancel")
	// Nor, still behind its door, is it handed over at the counter,
	// reminded of, given new codes or a pickup slip (service.ErrPurged:
	// nobody can show it is theirs); staff take it back.
	erased := doc.PurgedAt != nil
	d.TakeBack = erased && st.InCompartment()
	d.CanRenotify = st == lifecycle.Notified && !d.SlipOnly && !erased && q.may("documents.renotify")
	d.CanReissue = live && !erased && q.may("documents.reissue")
	d.CanSlip = live && !erased && q.may("documents.slip")
	d.ConfirmReissue = d.CanReissue && q.r.URL.Query().Get("confirm") == "reissue"
	d.CanRetrieve = st.InCompartment() && q.may("documents.retrieve")
	d.CanHandOver = st.InCompartment() && !erased && q.may("documents.collect")
	switch c := q.r.URL.Query().Get("confirm"); {
	case c == "retrieve" && d.CanRetrieve, c == "collect" && d.CanHandOver:
		d.ConfirmAtCounter = c
	}
	d.ReissueOffline = d.CanReissue && !w.deviceOnline(ctx, doc.DeviceID)
	q.slipOnly = d.SlipOnly
	d.ConfirmCancel, d.CancelReason = d.CanCancel && q.cancelAsked, q.cancelReason
	if d.Device != nil && d.Comp != nil {
		q.where = q.t.F("document.in", "device", displayName(*d.Device), "n", d.Comp.Number) + " (" + d.Site.Name + ")"
	}
	if d.Timeline, err = w.documentTimeline(ctx, q, doc); err != nil {
		return err
	}
	if d.Undelivered, err = notify.ListUndeliveredOf(ctx, w.o.Pool, doc.ID); err != nil {
		return err
	}
	status := http.StatusOK
	switch {
	case q.reserveBad:
		status = http.StatusBadRequest
	case d.ReserveRefused != "":
		status = http.StatusConflict
	}
	number := doc.Number
	if number == "" {
		number = q.t.S("doc.purged") // erased, as the lists say
	}
	w.render(rw, q, status, "document", q.t.F("document.title", "number", number), d)
	return nil
}

// documentTimeline merges the history, the notifications and, for those
// who may read the audit trail, its records about the document, newest
// first.
func (w *Web) documentTimeline(ctx context.Context, q *req, doc store.Document) ([]step, error) {
	hist, err := w.o.Service.History(ctx, doc.ID)
	if err != nil {
		return nil, err
	}
	notes, err := notify.History(ctx, w.o.Pool, doc.ID)
	if err != nil {
		return nil, err
	}
	var recs []audit.Record
	if q.may("audit.view") {
		if recs, err = audit.List(ctx, w.o.Pool, audit.ListOptions{Subject: "document:" + doc.ID, Limit: 1000}); err != nil {
			return nil, err
		}
	}
	actors := []string{}
	for _, h := range hist {
		actors = append(actors, h.Actor)
	}
	for _, r := range recs {
		actors = append(actors, r.Actor)
	}
	names, err := w.actorNames(ctx, q, actors)
	if err != nil {
		return nil, err
	}
	var out []step
	for _, h := range hist {
		s := step{At: h.At, Text: q.t.S("history." + string(h.Action)), Who: names[h.Actor]}
		if h.Action == lifecycle.Collect && strings.HasPrefix(h.Actor, "user:") {
			// Staff recorded it (the console's or the API's collect): the
			// holder got it at the counter, not from the device, whose
			// pickups kluisd reports (actor device:<id>).
			s.Text = q.t.S("history.collect_counter")
		}
		if h.Note != "" && h.Action == lifecycle.Cancel {
			s.Detail = h.Note
		}
		out = append(out, s)
	}
	if doc.PurgedAt != nil {
		out = append(out, step{At: *doc.PurgedAt, Text: q.t.S("history.purge"), Who: q.t.S("actor.system")})
	}
	for _, n := range notes {
		out = append(out, step{At: n.At, Text: q.t.F("notification.line", "channel", q.t.S("channel."+n.Channel),
			"status", q.t.S("notification."+n.Status)), Who: q.t.S("actor.system")})
	}
	for _, r := range recs {
		if strings.HasPrefix(r.Action, "document.") && r.Action != "document.slip_viewed" {
			continue // the history above says it in words
		}
		out = append(out, step{At: r.At, Text: q.t.F("audit.line", "action", r.Action), Who: names[r.Actor]})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out, nil
}

// actorNames turns audit actors into what people read: user names,
// device ids, "Kluis" for the system.
func (w *Web) actorNames(ctx context.Context, q *req, actors []string) (map[string]string, error) {
	out := map[string]string{}
	var ids []int64
	for _, a := range actors {
		switch {
		case a == "system":
			out[a] = q.t.S("actor.system")
		case strings.HasPrefix(a, "device:"):
			out[a] = q.t.F("actor.device", "device", strings.TrimPrefix(a, "device:"))
		case strings.HasPrefix(a, "user:"):
			if id, err := strconv.ParseInt(strings.TrimPrefix(a, "user:"), 10, 64); err == nil {
				ids = append(ids, id)
			}
			out[a] = a
		default:
			out[a] = a
		}
	}
	if len(ids) > 0 {
		rows, err := w.o.Pool.Query(ctx, `SELECT id, username FROM auth_users WHERE id = ANY($1)`, ids)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				return nil, err
			}
			out["user:"+strconv.FormatInt(id, 10)] = name
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// docActions are the document actions the console posts, with the notice
// shown after them.
var docActions = map[string]string{
	"reserve": "notice.reserved", "unreserve": "notice.unreserved", "cancel": "notice.cancelled",
	"renotify": "notice.renotified", "reissue": "notice.reissued",
	"retrieve": "notice.retrieved", "collect": "notice.handed_over",
}

// docAction runs POST /staff/documents/{id}/{action}.
func (w *Web) docAction(rw http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	notice, ok := docActions[action]
	if !ok {
		w.page("", func(http.ResponseWriter, *req) error { return fail(http.StatusNotFound, "error.not_found") })(rw, r)
		return
	}
	w.page("documents."+action, func(rw http.ResponseWriter, q *req) error {
		ctx := r.Context()
		id, who := r.PathValue("id"), q.actor()
		var err error
		switch action {
		case "reserve":
			device := r.PostForm.Get("device_id")
			doc, derr := w.o.Service.GetDocument(ctx, id)
			if derr != nil {
				return derr
			}
			// The form's own refusals and questions are for a document
			// still registered: another (a stale form, reserved
			// meanwhile) gets service.Reserve's answer, the wrong state,
			// since its page has no reservation form to say them in.
			if device != "" && doc.State == lifecycle.Registered {
				elsewhere, err := w.deviceElsewhere(ctx, doc, device)
				if err != nil {
					return err
				}
				if elsewhere {
					// The service refuses it too (ErrInvalid): said in the
					// form, which offers the site's devices, nothing
					// reserved.
					q.reserveRefused, q.reserveDevice, q.reserveBad = "error.device_other_site", device, true
					return w.document(rw, q)
				}
				if r.PostForm.Get("confirm_unfit") != device {
					unfit, err := w.unfitProblems(ctx, q, device)
					if err != nil {
						return err
					}
					if unfit != "" {
						// Asked, not confirmed: nothing reserved.
						q.unfitAsked, q.unfitProblems, q.reserveDevice = true, unfit, device
						return w.document(rw, q)
					}
				}
			}
			_, err = w.o.Service.Reserve(ctx, who, id, service.ReserveOptions{DeviceID: device})
			if errors.Is(err, service.ErrNoCompartment) {
				// Said in the form, the device chosen kept: nothing
				// changed, staff choose again or later.
				q.reserveRefused, q.reserveDevice = "error.no_compartment", device
				if errors.Is(err, service.ErrNoOnlineDevice) {
					q.reserveRefused = "error.no_online_device"
				}
				return w.document(rw, q)
			}
		case "unreserve":
			_, err = w.o.Service.Unreserve(ctx, who, id)
		case "cancel":
			reason := strings.TrimSpace(r.PostForm.Get("reason"))
			if api.CheckReason(reason, false) != nil {
				return fail(http.StatusBadRequest, "error.reason")
			}
			if r.PostForm.Get("confirm") != "yes" {
				// Asked, not confirmed: the page asks, nothing changes.
				q.cancelAsked, q.cancelReason = true, reason
				return w.document(rw, q)
			}
			_, err = w.o.Service.Cancel(ctx, who, id, reason)
		case "renotify":
			_, err = w.o.Service.Renotify(ctx, who, id)
		case "retrieve", "collect":
			if r.PostForm.Get("confirm") != "yes" {
				// Asked, not confirmed: the compartment stays taken and
				// the codes keep working.
				http.Redirect(rw, r, Prefix+"documents/"+id+"?confirm="+action, http.StatusSeeOther)
				return nil
			}
			if action == "retrieve" {
				_, err = w.o.Service.Retrieve(ctx, who, id)
			} else {
				_, err = w.o.Service.Collect(ctx, who, id)
			}
		case "reissue":
			if r.PostForm.Get("confirm") != "yes" {
				// Asked, not confirmed: the old codes keep working.
				http.Redirect(rw, r, Prefix+"documents/"+id+"?confirm=reissue", http.StatusSeeOther)
				return nil
			}
			var d store.Document
			if d, err = w.o.Service.Reissue(ctx, who, id); err == nil && !w.deviceOnline(ctx, d.DeviceID) {
				// The old code still opens the compartment offline at
				// the device until it reconnects and gets the code sync
				// (docs/security.md, "Offline codes and the
				// compartment's contents"): staff must not be told
				// that it no longer works.
				notice = "notice.reissued_offline"
			}
		}
		if err != nil {
			return err
		}
		w.redirect(rw, r, Prefix+"documents/"+id, notice, 0)
		return nil
	})(rw, r)
}

// deviceElsewhere reports whether the device chosen by hand to reserve
// doc in is not one of the document's site: another site's, or no device
// at all (a form posted by hand). The console's form lists only the
// site's devices; service.Reserve refuses the others as invalid.
func (w *Web) deviceElsewhere(ctx context.Context, doc store.Document, deviceID string) (bool, error) {
	dev, err := w.o.Service.GetDevice(ctx, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return dev.SiteID != doc.SiteID, nil
}

// deviceOnline reports whether the device's presence is online; false when
// it is not known or cannot be read (the console then says the worse).
func (w *Web) deviceOnline(ctx context.Context, deviceID string) bool {
	online, err := api.DeviceOnline(ctx, w.o.Pool, deviceID)
	if err != nil {
		w.log.Warn("console: reading the device presence failed", "device", deviceID, "err", err)
	}
	return online
}
