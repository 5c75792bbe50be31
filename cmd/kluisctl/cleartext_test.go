package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kluisctl sent the password or token in clear to any http:// backend
// without a word. Now it refuses plain HTTP to a backend that is not on
// this machine unless -insecure-http says so: nothing reaches the server.
// Loopback stays allowed (the harness of the other tests).
func TestKluisctlRefusesClearTextToAnotherMachine(t *testing.T) {
	ip := nonLoopbackIP(t)
	var requests, withToken atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("Authorization") != "" {
			withToken.Add(1)
		}
		http.Error(w, `{"error":{"code":"invalid_token","message":"no"}}`, http.StatusUnauthorized)
	}))
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	require.NoError(t, err)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	kctl := func(env map[string]string, stdin string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb, func(k string) string { return env[k] })
		return code, errb.String()
	}
	env := map[string]string{"KLUIS_URL": srv.URL, "KLUIS_TOKEN": "kls_secret"}
	code, stderr := kctl(env, "", "whoami")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "refusing to send your password or token in clear")
	assert.Contains(t, stderr, "-insecure-http")
	code, stderr = kctl(map[string]string{"KLUIS_URL": srv.URL}, "a password\n", "login", "an")
	assert.Equal(t, 2, code, stderr)
	assert.Zero(t, requests.Load(), "nothing was sent")

	code, stderr = kctl(env, "", "-insecure-http", "whoami")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "invalid_token", "with the flag it is sent")
	assert.Equal(t, int32(1), withToken.Load())

	for _, u := range []string{"http://localhost:1", "http://[::1]:1", "http://127.0.0.2:1"} {
		code, stderr = kctl(map[string]string{"KLUIS_URL": u, "KLUIS_TOKEN": "kls_secret"}, "", "whoami")
		assert.Equal(t, 1, code, u)
		assert.NotContains(t, stderr, "refusing", "loopback is this machine: %s", u)
	}
}

// nonLoopbackIP is an IPv4 address of this machine that is not loopback.
func nonLoopbackIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address")
	return ""
}
