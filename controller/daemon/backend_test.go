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

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kluis/backend/api/apiclient"
	"kluis/backend/notify/mailread"
	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
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
	// pubKeyFile holds the backend's signing.pub, kluisd's
	// offline.public_key_file: without it kluisd acts on no answer.
	pubKeyFile string
}

// compartment is one of a device's compartments as the backend knows it:
// on an automaton the channel is the carousel slot.
type compartment struct {
	number int
	addr   wire.Address
}

// numbered gives addrs the numbers 1, 2, ... in order.
func numbered(addrs ...wire.Address) []compartment {
	out := make([]compartment, 0, len(addrs))
	for i, a := range addrs {
		out = append(out, compartment{number: i + 1, addr: a})
	}
	return out
}

// startRealBackend starts the backend with one device dev of kind (locker
// or automaton) with comps. o's zero fields get servertest's test values;
// e-mails go to a drop directory.
func startRealBackend(t *testing.T, dev, kind string, comps []compartment, o server.Options) *realBackend {
	t.Helper()
	dir := t.TempDir()
	b := &realBackend{t: t, dev: dev, mails: filepath.Join(dir, "mail")}
	o.MailURL = "drop:" + b.mails
	b.Backend = servertest.Start(t, o)
	ctx := context.Background()
	require.NoError(t, b.Call(ctx, http.MethodPost, "/api/v1/sites", map[string]any{"id": "site-" + dev, "name": "Stadhuis"}, nil))
	var cs []map[string]any
	for _, c := range comps {
		cs = append(cs, map[string]any{"number": c.number, "board": c.addr.Board, "channel": c.addr.Channel, "size": "M", "height_cm": 100})
	}
	require.NoError(t, b.Call(ctx, http.MethodPost, "/api/v1/devices", map[string]any{"id": dev, "site_id": "site-" + dev,
		"kind": kind, "compartments": cs}, nil))
	pw, err := b.DevicePassword(ctx, dev)
	require.NoError(t, err)
	b.password, b.passwordFile = pw, filepath.Join(dir, "mqtt.pw")
	require.NoError(t, os.WriteFile(b.passwordFile, []byte(pw+"\n"), 0o600))
	b.pubKeyFile = filepath.Join(dir, "signing.pub")
	require.NoError(t, os.WriteFile(b.pubKeyFile, []byte(b.Options.Keys.PublicBase64()+"\n"), 0o600))
	return b
}

// mqttConfig is kluisd's mqtt section for this backend.
func (b *realBackend) mqttConfig() string {
	return fmt.Sprintf("{url: tcp://%s, username: %s, password_file: %s}", b.Broker, b.dev, b.passwordFile)
}

// offlineConfig is kluisd's offline section for this backend: its public
// key, which checks commands, answers and QR tokens.
func (b *realBackend) offlineConfig() string {
	return fmt.Sprintf("{public_key_file: %s}", b.pubKeyFile)
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
		require.NoError(b.t, b.Call(ctx, http.MethodPost, "/api/v1/documents/"+doc.ID+"/reserve", map[string]string{"device_id": b.dev}, nil), "document %d", i)
		require.NoError(b.t, b.Call(ctx, http.MethodPost, "/api/v1/documents/"+doc.ID+"/load", nil, nil))
		ids = append(ids, doc.ID)
		byMail[mail] = doc.ID
	}
	tokens := map[string]string{}
	testenv.EventuallyWithin(b.t, 30*time.Second, "a QR code e-mailed for every document", func() bool {
		mails, err := mailread.ReadDir(b.mails)
		require.NoError(b.t, err)
		for _, m := range mails {
			if id, ok := byMail[strings.Trim(m.To, "<>")]; ok && m.QR != "" {
				tokens[id] = m.QR
			}
		}
		return len(tokens) == n
	})
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

// restart stops the backend (and its embedded broker) if it runs and
// starts it again on the same database, keys and broker address, as after
// a crash or an update; kluisd reconnects by itself.
func (b *realBackend) restart() {
	b.t.Helper()
	b.Stop()
	o := b.Options
	o.HTTPAddr, o.MQTTAddr = "127.0.0.1:0", b.Broker
	o.Logger, o.Console = nil, nil
	b.Backend = servertest.Start(b.t, o)
}

// commandsDone reports whether dev answered every command of kind it was
// sent (and was sent one): the results arrived at the backend over MQTT.
func (b *realBackend) commandsDone(kind wire.CommandKind) bool {
	b.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.Options.DatabaseURL)
	require.NoError(b.t, err)
	defer conn.Close(ctx)
	var done, all int
	require.NoError(b.t, conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'done'), count(*)
		FROM device_commands WHERE device_id = $1 AND kind = $2`, b.dev, string(kind)).Scan(&done, &all))
	return all > 0 && done == all
}

// channelOf returns the channel of the compartment document id is in.
func (b *realBackend) channelOf(id string) int {
	b.t.Helper()
	ctx := context.Background()
	var doc struct {
		CompartmentID int64 `json:"compartment_id"`
	}
	require.NoError(b.t, b.Call(ctx, http.MethodGet, "/api/v1/documents/"+id, nil, &doc))
	var dev struct {
		Compartments []struct {
			ID      int64 `json:"id"`
			Channel int   `json:"channel"`
		} `json:"compartments"`
	}
	require.NoError(b.t, b.Call(ctx, http.MethodGet, "/api/v1/devices/"+b.dev, nil, &dev))
	for _, c := range dev.Compartments {
		if c.ID == doc.CompartmentID {
			return c.Channel
		}
	}
	b.t.Fatalf("document %s is in no compartment of %s", id, b.dev)
	return -1
}

// audit returns the audit records about subject, oldest first.
func (b *realBackend) audit(subject string) []apiclient.AuditRecord {
	b.t.Helper()
	recs, err := b.Session().Audit(context.Background(), apiclient.AuditQuery{Subject: subject, Max: 10000})
	require.NoError(b.t, err)
	return recs
}

// auditActions counts the audit actions about subject.
func (b *realBackend) auditActions(subject string) map[string]int {
	b.t.Helper()
	out := map[string]int{}
	for _, it := range b.audit(subject) {
		out[it.Action]++
	}
	return out
}
