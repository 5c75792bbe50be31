package deviceops_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/broker/mqtttest"
	"kluis/backend/devicelink"
	"kluis/backend/deviceops"
	"kluis/backend/store"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// lockDevice makes five wrong PIN attempts at device, which locks its PIN
// entry at the backend.
func (e *env) lockDevice(device string) {
	e.t.Helper()
	for i := 0; i < 5; i++ {
		e.clock.Add(time.Second)
		r := e.pin(device, "000000001", "1990-02-28")
		require.Equal(e.t, wire.VerifyWrongCode, r.Result)
	}
	e.clock.Add(time.Second)
	require.Equal(e.t, wire.VerifyDeviceLockedOut, e.pin(device, "000000001", "1990-02-28").Result)
}

// commandDevice stands in for kluisd on the real broker: it answers every
// command with the status of answer ("" stays silent).
type commandDevice struct {
	mu   sync.Mutex
	got  []wire.Command
	stat wire.CommandStatus
}

func (d *commandDevice) commands() []wire.Command {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wire.Command(nil), d.got...)
}

func (d *commandDevice) answer(s wire.CommandStatus) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stat = s
}

func connectCommandDevice(t *testing.T, url, id string) (*commandDevice, paho.Client) {
	d := &commandDevice{}
	c := mqtttest.Connect(t, mqtttest.Options(url, "kluisd-"+id, id, ""))
	cmdTopic, _ := wire.TopicFor(id, wire.KindCommand)
	resTopic, _ := wire.TopicFor(id, wire.KindCmdResult)
	tok := c.Subscribe(cmdTopic, 1, func(c paho.Client, m paho.Message) {
		_, msg, err := wire.Decode(m.Topic(), m.Payload())
		if err != nil {
			return
		}
		cmd := *msg.(*wire.Command)
		d.mu.Lock()
		d.got = append(d.got, cmd)
		st := d.stat
		d.mu.Unlock()
		if st == "" {
			return
		}
		b, err := wire.Encode(&wire.CommandResult{ID: cmd.ID, Status: st, At: time.Now().UTC(), Detail: "test device: " + string(st)})
		if err == nil {
			go c.Publish(resTopic, 1, false, b) // never block in a handler
		}
	})
	require.True(t, tok.WaitTimeout(mqtttest.Wait))
	require.NoError(t, tok.Error())
	return d, c
}

// Staff lift a device's PIN lockout: the backend's lock at once (audited
// with who and why), the device's own through a clear_lockout command whose
// answer is reported; an offline device is not sent one; a silent one is
// reported as such.
func TestClearLockoutBackendAndDevice(t *testing.T) {
	e := newEnv(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dev := "lo-" + hex.EncodeToString(b)
	_, err := e.svc.CreateDevice(e.ctx, "user:admin", store.NewDevice{ID: dev, SiteID: "kortrijk", Kind: store.Locker,
		Compartments: []store.NewCompartment{{Channel: 0, Size: store.SizeM, HeightCM: 100}}})
	require.NoError(t, err)
	e.loaded(store.DrivingLicence, "591-7777777-77", dev) // gives the device its code row

	link, err := devicelink.New(devicelink.Options{URL: testenv.BrokerURL(), ClientID: "kluis-backend-lo-" + dev, DeviceFilter: dev,
		Pool: e.st.Pool(), Registry: prometheus.NewRegistry(), Logger: quietLog()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-link.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("link never ready")
	}
	// A device that answers has a generous bound to do it in (an MQTT round
	// trip and a database write under load); the silent one below waits a
	// short timeout out.
	answered, silence := testenv.Within, time.Second
	lockouts := func(timeout time.Duration) *deviceops.Lockouts {
		lo, err := deviceops.NewLockouts(deviceops.LockoutsOptions{Codes: e.codes, Pool: e.st.Pool(), Link: link,
			Clock: e.clock.Now, Timeout: timeout, Poll: 20 * time.Millisecond, Logger: quietLog()})
		require.NoError(t, err)
		return lo
	}
	lo := lockouts(answered)

	// The device has never connected: nothing is sent.
	e.lockDevice(dev)
	res, err := lo.ClearLockout(e.ctx, dev, "citizen mistyped", "user:7")
	require.NoError(t, err)
	assert.True(t, res.WasLocked)
	assert.Nil(t, res.LockedUntil)
	assert.Equal(t, deviceops.DeviceOffline, res.Device.Status)
	assert.Empty(t, res.Device.CommandID)
	assert.Equal(t, wire.VerifyWrongCode, e.pin(dev, "000000001", "1990-02-28").Result, "PIN entry open again")

	// Online, answering done.
	fake, client := connectCommandDevice(t, testenv.BrokerURL(), dev)
	presence, _ := wire.TopicFor(dev, wire.KindPresence)
	pb, err := wire.Encode(&wire.Presence{State: wire.Online, At: ptr(time.Now().UTC())})
	require.NoError(t, err)
	mqtttest.Publish(t, client, presence, 1, false, string(pb))
	testenv.EventuallyWithin(t, 20*time.Second, "the presence recorded", func() bool {
		p, err := link.Presence(e.ctx, dev)
		return err == nil && p.Online
	})
	fake.answer(wire.StatusDone)
	e.lockDevice(dev)
	res, err = lo.ClearLockout(e.ctx, dev, "ticket 12", "user:8")
	require.NoError(t, err)
	assert.True(t, res.WasLocked)
	assert.Equal(t, "done", res.Device.Status, "%+v", res.Device)
	require.NotEmpty(t, res.Device.CommandID)
	cmds := fake.commands()
	require.Len(t, cmds, 1)
	assert.Equal(t, wire.CmdClearLockout, cmds[0].Kind)
	assert.Equal(t, res.Device.CommandID, cmds[0].ID)
	assert.Equal(t, "ticket 12", cmds[0].Reason)
	assert.Equal(t, "user:8", cmds[0].By)
	assert.LessOrEqual(t, cmds[0].Expires.Sub(cmds[0].Issued), answered, "it expires with the wait")

	// Today's kluisd refuses the kind: reported, the backend's lock is lifted anyway.
	fake.answer(wire.StatusRejected)
	res, err = lo.ClearLockout(e.ctx, dev, "again", "user:8")
	require.NoError(t, err)
	assert.False(t, res.WasLocked, "nothing was locked any more")
	assert.Equal(t, "rejected", res.Device.Status)
	assert.Contains(t, res.Device.Detail, "rejected")

	// kluisd restarted while carrying it out: its answer is reported at
	// once (before, the wait ran out and said no_answer).
	fake.answer(wire.StatusUncertain)
	res, err = lo.ClearLockout(e.ctx, dev, "restarted", "user:8")
	require.NoError(t, err)
	assert.Equal(t, "uncertain", res.Device.Status, "%+v", res.Device)
	assert.Contains(t, res.Device.Detail, "uncertain")

	// A silent device.
	fake.answer("")
	start := time.Now()
	res, err = lockouts(silence).ClearLockout(e.ctx, dev, "silence", "user:8")
	require.NoError(t, err)
	assert.Equal(t, deviceops.DeviceNoAnswer, res.Device.Status)
	assert.GreaterOrEqual(t, time.Since(start), silence, "it waited the timeout out")

	// Audited: who and why, every time.
	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:" + dev})
	require.NoError(t, err)
	var lifts []string
	for _, r := range recs {
		if r.Action == "device.pin_unlocked" {
			lifts = append(lifts, r.Actor+" "+string(r.Details))
		}
	}
	require.Len(t, lifts, 5)
	assert.True(t, strings.HasPrefix(lifts[0], "user:7 "), lifts[0])
	assert.Contains(t, lifts[0], "citizen mistyped")
	assert.Contains(t, lifts[1], "ticket 12")

	// Without a link the device is not told; the daily cap stays and is reported.
	nolink, err := deviceops.NewLockouts(deviceops.LockoutsOptions{Codes: e.codes, Pool: e.st.Pool(), Clock: e.clock.Now})
	require.NoError(t, err)
	for i := 0; i < 60; i++ {
		e.clock.Add(16 * time.Minute)
		e.pin("k2", "000000001", "1990-02-28")
	}
	res, err = nolink.ClearLockout(e.ctx, "k2", "daily cap", "user:8")
	require.NoError(t, err)
	assert.Equal(t, deviceops.DeviceNotSent, res.Device.Status)
	require.NotNil(t, res.LockedUntil, "the daily cap cannot be lifted")
	assert.True(t, res.LockedUntil.After(e.clock.Now()))
}

func ptr[T any](v T) *T { return &v }

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Staff, technicians and admins logged in at a kiosk lift the device's PIN
// lockout there (staff/req clear_lockout): the backend's burst lock goes,
// audited device.pin_unlocked with the user and the reason.
func TestKioskStaffClearsTheLockout(t *testing.T) {
	e := newEnv(t)
	as := e.kioskAuth(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now, Logger: log, Codes: e.codes})
	u, err := as.CreateUser(e.ctx, "kiosk-tech", "a long enough password", auth.RoleTechnician)
	require.NoError(t, err)
	pin := "73915462"
	require.NoError(t, as.SetKioskCredentials(e.ctx, u.ID, &pin, nil))
	ask := func(h *deviceops.Staff, req wire.StaffRequest) wire.StaffResponse {
		req.ID, req.At = wire.NewID(e.clock.Now()), e.clock.Now()
		return h.HandleStaff(e.ctx, "k1", req)
	}
	login := ask(h, wire.StaffRequest{Op: wire.StaffLogin, PIN: pin})
	require.Equal(t, wire.StaffOK, login.Result)

	e.lockDevice("k1")
	assert.Equal(t, wire.StaffSessionExpired, ask(h, wire.StaffRequest{Op: wire.StaffClearLockout, Session: "kls_nope"}).Result)
	require.Equal(t, wire.VerifyDeviceLockedOut, e.pin("k1", "000000001", "1990-02-28").Result, "nothing lifted")
	noCodes := deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: e.svc, Pool: e.st.Pool(), Clock: e.clock.Now, Logger: log})
	assert.Equal(t, wire.StaffUnavailable, ask(noCodes, wire.StaffRequest{Op: wire.StaffClearLockout, Session: login.Session}).Result)

	require.Equal(t, wire.StaffOK, ask(h, wire.StaffRequest{Op: wire.StaffClearLockout, Session: login.Session}).Result)
	e.clock.Add(time.Second)
	require.Equal(t, wire.VerifyWrongCode, e.pin("k1", "000000001", "1990-02-28").Result, "evaluated again, and not locked at once")

	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:k1"})
	require.NoError(t, err)
	var got []string
	for _, r := range recs {
		if r.Action == "device.pin_unlocked" {
			got = append(got, r.Actor+" "+string(r.Details))
		}
	}
	require.Len(t, got, 1)
	assert.Contains(t, got[0], fmt.Sprintf("user:%d ", u.ID))
	assert.Contains(t, got[0], `"reason":"kiosk staff mode"`)
	assert.Contains(t, got[0], `"was_locked":true`)
}

// The device reports what staff lifted (lockout_cleared): audited with the
// staff id or command id and the device's detail.
func TestLockoutClearedEventAudited(t *testing.T) {
	e := newEnv(t)
	require.NoError(t, e.event("k1", wire.Event{Kind: wire.EvLockoutCleared, StaffID: "42",
		Detail: "lifted at the kiosk in staff mode (and at the backend): PIN entry was locked and is open now"}))
	recs, err := audit.List(e.ctx, e.st.Pool(), audit.ListOptions{Subject: "device:k1"})
	require.NoError(t, err)
	var found bool
	for _, r := range recs {
		if r.Action == "device.lockout_cleared" {
			found = true
			assert.Equal(t, "device:k1", r.Actor)
			assert.Contains(t, string(r.Details), `"staff_id":"42"`)
			assert.Contains(t, string(r.Details), "PIN entry was locked and is open now")
		}
	}
	require.True(t, found, "device.lockout_cleared audited")
}
