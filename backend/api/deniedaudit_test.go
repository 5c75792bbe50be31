package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/audit"
	"kluis/backend/auth"
)

// A role's refused request left no trace: a technician's (or a stolen
// staff token's) POST /api/v1/users {"role": "admin"} was answered 403
// and logged at debug level only, with user_id 0 (found black-box),
// while the kiosk audits its role refusals (kiosk.denied). Now each is
// audited access.denied with the caller, its role and the route, never
// the body.
func TestRoleRefusalsAreAudited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tech := e.users[auth.RoleTechnician]
	r := e.do("POST", "/api/v1/users", e.tokens[auth.RoleTechnician],
		map[string]string{"username": "mole", "password": "a password of my own", "role": "admin"})
	require.Equal(t, 403, r.status, string(r.body))
	r = e.do("GET", "/api/v1/documents", e.tokens[auth.RoleTechnician], nil)
	require.Equal(t, 403, r.status, string(r.body))
	r = e.do("GET", "/api/v1/devices", e.tokens[auth.RoleTechnician], nil)
	require.Equal(t, 200, r.status, "an allowed request is not a refusal")

	recs, err := audit.List(ctx, e.st.Pool(), audit.ListOptions{Subject: fmt.Sprintf("user:%d", tech.ID), Limit: 1000})
	require.NoError(t, err)
	var denied []map[string]any
	for _, rc := range recs {
		if rc.Action != "access.denied" {
			continue
		}
		assert.Equal(t, fmt.Sprintf("user:%d", tech.ID), rc.Actor)
		assert.NotContains(t, string(rc.Details), "a password of my own")
		var d map[string]any
		require.NoError(t, json.Unmarshal(rc.Details, &d))
		denied = append(denied, d)
	}
	assert.Equal(t, []map[string]any{
		{"route": "POST /api/v1/users", "role": "technician", "via": "api"},
		{"route": "GET /api/v1/documents", "role": "technician", "via": "api"},
	}, denied)
}
