package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
	digest := func() []byte {
		d := sha256.New()
		fmt.Fprintf(d, "POST /x\n")
		d.Write(body)
		return d.Sum(nil)
	}()
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
