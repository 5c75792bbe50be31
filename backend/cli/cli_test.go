package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker/mosquittotest"
	"kluis/backend/codes"
	"kluis/backend/pgtest"
	"kluis/backend/server"
	"kluis/backend/store"
	"kluis/deploy/dev/testenv"
)

func testEnv(vars map[string]string) (Env, *testenv.SyncBuffer, *testenv.SyncBuffer) {
	out, errb := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	return Env{
		Stdin: strings.NewReader(""), Stdout: out, Stderr: errb,
		Getenv: func(k string) string { return vars[k] },
	}, out, errb
}

func TestServeBootstrapAndShutdown(t *testing.T) {
	db := pgtest.NewDatabase(t)
	vars := map[string]string{
		"DATABASE_URL":             db,
		"KLUIS_HTTP_ADDR":          "127.0.0.1:0",
		"KLUIS_INSECURE_FAST_HASH": "1",
		"KLUIS_LOG_LEVEL":          "warn",
		"KLUIS_KEY_DIR":            t.TempDir() + "/keys",
		"KLUIS_MQTT_ADDR":          "127.0.0.1:0",
		"KLUIS_SLIP_DIR":           t.TempDir() + "/slips",
		"KLUIS_PICKUP_PERIOD":      "residence_card=40s,eid=14d",
		"KLUIS_RETENTION":          "48h",
	}
	e, _, errb := testEnv(vars)
	addrc := make(chan string, 1)
	e.onReady = func(s *server.Server) { addrc <- s.HTTPAddr() }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"serve"}, e) }()
	var addr string
	select {
	case addr = <-addrc:
	case code := <-done:
		t.Fatalf("serve exited with %d: %s", code, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start listening")
	}

	m := regexp.MustCompile(`created admin user "admin" with password (\S+)`).FindStringSubmatch(errb.String())
	require.NotNil(t, m, errb.String())
	pass := m[1]

	cl := &http.Client{Timeout: 10 * time.Second}
	res, err := cl.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode)

	body, _ := json.Marshal(map[string]string{"username": "admin", "password": pass})
	res, err = cl.Post("http://"+addr+"/api/v1/sessions", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, 201, res.StatusCode, string(b))
	var sess struct {
		Token string `json:"token"`
	}
	require.NoError(t, json.Unmarshal(b, &sess))

	// The wiring works end to end: a document is registered, reserved and
	// loaded, which issues codes with the keys created at start-up.
	call := func(method, path string, body any) map[string]any {
		t.Helper()
		js, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, "http://"+addr+path, bytes.NewReader(js))
		req.Header.Set("Authorization", "Bearer "+sess.Token)
		req.Header.Set("Content-Type", "application/json")
		res, err := cl.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		require.Less(t, res.StatusCode, 300, "%s %s: %s", method, path, b)
		var v map[string]any
		require.NoError(t, json.Unmarshal(b, &v))
		return v
	}
	call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"})
	call("POST", "/api/v1/devices", map[string]any{"id": "k1", "site_id": "kortrijk", "kind": "locker",
		"compartments": []map[string]any{{"channel": 0, "size": "M", "height_cm": 100}}})
	doc := call("POST", "/api/v1/documents", map[string]any{"kind": "eid", "number": "591-1234567-89",
		"holder_first_name": "Jan", "holder_last_name": "Peeters", "holder_birth_date": "1980-01-02",
		"language": "nl", "email": "jan@example.be", "site_id": "kortrijk"})
	id := doc["id"].(string)
	call("POST", "/api/v1/documents/"+id+"/reserve", map[string]any{"device_id": "k1"})
	loaded := call("POST", "/api/v1/documents/"+id+"/load", nil)
	assert.Equal(t, "loaded", loaded["state"])

	// Without e-mail or SMS the notifier writes a slip, marks the document
	// notified, and staff can fetch the slip.
	got := call("GET", "/api/v1/documents/"+id, nil)
	assert.Equal(t, "notified", got["state"])
	notes, _ := got["notifications"].([]any)
	require.Len(t, notes, 1, "%v", got)
	assert.Equal(t, "slip", notes[0].(map[string]any)["channel"])
	assert.FileExists(t, vars["KLUIS_SLIP_DIR"]+"/"+id+".html")
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/documents/"+id+"/slip", nil)
	req.Header.Set("Authorization", "Bearer "+sess.Token)
	res, err = cl.Do(req)
	require.NoError(t, err)
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode, string(b))
	assert.Contains(t, string(b), "<html")
	assert.Contains(t, string(b), "data:image/png;base64,", "the slip carries the QR code")

	// The citizen track page answers on the tracking id the notifier made.
	conn, err := pgx.Connect(context.Background(), db)
	require.NoError(t, err)
	var tracking string
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT tracking_id FROM notify_tracking WHERE document_id = $1", id).Scan(&tracking))
	conn.Close(context.Background())
	res, err = cl.Get("http://" + addr + "/t/" + tracking)
	require.NoError(t, err)
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode, string(b))
	assert.Contains(t, res.Header.Get("Content-Type"), "text/html")
	assert.NotContains(t, string(b), "Peeters", "the track page shows no surname")
	res, err = cl.Get("http://" + addr + "/t/AAAAAAAAAAAAAAAAAAAAAA")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 404, res.StatusCode)
	assert.FileExists(t, vars["KLUIS_KEY_DIR"]+"/signing.pub")

	res, err = cl.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	assert.Contains(t, string(b), `kluis_documents{state="notified"} 1`)
	assert.Contains(t, string(b), `kluis_notify_messages_total{channel="slip"`)
	assert.Contains(t, string(b), `kluis_codes_issued_total 1`)
	assert.Contains(t, string(b), `go_goroutines`)
	assert.Contains(t, string(b), "kluis_audit_chain_ok 1", "verified at start-up")

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not shut down")
	}
	assert.Equal(t, 1, strings.Count(errb.String(), pass), "the generated password is printed exactly once")

	// A second start finds the admin and prints no password.
	e2, _, errb2 := testEnv(vars)
	addrc2 := make(chan string, 1)
	e2.onReady = func(s *server.Server) { addrc2 <- s.HTTPAddr() }
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan int, 1)
	go func() { done2 <- Run(ctx2, nil, e2) }()
	select {
	case <-addrc2:
	case code := <-done2:
		t.Fatalf("second serve exited with %d: %s", code, errb2.String())
	case <-time.After(30 * time.Second):
		t.Fatal("second serve did not start")
	}
	cancel2()
	<-done2
	assert.NotContains(t, errb2.String(), "password")
}

func TestUseraddAndToken(t *testing.T) {
	db := pgtest.NewDatabase(t)
	vars := map[string]string{"DATABASE_URL": db, "KLUIS_INSECURE_FAST_HASH": "1", "KLUIS_LOG_LEVEL": "warn"}
	ctx := context.Background()

	e, out, errb := testEnv(vars)
	e.Stdin = strings.NewReader("counter password 1\n")
	require.Equal(t, 0, Run(ctx, []string{"useradd", "-username", "an", "-role", "staff"}, e), errb.String())
	assert.Contains(t, out.String(), "created user an")
	assert.NotContains(t, out.String()+errb.String(), "counter password 1")

	e, _, errb = testEnv(vars)
	e.Stdin = strings.NewReader("counter password 1\n")
	assert.Equal(t, 1, Run(ctx, []string{"useradd", "-username", "an"}, e))
	assert.Contains(t, errb.String(), "already exists")

	e, _, errb = testEnv(vars)
	assert.Equal(t, 1, Run(ctx, []string{"useradd", "-username", "bo", "-role", "root"}, e))
	assert.Contains(t, errb.String(), "invalid role")

	e, out, errb = testEnv(vars)
	require.Equal(t, 0, Run(ctx, []string{"token", "-username", "an", "-name", "ci"}, e), errb.String())
	assert.Regexp(t, `^kls_[A-Za-z0-9_-]{43}\n$`, out.String())

	// The public key comes from the key directory (created on first use) or the environment.
	dir := t.TempDir()
	e, out, errb = testEnv(map[string]string{"KLUIS_KEY_DIR": dir})
	require.Equal(t, 0, Run(ctx, []string{"pubkey"}, e), errb.String())
	k, err := codes.LoadKeys(dir)
	require.NoError(t, err)
	assert.Equal(t, k.PublicBase64()+"\n", out.String())
	e, _, errb = testEnv(map[string]string{"KLUIS_CODES_SIGNING_KEY": "not base64", "KLUIS_CODES_PIN_KEY": "x"})
	assert.Equal(t, 1, Run(ctx, []string{"pubkey"}, e))
	assert.Contains(t, errb.String(), "KLUIS_CODES_SIGNING_KEY")

	// A device's MQTT password, given or generated (printed once), for a
	// registered device only: a typo in the id made a credential for no
	// device and exited 0.
	withPW := map[string]string{"DATABASE_URL": db, "KLUIS_INSECURE_FAST_HASH": "1", "KLUIS_NEW_PASSWORD": "device-password-0123456789"}
	e, out, errb = testEnv(withPW)
	assert.Equal(t, 1, Run(ctx, []string{"mqttpasswd", "-device", "k1"}, e))
	assert.Contains(t, errb.String(), `device "k1" is not registered`)
	assert.Empty(t, out.String())
	conn, err := pgx.Connect(ctx, db)
	require.NoError(t, err)
	var creds int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM mqtt_credentials WHERE username = 'k1'`).Scan(&creds))
	assert.Zero(t, creds, "no credential for a device that does not exist")
	_, err = store.CreateSite(ctx, conn, store.NewSite{ID: "s1", Name: "Stadhuis"}, time.Now())
	require.NoError(t, err)
	for _, id := range []string{"k1", "k2"} {
		_, err = store.CreateDevice(ctx, conn, store.NewDevice{ID: id, SiteID: "s1", Kind: store.Locker, Name: id,
			Compartments: []store.NewCompartment{{Number: 1, Size: store.SizeM}}}, time.Now())
		require.NoError(t, err)
	}
	require.NoError(t, conn.Close(ctx))
	e, out, errb = testEnv(withPW)
	require.Equal(t, 0, Run(ctx, []string{"mqttpasswd", "-device", "k1"}, e), errb.String())
	assert.Contains(t, out.String(), "password set for device k1")
	e, out, errb = testEnv(vars)
	require.Equal(t, 0, Run(ctx, []string{"mqttpasswd", "-device", "k2"}, e), errb.String())
	assert.Regexp(t, `^[A-Za-z0-9_-]{48}\n$`, out.String())
	e, _, errb = testEnv(vars)
	assert.Equal(t, 1, Run(ctx, []string{"mqttpasswd", "-device", "Not A Device"}, e))
	assert.Contains(t, errb.String(), "invalid credential")
	e, _, errb = testEnv(vars)
	assert.Equal(t, 1, Run(ctx, []string{"mqttpasswd"}, e))
	assert.Contains(t, errb.String(), "-device is required")

	// The program's own help lists the subcommands (it was serve's flags).
	for _, h := range []string{"-h", "-help", "--help", "help"} {
		e, out, _ = testEnv(vars)
		assert.Equal(t, 0, Run(ctx, []string{h}, e), h)
		assert.Contains(t, out.String(), "usage: kluis-backend [serve|migrate|useradd|token|mqttpasswd|pubkey]", h)
	}
	e, _, errb = testEnv(vars)
	assert.Equal(t, 1, Run(ctx, []string{"frobnicate"}, e))
	assert.Contains(t, errb.String(), "unknown command")

	e, _, errb = testEnv(map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"})
	assert.Equal(t, 1, Run(ctx, []string{"migrate"}, e))
	assert.Contains(t, errb.String(), "open database")
}

// The TLS flags: a CA file for an external broker, a certificate and key
// for the embedded one; the wrong combinations are refused with the flag's
// name, unreadable or empty files too.
func TestMQTTTLSFlags(t *testing.T) {
	certs := mosquittotest.NewCerts(t)
	link, brk, err := mqttTLS("ssl://broker:8883", certs.CAFile, "", "")
	require.NoError(t, err)
	require.NotNil(t, link.RootCAs)
	require.Nil(t, brk)
	link, brk, err = mqttTLS("", "", certs.CertFile, certs.KeyFile)
	require.NoError(t, err)
	require.Nil(t, link)
	require.Len(t, brk.Certificates, 1)
	for _, c := range []struct{ url, ca, cert, key, want string }{
		{"", certs.CAFile, "", "", "-mqtt-ca-file"},
		{"ssl://broker:8883", certs.KeyFile, "", "", "no PEM certificate"},
		{"ssl://broker:8883", "/nonexistent/ca.crt", "", "", "-mqtt-ca-file"},
		{"", "", certs.CertFile, "", "go together"},
		{"ssl://broker:8883", "", certs.CertFile, certs.KeyFile, "embedded broker"},
		{"", "", certs.CAFile, certs.KeyFile, "-mqtt-tls-cert"},
	} {
		_, _, err := mqttTLS(c.url, c.ca, c.cert, c.key)
		require.ErrorContains(t, err, c.want, "%+v", c)
	}
}
