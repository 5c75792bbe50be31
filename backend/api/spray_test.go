package api_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/api"
	"kluis/backend/store/storetest"
)

// Password spraying over HTTP: one address, one common password, many
// usernames. Before the per-address back-off every one of 40 was
// evaluated (401). Now from the 21st the address waits (429 with
// Retry-After, never above a minute), while a user who logged in from
// that address before gets in at once.
func TestLoginSprayFromOneAddressWaits(t *testing.T) {
	clock := storetest.NewClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, func(o *api.Options) {
		o.Clock = clock.Now
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
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
