package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/daemon/daemonclient"
	"kluis/controller/engine"
	"kluis/deploy/dev/testenv"
)

// health reads kluisd's /healthz on its metrics listener (the zero Health
// when it does not answer yet).
func health(metrics string) daemonclient.Health {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, _ := daemonclient.New(metrics, daemonclient.Options{HTTP: testenv.HTTPClient()}).Health(ctx)
	return h
}

// alarmsRaised reads kluisd_alarms_total{alarm=kind} (the alarms of that
// kind journaled since start-up) from kluisd's /metrics; -1 when absent.
func alarmsRaised(metrics, kind string) float64 {
	return metricSample(metrics, "kluisd_alarms_total", fmt.Sprintf("alarm=%q", kind))
}

// technician registers a technician with a kiosk PIN at the backend and
// returns the PIN (GET /kiosk/v1/diagnostics answers a technician logged
// in at the kiosk only).
func (b *realBackend) technician() string {
	b.t.Helper()
	ctx := context.Background()
	var u struct {
		ID int64 `json:"id"`
	}
	require.NoError(b.t, b.Call(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": "tech-" + b.dev,
		"password": "Tech-password-" + b.dev, "role": "technician"}, &u))
	const pin = "73194628"
	require.NoError(b.t, b.Call(ctx, http.MethodPatch, fmt.Sprintf("/api/v1/users/%d", u.ID), map[string]string{"kiosk_pin": pin}, nil))
	return pin
}

// techDiagnostics logs the technician with pin in at the kiosk, reads
// the diagnostics the technician's panel shows, and logs out.
func techDiagnostics(t *testing.T, kiosk, pin string) engine.Diagnostics {
	t.Helper()
	post := func(path, body string) engine.Screen {
		t.Helper()
		resp, err := testenv.HTTPClient().Post("http://"+kiosk+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var scr engine.Screen
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&scr))
		return scr
	}
	scr := post("/kiosk/v1/staff/login", `{"pin":"`+pin+`"}`)
	require.Equal(t, engine.StateStaff, scr.State, "the technician's login: %+v", scr)
	defer post("/kiosk/v1/staff/logout", "")
	resp, err := testenv.HTTPClient().Get("http://" + kiosk + "/kiosk/v1/diagnostics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var d engine.Diagnostics
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&d))
	return d
}
