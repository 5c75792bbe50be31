package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/backend/store/storetest"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// backend is a running kluis-backend for a test, started in-process.
type backend struct {
	*servertest.Backend
	t      *testing.T
	client *http.Client
}

func startBackend(t *testing.T, o server.Options) *backend {
	t.Helper()
	return &backend{Backend: servertest.Start(t, o), t: t, client: &http.Client{Timeout: 30 * time.Second}}
}

func (s *backend) call(method, path string, body any, want int) map[string]any {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		js, _ := json.Marshal(body)
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, s.URL(path), rd)
	require.NoError(s.t, err)
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := s.client.Do(req)
	require.NoError(s.t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	require.Equal(s.t, want, res.StatusCode, "%s %s: %s", method, path, b)
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	return v
}

func (s *backend) metrics() string {
	res, err := s.client.Get(s.URL("/metrics"))
	require.NoError(s.t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// waitLink waits for the backend's device link to connect to its broker.
func (s *backend) waitLink() {
	s.t.Helper()
	testenv.Eventually(s.t, "the backend's link to connect", func() bool {
		return strings.Contains(s.metrics(), "kluis_devicelink_broker_connected 1")
	})
}

// waitOnline waits for the API to show device id online.
func (s *backend) waitOnline(id string) {
	s.t.Helper()
	testenv.Eventually(s.t, "the device to show online", func() bool {
		p, _ := s.call("GET", "/api/v1/devices/"+id, nil, 200)["presence"].(map[string]any)
		return p != nil && p["online"] == true
	})
}

// onlineDevice waits for the backend's link, makes site kortrijk and
// device id with one compartment on board 0 at channel, connects it with
// a new MQTT password and waits until the API shows it online.
func (s *backend) onlineDevice(id string, channel int) *fakeDevice {
	s.t.Helper()
	s.waitLink()
	s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	s.call("POST", "/api/v1/devices", map[string]any{"id": id, "site_id": "kortrijk", "kind": "locker",
		"compartments": []map[string]any{{"board": 0, "channel": channel, "size": "M", "height_cm": 100}}}, 201)
	pw := s.call("POST", "/api/v1/devices/"+id+"/mqtt-password", nil, 201)["password"].(string)
	dev := connectDevice(s.t, s.Broker, id, pw)
	dev.publish(wire.KindPresence, &wire.Presence{State: wire.Online, Software: "kluisd-test"})
	s.waitOnline(id)
	return dev
}

// fakeDevice is a paho client speaking the device side of the contract.
type fakeDevice struct {
	t  *testing.T
	c  paho.Client
	id string
	mu sync.Mutex
	in map[wire.Kind][][]byte
	// sent counts each event id published: acksCaughtUp compares it with
	// the acks naming that id (the backend acks command results too, so
	// counting acks alone does not say which message was acknowledged).
	sent map[string]int
}

// connectDevice connects device id; opts adjust its client options
// (a last will).
func connectDevice(t *testing.T, brokerAddr, id, password string, opts ...func(*paho.ClientOptions)) *fakeDevice {
	d := &fakeDevice{t: t, id: id, in: map[wire.Kind][][]byte{}, sent: map[string]int{}}
	o := paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID(id).SetUsername(id).SetPassword(password).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	for _, f := range opts {
		f(o)
	}
	d.c = paho.NewClient(o)
	tok := d.c.Connect()
	require.True(t, tok.WaitTimeout(20*time.Second), "connect timeout")
	require.NoError(t, tok.Error())
	t.Cleanup(func() { d.c.Disconnect(100) })
	for _, k := range []wire.Kind{wire.KindCommand, wire.KindAck, wire.KindVerifyRes, wire.KindStaffRes} {
		topic, err := wire.TopicFor(id, k)
		require.NoError(t, err)
		k := k
		st := d.c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
			d.mu.Lock()
			d.in[k] = append(d.in[k], append([]byte(nil), m.Payload()...))
			d.mu.Unlock()
		})
		require.True(t, st.WaitTimeout(20*time.Second))
		require.NoError(t, st.Error())
	}
	return d
}

func (d *fakeDevice) publish(kind wire.Kind, m wire.Message) {
	d.t.Helper()
	b, err := wire.Encode(m)
	require.NoError(d.t, err)
	topic, err := wire.TopicFor(d.id, kind)
	require.NoError(d.t, err)
	if ev, ok := m.(*wire.Event); ok {
		d.mu.Lock()
		d.sent[ev.ID]++
		d.mu.Unlock()
	}
	tok := d.c.Publish(topic, 1, false, b)
	require.True(d.t, tok.WaitTimeout(20*time.Second))
	require.NoError(d.t, tok.Error())
}

// acksCaughtUp tells whether every event published so far has been
// acknowledged at least as many times as it was published.
func (d *fakeDevice) acksCaughtUp() bool {
	d.t.Helper()
	acked := map[string]int{}
	for _, b := range d.received(wire.KindAck) {
		var a wire.Ack
		require.NoError(d.t, json.Unmarshal(b, &a))
		for _, id := range a.IDs {
			acked[id]++
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, n := range d.sent {
		if acked[id] < n {
			return false
		}
	}
	return true
}

// commands returns the commands of one kind received so far.
func (d *fakeDevice) commands(kind wire.CommandKind) []wire.Command {
	d.t.Helper()
	var out []wire.Command
	for _, b := range d.received(wire.KindCommand) {
		var c wire.Command
		require.NoError(d.t, json.Unmarshal(b, &c))
		if c.Kind == kind {
			out = append(out, c)
		}
	}
	return out
}

func (d *fakeDevice) received(kind wire.Kind) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.in[kind]...)
}

func TestDeviceLinkEndToEnd(t *testing.T) {
	s := startBackend(t, server.Options{})
	require.NotEmpty(t, s.Broker, "the embedded broker runs without MQTT_URL")
	s.waitLink()

	// (The mqttpasswd subcommand's part is tested in backend/cli.)
	s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	s.call("POST", "/api/v1/devices", map[string]any{"id": "k1", "site_id": "kortrijk", "kind": "locker",
		"compartments": []map[string]any{{"board": 0, "channel": 3, "size": "M", "height_cm": 100}}}, 201)
	doc := s.call("POST", "/api/v1/documents", map[string]any{"kind": "eid", "number": "591-1234567-89",
		"holder_first_name": "Jan", "holder_last_name": "Peeters", "holder_birth_date": "1980-01-02",
		"language": "nl", "email": "jan@example.be", "site_id": "kortrijk"}, 201)
	id := doc["id"].(string)
	s.call("POST", "/api/v1/documents/"+id+"/reserve", map[string]any{"device_id": "k1"}, 200)
	s.call("POST", "/api/v1/documents/"+id+"/load", nil, 200)

	got := s.call("GET", "/api/v1/devices/k1", nil, 200)
	assert.Nil(t, got["presence"], "never connected")
	// An admin can also (re)set the password over the API; it replaces the old one.
	pw := s.call("POST", "/api/v1/devices/k1/mqtt-password", nil, 201)["password"].(string)
	dev := connectDevice(t, s.Broker, "k1", pw)
	dev.publish(wire.KindPresence, &wire.Presence{State: wire.Online, Software: "kluisd-test"})
	s.waitOnline("k1")

	// Remote open: the device gets the command for board 0 channel 3 and answers done.
	type result struct{ v map[string]any }
	opened := make(chan result, 1)
	go func() {
		opened <- result{s.call("POST", "/api/v1/devices/k1/compartments/1/open", map[string]string{"reason": "door check"}, 200)}
	}()
	testenv.Eventually(t, "the open command", func() bool { return len(dev.commands(wire.CmdOpen)) > 0 })
	cmd := dev.commands(wire.CmdOpen)[0]
	require.NotNil(t, cmd.Addr)
	assert.Equal(t, wire.Address{Board: 0, Channel: 3}, *cmd.Addr)
	assert.Equal(t, "door check", cmd.Reason)
	assert.True(t, cmd.Expires.Before(cmd.Issued.Add(time.Minute)), "a remote open must expire quickly")
	// Signed with the backend's key for this device and this command
	// only: kluisd refuses it for any other device or with any field
	// changed.
	pub := s.Options.Keys.Public()
	require.NoError(t, wire.VerifyCommand(pub, "k1", cmd, time.Now()), "the open command is signed for k1")
	assert.ErrorIs(t, wire.VerifyCommand(pub, "k2", cmd, time.Now()), wire.ErrOtherDevice)
	other := cmd
	other.Addr = &wire.Address{Board: 0, Channel: 4}
	assert.ErrorIs(t, wire.VerifyCommand(pub, "k1", other, time.Now()), wire.ErrBadCommandSig)
	dev.publish(wire.KindCmdResult, &wire.CommandResult{ID: cmd.ID, Status: wire.StatusDone, At: time.Now().UTC()})
	select {
	case r := <-opened:
		assert.Equal(t, "opened", r.v["result"])
	case <-time.After(30 * time.Second):
		t.Fatal("the open request did not return")
	}

	// Offline codes: a reissue makes new codes, and the device's offline
	// cache gets them (hashes only) in a full code_sync.
	re := s.call("POST", "/api/v1/documents/"+id+"/reissue", nil, 200)
	assert.Equal(t, false, re["old_code_opens_offline"], "k1 is online: the sync replaces the old code at once")
	assert.Nil(t, re["warning"])
	var sync *wire.CodeSync
	testenv.Eventually(t, "a code sync with the document", func() bool {
		for _, c := range dev.commands(wire.CmdCodeSync) {
			if c.Codes != nil && len(c.Codes.Entries) == 1 && c.Codes.Entries[0].DocumentID == id {
				sync = c.Codes
				return true
			}
		}
		return false
	})
	assert.True(t, sync.Full)
	for _, c := range dev.commands(wire.CmdCodeSync) {
		require.NoError(t, wire.VerifyCommand(pub, "k1", c, time.Now()), "code syncs are signed too")
	}
	e0 := sync.Entries[0]
	assert.Equal(t, wire.Address{Board: 0, Channel: 3}, e0.Addr)
	assert.NotEmpty(t, e0.QRHash)
	assert.True(t, strings.HasPrefix(e0.PINHash, "argon2id$"), e0.PINHash)
	assert.True(t, e0.SecondFactor, "an eID PIN needs the date of birth, offline too")

	// A wrong code is refused.
	dev.publish(wire.KindVerifyReq, &wire.VerifyRequest{ID: "v1", At: time.Now().UTC(), Method: wire.MethodPIN, PIN: "000000000", BirthDate: "1980-01-02"})
	testenv.Eventually(t, "the verify answer", func() bool { return len(dev.received(wire.KindVerifyRes)) > 0 })
	var vr wire.VerifyResponse
	require.NoError(t, json.Unmarshal(dev.received(wire.KindVerifyRes)[0], &vr))
	assert.Equal(t, "v1", vr.ID)
	assert.Equal(t, wire.VerifyWrongCode, vr.Result)
	// Signed for k1 and this request: kluisd acts on no other answer.
	require.NoError(t, wire.VerifyResponseSig(pub, "k1", "v1", &vr, time.Now()), "the verify answer is signed for k1 and v1")
	assert.ErrorIs(t, wire.VerifyResponseSig(pub, "k2", "v1", &vr, time.Now()), wire.ErrResponseOtherDevice)
	assert.ErrorIs(t, wire.VerifyResponseSig(pub, "k1", "v2", &vr, time.Now()), wire.ErrResponseOtherRequest)
	forged := vr
	forged.Result, forged.DocumentID, forged.Addr = wire.VerifyOK, id, &wire.Address{Board: 0, Channel: 3}
	assert.ErrorIs(t, wire.VerifyResponseSig(pub, "k1", "v1", &forged, time.Now()), wire.ErrBadResponseSig)

	// A pickup naming another document than the compartment holds is
	// refused for good (acknowledged, nothing moves).
	dev.publish(wire.KindEvent, &wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvPickupCompleted, At: time.Now().UTC(),
		Addr: &wire.Address{Board: 0, Channel: 3}, DocumentID: "00000000-0000-4000-8000-000000000000", Method: wire.MethodQR})
	testenv.Eventually(t, "the refused event's ack", func() bool { return dev.acksCaughtUp() })
	assert.Equal(t, "notified", s.call("GET", "/api/v1/documents/"+id, nil, 200)["state"])

	// The pickup event collects the document; a resend is acknowledged and applied once.
	ev := &wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvPickupCompleted, At: time.Now().UTC(),
		Addr: &wire.Address{Board: 0, Channel: 3}, DocumentID: id, Method: wire.MethodQR}
	dev.publish(wire.KindEvent, ev)
	testenv.Eventually(t, "the event ack", func() bool { return dev.acksCaughtUp() })
	got = s.call("GET", "/api/v1/documents/"+id, nil, 200)
	assert.Equal(t, "collected", got["state"])
	dev.publish(wire.KindEvent, ev)
	testenv.Eventually(t, "the second ack", func() bool { return dev.acksCaughtUp() })
	got = s.call("GET", "/api/v1/documents/"+id, nil, 200)
	assert.Equal(t, "collected", got["state"])
	assert.Len(t, got["history"], 6) // register, reserve, load, notify, reissue, collect
	// The collected document's code leaves the device's offline cache.
	testenv.Eventually(t, "an empty code sync after the pickup", func() bool {
		cs := dev.commands(wire.CmdCodeSync)
		last := cs[len(cs)-1]
		return last.Codes != nil && len(last.Codes.Entries) == 0 && last.Codes.Version > sync.Version
	})

	// A door event lands in the audit trail.
	dev.publish(wire.KindEvent, &wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvDoorOpened, At: time.Now().UTC(),
		Addr: &wire.Address{Board: 0, Channel: 3}})
	testenv.Eventually(t, "the door event ack", func() bool { return dev.acksCaughtUp() })
	audit := s.call("GET", "/api/v1/audit?subject=device:k1", nil, 200)
	var actions []string
	for _, it := range audit["items"].([]any) {
		actions = append(actions, it.(map[string]any)["action"].(string))
	}
	assert.Contains(t, actions, "compartment.remote_open")
	assert.Contains(t, actions, "device.door_opened")

	// A command the device refused is audited as denied.
	dev.publish(wire.KindEvent, &wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvCommandRefused, At: time.Now().UTC(),
		CommandID: "cmd-forged-1", Detail: "open: no sig: wire: command not signed"})
	testenv.Eventually(t, "the refusal's ack", func() bool { return dev.acksCaughtUp() })
	refusals := 0
	for _, it := range s.call("GET", "/api/v1/audit?subject=device:k1&limit=200", nil, 200)["items"].([]any) {
		m := it.(map[string]any)
		if m["action"] == "device.command_refused" {
			assert.Equal(t, "cmd-forged-1", m["details"].(map[string]any)["command_id"])
			refusals++
		}
	}
	assert.Equal(t, 1, refusals, "device.command_refused audited")
	// So is an answer the device refused (a forged verify/res).
	dev.publish(wire.KindEvent, &wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvResponseRefused, At: time.Now().UTC(),
		RequestID: "req-forged-1", Detail: "verify/res: no sig: wire: answer not signed"})
	testenv.Eventually(t, "the answer refusal's ack", func() bool { return dev.acksCaughtUp() })
	refusals = 0
	for _, it := range s.call("GET", "/api/v1/audit?subject=device:k1&limit=200", nil, 200)["items"].([]any) {
		m := it.(map[string]any)
		if m["action"] == "device.response_refused" {
			assert.Equal(t, "req-forged-1", m["details"].(map[string]any)["request_id"])
			refusals++
		}
	}
	assert.Equal(t, 1, refusals, "device.response_refused audited")
	v := s.call("GET", "/api/v1/audit/verify", nil, 200)
	assert.Equal(t, true, v["ok"])

	// Kiosk staff: an admin gives a staff member a PIN; at the kiosk the
	// staff member logs in and scans a new document, which gets the free
	// compartment of this device.
	staff := s.call("POST", "/api/v1/users", map[string]string{"username": "an", "password": "counter password 1", "role": "staff"}, 201)
	s.call("PATCH", "/api/v1/users/"+strconv.Itoa(int(staff["id"].(float64))), map[string]string{"kiosk_pin": "48291637"}, 200)
	doc2 := s.call("POST", "/api/v1/documents", map[string]any{"kind": "eid", "number": "591-7654321-00",
		"holder_first_name": "Els", "holder_last_name": "Claes", "holder_birth_date": "1990-03-04",
		"language": "fr", "mobile": "+32470123456", "site_id": "kortrijk"}, 201)
	staffRes := func(n int) wire.StaffResponse {
		t.Helper()
		testenv.Eventually(t, "a staff answer", func() bool { return len(dev.received(wire.KindStaffRes)) >= n })
		m, err := wire.DecodeKind(wire.KindStaffRes, dev.received(wire.KindStaffRes)[n-1])
		require.NoError(t, err)
		r := *m.(*wire.StaffResponse)
		require.NoError(t, wire.VerifyResponseSig(pub, "k1", r.ID, &r, time.Now()), "staff answer %s is signed", r.ID)
		return r
	}
	dev.publish(wire.KindStaffReq, &wire.StaffRequest{ID: "s1", Op: wire.StaffLogin, At: time.Now().UTC(), PIN: "48291637"})
	login := staffRes(1)
	require.Equal(t, wire.StaffOK, login.Result)
	assert.Equal(t, "s1", login.ID)
	assert.Equal(t, "an", login.StaffName)
	assert.Equal(t, strconv.Itoa(int(staff["id"].(float64))), login.StaffID)
	require.NotEmpty(t, login.Session)
	dev.publish(wire.KindStaffReq, &wire.StaffRequest{ID: "s2", Op: wire.StaffReserve, At: time.Now().UTC(), Session: login.Session, DocumentNumber: "591-7654321-00"})
	res := staffRes(2)
	require.Equal(t, wire.StaffOK, res.Result, "%+v", res)
	assert.Equal(t, doc2["id"], res.DocumentID)
	assert.Equal(t, &wire.Address{Board: 0, Channel: 3}, res.Addr)
	dev.publish(wire.KindStaffReq, &wire.StaffRequest{ID: "s3", Op: wire.StaffReserve, At: time.Now().UTC(), Session: login.Session, DocumentNumber: "000-0000000-00"})
	assert.Equal(t, wire.StaffNotFound, staffRes(3).Result)
	dev.publish(wire.KindStaffReq, &wire.StaffRequest{ID: "s4", Op: wire.StaffLogout, At: time.Now().UTC(), Session: login.Session})
	assert.Equal(t, wire.StaffOK, staffRes(4).Result)
	dev.publish(wire.KindStaffReq, &wire.StaffRequest{ID: "s5", Op: wire.StaffReserve, At: time.Now().UTC(), Session: login.Session, DocumentNumber: "591-7654321-00"})
	assert.Equal(t, wire.StaffSessionExpired, staffRes(5).Result)
	// Guessing PINs locks the device's staff login, even for the right PIN.
	for i := 0; i < 5; i++ {
		dev.publish(wire.KindStaffReq, &wire.StaffRequest{ID: "g" + strconv.Itoa(i), Op: wire.StaffLogin, At: time.Now().UTC(), PIN: "11111" + strconv.Itoa(i)})
		assert.Equal(t, wire.StaffDenied, staffRes(6+i).Result)
	}
	dev.publish(wire.KindStaffReq, &wire.StaffRequest{ID: "s6", Op: wire.StaffLogin, At: time.Now().UTC(), PIN: "48291637"})
	assert.Equal(t, wire.StaffDenied, staffRes(11).Result)

	alarmID := wire.NewID(time.Now())
	dev.publish(wire.KindEvent, &wire.Event{ID: alarmID, Kind: wire.EvAlarm, At: time.Now().UTC(),
		Alarm: wire.AlarmDoorLeftOpen, Addr: &wire.Address{Board: 0, Channel: 3}})
	testenv.Eventually(t, "the alarm's ack", func() bool { return dev.acksCaughtUp() })
	// The open alarm on /metrics, until someone acknowledges it (the
	// alert rules stop paging on acknowledged="yes").
	assert.Contains(t, s.metrics(), `kluis_device_alarms_open{acknowledged="no",alarm="door_left_open",device="k1"} 1`)
	ack := s.call("POST", "/api/v1/devices/k1/alarms/"+alarmID+"/ack", map[string]string{"note": "on my way"}, 200)
	assert.Equal(t, true, ack["recorded"])
	m := s.metrics()
	assert.Contains(t, m, `kluis_device_alarms_open{acknowledged="yes",alarm="door_left_open",device="k1"} 1`)
	assert.NotContains(t, m, `kluis_device_alarms_open{acknowledged="no"`)
	// A refused redelivery (duplicate) is counted apart from the refusals
	// an alert is about (the unsigned command above).
	dev.publish(wire.KindEvent, &wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvCommandRefused, At: time.Now().UTC(),
		CommandID: "cmd-again-1", Detail: "open: " + wire.CommandDuplicateWhy})
	testenv.Eventually(t, "the duplicate's ack", func() bool { return dev.acksCaughtUp() })

	m = s.metrics()
	assert.Contains(t, m, `kluis_device_alarms_total{alarm="door_left_open"} 1`)
	assert.Contains(t, m, `kluis_device_alarms_total{alarm="forced_door"} 0`)
	assert.Contains(t, m, `kluis_device_commands_refused_total{reason="unsigned"} 1`)
	assert.Contains(t, m, `kluis_device_commands_refused_total{reason="duplicate"} 1`)
	assert.Contains(t, m, `kluis_device_commands_refused_total{reason="expired"} 0`)
	assert.NotContains(t, m, `cmd-forged-1`, "no command id or device text in a label")
	assert.Contains(t, m, `kluis_codes_verifications_total{reason="wrong_code"} 1`)
	assert.Contains(t, m, `kluis_documents{state="collected"} 1`)
}

// A remote open over the REST API to a device that never connected (no
// presence row) is refused with 409 never_connected, as the staff console
// refuses it: no command is stored or sent, nothing is audited. A device
// that connected once and is offline now keeps the old behaviour: the
// command is stored and sent, expires unanswered, and the failure is
// audited.
func TestRESTRemoteOpenRefusedBeforeTheDeviceConnected(t *testing.T) {
	s := startBackend(t, server.Options{OpenTimeout: 2 * time.Second})
	s.waitLink()
	s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	for _, id := range []string{"never", "once"} {
		s.call("POST", "/api/v1/devices", map[string]any{"id": id, "site_id": "kortrijk", "kind": "locker",
			"compartments": []map[string]any{{"board": 0, "channel": 1, "size": "M", "height_cm": 100}}}, 201)
	}
	ctx := context.Background()
	db, err := pgx.Connect(ctx, s.Options.DatabaseURL)
	require.NoError(t, err)
	defer db.Close(ctx)
	commands := func(device string) (n int) {
		t.Helper()
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM device_commands WHERE device_id = $1 AND kind = 'open'`, device).Scan(&n))
		return n
	}
	opens := func(device string) (details []string) {
		t.Helper()
		page := s.call("GET", "/api/v1/audit?subject=device:"+device, nil, 200)
		for _, it := range page["items"].([]any) {
			rec := it.(map[string]any)
			if rec["action"] == "compartment.remote_open" {
				b, _ := json.Marshal(rec["details"])
				details = append(details, string(b))
			}
		}
		return details
	}

	refused := s.call("POST", "/api/v1/devices/never/compartments/1/open", map[string]string{"reason": "door check"}, 409)
	e, _ := refused["error"].(map[string]any)
	require.NotNil(t, e, "a JSON error body: %v", refused)
	assert.Equal(t, "never_connected", e["code"])
	assert.Contains(t, e["message"], "never connected")
	assert.Zero(t, commands("never"), "nothing queued for a device that never connected")
	assert.Empty(t, opens("never"), "a refused open is not audited, as in the console")

	// "once" connects, then goes away.
	pw := s.call("POST", "/api/v1/devices/once/mqtt-password", nil, 201)["password"].(string)
	dev := connectDevice(t, s.Broker, "once", pw)
	dev.publish(wire.KindPresence, &wire.Presence{State: wire.Online, Software: "kluisd-test"})
	dev.publish(wire.KindPresence, &wire.Presence{State: wire.Offline})
	dev.c.Disconnect(100)
	testenv.Eventually(t, "the device to show offline", func() bool {
		p, _ := s.call("GET", "/api/v1/devices/once", nil, 200)["presence"].(map[string]any)
		return p != nil && p["online"] == false
	})
	failed := s.call("POST", "/api/v1/devices/once/compartments/1/open", map[string]string{"reason": "door check"}, 504)
	e, _ = failed["error"].(map[string]any)
	require.NotNil(t, e, "a JSON error body: %v", failed)
	assert.Equal(t, "no_answer", e["code"])
	assert.Equal(t, 1, commands("once"), "the command is stored for a device that connected once")
	got := opens("once")
	require.Len(t, got, 1)
	assert.Contains(t, got[0], `"result":"no_answer"`)
}

// TestRESTRemoteOpenLateResult: the device (a client on the embedded
// broker) receives the open, carries it out and its result arrives after
// the API stopped waiting. The API must not say the command "expires
// unexecuted" (it said so before): it answers 504 no_answer saying the
// door may or may not have opened, audits the open as no_answer (not
// failed), and the late result is recorded on the command's row (done).
func TestRESTRemoteOpenLateResult(t *testing.T) {
	s := startBackend(t, server.Options{OpenTimeout: 2 * time.Second})
	s.waitLink()
	s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	s.call("POST", "/api/v1/devices", map[string]any{"id": "late", "site_id": "kortrijk", "kind": "locker",
		"compartments": []map[string]any{{"board": 0, "channel": 1, "size": "M", "height_cm": 100}}}, 201)
	pw := s.call("POST", "/api/v1/devices/late/mqtt-password", nil, 201)["password"].(string)
	dev := connectDevice(t, s.Broker, "late", pw)
	dev.publish(wire.KindPresence, &wire.Presence{State: wire.Online, Software: "kluisd-test"})
	s.waitOnline("late")

	answer := make(chan map[string]any, 1)
	go func() {
		answer <- s.call("POST", "/api/v1/devices/late/compartments/1/open", map[string]string{"reason": "door check"}, 504)
	}()
	testenv.Eventually(t, "the open command", func() bool { return len(dev.commands(wire.CmdOpen)) > 0 })
	cmd := dev.commands(wire.CmdOpen)[0]
	// Carried out now (before its expiry); the result is held back until
	// the API gave up.
	at := time.Now().UTC()
	var got map[string]any
	select {
	case got = <-answer:
	case <-time.After(60 * time.Second):
		t.Fatal("the open request did not return")
	}
	dev.publish(wire.KindCmdResult, &wire.CommandResult{ID: cmd.ID, Status: wire.StatusDone, At: at})
	e, _ := got["error"].(map[string]any)
	require.NotNil(t, e, "a JSON error body: %v", got)
	assert.Equal(t, "no_answer", e["code"])
	msg, _ := e["message"].(string)
	assert.NotContains(t, msg, "unexecuted")
	assert.Contains(t, msg, "may or may not have opened")

	ctx := context.Background()
	db, err := pgx.Connect(ctx, s.Options.DatabaseURL)
	require.NoError(t, err)
	defer db.Close(ctx)
	testenv.Eventually(t, "the late result recorded on the command", func() bool {
		var st string
		require.NoError(t, db.QueryRow(ctx, `SELECT status FROM device_commands WHERE command_id = $1`, cmd.ID).Scan(&st))
		return st == string(wire.StatusDone)
	})
	page := s.call("GET", "/api/v1/audit?subject=device:late", nil, 200)
	n := 0
	for _, it := range page["items"].([]any) {
		rec := it.(map[string]any)
		if rec["action"] == "compartment.remote_open" {
			n++
			assert.Equal(t, "no_answer", rec["details"].(map[string]any)["result"], "not failed: the door may have opened")
		}
	}
	assert.Equal(t, 1, n)
}

// TestRESTRemoteOpenUncertainResult: the device restarted while carrying
// out the open and answers uncertain (docs/kluisd.md, "An interrupted
// command"). The API answers at once 504 no_answer saying the device
// restarted (not the timeout's words), audits the open as no_answer, and
// the command's row keeps the status uncertain (migration 0207).
func TestRESTRemoteOpenUncertainResult(t *testing.T) {
	s := startBackend(t, server.Options{OpenTimeout: time.Minute})
	dev := s.onlineDevice("restarted", 1)

	answer := make(chan map[string]any, 1)
	go func() {
		answer <- s.call("POST", "/api/v1/devices/restarted/compartments/1/open", map[string]string{"reason": "door check"}, 504)
	}()
	testenv.Eventually(t, "the open command", func() bool { return len(dev.commands(wire.CmdOpen)) > 0 })
	cmd := dev.commands(wire.CmdOpen)[0]
	dev.publish(wire.KindCmdResult, &wire.CommandResult{ID: cmd.ID, Status: wire.StatusUncertain, At: time.Now().UTC(),
		Detail: "kluisd restarted while carrying it out"})
	var got map[string]any
	select {
	case got = <-answer:
	case <-time.After(60 * time.Second):
		t.Fatal("the open request did not return")
	}
	e, _ := got["error"].(map[string]any)
	require.NotNil(t, e, "a JSON error body: %v", got)
	assert.Equal(t, "no_answer", e["code"])
	assert.Contains(t, e["message"], "restarted while carrying out the command")

	ctx := context.Background()
	db, err := pgx.Connect(ctx, s.Options.DatabaseURL)
	require.NoError(t, err)
	defer db.Close(ctx)
	var st string
	require.NoError(t, db.QueryRow(ctx, `SELECT status FROM device_commands WHERE command_id = $1`, cmd.ID).Scan(&st))
	assert.Equal(t, string(wire.StatusUncertain), st)
	page := s.call("GET", "/api/v1/audit?subject=device:restarted", nil, 200)
	n := 0
	for _, it := range page["items"].([]any) {
		rec := it.(map[string]any)
		if rec["action"] == "compartment.remote_open" {
			n++
			assert.Equal(t, "no_answer", rec["details"].(map[string]any)["result"])
		}
	}
	assert.Equal(t, 1, n)
}

// TestDeviceLinkKeepsTheBackendsClock: the device link and the MQTT
// credential checks read server.Options.Clock like every other part: a
// device's presence (online since) and its remembered password check are
// timed by the backend's clock, not the machine's. They read time.Now, so
// a backend whose clock was not the machine's (tests, a replay) showed a
// device online since a time its own clock had not reached.
func TestDeviceLinkKeepsTheBackendsClock(t *testing.T) {
	clock := storetest.NewClock(time.Now().Add(-90 * 24 * time.Hour).Truncate(time.Second))
	s := startBackend(t, server.Options{Clock: clock.Now})
	s.onlineDevice("k1", 3)

	p := s.call("GET", "/api/v1/devices/k1", nil, 200)["presence"].(map[string]any)
	since, err := time.Parse(time.RFC3339Nano, p["since"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, clock.Now(), since, time.Minute, "online since, by the backend's clock")

	ctx := context.Background()
	db, err := pgx.Connect(ctx, s.Options.DatabaseURL)
	require.NoError(t, err)
	defer db.Close(ctx)
	var checked time.Time
	require.NoError(t, db.QueryRow(ctx, `SELECT checked_at FROM mqtt_credential_checks WHERE username = 'k1'`).Scan(&checked))
	require.WithinDuration(t, clock.Now(), checked, time.Minute, "the password check remembered by the backend's clock")
}
