package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store/storetest"
)

func TestIdempotencyStaleClaimAndPrune(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC))
	st := storetest.New(t)
	as, err := auth.New(auth.Options{Pool: st.Pool(), Params: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}})
	require.NoError(t, err)
	s, err := New(Options{Pool: st.Pool(), Auth: as, Clock: clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	calls := 0
	h := s.idempotent(func(w http.ResponseWriter, r *http.Request) error {
		calls++
		writeJSON(w, http.StatusCreated, map[string]int{"n": calls})
		return nil
	})
	body := []byte(`{"a":1}`)
	digest := s.requestDigest("POST", "/x", body)
	// A claim left in progress by a crashed process.
	_, err = st.Pool().Exec(ctx, `INSERT INTO api_idempotency (user_id, key, request_hash, created_at) VALUES (0, 'k', $1, $2)`, digest, clock.Now())
	require.NoError(t, err)

	send := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/x", bytes.NewReader(body))
		req.Header.Set(IdempotencyHeader, "k")
		if err := h(rec, req); err != nil {
			writeAPIError(rec, s.toAPIError(err))
		}
		return rec
	}
	rec := send()
	assert.Equal(t, http.StatusConflict, rec.Code, "a fresh claim in progress is respected")
	assert.Contains(t, rec.Body.String(), "idempotency_in_progress")
	assert.Equal(t, 0, calls)

	clock.Set(clock.Now().Add(3 * time.Minute))
	rec = send()
	assert.Equal(t, http.StatusCreated, rec.Code, "a stale claim is taken over")
	assert.Equal(t, 1, calls)
	rec = send()
	assert.Equal(t, http.StatusCreated, rec.Code)
	assert.Equal(t, "true", rec.Header().Get(ReplayedHeader))
	assert.Equal(t, 1, calls)

	clock.Set(clock.Now().Add(25 * time.Hour))
	n, err := s.PruneIdempotency(ctx, DefaultIdempotencyRetention)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	rec = send()
	assert.Equal(t, http.StatusCreated, rec.Code)
	assert.Equal(t, 2, calls, "after pruning the key is new again")
}

// TestIdempotencyStoresNoPlainHashOfTheBody: a stored Idempotency-Key
// keeps a keyed digest of its request, so that a body with a password
// (POST /api/v1/users) cannot be tried against at SHA-256's speed by
// whoever reads the database; replays and reuse checks still work, and
// two replicas with the same key agree.
func TestIdempotencyStoresNoPlainHashOfTheBody(t *testing.T) {
	ctx := context.Background()
	st := storetest.New(t)
	as, err := auth.New(auth.Options{Pool: st.Pool(), Params: auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1}})
	require.NoError(t, err)
	key := bytes.Repeat([]byte{7}, 32)
	replica := func() *Server {
		s, err := New(Options{Pool: st.Pool(), Auth: as, IdempotencyKey: key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		return s
	}
	a, b := replica(), replica()
	calls := 0
	handler := func(w http.ResponseWriter, r *http.Request) error {
		calls++
		writeJSON(w, http.StatusCreated, map[string]int{"n": calls})
		return nil
	}
	send := func(s *Server, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/v1/users", strings.NewReader(body))
		req.Header.Set(IdempotencyHeader, "k1")
		if err := s.idempotent(handler)(rec, req); err != nil {
			writeAPIError(rec, s.toAPIError(err))
		}
		return rec
	}
	body := `{"username":"x","password":"correct horse battery","role":"staff"}`
	require.Equal(t, http.StatusCreated, send(a, body).Code)

	var stored []byte
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT request_hash FROM api_idempotency WHERE key = 'k1'`).Scan(&stored))
	for _, plain := range [][]byte{
		func() []byte { h := sha256.Sum256([]byte(body)); return h[:] }(),
		func() []byte { h := sha256.Sum256([]byte("POST /api/v1/users\n" + body)); return h[:] }(),
	} {
		assert.NotEqual(t, plain, stored, "a plain SHA-256 of the request is stored")
	}
	other, err := New(Options{Pool: st.Pool(), Auth: as, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	assert.NotEqual(t, stored, other.requestDigest("POST", "/api/v1/users", []byte(body)), "the digest depends on the key")

	rec := send(b, body)
	assert.Equal(t, http.StatusCreated, rec.Code, "the other replica replays the answer")
	assert.Equal(t, "true", rec.Header().Get(ReplayedHeader))
	assert.Equal(t, 1, calls)
	rec = send(b, strings.Replace(body, "battery", "staple", 1))
	assert.Equal(t, http.StatusUnprocessableEntity, rec.Code, "another body under the same key is refused")
	assert.Contains(t, rec.Body.String(), "idempotency_key_reused")
	assert.Equal(t, 1, calls)
}
