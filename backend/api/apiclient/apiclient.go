// Package apiclient sends JSON over HTTP the way kluis-backend's REST API
// expects it: a bearer token, a JSON body, a fresh Idempotency-Key on every
// POST under /api/v1/, and non-2xx answers as a *StatusError that keeps the
// status and the body (the API's {"error":{"code","message"}}). Login opens
// a Session (the API as one user) and Session.Audit pages through the audit
// chain. The demo, the system tests and the chaos gauntlet use it for the
// API; DoJSON serves other local JSON endpoints too.
package apiclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxAnswer is the largest answer body read; the rest is cut off.
const MaxAnswer = 8 << 20

// StatusError is a non-2xx answer.
type StatusError struct {
	Method, URL string
	Status      int
	Body        string
}

// Error names the request and status, with the start of the body.
func (e *StatusError) Error() string {
	b := strings.Join(strings.Fields(e.Body), " ")
	if len(b) > 300 {
		b = b[:300] + "…"
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, b)
}

// StatusOf returns the HTTP status of a *StatusError in err's chain, 0
// otherwise.
func StatusOf(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// DoJSON sends in (when not nil) as JSON to url with hc (nil:
// http.DefaultClient), with bearer as the Authorization when not empty, and
// decodes a 2xx answer into out (when not nil and the body is not empty).
func DoJSON(ctx context.Context, hc *http.Client, method, url, bearer string, in, out any) error {
	if hc == nil {
		hc = http.DefaultClient
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, url, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if method == http.MethodPost && strings.Contains(url, "/api/v1/") {
		req.Header.Set("Idempotency-Key", newKey())
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{Method: method, URL: url, Status: resp.StatusCode, Body: string(b)}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, url, err)
		}
	}
	return nil
}

func newKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
