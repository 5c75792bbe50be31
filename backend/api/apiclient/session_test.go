package apiclient_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/backend/api/apiclient"
	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/deploy/dev/testenv"
)

// Against the real backend in-process: a login, a wrong password, a call
// with the session, and the audit pager across pages.
func TestSessionAndAuditAgainstTheBackend(t *testing.T) {
	be := servertest.Start(t, server.Options{})
	ctx := context.Background()
	base := be.URL("")
	hc := testenv.HTTPClient()

	_, err := apiclient.Login(ctx, hc, base, server.DefaultAdminUser, "not the password")
	require.Equal(t, http.StatusUnauthorized, apiclient.StatusOf(err), "%v", err)
	const logins = 4
	var s apiclient.Session
	for i := 0; i < logins; i++ {
		s, err = apiclient.Login(ctx, hc, base, server.DefaultAdminUser, servertest.AdminPassword)
		require.NoError(t, err)
	}
	require.NotEmpty(t, s.Token)
	require.Equal(t, base, s.Base)

	var me struct {
		Username string `json:"username"`
	}
	require.NoError(t, s.Do(ctx, http.MethodGet, "/api/v1/me", nil, &me))
	require.Equal(t, server.DefaultAdminUser, me.Username)
	require.Equal(t, http.StatusUnauthorized, apiclient.StatusOf(apiclient.Session{Base: base, Token: "bogus", HTTP: hc}.Do(ctx, http.MethodGet, "/api/v1/me", nil, nil)))

	// The admin's records: servertest's login, the failed one, ours.
	var subject string
	all, err := s.Audit(ctx, apiclient.AuditQuery{Max: 10000})
	require.NoError(t, err)
	for _, r := range all {
		if r.Action == "login" {
			subject = r.Subject
		}
	}
	require.NotEmpty(t, subject)
	one, err := s.Audit(ctx, apiclient.AuditQuery{Subject: subject, Max: 1000})
	require.NoError(t, err)
	paged, err := s.Audit(ctx, apiclient.AuditQuery{Subject: subject, Max: 1000, PageSize: 2})
	require.NoError(t, err)
	require.Equal(t, one, paged, "pages of 2 read the same records as one page")
	count := map[string]int{}
	for i, r := range paged {
		require.Equal(t, subject, r.Subject)
		require.NotEmpty(t, r.Hash)
		if i > 0 {
			require.Greater(t, r.Seq, paged[i-1].Seq, "oldest first")
		}
		count[r.Action]++
	}
	require.Equal(t, 1+logins, count["login"], "servertest's login and ours")
	require.Equal(t, 1, count["login.failed"])

	_, err = s.Audit(ctx, apiclient.AuditQuery{Subject: subject, Max: len(paged) - 1, PageSize: 2})
	require.ErrorIs(t, err, apiclient.ErrTooManyRecords)
	_, err = s.Audit(ctx, apiclient.AuditQuery{Subject: subject})
	require.ErrorContains(t, err, "Max")

	// A document: registered by the admin, read back with its history.
	require.NoError(t, s.Do(ctx, http.MethodPost, "/api/v1/sites", map[string]string{"id": "ac", "name": "Apiclient",
		"time_zone": "Europe/Brussels", "address": "Grote Markt 54, 8500 Kortrijk"}, nil))
	var reg apiclient.Document
	require.NoError(t, s.Do(ctx, http.MethodPost, "/api/v1/documents", map[string]any{"kind": "eid", "number": "591-0000001-01",
		"holder_first_name": "An", "holder_last_name": "Peeters", "holder_birth_date": "1950-01-01", "language": "nl",
		"email": "an@example.org", "site_id": "ac"}, &reg))
	require.Equal(t, "registered", reg.State)
	d, err := s.Document(ctx, reg.ID)
	require.NoError(t, err)
	require.Equal(t, reg.ID, d.ID)
	require.Equal(t, "eid", d.Kind)
	require.NotEmpty(t, d.History)
	require.Equal(t, "registered", d.History[len(d.History)-1].To)
	require.Equal(t, subject, d.ActorOf("registered"), "the admin registered it")
	require.Empty(t, d.ActorOf("collected"))
	_, err = s.Document(ctx, "00000000-0000-0000-0000-000000000000")
	require.Equal(t, http.StatusNotFound, apiclient.StatusOf(err))
}
