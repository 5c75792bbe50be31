package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
)

// A body with a key twice in one object is refused: encoding/json keeps
// the last and matches names case-insensitively (Unicode folding), so
// {"role":"staff","ROLE":"admin"} created an admin where a person, a log
// or a proxy reading the first key saw staff (found black-box). Every
// route decodes its body the one way, so one route stands for all.
func TestRepeatedJSONKeysAreRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i, body := range []string{
		`{"username":"dup-a","password":"a-long-password-1","role":"staff","role":"admin"}`,
		`{"username":"dup-b","password":"a-long-password-1","role":"staff","ROLE":"admin"}`,
		`{"username":"dup-c","password":"a-long-password-1","role":"staff","rol\u0065":"admin"}`,
		`{"username":"dup-d","password":"a-long-password-1","role":"staff","Role":"technician"}`,
		// U+017F LATIN SMALL LETTER LONG S folds to s.
		`{"username":"dup-e","password":"a-long-password-1","pa\u017fsword":"x","role":"staff","password":"a-long-password-2"}`,
	} {
		r := e.do(http.MethodPost, "/api/v1/users", e.tokens[auth.RoleAdmin], body)
		assert.Equal(t, http.StatusBadRequest, r.status, "body %d: %s", i, r.body)
		assert.Equal(t, "duplicate_key", r.errCode(), "body %d: %s", i, r.body)
		assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
	}
	for _, name := range []string{"dup-a", "dup-b", "dup-c", "dup-d", "dup-e"} {
		_, err := e.auth.UserByName(ctx, name)
		require.ErrorIs(t, err, auth.ErrNotFound, "user %s was created", name)
	}
	// Nested objects are checked too (a device's compartments); the same
	// key in two objects is fine.
	r := e.do(http.MethodPost, "/api/v1/sites", e.tokens[auth.RoleAdmin], `{"id":"kortrijk","name":"Stadhuis Kortrijk"}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = e.do(http.MethodPost, "/api/v1/devices", e.tokens[auth.RoleAdmin], `{"id":"kortrijk-1","site_id":"kortrijk","kind":"locker",`+
		`"compartments":[{"channel":0,"size":"M","height_cm":150},{"channel":1,"size":"M","height_cm":150,"Height_CM":60}]}`)
	assert.Equal(t, "duplicate_key", r.errCode(), "%s", r.body)
	r = e.do(http.MethodPost, "/api/v1/devices", e.tokens[auth.RoleAdmin], `{"id":"kortrijk-1","site_id":"kortrijk","kind":"locker",`+
		`"compartments":[{"channel":0,"size":"M","height_cm":150},{"channel":1,"size":"M","height_cm":150}]}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = e.do(http.MethodPost, "/api/v1/users", e.tokens[auth.RoleAdmin],
		`{"username":"dup-f","password":"a-long-password-1","role":"staff"}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
}
