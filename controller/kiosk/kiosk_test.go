package kiosk

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"
	"golang.org/x/term"

	"kluis/controller/engine"
	"kluis/controller/engine/enginetest"
	"kluis/deploy/dev/testenv"
	"kluis/hardware"
	"kluis/hardware/hardwaretest"
	"kluis/hardware/serialport"
)

const dev = "kiosk-test"

type rig struct {
	er  *enginetest.Rig
	e   *engine.Engine
	f   *hardwaretest.Fake
	srv *httptest.Server
}

func newRig(t testing.TB) *rig { return newRigWith(t, nil) }

// newRigWith starts an engine with backend be (nil: offline only) behind
// the kiosk handler.
func newRigWith(t testing.TB, be engine.Backend) *rig {
	er := enginetest.Start(t, enginetest.Options{DeviceID: dev, Backend: be})
	srv := httptest.NewServer(Handler(er.Engine, er.Logger))
	t.Cleanup(srv.Close)
	return &rig{er: er, e: er.Engine, f: er.Driver, srv: srv}
}

// token syncs a QR code for compartment ch into the offline cache and
// returns the token.
func (r *rig) token(t *testing.T, doc string, ch int) string { return r.er.SyncQR(t, doc, ch) }

func (r *rig) post(t *testing.T, path, body string) (int, map[string]any) {
	resp, err := testenv.HTTPClient().Post(r.srv.URL+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

func TestPickupOverHTTP(t *testing.T) {
	r := newRig(t)
	tok := r.token(t, "doc-1", 1)
	code, out := r.post(t, "/kiosk/v1/pickup", `{"qr":"`+tok+`","lang":"en"}`)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, engine.StateOpen, out["state"])
	require.Equal(t, float64(2), out["compartment"])
	require.Contains(t, out["message"], "Compartment\u00a02 is open")
	testenv.Eventually(t, "pulse", func() bool { return r.f.PulseCount(hardware.Address{Channel: 1}) == 1 })

	resp, err := testenv.HTTPClient().Get(r.srv.URL + "/kiosk/v1/session")
	require.NoError(t, err)
	var scr engine.Screen
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&scr))
	resp.Body.Close()
	require.Equal(t, engine.StateOpen, scr.State)
	for _, l := range []string{"nl", "fr", "en", "de"} {
		require.NotEmpty(t, scr.Messages[l])
	}

	code, out = r.post(t, "/kiosk/v1/pickup", `{"qr":"K1.nonsense"}`)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, engine.StateWrongCode, out["state"])
}

func TestBadRequests(t *testing.T) {
	r := newRig(t)
	for body, want := range map[string]int{
		``:                                     http.StatusBadRequest,
		`{`:                                    http.StatusBadRequest,
		`[]`:                                   http.StatusBadRequest,
		`{"qr":1}`:                             http.StatusBadRequest,
		`{"qr":"a","x":1}`:                     http.StatusBadRequest,
		`{"qr":"a"} {"qr":"b"}`:                http.StatusBadRequest,
		`{}`:                                   http.StatusBadRequest,
		`{"pin":"98765abc"}`:                   http.StatusBadRequest,
		`{"pin":"987654321","birth_date":"x"}`: http.StatusBadRequest,
		`{"qr":"` + strings.Repeat("a", 9000) + `"}`: http.StatusRequestEntityTooLarge,
	} {
		code, out := r.post(t, "/kiosk/v1/pickup", body)
		require.Equal(t, want, code, "%.40s: %v", body, out)
		require.NotEmpty(t, out["error"])
		require.NotContains(t, out["error"], "98765", "no PIN echoed")
	}
	require.Empty(t, r.f.Pulses())
	code, out := r.post(t, "/kiosk/v1/tech/test-open", `{"compartment":1}`)
	require.Equal(t, http.StatusForbidden, code, out)
	code, out = r.post(t, "/kiosk/v1/staff/load", `{"document_number":"591-1"}`)
	require.Equal(t, http.StatusForbidden, code, out)
	// Without a backend a staff login cannot be checked: refused screen.
	code, out = r.post(t, "/kiosk/v1/staff/login", `{"badge":"B-1"}`)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, engine.StateError, out["state"])
	code, _ = r.post(t, "/kiosk/v1/staff/login", `{"badge":"B-1","pin":"1234"}`)
	require.Equal(t, http.StatusBadRequest, code)
	// A control character in a badge or staff PIN is bad input (400), not
	// an "error" screen.
	for _, body := range []string{`{"badge":"\u0000"}`, `{"badge":"B-1\u0000"}`, `{"badge":"B-\u001b1"}`, `{"pin":"1234\u0000"}`} {
		code, out = r.post(t, "/kiosk/v1/staff/login", body)
		require.Equal(t, http.StatusBadRequest, code, "%s: %v", body, out)
		require.Contains(t, out["error"], "control character", body)
	}
	// Surrounding white space from a wedge scanner is not refused.
	code, out = r.post(t, "/kiosk/v1/staff/login", `{"badge":"B-1\r\n"}`)
	require.Equal(t, http.StatusOK, code, out)

	// Requests from elsewhere than loopback are refused.
	req := httptest.NewRequest(http.MethodGet, "/kiosk/v1/session", nil)
	req.RemoteAddr = "192.168.1.20:5555"
	w := httptest.NewRecorder()
	Handler(r.e, nil).ServeHTTP(w, req)
	require.Equal(t, http.StatusForbidden, w.Code)

	// Nobody is logged in: the diagnostics are refused
	// (TestDiagnosticsNeedATechnicianLoggedIn).
	resp, err := testenv.HTTPClient().Get(r.srv.URL + "/kiosk/v1/diagnostics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

// A serial barcode scanner on a real pseudo-terminal: each line is a QR
// submission; garbage and over-long lines open nothing.
func TestScannerOnPTY(t *testing.T) {
	r := newRig(t)
	tok := r.token(t, "doc-s", 0)
	master, slave, err := pty.Open()
	require.NoError(t, err)
	defer master.Close()
	defer slave.Close()
	_, err = term.MakeRaw(int(slave.Fd()))
	require.NoError(t, err)
	port, err := serialport.Open(slave.Name(), 9600, serialport.Options{})
	require.NoError(t, err)
	defer port.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ReadScanner(ctx, port, r.e.Pickup, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	var in bytes.Buffer
	in.WriteString(strings.Repeat("x", MaxScan+10) + "\r\n") // dropped
	in.WriteString("\r\n")                                   // empty
	in.WriteString(tok + "\r\n")
	_, err = master.Write(in.Bytes())
	require.NoError(t, err)
	testenv.Eventually(t, "pulse from scan", func() bool { return r.f.PulseCount(hardware.Address{Channel: 0}) == 1 })
	require.Len(t, r.f.Pulses(), 1)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("scanner did not stop")
	}
}
