package deviceops_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/deviceops"
	"kluis/backend/store"
	"kluis/controller/wire"
)

// online records dev as online since at, like the link does on a presence
// message.
func (e *env) online(dev string, at time.Time, state string) {
	e.t.Helper()
	_, err := e.st.Pool().Exec(e.ctx, `INSERT INTO device_presence (device_id, state, changed_at) VALUES ($1, $2, $3)
		ON CONFLICT (device_id) DO UPDATE SET state = $2, changed_at = $3`, dev, state, at)
	require.NoError(e.t, err)
}

// linkEvent records ev in device_events and applies it in one transaction,
// like the link.
func (e *env) linkEvent(dev string, ev wire.Event) {
	e.t.Helper()
	ev.ID = wire.NewID(e.clock.Now())
	ev.At = e.clock.Now()
	payload, err := json.Marshal(ev)
	require.NoError(e.t, err)
	require.NoError(e.t, pgx.BeginFunc(e.ctx, e.st.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(e.ctx, `INSERT INTO device_events (event_id, device_id, kind, at, received_at, outcome, payload)
			VALUES ($1, $2, $3, $4, $4, 'applied', $5)`, ev.ID, dev, string(ev.Kind), ev.At, payload); err != nil {
			return err
		}
		return e.events.HandleEvent(e.ctx, tx, dev, ev)
	}))
}

func (e *env) followup(after time.Duration) (*deviceops.Followup, *[]string) {
	e.t.Helper()
	var changed []string
	f, err := deviceops.NewFollowup(deviceops.FollowupOptions{Pool: e.st.Pool(), Codes: e.codes, After: after,
		Clock: e.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CodesChanged: func(dev string) { changed = append(changed, dev) }})
	require.NoError(e.t, err)
	return f, &changed
}

func (e *env) sweep(f *deviceops.Followup) int {
	e.t.Helper()
	n, err := f.Sweep(e.ctx)
	require.NoError(e.t, err)
	return n
}

func (e *env) auditActions(doc string) []string {
	e.t.Helper()
	_, err := audit.Chain(e.ctx, e.st.Pool()) // the records reach audit_log through the chain
	require.NoError(e.t, err)
	rows, err := e.st.Pool().Query(e.ctx, `SELECT action || ' ' || actor || ' ' || coalesce(details->>'reason', '')
		FROM audit_log WHERE subject = $1 AND action LIKE 'code.rearm%' ORDER BY seq`, "document:"+doc)
	require.NoError(e.t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(e.t, err)
	return out
}

// kluisd died between the backend's ok and journaling its pulse intent: the
// device, online, never says a word about the document. After the window
// the code is given back (audited, the offline cache resent), once; the
// citizen's next attempt consumes it again.
func TestUnfollowedVerificationGivesTheCodeBack(t *testing.T) {
	e := newEnv(t)
	e.online("k1", t0.Add(-time.Hour), "online")
	f, changed := e.followup(0)
	require.Equal(t, deviceops.DefaultUnfollowedAfter, f.After())
	doc, cr := e.loaded(store.EID, "591-4444444-44", "k1")

	require.Equal(t, wire.VerifyOK, e.qr("k1", cr.QRToken).Result)
	e.clock.Add(deviceops.DefaultUnfollowedAfter - time.Second)
	require.Zero(t, e.sweep(f), "within the window")
	// Meanwhile the citizen is told the truth: not collected, try again
	// in a few minutes (not "already collected"), by QR and by PIN.
	require.Equal(t, wire.VerifyPending, e.qr("k1", cr.QRToken).Result)
	require.Equal(t, wire.VerifyPending, e.pin("k1", cr.PIN, "1990-02-28").Result)

	e.clock.Add(time.Second)
	require.Equal(t, 1, e.sweep(f))
	require.Equal(t, []string{"k1"}, *changed)
	require.Equal(t, []string{"code.rearmed system " + deviceops.ReasonUnfollowed}, e.auditActions(doc.ID))
	require.Zero(t, e.sweep(f), "given back once")

	// The citizen tries again; this time the device acts on it.
	require.Equal(t, wire.VerifyOK, e.pin("k1", cr.PIN, "1990-02-28").Result)
	require.Equal(t, wire.VerifyPending, e.qr("k1", cr.QRToken).Result, "single use (the document is still there)")
	e.clock.Add(time.Second)
	e.linkEvent("k1", wire.Event{Kind: wire.EvDoorOpened, Addr: e.addr(doc), DocumentID: doc.ID})
	e.clock.Add(time.Hour)
	require.Zero(t, e.sweep(f), "the door opened: the code was used")
	e.linkEvent("k1", wire.Event{Kind: wire.EvPickupCompleted, Addr: e.addr(doc), DocumentID: doc.ID})
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, "collected", string(got.State))
	require.Equal(t, wire.VerifyAlreadyCollected, e.qr("k1", cr.QRToken).Result, "collected now")
	require.Len(t, e.auditActions(doc.ID), 1)
}

// Nothing is given back while the device may still report: offline, just
// back online (a kluisd restart), the backend itself just started; nor after
// an event that says the document may be gone or a pulse may have happened
// at its compartment; nor a re-issued or collected document's code. Door
// noise at the compartment (the citizen tugging at the shut door: door
// events without the document, a forced-door alarm) does not hold it back.
func TestUnfollowedSweepGuards(t *testing.T) {
	e := newEnv(t)
	after := 5 * time.Minute
	e.online("k1", t0.Add(-time.Hour), "offline")
	e.online("k2", t0.Add(-time.Hour), "online")
	var comps []store.NewCompartment
	for ch := 0; ch < 4; ch++ {
		comps = append(comps, store.NewCompartment{Channel: ch, Size: store.SizeM, HeightCM: 100})
	}
	_, err := e.svc.CreateDevice(e.ctx, "user:admin", store.NewDevice{ID: "k3", SiteID: "kortrijk", Kind: store.Locker, Compartments: comps})
	require.NoError(t, err)
	e.online("k3", t0.Add(-time.Hour), "online")

	// Offline device: its events may be waiting in its outbox.
	off, offCr := e.loaded(store.DrivingLicence, "B 100", "k1")
	require.Equal(t, wire.VerifyOK, e.qr("k1", offCr.QRToken).Result)
	// The item gone from the compartment, or a pulse that may have
	// happened there: someone must look.
	door, doorCr := e.loaded(store.DrivingLicence, "B 200", "k3")
	require.Equal(t, wire.VerifyOK, e.qr("k3", doorCr.QRToken).Result)
	e.clock.Add(time.Second)
	e.linkEvent("k3", wire.Event{Kind: wire.EvItemRemoved, Addr: e.addr(door)})
	pulsed, pulsedCr := e.loaded(store.DrivingLicence, "B 210", "k3")
	require.Equal(t, wire.VerifyOK, e.qr("k3", pulsedCr.QRToken).Result)
	e.clock.Add(time.Second)
	e.linkEvent("k3", wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmPulseUncertain, Addr: e.addr(pulsed)})
	// Door noise without the document: not a reason to keep the code.
	noise, noiseCr := e.loaded(store.DrivingLicence, "B 220", "k3")
	require.Equal(t, wire.VerifyOK, e.qr("k3", noiseCr.QRToken).Result)
	e.clock.Add(time.Second)
	e.linkEvent("k3", wire.Event{Kind: wire.EvDoorOpened, Addr: e.addr(noise)})
	e.linkEvent("k3", wire.Event{Kind: wire.EvAlarm, Alarm: wire.AlarmForcedDoor, Addr: e.addr(noise)})
	e.linkEvent("k3", wire.Event{Kind: wire.EvDoorClosed, Addr: e.addr(noise)})
	// Re-issued after the verification: the newest code is not the used one.
	re, reCr := e.loaded(store.DrivingLicence, "B 300", "k2")
	require.Equal(t, wire.VerifyOK, e.qr("k2", reCr.QRToken).Result)
	_, err = e.svc.Reissue(e.ctx, "user:1", re.ID)
	require.NoError(t, err)

	e.clock.Add(time.Hour)
	f, _ := e.followup(after)
	require.Zero(t, e.sweep(f), "the backend just started: events may be on their way")
	e.clock.Add(after)
	require.Equal(t, 1, e.sweep(f), "only the code behind the door noise")
	require.Equal(t, wire.VerifyOK, e.qr("k3", noiseCr.QRToken).Result)
	e.linkEvent("k3", wire.Event{Kind: wire.EvPickupCompleted, Addr: e.addr(noise), DocumentID: noise.ID})
	for _, d := range []store.Document{off, door, pulsed, re} {
		require.Empty(t, e.auditActions(d.ID), d.Number)
	}

	// k1 comes back: the window counts from then.
	e.online("k1", e.clock.Now(), "online")
	e.clock.Add(after - time.Second)
	require.Zero(t, e.sweep(f))
	e.clock.Add(time.Second)
	require.Equal(t, 1, e.sweep(f))
	require.Equal(t, wire.VerifyOK, e.qr("k1", offCr.QRToken).Result)
	require.Equal(t, wire.VerifyPending, e.qr("k3", doorCr.QRToken).Result, "not re-armed, still not collected")
	require.Equal(t, wire.VerifyPending, e.qr("k3", pulsedCr.QRToken).Result)
	require.Equal(t, wire.VerifyAlreadyCollected, e.qr("k2", reCr.QRToken).Result, "the replaced code stays used (not pending: a new code exists)")
}

// Rearm's own guards hold: a code whose PIN meanwhile belongs to another
// open code stays used, and the refusal is audited once, not at every
// sweep.
func TestUnfollowedSweepRefusalAuditedOnce(t *testing.T) {
	e := newEnv(t)
	e.online("k1", t0.Add(-time.Hour), "online")
	f, _ := e.followup(time.Minute)
	doc, cr := e.loaded(store.DrivingLicence, "B 400", "k1")
	require.Equal(t, wire.VerifyOK, e.qr("k1", cr.QRToken).Result)
	other, _ := e.loaded(store.DrivingLicence, "B 500", "k1")
	_, err := e.st.Pool().Exec(e.ctx, `UPDATE codes SET pin_digest = (SELECT pin_digest FROM codes WHERE document_id = $1)
		WHERE document_id = $2`, doc.ID, other.ID)
	require.NoError(t, err)
	e.clock.Add(2 * time.Minute)
	require.Zero(t, e.sweep(f))
	e.clock.Add(2 * time.Minute)
	require.Zero(t, e.sweep(f))
	require.Equal(t, []string{"code.rearm_refused system pin_taken"}, e.auditActions(doc.ID))
	require.Equal(t, wire.VerifyPending, e.qr("k1", cr.QRToken).Result, "still not collected: call 1777")
}

// Run sweeps on its own, every interval (the first after one): a code
// whose verification was never followed is given back without anyone
// calling Sweep, and Run returns ctx's error when it ends.
func TestFollowupRunSweepsEveryInterval(t *testing.T) {
	e := newEnv(t)
	e.online("k1", t0.Add(-time.Hour), "online")
	changed := make(chan string, 10)
	f, err := deviceops.NewFollowup(deviceops.FollowupOptions{Pool: e.st.Pool(), Codes: e.codes, Every: 20 * time.Millisecond,
		Clock: e.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CodesChanged: func(dev string) { changed <- dev }})
	require.NoError(t, err)
	doc, cr := e.loaded(store.EID, "591-5555555-55", "k1")
	require.Equal(t, wire.VerifyOK, e.qr("k1", cr.QRToken).Result)
	e.clock.Add(deviceops.DefaultUnfollowedAfter)

	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	select {
	case dev := <-changed:
		require.Equal(t, "k1", dev)
	case <-time.After(30 * time.Second):
		t.Fatal("Run never swept")
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Equal(t, []string{"code.rearmed system " + deviceops.ReasonUnfollowed}, e.auditActions(doc.ID))
}

// heartbeat records dev's last heartbeat, with its outbox's backlog, like
// the link does.
func (e *env) heartbeat(dev string, backlog int) {
	e.t.Helper()
	_, err := e.st.Pool().Exec(e.ctx, `INSERT INTO device_diagnostics (device_id, at, heartbeat) VALUES ($1, $2, $3)
		ON CONFLICT (device_id) DO UPDATE SET at = $2, heartbeat = $3`, dev, e.clock.Now(), map[string]any{"v": 1, "backlog": backlog})
	require.NoError(e.t, err)
}

// A device back from a long outage sends its backlog oldest first (8
// events a second: 10,000 take about 20 minutes), so the events of a
// pickup it verified online after the reconnection wait behind it: its
// silence proves nothing while its heartbeat reports a backlog, and the
// code is not given back (it was, 5 minutes into the drain, while the
// document was gone). Once the heartbeat says the outbox is empty the
// sweep goes on as before; a backlog that does not drain holds a code
// back for at most 2 hours past the window.
func TestUnfollowedSweepWaitsForTheDevicesBacklog(t *testing.T) {
	e := newEnv(t)
	e.online("k1", t0.Add(-time.Hour), "online")
	f, _ := e.followup(0)
	after := deviceops.DefaultUnfollowedAfter
	e.clock.Add(after)
	e.heartbeat("k1", 7000)
	doc, cr := e.loaded(store.EID, "591-5555555-55", "k1")
	require.Equal(t, wire.VerifyOK, e.qr("k1", cr.QRToken).Result)
	e.clock.Add(after + time.Minute)
	e.heartbeat("k1", 4500)
	require.Zero(t, e.sweep(f), "the device is still sending older events")
	require.Empty(t, e.auditActions(doc.ID))

	// Drained, and nothing about the document: kluisd never acted on it.
	e.heartbeat("k1", 0)
	require.Equal(t, 1, e.sweep(f))
	require.Equal(t, []string{"code.rearmed system " + deviceops.ReasonUnfollowed}, e.auditActions(doc.ID))

	// A backlog that never drains holds a code back 2 hours past the
	// window, no longer.
	doc2, cr2 := e.loaded(store.EID, "591-6666666-66", "k1")
	require.Equal(t, wire.VerifyOK, e.qr("k1", cr2.QRToken).Result)
	e.heartbeat("k1", 3)
	e.clock.Add(after + 2*time.Hour - time.Second)
	require.Zero(t, e.sweep(f))
	e.clock.Add(time.Second)
	require.Equal(t, 1, e.sweep(f))
	require.Len(t, e.auditActions(doc2.ID), 1)
}
