package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/server/servertest"
)

// rawGET sends target as it is (no client cleans it) on a new connection
// to the listener and reads the answer.
func rawGET(t *testing.T, addr, target, token string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	_, err = io.WriteString(c, req+"\r\n")
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, target)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, body
}

// A path under the API that is not clean (an empty, "." or ".." segment)
// is answered by the API with its JSON 404, never with ServeMux's
// redirect to the clean path; the staff console keeps its redirects for
// browsers.
func TestUncleanPathsGetTheAPIsJSONError(t *testing.T) {
	b := servertest.Start(t, server.Options{})
	res, _ := rawGET(t, b.HTTP, "/api/v1/users", b.Token)
	require.Equal(t, http.StatusOK, res.StatusCode, "the clean path")

	for _, target := range []string{
		"/api/v1//users", "//api/v1/users", "/api/v1/./users", "/api/v1/users/../users",
		"/api/v1/users/", "/api//v1/users?limit=5", "/staff/../api/v1/users", "/api/v1/documents//1",
		"/api/v1/users/./1/tokens", "/healthz/", "/api/../healthz",
	} {
		res, body := rawGET(t, b.HTTP, target, b.Token)
		require.Equal(t, http.StatusNotFound, res.StatusCode, "%s: %s", target, body)
		require.Empty(t, res.Header.Get("Location"), target)
		require.Equal(t, "no-store", res.Header.Get("Cache-Control"), target)
		require.Equal(t, "application/json; charset=utf-8", res.Header.Get("Content-Type"), target)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		require.NoError(t, json.Unmarshal(body, &e), "%s: %s", target, body)
		require.Equal(t, "not_found", e.Error.Code, target)
	}

	// The console: /staff and unclean paths under /staff/ are redirected
	// to the clean path by the console, as before.
	for target, want := range map[string]string{
		"/staff":             "/staff/",
		"/staff//documents":  "/staff/documents",
		"//staff/login":      "/staff/login",
		"/staff/./login?x=1": "/staff/login?x=1",
	} {
		res, body := rawGET(t, b.HTTP, target, "")
		require.Contains(t, []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect}, res.StatusCode, "%s: %s", target, body)
		require.Equal(t, want, res.Header.Get("Location"), target)
	}
	res, body := rawGET(t, b.HTTP, "/staff/login", "")
	require.Equal(t, http.StatusOK, res.StatusCode, string(body))
	require.Contains(t, res.Header.Get("Content-Type"), "text/html")
}
