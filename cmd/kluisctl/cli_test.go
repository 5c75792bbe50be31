package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/codes"
	"kluis/backend/deviceops"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
)

type harness struct {
	t      *testing.T
	url    string
	tokens map[auth.Role]string
	st     *store.Store
	codes  *codes.Service
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := storetest.New(t)
	as, err := auth.New(auth.Options{Pool: st.Pool(), Logger: quiet, Params: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}, KioskKey: []byte("kluisctl-test-kiosk-key-0123456")})
	require.NoError(t, err)
	svc, err := service.New(service.Options{Store: st, Logger: quiet})
	require.NoError(t, err)
	keys, err := codes.GenerateKeys()
	require.NoError(t, err)
	cs, err := codes.New(codes.Options{Pool: st.Pool(), Keys: keys, Logger: quiet, Argon: pickupcode.ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}})
	require.NoError(t, err)
	lockouts, err := deviceops.NewLockouts(deviceops.LockoutsOptions{Codes: cs, Pool: st.Pool(), Logger: quiet})
	require.NoError(t, err)
	srv, err := api.New(api.Options{Logger: quiet, Pool: st.Pool(), Auth: as, Service: svc, Lockouts: lockouts,
		Notifications: func(ctx context.Context, id string) ([]api.NotificationRecord, error) {
			return []api.NotificationRecord{{Kind: "loaded", Channel: "email", Status: "failed", Error: "mailbox full"}}, nil
		}})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	h := &harness{t: t, url: hs.URL, tokens: map[auth.Role]string{}, st: st, codes: cs}
	for _, r := range auth.Roles() {
		u, err := as.CreateUser(ctx, "cli-"+string(r), "password-of-"+string(r), r)
		require.NoError(t, err)
		iss, err := as.CreateAPIToken(ctx, u.ID, "test")
		require.NoError(t, err)
		h.tokens[r] = iss.Token
	}
	_, err = svc.CreateSite(ctx, "system", store.NewSite{ID: "kortrijk", Name: "Stadhuis Kortrijk"})
	require.NoError(t, err)
	_, err = svc.CreateDevice(ctx, "system", store.NewDevice{ID: "kortrijk-1", SiteID: "kortrijk", Kind: store.Locker,
		Compartments: []store.NewCompartment{{Channel: 0, Size: store.SizeM, HeightCM: 150}, {Channel: 1, Size: store.SizeL, HeightCM: 40}}})
	require.NoError(t, err)
	return h
}

// session logs role in with kluisctl login: a session token (API tokens
// are made with one).
func (h *harness) session(role auth.Role) string {
	h.t.Helper()
	code, out, errs := h.kctl("", "password-of-"+string(role)+"\n", nil, "login", "cli-"+string(role))
	require.Equal(h.t, 0, code, errs)
	m := regexp.MustCompile(`export KLUIS_TOKEN=(kls_\S+)`).FindStringSubmatch(out)
	require.NotNil(h.t, m, out)
	return m[1]
}

// kctl runs kluisctl in-process with the given token (env) and stdin.
func (h *harness) kctl(token, stdin string, extraEnv map[string]string, args ...string) (int, string, string) {
	h.t.Helper()
	env := map[string]string{"KLUIS_URL": h.url, "KLUIS_TOKEN": token}
	for k, v := range extraEnv {
		env[k] = v
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, strings.NewReader(stdin), &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestKluisctlAgainstRealAPI(t *testing.T) {
	h := newHarness(t)
	staff, tech, admin := h.tokens[auth.RoleStaff], h.tokens[auth.RoleTechnician], h.tokens[auth.RoleAdmin]

	// Login with the password on stdin.
	code, out, errs := h.kctl("", "password-of-staff\n", nil, "login", "cli-staff")
	require.Equal(t, 0, code, errs)
	m := regexp.MustCompile(`export KLUIS_TOKEN=(kls_\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	session := m[1]
	code, _, errs = h.kctl("", "wrong password\n", nil, "login", "cli-staff")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "invalid_credentials")

	code, out, _ = h.kctl(session, "", nil, "-o", "json", "whoami")
	require.Equal(t, 0, code)
	var me map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &me))
	assert.Equal(t, "cli-staff", me["username"])
	assert.Equal(t, "session", me["token_kind"])

	// Register (JSON output), then list and show (tables).
	code, out, errs = h.kctl(staff, "", nil, "-o", "json", "documents", "register", "-kind", "eid", "-number", "591-1234567-89",
		"-first", "Els", "-last", "Vandenberghe", "-birth", "1975-02-03", "-lang", "nl", "-email", "els@example.be", "-site", "kortrijk", "-key", "k1")
	require.Equal(t, 0, code, errs)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	id, _ := doc["id"].(string)
	require.NotEmpty(t, id)
	assert.Equal(t, "registered", doc["state"])

	code, out, errs = h.kctl(staff, "", nil, "documents", "list", "-state", "registered")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `(?m)^ID\s+KIND\s+STATE\s+HOLDER`, out)
	assert.Contains(t, out, id)
	assert.Contains(t, out, "Vandenberghe")

	code, out, errs = h.kctl(staff, "", nil, "documents", "reserve", id, "-device", "kortrijk-1")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `state:\s+reserved`, out)
	assert.Contains(t, errs, "kluisctl: warning: device kortrijk-1 has never connected; the holder may not be able to collect there")
	code, _, errs = h.kctl(staff, "", nil, "documents", "load", id)
	require.Equal(t, 0, code, errs)
	// The identity reminder of the console's re-issue: the document's
	// date of birth, to compare with the holder's; -birth compares it,
	// and a wrong one makes no codes.
	var reissues int
	countReissues := func() int {
		t.Helper()
		_, out, _ := h.kctl(staff, "", nil, "-o", "json", "documents", "show", id)
		return strings.Count(out, `"reissue"`)
	}
	reissues = countReissues()
	code, _, errs = h.kctl(staff, "", nil, "reissue", id, "-birth", "1975-03-02")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "the date of birth given (1975-03-02) is not the document's: no new codes were made")
	assert.Equal(t, reissues, countReissues(), "no re-issue")
	code, _, errs = h.kctl(staff, "", nil, "reissue", id, "-birth", "3 Feb 1975")
	assert.Equal(t, 2, code, errs)
	assert.Contains(t, errs, "-birth must be a date like 1990-05-31")
	code, _, errs = h.kctl(staff, "591-1234567-89\n", nil, "documents", "reissue", id, "-birth", "1975-02-03")
	require.Equal(t, 0, code, errs)
	assert.NotContains(t, errs, "first check")
	assert.Equal(t, reissues+1, countReissues())
	code, out, errs = h.kctl(staff, "", nil, "reissue", id, "-yes")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `state:\s+loaded`, out)
	assert.Contains(t, errs, "kluisctl: first check that you are speaking to the holder: ask their date of birth and compare it with the document's (1975-02-03). If it does not match, make no new codes")
	// kortrijk-1 has no device link (never online): the old code still
	// opens its compartment offline until the device gets the code sync.
	assert.Contains(t, errs, "warning: the device is offline: until it reconnects (and gets the code sync), the old code still opens the compartment there")
	code, out, errs = h.kctl(staff, "", nil, "-o", "json", "reissue", id, "-yes")
	require.Equal(t, 0, code, errs)
	var re map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &re))
	assert.Equal(t, true, re["old_code_opens_offline"])
	assert.Equal(t, "loaded", re["state"])
	assert.Contains(t, re["warning"], "the old code still opens")

	code, _, errs = h.kctl(staff, "", nil, "documents", "cancel", id, "-reason", "oops")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "forbidden_transition")
	assert.Contains(t, errs, "cannot cancel a document that is loaded")

	code, out, errs = h.kctl(staff, "", nil, "documents", "show", id)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "history:")
	assert.Regexp(t, `(?m)^notifications:\n.*\n\S+\s+loaded\s+email\s+failed\s+mailbox full`, out)
	for _, a := range []string{"register", "reserve", "load", "reissue"} {
		assert.Regexp(t, `(?m)^\S+\s+`+a+`\s`, out)
	}

	// Devices for the technician.
	code, out, errs = h.kctl(tech, "", nil, "devices", "list")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "kortrijk-1")
	assert.Regexp(t, `(?m)^ID\s+SITE\s+KIND\s+NAME\s+ONLINE`, out)
	assert.Regexp(t, `(?m)^kortrijk-1\s+kortrijk\s+locker\s+-\s+-`, out, "no device link: presence unknown")
	code, out, errs = h.kctl(tech, "", nil, "devices", "show", "kortrijk-1")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `(?m)^1\s+0\s+0\s+M\s+150\s+loaded`, out)
	assert.Regexp(t, `(?m)^2\s+0\s+1\s+L\s+40\s+free`, out)
	code, _, errs = h.kctl(tech, "", nil, "devices", "mqtt-password", "kortrijk-1")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "forbidden")
	code, _, errs = h.kctl(admin, "", nil, "devices", "mqtt-password", "kortrijk-1")
	assert.Equal(t, 1, code, "no embedded broker in this harness")
	assert.Contains(t, errs, "external broker")
	code, out, errs = h.kctl(tech, "", nil, "compartment", "kortrijk-1", "2", "-out-of-service=true", "-reason", "jammed")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "out_of_service")

	// Open: staff may not; without a device link the server says so clearly.
	code, _, errs = h.kctl(staff, "", nil, "open", "kortrijk-1", "1", "-reason", "check")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "forbidden")
	code, _, errs = h.kctl(tech, "", nil, "open", "kortrijk-1", "1", "-reason", "check")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "device_link_unavailable")
	code, _, errs = h.kctl(tech, "", nil, "open", "kortrijk-1", "1")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "-reason is required")

	// Audit for the admin.
	code, out, errs = h.kctl(admin, "", nil, "audit", "verify")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "audit chain intact")
	code, _, errs = h.kctl(staff, "", nil, "audit", "verify")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "forbidden")

	// Users and tokens.
	code, out, errs = h.kctl(admin, "", map[string]string{"KLUIS_NEW_PASSWORD": "a new staff password"}, "users", "add", "-username", "nieuw", "-role", "staff")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "nieuw")
	code, out, errs = h.kctl(admin, "", nil, "users", "list", "-limit", "2", "-all")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "nieuw")
	assert.Contains(t, out, "cli-technician")
	m2 := regexp.MustCompile(`(?m)^(\d+)\s+nieuw\s`).FindStringSubmatch(out)
	require.NotNil(t, m2, out)
	code, _, errs = h.kctl(admin, "48291637\n", nil, "users", "update", m2[1], "-kiosk-pin")
	require.Equal(t, 0, code, errs)
	code, _, errs = h.kctl(admin, "", map[string]string{"KLUIS_KIOSK_PIN": "482916"}, "users", "update", m2[1], "-kiosk-pin")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "invalid_kiosk_pin")
	code, out, errs = h.kctl(admin, "", nil, "users", "update", m2[1], "-disabled=true")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `nieuw\s+staff\s+true`, out)
	code, _, _ = h.kctl(admin, "", nil, "users", "update", m2[1])
	assert.Equal(t, 2, code)
	code, out, errs = h.kctl(h.session(auth.RoleTechnician), "password-of-technician\n", nil, "tokens", "create", "monitoring")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `^kls_\S+\n$`, out)
	code, _, errs = h.kctl(tech, "password-of-technician\n", nil, "tokens", "create", "renewed")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "session_required", "an API token cannot make one")

	code, _, errs = h.kctl(session, "", nil, "logout")
	require.Equal(t, 0, code, errs)
	code, _, errs = h.kctl(session, "", nil, "whoami")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "invalid_token")
}

func TestKluisctlUsageAndAuthErrors(t *testing.T) {
	h := newHarness(t)
	code, _, errs := h.kctl("", "", nil, "documents", "list")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "unauthenticated")
	assert.Contains(t, errs, "kluisctl login")

	for _, args := range [][]string{
		{"frobnicate"},
		{"documents", "fly"},
		{"documents", "show"},
		{"-o", "xml", "whoami"},
		{"open", "kortrijk-1", "zero", "-reason", "x"},
		{"compartment", "kortrijk-1", "1"},
	} {
		code, _, _ := h.kctl(h.tokens[auth.RoleAdmin], "", nil, args...)
		assert.Equal(t, 2, code, "%v", args)
	}
	code, out, _ := h.kctl("", "", nil, "help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "usage: kluisctl")

	// Unreachable server.
	var errb bytes.Buffer
	code = run(context.Background(), []string{"whoami"}, strings.NewReader(""), io.Discard, &errb,
		func(k string) string {
			return map[string]string{"KLUIS_URL": "http://127.0.0.1:1", "KLUIS_TOKEN": "x"}[k]
		})
	assert.Equal(t, 1, code)
	assert.Contains(t, errb.String(), "cannot reach")
}

// An altered audit record is found, named, and makes kluisctl fail.
func TestAuditVerifyNamesTheAlteredRecord(t *testing.T) {
	h := newHarness(t)
	admin := h.tokens[auth.RoleAdmin]
	code, out, errs := h.kctl(admin, "", nil, "audit", "verify")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "audit chain intact")

	// Someone with database rights bypasses the append-only trigger.
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, h.st.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 2")
		return err
	}))
	code, _, errs = h.kctl(admin, "", nil, "audit", "verify")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "audit chain BROKEN at record 2")
	code, out, _ = h.kctl(admin, "", nil, "-o", "json", "audit", "verify")
	assert.Equal(t, 1, code)
	var rep struct {
		OK       bool  `json:"ok"`
		FirstBad int64 `json:"first_bad"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.False(t, rep.OK)
	assert.Equal(t, int64(2), rep.FirstBad)
}

// A name stored before the backend refused bidirectional and control
// characters (written here straight into the database) is printed
// escaped, in tables and in JSON (the same JSON value); names and reasons
// such characters are refused before anything is sent.
func TestKluisctlNamesAreSafe(t *testing.T) {
	h := newHarness(t)
	admin := h.tokens[auth.RoleAdmin]
	ctx := context.Background()
	_, err := h.st.Pool().Exec(ctx, "UPDATE sites SET name = $1 WHERE id = 'kortrijk'", "Stad\u202Ehuis\x1b[31m")
	require.NoError(t, err)

	code, out, errs := h.kctl(admin, "", nil, "sites", "list")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `Stad\u{202E}huis\u{001B}[31m`)
	assert.NotContains(t, out, "\u202E")
	assert.NotContains(t, out, "\x1b")

	code, out, errs = h.kctl(admin, "", nil, "-o", "json", "sites", "list")
	require.Equal(t, 0, code, errs)
	assert.NotContains(t, out, "\u202E")
	assert.Contains(t, out, `\u202e`)
	var page struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &page), out)
	require.Len(t, page.Items, 1)
	assert.Equal(t, "Stad\u202Ehuis\x1b[31m", page.Items[0].Name, "the JSON value is unchanged")

	for _, args := range [][]string{
		{"tokens", "create", "ci\u202Egnp.exe"},
		{"tokens", "create", "two\nlines"},
		{"open", "kortrijk-1", "1", "-reason", "ticket \u2066 1234"},
		{"compartment", "kortrijk-1", "1", "-out-of-service=true", "-reason", "jam\x00med"},
		{"documents", "cancel", "00000000-0000-0000-0000-000000000000", "-reason", "moved\u200B"},
	} {
		code, _, errs := h.kctl(admin, "", nil, args...)
		assert.Equal(t, 2, code, "%q: %s", args, errs)
		assert.Contains(t, errs, "contains", "%q", args)
	}
}

// Tokens expire; everyone lists and revokes their own, an admin those of
// any user.
func TestKluisctlTokens(t *testing.T) {
	h := newHarness(t)
	tech, admin := h.tokens[auth.RoleTechnician], h.tokens[auth.RoleAdmin]
	session := h.session(auth.RoleTechnician)
	code, _, errs := h.kctl(session, "not my password\n", nil, "tokens", "create", "stolen")
	assert.Equal(t, 1, code, "the session alone does not make a token")
	assert.Contains(t, errs, "wrong_password")
	// The lifetime is 30 times 24 hours from the server's now, written in
	// UTC: the date read before and after the call (a run across midnight
	// UTC), never a local AddDate (with TZ=Europe/Brussels, in the month
	// before October's change, 23:30 UTC plus 30 local days was a day
	// later than the server's).
	before := time.Now()
	code, out, errs := h.kctl(session, "", map[string]string{"KLUIS_PASSWORD": "password-of-technician"}, "tokens", "create", "nightly", "-days", "30")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `^kls_\S+\n$`, out)
	expiry := func(now time.Time) string {
		return "token expires at " + now.UTC().Add(30*24*time.Hour).Format(time.DateOnly)
	}
	if first, last := expiry(before), expiry(time.Now()); !strings.Contains(errs, first) {
		assert.Contains(t, errs, last)
	}
	code, _, errs = h.kctl(tech, "password-of-technician\n", nil, "tokens", "create", "forever", "-days", "5000")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "invalid_expiry")

	code, out, errs = h.kctl(tech, "", nil, "tokens", "list")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `(?m)^ID\s+KIND\s+NAME\s+CREATED\s+EXPIRES\s+REVOKED`, out)
	m := regexp.MustCompile(`(?m)^(\d+)\s+api\s+nightly\s+\S+\s+\S+\s+-$`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	nightly := m[1]

	// The admin finds the technician and the token, and revokes it.
	code, out, errs = h.kctl(admin, "", nil, "users", "list")
	require.Equal(t, 0, code, errs)
	u := regexp.MustCompile(`(?m)^(\d+)\s+cli-technician\s`).FindStringSubmatch(out)
	require.NotNil(t, u, out)
	code, out, errs = h.kctl(admin, "", nil, "tokens", "list", "-user", u[1], "-limit", "1")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `(?m)^`+nightly+`\s+api\s+nightly\s`, out)
	code, _, errs = h.kctl(tech, "", nil, "tokens", "list", "-user", u[1])
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "forbidden")
	code, out, errs = h.kctl(admin, "", nil, "tokens", "revoke", nightly, "-user", u[1])
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "token "+nightly+" revoked")
	code, out, errs = h.kctl(tech, "", nil, "tokens", "list")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `(?m)^`+nightly+`\s+api\s+nightly\s+\S+\s+\S+\s+\d{4}-`, out, "shown revoked")
	code, _, errs = h.kctl(tech, "", nil, "tokens", "revoke", nightly)
	assert.Equal(t, 0, code, errs, "revoking twice is not an error")
	for _, args := range [][]string{{"tokens", "revoke", "x"}, {"tokens", "list", "-user", "bob"}, {"tokens", "create", "a", "-days", "-1"}, {"tokens", "fly"}} {
		code, _, _ := h.kctl(admin, "", nil, args...)
		assert.Equal(t, 2, code, "%v", args)
	}
}

// An admin lifts a user's login limits from the command line.
func TestKluisctlUsersUnlock(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 5; i++ {
		code, _, _ := h.kctl("", "wrong password\n", nil, "login", "cli-staff")
		require.Equal(t, 1, code)
	}
	code, _, errs := h.kctl("", "password-of-staff\n", nil, "login", "cli-staff")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "too_many_attempts")
	code, out, errs := h.kctl(h.tokens[auth.RoleAdmin], "", nil, "users", "list")
	require.Equal(t, 0, code, errs)
	m := regexp.MustCompile(`(?m)^(\d+)\s+cli-staff\s`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	code, _, errs = h.kctl(h.tokens[auth.RoleStaff], "", nil, "users", "unlock", m[1])
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "forbidden")
	code, out, errs = h.kctl(h.tokens[auth.RoleAdmin], "", nil, "users", "unlock", m[1], "-reason", "forgot password")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "login limits of cli-staff lifted")
	code, _, errs = h.kctl("", "password-of-staff\n", nil, "login", "cli-staff")
	assert.Equal(t, 0, code, errs)
	code, _, _ = h.kctl(h.tokens[auth.RoleAdmin], "", nil, "users", "unlock", "bob")
	assert.Equal(t, 2, code)
}

// Anyone sets their own staff PIN with a session (not an API token) and
// their current password: the API's rule and answers.
func TestKluisctlOwnKioskPIN(t *testing.T) {
	h := newHarness(t)
	code, _, errs := h.kctl(h.tokens[auth.RoleTechnician], "password-of-technician\n48291637\n", nil, "kiosk-pin")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "session_required")
	code, out, errs := h.kctl("", "password-of-technician\n", nil, "login", "cli-technician")
	require.Equal(t, 0, code, errs)
	tok := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "export KLUIS_TOKEN="))
	code, _, errs = h.kctl(tok, "password-of-technician\n4829163\n", nil, "kiosk-pin")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "invalid_kiosk_pin")
	code, _, errs = h.kctl(tok, "", map[string]string{"KLUIS_PASSWORD": "not it", "KLUIS_KIOSK_PIN": "48291637"}, "kiosk-pin")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "wrong_password")
	code, out, errs = h.kctl(tok, "password-of-technician\n48291637\n", nil, "kiosk-pin")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "cli-technician")
	assert.NotContains(t, out+errs, "48291637")
}

// Anyone changes their own password with a session (not an API token):
// the other sessions and the API tokens end.
func TestKluisctlOwnPassword(t *testing.T) {
	h := newHarness(t)
	tok := h.tokens[auth.RoleTechnician]
	code, _, errs := h.kctl(tok, "password-of-technician\na new passphrase\n", nil, "password")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "session_required")
	code, out, errs := h.kctl("", "password-of-technician\n", nil, "login", "cli-technician")
	require.Equal(t, 0, code, errs)
	session := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "export KLUIS_TOKEN="))
	code, _, errs = h.kctl(session, "", map[string]string{"KLUIS_PASSWORD": "password-of-technician", "KLUIS_NEW_PASSWORD": "short"}, "password")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "weak_password")
	code, out, errs = h.kctl(session, "password-of-technician\na new passphrase\n", nil, "password")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "password changed; 0 other sessions ended, 1 API tokens revoked")
	assert.NotContains(t, out+errs, "a new passphrase")
	code, _, _ = h.kctl(tok, "", nil, "whoami")
	assert.Equal(t, 1, code, "the API token was revoked")
	code, _, errs = h.kctl(session, "", nil, "whoami")
	assert.Equal(t, 0, code, errs)
}

// Staff lift a device's PIN lockout from the command line; the reason is
// required.
func TestKluisctlClearLockout(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for i := 0; i < pickupcode.DeviceMaxFailures; i++ {
		_, err := h.codes.Verify(ctx, codes.Attempt{DeviceID: "kortrijk-1", PIN: "000000001", BirthDate: "1990-01-01"})
		require.ErrorIs(t, err, pickupcode.ErrWrongCode)
	}
	code, _, errs := h.kctl(h.tokens[auth.RoleStaff], "", nil, "devices", "clear-lockout", "kortrijk-1")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "-reason is required")
	code, out, errs := h.kctl(h.tokens[auth.RoleStaff], "", nil, "devices", "clear-lockout", "kortrijk-1", "-reason", "citizen mistyped")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "backend: PIN lockout lifted")
	assert.Contains(t, out, "device: not_sent (no device link on this server)")
	until, err := h.codes.LockedUntil(ctx, "kortrijk-1")
	require.NoError(t, err)
	assert.True(t, until.IsZero())
	code, out, errs = h.kctl(h.tokens[auth.RoleTechnician], "", nil, "-o", "json", "devices", "clear-lockout", "kortrijk-1", "-reason", "again")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `"was_locked": false`)
	code, _, errs = h.kctl(h.tokens[auth.RoleStaff], "", nil, "devices", "clear-lockout", "nowhere", "-reason", "x")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "not_found")
}

// An admin sets a device's layout from kluisd's YAML section (or JSON),
// and resets it; a technician takes the device out of service and back.
func TestKluisctlDeviceLayoutAndService(t *testing.T) {
	h := newHarness(t)
	admin, tech, staff := h.tokens[auth.RoleAdmin], h.tokens[auth.RoleTechnician], h.tokens[auth.RoleStaff]
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "layout.yaml")
	require.NoError(t, os.WriteFile(yamlFile, []byte("layout:\n  columns: 2\n  rows: 1\n  places:\n    - {number: 1, column: 2, row: 1}\n"), 0o600))
	code, out, errs := h.kctl(admin, "", nil, "devices", "layout", "kortrijk-1", "-file", yamlFile)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "layout of kortrijk-1 set")
	code, out, errs = h.kctl(admin, "", nil, "-o", "json", "devices", "show", "kortrijk-1")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `"columns": 2`)
	code, _, errs = h.kctl(admin, `{"columns": 1, "rows": 1}`, nil, "devices", "layout", "kortrijk-1", "-file", "-")
	assert.Equal(t, 1, code, "two compartments do not fit in one cell")
	assert.Contains(t, errs, "invalid_input")
	code, _, errs = h.kctl(admin, "", nil, "devices", "layout", "kortrijk-1")
	assert.Equal(t, 2, code, errs)
	code, _, errs = h.kctl(tech, "", nil, "devices", "layout", "kortrijk-1", "-reset")
	assert.Equal(t, 1, code, "technicians do not change layouts")
	assert.Contains(t, errs, "forbidden")
	code, _, errs = h.kctl(admin, "", nil, "devices", "layout", "kortrijk-1", "-reset")
	require.Equal(t, 0, code, errs)
	code, out, _ = h.kctl(admin, "", nil, "-o", "json", "devices", "show", "kortrijk-1")
	assert.Contains(t, out, `"layout": null`)

	code, _, errs = h.kctl(tech, "", nil, "devices", "service", "kortrijk-1", "-out-of-service=true")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "-reason is required")
	code, _, errs = h.kctl(staff, "", nil, "devices", "service", "kortrijk-1", "-out-of-service=true", "-reason", "x")
	assert.Equal(t, 1, code, "staff may not")
	code, out, errs = h.kctl(tech, "", nil, "devices", "service", "kortrijk-1", "-out-of-service=true", "-reason", "water damage")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "kortrijk-1 is out of service")
	code, out, _ = h.kctl(tech, "", nil, "-o", "json", "devices", "show", "kortrijk-1")
	assert.Contains(t, out, `"reason": "water damage"`)
	code, out, errs = h.kctl(tech, "", nil, "devices", "service", "kortrijk-1", "-out-of-service=false")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "kortrijk-1 is in service")
}

// TestReissueAsksForTheDocumentNumber: a re-issue replaces the holder's
// codes (the old QR code and PIN stop working), so kluisctl asks for the
// document number first, as the person at the counter holds the document:
// nothing typed (a script without -yes), another number or an empty line
// make no codes; the number (spaces around it, any case) makes them, and
// -yes makes them without asking, for scripts.
func TestReissueAsksForTheDocumentNumber(t *testing.T) {
	h := newHarness(t)
	staff := h.tokens[auth.RoleStaff]
	id := h.registerEls(staff, "passport", "EP1234567")
	var code int
	var out, errs string
	for _, a := range []string{"reserve", "load"} {
		code, _, errs = h.kctl(staff, "", nil, "documents", a, id)
		require.Equal(t, 0, code, errs)
	}
	reissues := func() int {
		t.Helper()
		_, out, _ := h.kctl(staff, "", nil, "-o", "json", "documents", "show", id)
		return strings.Count(out, `"reissue"`)
	}
	n := reissues()
	for _, c := range []struct{ name, stdin string }{{"nothing typed", ""}, {"an empty line", "\n"}, {"another number", "EP7654321\n"}} {
		code, _, errs = h.kctl(staff, c.stdin, nil, "reissue", id, "-birth", "1975-02-03")
		assert.Equal(t, 1, code, c.name)
		assert.Contains(t, errs, "Type the document number (EP1234567) to confirm", c.name)
		assert.Contains(t, errs, "not confirmed: no new codes were made", c.name)
		assert.Equal(t, n, reissues(), "%s: no re-issue", c.name)
	}
	code, out, errs = h.kctl(staff, "  ep1234567 \n", nil, "documents", "reissue", id, "-birth", "1975-02-03")
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `state:\s+loaded`, out)
	assert.Equal(t, n+1, reissues())
	code, _, errs = h.kctl(staff, "", nil, "reissue", id, "-yes")
	require.Equal(t, 0, code, errs)
	assert.NotContains(t, errs, "to confirm")
	assert.Equal(t, n+2, reissues())
}

// registerEls registers Els Vandenberghe's document with kluisctl as
// token and returns its id.
func (h *harness) registerEls(token, kind, number string) string {
	h.t.Helper()
	code, out, errs := h.kctl(token, "", nil, "-o", "json", "documents", "register", "-kind", kind, "-number", number,
		"-first", "Els", "-last", "Vandenberghe", "-birth", "1975-02-03", "-lang", "nl", "-email", "els@example.be", "-site", "kortrijk")
	require.Equal(h.t, 0, code, errs)
	var doc map[string]any
	require.NoError(h.t, json.Unmarshal([]byte(out), &doc))
	id, _ := doc["id"].(string)
	return id
}

// documents show says when the holder's data of a document nobody
// collected was erased (purged_at, with no closed_at: still open), not
// only that the names are gone.
func TestShowSaysWhenAnUnclaimedDocumentWasErased(t *testing.T) {
	h := newHarness(t)
	staff := h.tokens[auth.RoleStaff]
	id := h.registerEls(staff, "eid", "591-1234567-89")
	later, err := service.New(service.Options{Store: h.st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock: func() time.Time { return time.Now().Add(service.DefaultUnclaimedRetention + 24*time.Hour) }})
	require.NoError(t, err)
	n, err := later.PurgeUnclaimed(context.Background(), 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	code, out, errs := h.kctl(staff, "", nil, "documents", "show", id)
	require.Equal(t, 0, code, errs)
	assert.Regexp(t, `state:\s+registered`, out)
	assert.Regexp(t, `purged_at:\s+\d{4}-`, out)
	assert.NotContains(t, out, "closed_at")
	assert.NotContains(t, out, "Vandenberghe")
}
