package web_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/web"
)

// One signed-in user could open live streams until the process's bound
// (500) and leave every colleague's live pages refused. A user now has at
// most web.DefaultMaxStreamsPerUser open (429 beyond, with Retry-After);
// another user still gets theirs.
func TestLiveStreamsPerUserBound(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	tech := e.client()
	tech.login(auth.RoleTechnician)
	for i := 0; i < web.DefaultMaxStreamsPerUser; i++ {
		tech.stream(t, "/staff/devices/events")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.b.URL("/staff/devices/"+lockerID+"/events"), nil)
	require.NoError(t, err)
	res, err := (&http.Client{Jar: tech.hc.Jar}).Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, res.StatusCode, "one stream more than a user may have")
	assert.Equal(t, "30", res.Header.Get("Retry-After"))

	staff := e.client()
	staff.login(auth.RoleStaff)
	staff.stream(t, "/staff/devices/events") // 200, or the helper fails
}
