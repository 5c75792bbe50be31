package kiosk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/controller/engine"
	"kluis/controller/engine/enginetest"
	"kluis/deploy/dev/testenv"
)

// A local process opened 3,000 event streams (100 MB) before the bound.
// Now at most DefaultMaxStreams are open at once, and as many long polls
// wait: one more gets 503 with Retry-After; the long-poll fallback still
// answers while the streams are taken, and a place freed is taken again.
func TestKioskBoundsOpenStreams(t *testing.T) {
	er := enginetest.Start(t, enginetest.Options{DeviceID: dev})
	s, err := New(Options{Engine: er.Engine, Logger: er.Logger})
	require.NoError(t, err)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(s.CloseStreams)
	hc := &http.Client{} // no client timeout: it would cut the streams
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	open := func(ctx context.Context, path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		return hc.Do(req)
	}
	counts := func() (int, int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.streams, s.polls
	}
	refused := func(resp *http.Response, what string) {
		t.Helper()
		defer resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, what)
		require.Equal(t, retryAfter, resp.Header.Get("Retry-After"), what)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), what)
		var out map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Contains(t, out["error"], fmt.Sprintf("at most %d", DefaultMaxStreams), what)
	}

	// DefaultMaxStreams streams, each answered with its hello and screen.
	cancels := make([]context.CancelFunc, DefaultMaxStreams)
	for i := range DefaultMaxStreams {
		sctx, scancel := context.WithCancel(ctx)
		cancels[i] = scancel
		resp, err := open(sctx, "/kiosk/v1/events")
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		require.Equal(t, http.StatusOK, resp.StatusCode, "stream %d", i)
		nextScreen(t, readEvents(resp.Body))
	}
	resp, err := open(ctx, "/kiosk/v1/events")
	require.NoError(t, err)
	refused(resp, "one stream more")

	// The screen's fallback still answers.
	var sc engine.Screen
	resp, err = testenv.HTTPClient().Get(srv.URL + "/kiosk/v1/session")
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sc))
	resp.Body.Close()
	resp, err = testenv.HTTPClient().Get(srv.URL + fmt.Sprintf("/kiosk/v1/session?wait=%d", sc.Seq+1000))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Long polls that wait are bounded the same way, apart from streams.
	for range DefaultMaxStreams {
		go func() {
			if resp, err := open(ctx, fmt.Sprintf("/kiosk/v1/session?wait=%d", sc.Seq)); err == nil {
				resp.Body.Close()
			}
		}()
	}
	testenv.Eventually(t, "every long poll waiting", func() bool { _, p := counts(); return p == DefaultMaxStreams })
	resp, err = open(ctx, fmt.Sprintf("/kiosk/v1/session?wait=%d", sc.Seq))
	require.NoError(t, err)
	refused(resp, "one long poll more")

	// A stream that ends frees its place.
	cancels[0]()
	testenv.Eventually(t, "the closed stream's place freed", func() bool { n, _ := counts(); return n == DefaultMaxStreams-1 })
	resp, err = open(ctx, "/kiosk/v1/events")
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	nextScreen(t, readEvents(resp.Body))
	n, _ := counts()
	require.Equal(t, DefaultMaxStreams, n)
}
