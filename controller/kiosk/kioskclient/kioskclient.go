// Package kioskclient calls kluisd's loopback kiosk API (/kiosk/v1/...,
// served by controller/kiosk) as the kiosk screen does: JSON requests, the
// screen to show as the answer. The demo (cmd/kluis-demo) and the system
// tests (controller/systemtest) use it.
package kioskclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"kluis/controller/engine"
)

// Client is one kluisd's kiosk API.
type Client struct {
	// Base is the API's root URL, such as "http://127.0.0.1:9107".
	Base string
	// HTTP sends the requests; nil means a client with a 30 s timeout.
	HTTP *http.Client
}

// New returns a Client for the kiosk API at base.
func New(base string) *Client { return &Client{Base: base} }

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// StatusError is a non-2xx answer from the kiosk API.
type StatusError struct {
	// Method and URL of the request.
	Method, URL string
	// Status is the HTTP status code.
	Status int
	// Body is the start of the answer's body.
	Body string
}

// Error names the request, the status and the body on one line.
func (e *StatusError) Error() string {
	body := strings.Join(strings.Fields(e.Body), " ")
	if len(body) > 300 {
		body = body[:300] + "…"
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, body)
}

// Post sends in (when not nil) as JSON to path (such as "/kiosk/v1/pickup")
// and returns the screen the kiosk answers with.
func (c *Client) Post(ctx context.Context, path string, in any) (engine.Screen, error) {
	var s engine.Screen
	err := c.do(ctx, http.MethodPost, path, in, &s)
	return s, err
}

// Session returns the screen the kiosk shows now (GET /kiosk/v1/session).
func (c *Client) Session(ctx context.Context) (engine.Screen, error) {
	var s engine.Screen
	err := c.do(ctx, http.MethodGet, "/kiosk/v1/session", nil, &s)
	return s, err
}

// Diagnostics returns the device's diagnostics (GET /kiosk/v1/diagnostics):
// boards, doors, backlog, the PIN lockout, the last alarms. kluisd
// answers them only while a technician or an admin is logged in at the
// kiosk (a StatusError 403 otherwise); without a login, kluisd's /healthz
// (daemonclient.Health) says ready, backlog and the operations under way.
func (c *Client) Diagnostics(ctx context.Context) (engine.Diagnostics, error) {
	var d engine.Diagnostics
	err := c.do(ctx, http.MethodGet, "/kiosk/v1/diagnostics", nil, &d)
	return d, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	u := c.Base + path
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{Method: method, URL: u, Status: resp.StatusCode, Body: string(b)}
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, u, err)
		}
	}
	return nil
}
