package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"time"

	"kluis/backend/api/apiclient"
)

var httpc = &http.Client{Timeout: 30 * time.Second}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// api is kluis-backend's REST API as one user.
type api struct{ apiclient.Session }

// login opens a session for username.
func login(ctx context.Context, base, username, password string) (api, error) {
	s, err := apiclient.Login(ctx, httpc, base, username, password)
	return api{s}, err
}

// maxAudit bounds the audit records the demo reads about one subject.
const maxAudit = 40000

// document is the API's document.
type document = apiclient.Document

type compartment struct {
	ID      int64  `json:"id"`
	Number  int    `json:"number"`
	Board   int    `json:"board"`
	Channel int    `json:"channel"`
	Size    string `json:"size"`
	// HeightCM is the height of the compartment's middle above the floor.
	HeightCM int    `json:"height_cm"`
	State    string `json:"state"`
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

func (a api) device(ctx context.Context, id string) (deviceInfo, error) {
	var d deviceInfo
	err := a.Do(ctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(id), nil, &d)
	return d, err
}
