package deviceops_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/deviceops"
	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// secrets keeps the credentials the service hands its notifier.
type secrets struct {
	mu  sync.Mutex
	got map[string]codes.Credentials
}

func (s *secrets) Notify(_ context.Context, n service.Notification) error {
	if cr, ok := n.Secret.(codes.Credentials); ok {
		s.mu.Lock()
		s.got[n.Document.ID] = cr
		s.mu.Unlock()
	}
	return nil
}

func (s *secrets) of(id string) codes.Credentials {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[id]
}

type env struct {
	t      testing.TB
	ctx    context.Context
	st     *store.Store
	clock  *storetest.Clock
	codes  *codes.Service
	svc    *service.Service
	events *deviceops.Events
	ver    *deviceops.Verifier
	creds  *secrets
	reg    *prometheus.Registry

	mu      sync.Mutex
	changed []string // devices told their codes changed
}

func (e *env) changedDevices() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.changed...)
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), clock: storetest.NewClock(t0), creds: &secrets{got: map[string]codes.Credentials{}},
		reg: prometheus.NewRegistry()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.st = storetest.NewWithOptions(t, store.Options{Clock: e.clock.Now})
	keys, err := codes.GenerateKeys()
	require.NoError(t, err)
	e.codes, err = codes.New(codes.Options{Pool: e.st.Pool(), Keys: keys, Clock: e.clock.Now, Logger: log,
		Argon: pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	require.NoError(t, err)
	e.svc, err = service.New(service.Options{Store: e.st, Clock: e.clock.Now, Logger: log,
		Codes: codes.Issuer{Service: e.codes}, Notifier: e.creds})
	require.NoError(t, err)
	e.events, err = deviceops.NewEvents(deviceops.EventsOptions{Service: e.svc, Pool: e.st.Pool(),
		Grace: 10 * time.Minute, Clock: e.clock.Now, Logger: log, Registerer: e.reg, Codes: e.codes,
		CodesChanged: func(dev string) {
			e.mu.Lock()
			e.changed = append(e.changed, dev)
			e.mu.Unlock()
		}})
	require.NoError(t, err)
	e.ver = deviceops.NewVerifier(deviceops.VerifierOptions{Codes: e.codes, Logger: log, Clock: e.clock.Now})
	_, err = e.svc.CreateSite(e.ctx, "user:admin", store.NewSite{ID: "kortrijk", Name: "Stadhuis"})
	require.NoError(t, err)
	for _, id := range []string{"k1", "k2"} {
		_, err = e.svc.CreateDevice(e.ctx, "user:admin", store.NewDevice{ID: id, SiteID: "kortrijk", Kind: store.Locker,
			Compartments: []store.NewCompartment{{Channel: 0, Size: store.SizeM, HeightCM: 100}, {Channel: 1, Size: store.SizeM, HeightCM: 100}}})
		require.NoError(t, err)
	}
	return e
}

// loaded registers, reserves at device and loads a document of kind.
func (e *env) loaded(kind store.DocumentKind, number, device string) (store.Document, codes.Credentials) {
	e.t.Helper()
	d, err := e.svc.RegisterDocument(e.ctx, "user:1", store.NewDocument{Kind: kind, Number: number, FirstName: "An",
		LastName: "Claes", BirthDate: new(time.Date(1990, 2, 28, 0, 0, 0, 0, time.UTC)), Language: "nl",
		Email: "an@example.be", SiteID: "kortrijk"})
	require.NoError(e.t, err)
	_, err = e.svc.Reserve(e.ctx, "user:1", d.ID, service.ReserveOptions{DeviceID: device})
	require.NoError(e.t, err)
	d, err = e.svc.Load(e.ctx, "user:1", d.ID)
	require.NoError(e.t, err)
	cr := e.creds.of(d.ID)
	require.NotEmpty(e.t, cr.QRToken)
	return d, cr
}

func (e *env) qr(device, token string) wire.VerifyResponse {
	return e.ver.Verify(e.ctx, device, wire.VerifyRequest{Method: wire.MethodQR, Token: token})
}

func (e *env) pin(device, pin, dob string) wire.VerifyResponse {
	return e.ver.Verify(e.ctx, device, wire.VerifyRequest{Method: wire.MethodPIN, PIN: pin, BirthDate: dob})
}

// event hands ev to the handler in its own transaction, like the link does.
func (e *env) event(device string, ev wire.Event) error {
	e.t.Helper()
	if ev.ID == "" {
		ev.ID = wire.NewID(e.clock.Now())
	}
	if ev.At.IsZero() {
		ev.At = e.clock.Now()
	}
	return pgx.BeginFunc(e.ctx, e.st.Pool(), func(tx pgx.Tx) error { return e.events.HandleEvent(e.ctx, tx, device, ev) })
}

func (e *env) addr(d store.Document) *wire.Address {
	e.t.Helper()
	c, err := store.GetCompartment(e.ctx, e.st.Pool(), d.CompartmentID)
	require.NoError(e.t, err)
	return &wire.Address{Board: c.Board, Channel: c.Channel}
}

// The citizen opened the door and left the document: the same code works
// again for the grace period (once), then it is spent; the pickup that
// follows collects the document.
func TestPickupNotCollectedGivesTheCodeBackForTheGracePeriod(t *testing.T) {
	e := newEnv(t)
	doc, cr := e.loaded(store.EID, "591-1234567-89", "k1")

	r := e.qr("k1", cr.QRToken)
	require.Equal(t, wire.VerifyOK, r.Result)
	require.Equal(t, doc.ID, r.DocumentID)
	require.Equal(t, wire.VerifyPending, e.qr("k1", cr.QRToken).Result, "single use")

	require.Empty(t, e.changedDevices())
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvPickupNotCollected, Addr: e.addr(doc), DocumentID: doc.ID, Method: wire.MethodQR}))
	require.Equal(t, []string{"k1"}, e.changedDevices(), "the device's offline cache is resent soon")
	e.clock.Add(9 * time.Minute)
	require.Equal(t, wire.VerifyOK, e.pin("k1", cr.PIN, "1990-02-28").Result, "within the grace period, PIN too")
	require.Equal(t, wire.VerifyPending, e.qr("k1", cr.QRToken).Result, "still single use")

	// Left again; the grace period runs out.
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvPickupNotCollected, Addr: e.addr(doc), DocumentID: doc.ID}))
	e.clock.Add(10 * time.Minute)
	require.Equal(t, wire.VerifyAlreadyCollected, e.qr("k1", cr.QRToken).Result, "spent after the grace period")

	// Staff re-issue: new codes work, the old one stays dead.
	_, err := e.svc.Reissue(e.ctx, "user:1", doc.ID)
	require.NoError(t, err)
	cr2 := e.creds.of(doc.ID)
	require.NotEqual(t, cr.QRToken, cr2.QRToken)
	require.Equal(t, wire.VerifyOK, e.qr("k1", cr2.QRToken).Result)
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvPickupCompleted, Addr: e.addr(doc), DocumentID: doc.ID}))
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, "collected", string(got.State))
	// A late not-collected report of an earlier attempt gives nothing back.
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvPickupNotCollected, Addr: e.addr(doc), DocumentID: doc.ID}))
	require.Equal(t, wire.VerifyAlreadyCollected, e.qr("k1", cr2.QRToken).Result)
}

// A door that never opened gives the citizen's code back; a staff or
// remote operation's report never does, nor a report from another device.
func TestOpenNotDetectedGivesTheCitizensCodeBack(t *testing.T) {
	e := newEnv(t)
	doc, cr := e.loaded(store.DrivingLicence, "B 123 456", "k1")
	require.Equal(t, wire.VerifyOK, e.qr("k1", cr.QRToken).Result)

	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvOpenNotDetected, Addr: e.addr(doc), DocumentID: doc.ID, StaffID: "7"}))
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvOpenNotDetected, Addr: e.addr(doc), DocumentID: doc.ID, CommandID: wire.NewID(e.clock.Now())}))
	require.NoError(t, e.event("k2", wire.Event{Kind: wire.EvOpenNotDetected, Addr: e.addr(doc), DocumentID: doc.ID}))
	require.Equal(t, wire.VerifyPending, e.qr("k1", cr.QRToken).Result)

	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvOpenNotDetected, Addr: e.addr(doc), DocumentID: doc.ID}))
	e.clock.Add(24 * time.Hour)
	require.Equal(t, wire.VerifyOK, e.qr("k1", cr.QRToken).Result, "valid as before, until its expiry")

	// A malformed document id is refused for good (the device stops resending).
	err := e.event("k1", wire.Event{Kind: wire.EvPickupNotCollected, Addr: e.addr(doc), DocumentID: "not-a-uuid"})
	require.Error(t, err)
}

// Every refusal maps to a result the kiosk can show without telling an
// attacker more than "wrong code", except what the citizen needs.
func TestVerifierResultsAreKioskSafe(t *testing.T) {
	e := newEnv(t)
	_, cr := e.loaded(store.EID, "591-7654321-00", "k1")

	require.Equal(t, wire.VerifyWrongCode, e.qr("k2", cr.QRToken).Result, "a code for another device reads as wrong")
	require.Equal(t, wire.VerifyWrongCode, e.qr("k1", "garbage").Result)
	require.Equal(t, wire.VerifyWrongCode, e.ver.Verify(e.ctx, "k1", wire.VerifyRequest{Method: "voice"}).Result)
	require.Equal(t, wire.VerifyWrongCode, e.qr("Not A Device", cr.QRToken).Result)
	require.Equal(t, wire.VerifySecondFactorRequired, e.pin("k1", cr.PIN, "").Result)

	// Wrong dates of birth lock the code: the kiosk still only says wrong code.
	for range pickupcode.CodeMaxFailures {
		r := e.pin("k1", cr.PIN, "2000-01-01")
		require.Equal(t, wire.VerifyWrongCode, r.Result)
	}
	e.clock.Add(pickupcode.DeviceLockout + time.Minute) // past the device lockout those failures caused
	require.Equal(t, wire.VerifyWrongCode, e.qr("k1", cr.QRToken).Result, "a locked code reads as wrong")

	// Guessing PINs locks the device's PIN entry, with a retry time.
	_, cr2 := e.loaded(store.Passport, "EP1234567", "k2")
	var last wire.VerifyResponse
	for i := range pickupcode.DeviceMaxFailures + 1 {
		last = e.pin("k2", fmtPIN(i), "1990-02-28")
	}
	require.Equal(t, wire.VerifyDeviceLockedOut, last.Result)
	require.Positive(t, last.RetryAfterS)
	require.Equal(t, wire.VerifyDeviceLockedOut, e.pin("k2", cr2.PIN, "1990-02-28").Result, "even the right PIN waits")
	require.Equal(t, wire.VerifyOK, e.qr("k2", cr2.QRToken).Result, "a QR code is not a guess")

	// Past the deadline: expired.
	_, cr3 := e.loaded(store.EID, "591-0000001-11", "k1")
	e.clock.Add(40 * 24 * time.Hour)
	require.Equal(t, wire.VerifyExpired, e.qr("k1", cr3.QRToken).Result)
}

func fmtPIN(i int) string {
	b := []byte("000000000")
	b[len(b)-1] = byte('0' + i%10)
	b[len(b)-2] = byte('0' + i/10%10)
	return string(b)
}

// Kiosk staff: a retrieval answers the compartment of this device's
// document, normalising the scanned number; nothing else is released.
func TestStaffRetrieve(t *testing.T) {
	e := newEnv(t)
	as := e.kioskAuth(t)
	pin := e.counterClerk(t, as)
	h := deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now})

	doc, _ := e.loaded(store.EID, "591-1234567-89", "k1")
	other, _ := e.loaded(store.EID, "591-1111111-11", "k2")
	reg, err := e.svc.RegisterDocument(e.ctx, "user:1", store.NewDocument{Kind: store.EID, Number: "591-2222222-22",
		FirstName: "Els", LastName: "Claes", BirthDate: new(time.Date(1990, 3, 4, 0, 0, 0, 0, time.UTC)), Language: "fr",
		Email: "els@example.be", SiteID: "kortrijk"})
	require.NoError(t, err)

	ask := func(op wire.StaffOp, session, number string) wire.StaffResponse {
		return h.HandleStaff(e.ctx, "k1", wire.StaffRequest{ID: wire.NewID(e.clock.Now()), Op: op, At: e.clock.Now(), Session: session, DocumentNumber: number, PIN: pin})
	}
	require.Equal(t, wire.StaffSessionExpired, ask(wire.StaffRetrieve, "nope", "591-1234567-89").Result)
	login := ask(wire.StaffLogin, "", "")
	require.Equal(t, wire.StaffOK, login.Result)

	r := ask(wire.StaffRetrieve, login.Session, "591 1234567 89") // as scanned
	require.Equal(t, wire.StaffOK, r.Result, "%+v", r)
	require.Equal(t, doc.ID, r.DocumentID)
	require.Equal(t, e.addr(doc), r.Addr)
	require.Equal(t, wire.StaffNotFound, ask(wire.StaffRetrieve, login.Session, other.Number).Result, "another device's document")
	require.Equal(t, wire.StaffWrongState, ask(wire.StaffRetrieve, login.Session, reg.Number).Result, "not in a compartment")
	require.Equal(t, wire.StaffNotFound, ask(wire.StaffRetrieve, login.Session, "000-0000000-00").Result)
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, "loaded", string(got.State), "the retrieved event moves it, not the request")
}

// A device moves only its own documents, and the audit trail names the
// staff member who did it at the kiosk.
func TestRetrievedEventOnlyForTheDevicesOwnDocument(t *testing.T) {
	e := newEnv(t)
	doc, _ := e.loaded(store.EID, "591-1234567-89", "k1")

	err := e.event("k2", wire.Event{Kind: wire.EvRetrieved, Addr: &wire.Address{Board: 0, Channel: 0}, DocumentID: doc.ID, StaffID: "7"})
	require.ErrorIs(t, err, devicelink.ErrRejected)
	err = e.event("k1", wire.Event{Kind: wire.EvRetrieved, Addr: e.addr(doc), DocumentID: "00000000-0000-4000-8000-000000000000", StaffID: "7"})
	require.ErrorIs(t, err, devicelink.ErrRejected)
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, "loaded", string(got.State))

	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvRetrieved, Addr: e.addr(doc), DocumentID: doc.ID, StaffID: "7"}))
	got, err = e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, "retrieved", string(got.State))

	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:k1", Limit: 100})
	require.NoError(t, err)
	found := false
	for _, r := range recs {
		if r.Action == "device.retrieved" {
			require.Contains(t, string(r.Details), `"staff_id":"7"`)
			require.Contains(t, string(r.Details), doc.ID)
			found = true
		}
	}
	require.True(t, found, "the device's retrieved event is audited with the staff member")
}

// A device whose clock went back (or a report delivered hours late) does
// not bring an old code back.
func TestRearmDoesNotTrustAnOldEventTime(t *testing.T) {
	e := newEnv(t)
	doc, cr := e.loaded(store.DrivingLicence, "B 999 999", "k1")
	require.Equal(t, wire.VerifyOK, e.qr("k1", cr.QRToken).Result)
	e.clock.Add(3 * time.Hour)
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvOpenNotDetected, Addr: e.addr(doc), DocumentID: doc.ID,
		At: time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)}))
	require.Equal(t, wire.VerifyPending, e.qr("k1", cr.QRToken).Result)
}

// The expire transition revokes the codes of a document past its deadline;
// its holder is told "expired" (which kluisd does not count towards its
// lockout), while a code replaced by a re-issue stays "wrong code".
func TestExpiredDocumentsCodeAnswersExpired(t *testing.T) {
	e := newEnv(t)
	doc, old := e.loaded(store.EID, "591-3333333-33", "k1")
	_, err := e.svc.Reissue(e.ctx, "user:1", doc.ID)
	require.NoError(t, err)
	cr := e.creds.of(doc.ID)
	require.NotEqual(t, old.QRToken, cr.QRToken)

	e.clock.Add(40 * 24 * time.Hour)
	n, err := e.svc.ExpireDue(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, "expired", string(got.State))

	require.Equal(t, wire.VerifyExpired, e.qr("k1", cr.QRToken).Result)
	for range pickupcode.DeviceMaxFailures + 1 {
		require.Equal(t, wire.VerifyExpired, e.pin("k1", cr.PIN, "1990-02-28").Result, "not counted: never locked out")
	}
	require.Equal(t, wire.VerifyWrongCode, e.qr("k1", old.QRToken).Result, "a re-issued code stays wrong")
	require.Equal(t, wire.VerifyWrongCode, e.qr("k2", cr.QRToken).Result, "another device's code stays wrong")
}

// Issue 10: a counter clerk logged in at a kiosk could run the technician
// test-open. The backend decides per role: staff load and retrieve,
// technicians test-open (and see no documents), admins both; refusals and
// test-opens are audited.
func TestKioskRolesDecideServerSide(t *testing.T) {
	e := newEnv(t)
	as := e.kioskAuth(t)
	h := deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	pins := map[auth.Role]string{auth.RoleStaff: "48291637", auth.RoleTechnician: "73915462", auth.RoleAdmin: "61528374"}
	users := map[auth.Role]auth.User{}
	for role, pin := range pins {
		u, err := as.CreateUser(e.ctx, "kiosk-"+string(role), "a long enough password", role)
		require.NoError(t, err)
		require.NoError(t, as.SetKioskCredentials(e.ctx, u.ID, &pin, nil))
		users[role] = u
	}
	doc, _ := e.loaded(store.EID, "591-1234567-89", "k1")
	for _, n := range []string{"591-3333333-33", "591-4444444-44"} {
		_, err := e.svc.RegisterDocument(e.ctx, "user:1", store.NewDocument{Kind: store.EID, Number: n,
			FirstName: "Els", LastName: "Claes", BirthDate: new(time.Date(1990, 3, 4, 0, 0, 0, 0, time.UTC)), Language: "fr",
			Email: "els@example.be", SiteID: "kortrijk"})
		require.NoError(t, err)
	}
	ask := func(req wire.StaffRequest) wire.StaffResponse {
		req.ID, req.At = wire.NewID(e.clock.Now()), e.clock.Now()
		return h.HandleStaff(e.ctx, "k1", req)
	}
	free := &wire.Address{Board: 0, Channel: 1}
	sessions := map[auth.Role]string{}
	for role, pin := range pins {
		login := ask(wire.StaffRequest{Op: wire.StaffLogin, PIN: pin})
		require.Equal(t, wire.StaffOK, login.Result, role)
		assert.Equal(t, wire.StaffRole(role), login.Role, "the kiosk is told the role")
		sessions[role] = login.Session
	}

	// The clerk: load and retrieve yes, test-open no.
	assert.Equal(t, wire.StaffDenied, ask(wire.StaffRequest{Op: wire.StaffTestOpen, Session: sessions[auth.RoleStaff], Addr: free}).Result)
	assert.Equal(t, wire.StaffOK, ask(wire.StaffRequest{Op: wire.StaffReserve, Session: sessions[auth.RoleStaff], DocumentNumber: "591-3333333-33"}).Result)
	assert.Equal(t, wire.StaffOK, ask(wire.StaffRequest{Op: wire.StaffRetrieve, Session: sessions[auth.RoleStaff], DocumentNumber: doc.Number}).Result)

	// The technician: test-open yes, documents no.
	assert.Equal(t, wire.StaffOK, ask(wire.StaffRequest{Op: wire.StaffTestOpen, Session: sessions[auth.RoleTechnician], Addr: free}).Result)
	assert.Equal(t, wire.StaffNotFound, ask(wire.StaffRequest{Op: wire.StaffTestOpen, Session: sessions[auth.RoleTechnician],
		Addr: &wire.Address{Board: 3, Channel: 9}}).Result, "no such compartment on this device")
	assert.Equal(t, wire.StaffDenied, ask(wire.StaffRequest{Op: wire.StaffReserve, Session: sessions[auth.RoleTechnician], DocumentNumber: "591-4444444-44"}).Result)
	assert.Equal(t, wire.StaffDenied, ask(wire.StaffRequest{Op: wire.StaffRetrieve, Session: sessions[auth.RoleTechnician], DocumentNumber: doc.Number}).Result)

	// The admin: both.
	assert.Equal(t, wire.StaffOK, ask(wire.StaffRequest{Op: wire.StaffTestOpen, Session: sessions[auth.RoleAdmin], Addr: free}).Result)
	assert.Equal(t, wire.StaffOK, ask(wire.StaffRequest{Op: wire.StaffRetrieve, Session: sessions[auth.RoleAdmin], DocumentNumber: doc.Number}).Result)

	// Not a kiosk session.
	assert.Equal(t, wire.StaffSessionExpired, ask(wire.StaffRequest{Op: wire.StaffTestOpen, Session: "kls_nope", Addr: free}).Result)

	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:k1"})
	require.NoError(t, err)
	var got []string
	for _, r := range recs {
		if r.Action == "kiosk.test_open" || r.Action == "kiosk.denied" {
			got = append(got, r.Action+" "+r.Actor+" "+string(r.Details))
		}
	}
	id := func(r auth.Role) string { return fmt.Sprintf("user:%d", users[r].ID) }
	require.Len(t, got, 5, "%q", got)
	assert.Equal(t, `kiosk.denied `+id(auth.RoleStaff)+` {"op":"test_open","role":"staff"}`, got[0])
	assert.Equal(t, `kiosk.test_open `+id(auth.RoleTechnician)+` {"compartment":2}`, got[1])
	assert.Equal(t, `kiosk.denied `+id(auth.RoleTechnician)+` {"op":"reserve","role":"technician"}`, got[2])
	assert.Equal(t, `kiosk.denied `+id(auth.RoleTechnician)+` {"op":"retrieve","role":"technician"}`, got[3])
	assert.Equal(t, `kiosk.test_open `+id(auth.RoleAdmin)+` {"compartment":2}`, got[4])
}

// A device that locked a code offline (5 wrong dates of birth with its PIN)
// reports code_locked: the backend locks that code too (QR included),
// audited, and resends the device's cache. A report naming another code
// locks nothing.
func TestCodeLockedOfflineLocksTheCodeAtTheBackend(t *testing.T) {
	e := newEnv(t)
	d, cr := e.loaded(store.EID, "591-1234567-89", "k1")
	require.ErrorIs(t, e.event("k1", wire.Event{Kind: wire.EvCodeLocked, DocumentID: "not-a-uuid"}), devicelink.ErrRejected)
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvCodeLocked, DocumentID: d.ID, Offline: true,
		CodeRef: pickupcode.QRHash("AAAAAAAAAAAAAAAAAAAAAA")}))
	require.NotContains(t, e.changedDevices(), "k1", "another code: nothing locked")
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvCodeLocked, DocumentID: d.ID, Offline: true, Method: wire.MethodPIN,
		CodeRef: pickupcode.QRHash(cr.CodeID), Detail: "too many wrong dates of birth with its PIN, offline"}))
	require.Contains(t, e.changedDevices(), "k1")
	require.Equal(t, wire.VerifyWrongCode, e.qr("k1", cr.QRToken).Result, "locked, QR included")
	require.Equal(t, wire.VerifyWrongCode, e.pin("k1", cr.PIN, "1990-02-28").Result)
	bundle, err := e.codes.OfflineBundle(e.ctx, "k1")
	require.NoError(t, err)
	require.Empty(t, bundle, "a locked code leaves the offline bundle")
	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "document:" + d.ID})
	require.NoError(t, err)
	n := 0
	for _, r := range recs {
		if r.Action == "code.locked" {
			n++
			require.Contains(t, string(r.Details), cr.CodeID)
		}
	}
	require.Equal(t, 1, n)
	// Resent: nothing more.
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvCodeLocked, DocumentID: d.ID, CodeRef: pickupcode.QRHash(cr.CodeID)}))
}

// A code collected offline and replayed online answers already_collected,
// not counted (it used to answer wrong_code and count: the collection had
// revoked it), by QR and by PIN; also without code_ref (an older kluisd).
func TestOfflineCollectedCodeReplayedOnline(t *testing.T) {
	e := newEnv(t)
	d, cr := e.loaded(store.EID, "591-1234567-89", "k1")
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvPickupCompleted, Addr: e.addr(d), DocumentID: d.ID,
		Method: wire.MethodQR, Offline: true, CodeRef: pickupcode.QRHash(cr.CodeID), At: e.clock.Now().Add(-time.Minute)}))
	got, err := e.svc.GetDocument(e.ctx, d.ID)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Collected, got.State)
	for i := 0; i < 6; i++ {
		e.clock.Add(time.Second)
		require.Equal(t, wire.VerifyAlreadyCollected, e.qr("k1", cr.QRToken).Result)
		require.Equal(t, wire.VerifyAlreadyCollected, e.pin("k1", cr.PIN, "1990-02-28").Result, "attempt %d: not counted", i)
	}
	// The event again (its ack lost): nothing changes.
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvPickupCompleted, Addr: e.addr(d), DocumentID: d.ID,
		Offline: true, CodeRef: pickupcode.QRHash(cr.CodeID)}))

	// Without code_ref: the document's newest unused code.
	d2, cr2 := e.loaded(store.DrivingLicence, "DL-77", "k1")
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvPickupCompleted, Addr: e.addr(d2), DocumentID: d2.ID, Offline: true}))
	require.Equal(t, wire.VerifyAlreadyCollected, e.qr("k1", cr2.QRToken).Result)

	// An online pickup's revoked sibling (a code replaced before its
	// expiry) still answers wrong_code.
	d3, old := e.loaded(store.DrivingLicence, "DL-78", "k2")
	_, err = e.svc.Reissue(e.ctx, "user:1", d3.ID)
	require.NoError(t, err)
	require.Equal(t, wire.VerifyWrongCode, e.qr("k2", old.QRToken).Result)
}
