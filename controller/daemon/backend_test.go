package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/notify/mailread"
	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/controller/wire"
)

// realBackend is kluis-backend itself, started in-process on a private
// database with its embedded broker on a loopback port; kluisd connects to
// it as device dev. Documents are registered, reserved and loaded over the
// REST API, and their QR codes are read from the e-mails the backend
// writes, as a citizen would.
type realBackend struct {
	*servertest.Backend
	t   *testing.T
	dev string
	// password is dev's MQTT password, in passwordFile.
	password, passwordFile string
	mails                  string
}

// startRealBackend starts the backend with one locker dev whose
// compartments are addrs (numbered from 1 in that order). o's zero fields
// get servertest's test values; e-mails go to a drop directory.
func startRealBackend(t *testing.T, dev string, addrs []wire.Address, o server.Options) *realBackend {
	t.Helper()
	dir := t.TempDir()
	b := &realBackend{t: t, dev: dev, mails: filepath.Join(dir, "mail")}
	o.MailURL = "drop:" + b.mails
	b.Backend = servertest.Start(t, o)
	ctx := context.Background()
	require.NoError(t, b.Call(ctx, http.MethodPost, "/api/v1/sites", map[string]any{"id": "site-" + dev, "name": "Stadhuis"}, nil))
	comps := make([]map[string]any, 0, len(addrs))
	for _, a := range addrs {
		comps = append(comps, map[string]any{"board": a.Board, "channel": a.Channel, "size": "M", "height_cm": 100})
	}
	require.NoError(t, b.Call(ctx, http.MethodPost, "/api/v1/devices", map[string]any{"id": dev, "site_id": "site-" + dev,
		"kind": "locker", "compartments": comps}, nil))
	pw, err := b.DevicePassword(ctx, dev)
	require.NoError(t, err)
	b.password, b.passwordFile = pw, filepath.Join(dir, "mqtt.pw")
	require.NoError(t, os.WriteFile(b.passwordFile, []byte(pw+"\n"), 0o600))
	return b
}

// mqttConfig is kluisd's mqtt section for this backend.
func (b *realBackend) mqttConfig() string {
	return fmt.Sprintf("{url: tcp://%s, username: %s, password_file: %s}", b.Broker, b.dev, b.passwordFile)
}

// loadDocuments registers, reserves and loads n documents (one per
// compartment) and returns their ids and the QR tokens their holders were
// e-mailed, by document id.
func (b *realBackend) loadDocuments(n int) ([]string, map[string]string) {
	b.t.Helper()
	ctx := context.Background()
	var ids []string
	byMail := map[string]string{}
	for i := 1; i <= n; i++ {
		var doc struct {
			ID string `json:"id"`
		}
		mail := fmt.Sprintf("holder-%d@example.be", i)
		require.NoError(b.t, b.Call(ctx, http.MethodPost, "/api/v1/documents", map[string]any{"kind": "eid",
			"number": fmt.Sprintf("591-%07d-%02d", i, i), "holder_first_name": "Jan", "holder_last_name": "Peeters",
			"holder_birth_date": "1980-01-02", "language": "nl", "email": mail, "site_id": "site-" + b.dev}, &doc))
		require.NoError(b.t, b.Call(ctx, http.MethodPost, "/api/v1/documents/"+doc.ID+"/reserve", nil, nil), "document %d", i)
		require.NoError(b.t, b.Call(ctx, http.MethodPost, "/api/v1/documents/"+doc.ID+"/load", nil, nil))
		ids = append(ids, doc.ID)
		byMail[mail] = doc.ID
	}
	tokens := map[string]string{}
	deadline := time.Now().Add(30 * time.Second)
	for len(tokens) < n && time.Now().Before(deadline) {
		mails, err := mailread.ReadDir(b.mails)
		require.NoError(b.t, err)
		for _, m := range mails {
			if id, ok := byMail[strings.Trim(m.To, "<>")]; ok && m.QR != "" {
				tokens[id] = m.QR
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Len(b.t, tokens, n, "a QR code e-mailed for every document")
	return ids, tokens
}

// state is a document's state at the backend.
func (b *realBackend) state(id string) string {
	b.t.Helper()
	var doc struct {
		State string `json:"state"`
	}
	require.NoError(b.t, b.Call(context.Background(), http.MethodGet, "/api/v1/documents/"+id, nil, &doc))
	return doc.State
}

// auditActions counts the audit actions about subject.
func (b *realBackend) auditActions(subject string) map[string]int {
	b.t.Helper()
	var page struct {
		Items []struct {
			Action  string         `json:"action"`
			Details map[string]any `json:"details"`
		} `json:"items"`
	}
	require.NoError(b.t, b.Call(context.Background(), http.MethodGet, "/api/v1/audit?subject="+subject+"&limit=200", nil, &page))
	out := map[string]int{}
	for _, it := range page.Items {
		out[it.Action]++
	}
	return out
}
