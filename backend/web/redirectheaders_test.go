package web_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"kluis/backend/auth"
	"kluis/backend/server"
)

// The console's mux answers /staff and a path that is not clean
// (/staff//documents, /staff/./login) with its own redirect: those
// answers carried none of the console's headers (no CSP, no nosniff, no
// frame or referrer rule, no Cache-Control), unlike every page, static
// file and error of the console (found black-box with curl -I).
func TestConsoleRedirectsCarryTheConsoleHeaders(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	paths := []string{"/staff", "/staff//documents", "/staff/./login", "/staff/devices/../documents", "/staff/static//console.css"}
	for _, signedIn := range []bool{false, true} {
		if signedIn {
			c.login(auth.RoleStaff)
		}
		for _, path := range paths {
			p := c.get(path)
			assert.Contains(t, []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect}, p.status, path)
			assert.Equal(t, "nosniff", p.header.Get("X-Content-Type-Options"), path)
			assert.Contains(t, p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'", path)
			assert.Equal(t, "DENY", p.header.Get("X-Frame-Options"), path)
			assert.Equal(t, "no-referrer", p.header.Get("Referrer-Policy"), path)
			assert.Equal(t, "no-store", p.header.Get("Cache-Control"), path)
		}
	}
}
