package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// slipPIN reads the clear PIN from a document's pickup slip.
func (s *backend) slipPIN(id string) string {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.URL("/api/v1/documents/"+id+"/slip"), nil)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := s.client.Do(req)
	require.NoError(s.t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	require.Equal(s.t, 200, res.StatusCode, string(b))
	m := regexp.MustCompile(`class="pin">([0-9 ]+)<`).FindSubmatch(b)
	require.NotNil(s.t, m, "no PIN on the slip")
	return strings.ReplaceAll(string(m[1]), " ", "")
}

// verify asks the backend over MQTT and waits for the answer to this id.
func (d *fakeDevice) verify(id, pin, dob string) wire.VerifyResponse {
	d.t.Helper()
	return d.verifyAt(time.Now().UTC(), id, pin, dob)
}

// verifyAt is verify with the request made at at (by the device's clock).
func (d *fakeDevice) verifyAt(at time.Time, id, pin, dob string) wire.VerifyResponse {
	d.t.Helper()
	d.publish(wire.KindVerifyReq, &wire.VerifyRequest{ID: id, At: at, Method: wire.MethodPIN, PIN: pin, BirthDate: dob})
	var got wire.VerifyResponse
	testenv.Eventually(d.t, "the verify answer "+id, func() bool {
		for _, b := range d.received(wire.KindVerifyRes) {
			var r wire.VerifyResponse
			if json.Unmarshal(b, &r) == nil && r.ID == id {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// The citizen opened the door and left the document: over the real MQTT
// link the same PIN works again (within -code-grace), once, and the pickup
// that follows collects the document.
func TestPickupNotCollectedGivesTheCodeBackOverMQTT(t *testing.T) {
	s, dev, id, pin := loadedForPickup(t)
	r := dev.verify("v1", pin, "1980-01-02")
	require.Equal(t, wire.VerifyOK, r.Result)
	require.Equal(t, id, r.DocumentID)
	require.Equal(t, wire.VerifyPending, dev.verify("v2", pin, "1980-01-02").Result, "used, the document still there")

	dev.publish(wire.KindEvent, &wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvPickupNotCollected, At: time.Now().UTC(),
		Addr: &wire.Address{Board: 0, Channel: 5}, DocumentID: id, Method: wire.MethodPIN})
	testenv.Eventually(t, "the event's ack", func() bool { return dev.acksCaughtUp() })
	require.Equal(t, wire.VerifyOK, dev.verify("v3", pin, "1980-01-02").Result, "the code is given back")
	require.Equal(t, wire.VerifyPending, dev.verify("v4", pin, "1980-01-02").Result, "once")

	dev.publish(wire.KindEvent, &wire.Event{ID: wire.NewID(time.Now()), Kind: wire.EvPickupCompleted, At: time.Now().UTC(),
		Addr: &wire.Address{Board: 0, Channel: 5}, DocumentID: id, Method: wire.MethodPIN})
	testenv.Eventually(t, "the second ack", func() bool { return dev.acksCaughtUp() })
	require.Equal(t, "collected", s.call("GET", "/api/v1/documents/"+id, nil, 200)["state"])
	audit := s.call("GET", "/api/v1/audit?subject=document:"+id+"&limit=200", nil, 200)
	var actions []string
	for _, it := range audit["items"].([]any) {
		actions = append(actions, it.(map[string]any)["action"].(string))
	}
	require.Contains(t, actions, "code.rearmed")
}

// A verify request that reaches the backend long after the kiosk gave up
// on it (queued in a broker, replayed) claimed the citizen's code for
// nobody: the kiosk had moved on, and the citizen's next try was
// "pending" for minutes. Now a request older than any kiosk waits
// (devicelink.MaxVerifyAge, by the request's "at") is answered
// unavailable without being checked; the code stays the citizen's.
func TestLateVerifyRequestClaimsNoCode(t *testing.T) {
	s, dev, id, pin := loadedForPickup(t)
	late := dev.verifyAt(time.Now().UTC().Add(-10*time.Minute), "v-late", pin, "1980-01-02")
	require.Equal(t, wire.VerifyUnavailable, late.Result, "the kiosk gave up on it long ago")
	r := dev.verify("v1", pin, "1980-01-02")
	require.Equal(t, wire.VerifyOK, r.Result, "the citizen's own try opens")
	require.Equal(t, id, r.DocumentID)
	require.Contains(t, s.metrics(), `kluis_devicelink_messages_total{kind="verify/req",outcome="stale"} 1`)
}

// loadedForPickup starts a backend with device k1 connected and a
// document loaded in it, and returns the document's id and PIN (birth
// date 1980-01-02).
func loadedForPickup(t *testing.T) (*backend, *fakeDevice, string, string) {
	s := startBackend(t, server.Options{})
	s.waitLink()
	s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	s.call("POST", "/api/v1/devices", map[string]any{"id": "k1", "site_id": "kortrijk", "kind": "locker",
		"compartments": []map[string]any{{"board": 0, "channel": 5, "size": "M", "height_cm": 100}}}, 201)
	doc := s.call("POST", "/api/v1/documents", map[string]any{"kind": "eid", "number": "591-1234567-89",
		"holder_first_name": "Jan", "holder_last_name": "Peeters", "holder_birth_date": "1980-01-02",
		"language": "nl", "email": "jan@example.be", "site_id": "kortrijk"}, 201)
	id := doc["id"].(string)
	s.call("POST", "/api/v1/documents/"+id+"/reserve", map[string]any{"device_id": "k1"}, 200)
	s.call("POST", "/api/v1/documents/"+id+"/load", nil, 200)
	pin := s.slipPIN(id)

	pw := s.call("POST", "/api/v1/devices/k1/mqtt-password", nil, 201)["password"].(string)
	return s, connectDevice(t, s.Broker, "k1", pw), id, pin
}
