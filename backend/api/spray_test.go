package api_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/audit"
	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

// Password spraying over HTTP: one address, one common password, many
// usernames. Before the per-address back-off every one of 40 was
// evaluated (401). Now from the 21st the address waits (429 with
// Retry-After, never above a minute), while a user who logged in from
// that address before gets in at once.
func TestLoginSprayFromOneAddressWaits(t *testing.T) {
	e, clock := proxiedEnv(t)
	const office = "203.0.113.50"
	require.Equal(t, 201, e.login(office, "test-staff", "password-of-staff").status, "the clerk logged in from the office once")
	evaluated := 0
	var r resp
	for i := 0; i < 40; i++ {
		r = e.login(office, fmt.Sprintf("user%d", i), "Winter2026!")
		if r.status == 429 {
			break
		}
		require.Equal(t, 401, r.status, string(r.body))
		evaluated++
	}
	assert.Equal(t, 20, evaluated, "20 guesses, then the address waits")
	require.Equal(t, 429, r.status)
	assert.Equal(t, "too_many_attempts", r.errCode())
	assert.Contains(t, string(r.body), "from your address")
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	require.NoError(t, err)
	assert.LessOrEqual(t, secs, 61)

	assert.Equal(t, 201, e.login(office, "test-staff", "password-of-staff").status, "a known user at that address does not wait")
	assert.Equal(t, 401, e.login("198.51.100.9", "user99", "Winter2026!").status, "another address is not affected")
	clock.Set(clock.Now().Add(time.Duration(secs) * time.Second))
	assert.Equal(t, 401, e.login(office, "user40", "Winter2026!").status, "after the wait one more guess")
	assert.Equal(t, 429, e.login(office, "user41", "Winter2026!").status)
}

// A username no user can have still gets the answer of a wrong password,
// counted like one. Found black-box: a login with a 900 KB username (or
// 20 KB of random letters) made the login limits' SQL fail (an index row
// over PostgreSQL's maximum), and any client got 503 "logins are not
// possible right now" and an error logged, at will.
func TestLoginWithAnOversizedUsernameIsAWrongPassword(t *testing.T) {
	e := newEnv(t)
	b := make([]byte, 20000)
	_, err := rand.Read(b)
	require.NoError(t, err)
	long := hex.EncodeToString(b)
	for i := 0; i < 5; i++ {
		r := e.login("203.0.113.60", long, "Winter2026!")
		require.Equal(t, 401, r.status, string(r.body))
		assert.Equal(t, "invalid_credentials", r.errCode())
	}
	assert.Equal(t, 429, e.login("203.0.113.60", long, "Winter2026!").status, "counted: five failures lock the address for that name")
	assert.Equal(t, 201, e.login("203.0.113.60", "test-staff", "password-of-staff").status, "and only for that name")
}

// proxiedEnv is an API on a test clock that trusts X-Forwarded-For from
// loopback, so that e.login's src is the client address the login limits
// count.
func proxiedEnv(t *testing.T) (*env, *storetest.Clock) {
	clock := storetest.NewClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	return newEnv(t, func(o *api.Options) {
		o.Clock = clock.Now
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}), clock
}

// A login the login limits refuse (429 too_many_attempts) is a denied
// attempt like a wrong password: audited once per refusal, login.refused,
// with the source and which limit held, the user as subject when the
// username is known, never the password nor an unknown username.
func TestLoginRefusedByTheLimitsIsAudited(t *testing.T) {
	e, _ := proxiedEnv(t)
	const attacker = "203.0.113.9"
	for i := 0; i < 5; i++ {
		require.Equal(t, 401, e.login(attacker, "test-admin", "wrong password").status)
		require.Equal(t, 401, e.login(attacker, "ghost-user", "wrong password").status)
	}
	r := e.login(attacker, "test-admin", "password-of-admin")
	require.Equal(t, 429, r.status)
	require.Equal(t, "too_many_attempts", r.errCode())
	r = e.login(attacker, "ghost-user", "secret-guess")
	require.Equal(t, 429, r.status)

	recs, err := audit.List(context.Background(), e.st.Pool(), audit.ListOptions{Limit: 100})
	require.NoError(t, err)
	var refused []audit.Record
	for _, rc := range recs {
		for _, secret := range []string{"password", "secret-guess", "ghost"} {
			assert.NotContains(t, string(rc.Details), secret)
		}
		if rc.Action == "login.refused" {
			refused = append(refused, rc)
		}
	}
	require.Len(t, refused, 2, "each refusal audited once")
	admin := fmt.Sprintf("user:%d", e.users[auth.RoleAdmin].ID)
	assert.Equal(t, admin, refused[0].Actor)
	assert.Equal(t, admin, refused[0].Subject)
	var d map[string]any
	require.NoError(t, json.Unmarshal(refused[0].Details, &d))
	assert.Equal(t, map[string]any{"known_user": true, "source": attacker, "limit": "source", "until": "2026-12-06T12:15:00Z"}, d)
	assert.Equal(t, "anonymous", refused[1].Actor)
	assert.Empty(t, refused[1].Subject)
	require.NoError(t, json.Unmarshal(refused[1].Details, &d))
	assert.Equal(t, false, d["known_user"])
}
