package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"kluis/backend/api/apiclient"
)

var httpc = &http.Client{Timeout: 30 * time.Second}

// doJSON is apiclient.DoJSON with this package's HTTP client.
func doJSON(ctx context.Context, method, u, bearer string, in, out any) error {
	return apiclient.DoJSON(ctx, httpc, method, u, bearer, in, out)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// api is kluis-backend's REST API as one user.
type api struct {
	base  string // http://host:port
	token string
}

func (a api) do(ctx context.Context, method, path string, in, out any) error {
	return doJSON(ctx, method, a.base+path, a.token, in, out)
}

// login opens a session for username.
func login(ctx context.Context, base, username, password string) (api, error) {
	var tok struct {
		Token string `json:"token"`
	}
	if err := doJSON(ctx, http.MethodPost, base+"/api/v1/sessions", "", map[string]string{"username": username, "password": password}, &tok); err != nil {
		return api{}, err
	}
	if tok.Token == "" {
		return api{}, fmt.Errorf("login %s: no token in the answer", username)
	}
	return api{base: base, token: tok.Token}, nil
}

// document is the part of the API's document the demo reads.
type document struct {
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`
	Number        string     `json:"number"`
	State         string     `json:"state"`
	DeviceID      string     `json:"device_id"`
	CompartmentID int64      `json:"compartment_id"`
	Deadline      *time.Time `json:"deadline"`
	LoadedAt      *time.Time `json:"loaded_at"`
	History       []struct {
		To    string `json:"to"`
		Actor string `json:"actor"`
	} `json:"history"`
}

// actorOf returns who moved the document into state ("" when it never was).
func (d document) actorOf(state string) string {
	for i := len(d.History) - 1; i >= 0; i-- {
		if d.History[i].To == state {
			return d.History[i].Actor
		}
	}
	return ""
}

type compartment struct {
	ID      int64  `json:"id"`
	Number  int    `json:"number"`
	Board   int    `json:"board"`
	Channel int    `json:"channel"`
	Size    string `json:"size"`
	State   string `json:"state"`
}

type deviceInfo struct {
	ID           string        `json:"id"`
	Kind         string        `json:"kind"`
	Compartments []compartment `json:"compartments"`
	Presence     *struct {
		Online   bool   `json:"online"`
		Software string `json:"software"`
	} `json:"presence"`
}

// online reports the backend's view of the device's link.
func (d deviceInfo) online() bool { return d.Presence != nil && d.Presence.Online }

func (a api) document(ctx context.Context, id string) (document, error) {
	var d document
	err := a.do(ctx, http.MethodGet, "/api/v1/documents/"+url.PathEscape(id), nil, &d)
	return d, err
}

func (a api) device(ctx context.Context, id string) (deviceInfo, error) {
	var d deviceInfo
	err := a.do(ctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(id), nil, &d)
	return d, err
}

type auditRecord struct {
	Seq     int64          `json:"seq"`
	At      time.Time      `json:"at"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Subject string         `json:"subject"`
	Details map[string]any `json:"details"`
}

// audit returns up to 1000 audit records about subject.
func (a api) audit(ctx context.Context, subject string) ([]auditRecord, error) {
	var all []auditRecord
	cursor := ""
	for i := 0; i < 5; i++ {
		var page struct {
			Items      []auditRecord `json:"items"`
			NextCursor string        `json:"next_cursor"`
		}
		q := url.Values{"subject": {subject}, "limit": {"200"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		if err := a.do(ctx, http.MethodGet, "/api/v1/audit?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	return all, nil
}
