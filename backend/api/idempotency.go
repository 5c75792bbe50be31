package api

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// IdempotencyHeader is the request header naming an idempotency key.
const IdempotencyHeader = "Idempotency-Key"

// ReplayedHeader is set to "true" on a replayed response.
const ReplayedHeader = "Idempotent-Replayed"

const maxIdempotencyKey = 200

// staleClaim is how long a key may stay "in progress" before a retry of the
// same request takes it over (the first request's process died).
const staleClaim = 2 * time.Minute

// DefaultIdempotencyRetention is how long stored responses are replayed.
const DefaultIdempotencyRetention = 24 * time.Hour

// PruneIdempotency deletes stored idempotency keys older than olderThan
// and returns how many; run it periodically.
func (s *Server) PruneIdempotency(ctx context.Context, olderThan time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM api_idempotency WHERE created_at < $1`, s.clock().UTC().Add(-olderThan))
	if err != nil {
		return 0, fmt.Errorf("idempotency: prune: %w", err)
	}
	return tag.RowsAffected(), nil
}

// requestDigest is what a stored Idempotency-Key remembers of its
// request: HMAC-SHA256 under Options.IdempotencyKey of its method, path
// and body, never a plain hash (a body may carry a password).
func (s *Server) requestDigest(method, path string, body []byte) []byte {
	h := hmac.New(sha256.New, s.idemKey)
	fmt.Fprintf(h, "%s %s\n", method, path)
	h.Write(body)
	return h.Sum(nil)
}

// idempotent wraps a creating handler with Idempotency-Key handling.
func (s *Server) idempotent(next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		key := r.Header.Get(IdempotencyHeader)
		if key == "" {
			return next(w, r)
		}
		if len(key) > maxIdempotencyKey || !printableASCII(key) {
			return errorf(http.StatusBadRequest, "invalid_idempotency_key", "the Idempotency-Key must be 1 to %d printable ASCII characters", maxIdempotencyKey)
		}
		body, err := readBody(r)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		digest := s.requestDigest(r.Method, r.URL.Path, body)
		user := principal(r.Context()).ID
		ctx := r.Context()

		tag, err := s.pool.Exec(ctx,
			`INSERT INTO api_idempotency (user_id, key, request_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			user, key, digest, s.clock().UTC())
		if err != nil {
			return fmt.Errorf("idempotency: claim key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			// A claim left in progress by a crashed process is taken over
			// after staleClaim by the same request.
			tag, err = s.pool.Exec(ctx,
				`UPDATE api_idempotency SET created_at = $4 WHERE user_id = $1 AND key = $2 AND request_hash = $3 AND status = 0 AND created_at < $5`,
				user, key, digest, s.clock().UTC(), s.clock().UTC().Add(-staleClaim))
			if err != nil {
				return fmt.Errorf("idempotency: take over stale key: %w", err)
			}
			if tag.RowsAffected() == 0 {
				return s.replay(ctx, w, user, key, digest)
			}
		}

		// First use of the key: run the handler into a buffer, keep the
		// response unless it is a server error, then send it.
		buf := &bufferWriter{header: http.Header{}}
		if herr := next(buf, r); herr != nil {
			e := s.toAPIError(herr)
			buf = &bufferWriter{header: http.Header{}}
			writeAPIError(buf, e)
			if e.Status >= 500 {
				s.log.Error("request failed", "route", r.Pattern, "status", e.Status, "code", e.Code, "err", herr)
			}
		}
		if buf.status == 0 {
			buf.status = http.StatusOK
		}
		dctx := context.WithoutCancel(ctx)
		if buf.status >= 500 {
			if _, err := s.pool.Exec(dctx, `DELETE FROM api_idempotency WHERE user_id = $1 AND key = $2`, user, key); err != nil {
				s.log.Error("idempotency: release key", "err", err)
			}
		} else if _, err := s.pool.Exec(dctx,
			`UPDATE api_idempotency SET status = $3, content_type = $4, body = $5 WHERE user_id = $1 AND key = $2`,
			user, key, buf.status, buf.header.Get("Content-Type"), buf.body); err != nil {
			s.log.Error("idempotency: store response", "err", err)
		}
		for k, v := range buf.header {
			w.Header()[k] = v
		}
		w.WriteHeader(buf.status)
		_, _ = w.Write(buf.body)
		return nil
	}
}

func (s *Server) replay(ctx context.Context, w http.ResponseWriter, user int64, key string, digest []byte) error {
	var stored []byte
	var status int
	var ctype string
	var body []byte
	err := s.pool.QueryRow(ctx,
		`SELECT request_hash, status, content_type, body FROM api_idempotency WHERE user_id = $1 AND key = $2`,
		user, key).Scan(&stored, &status, &ctype, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		// The first request failed with a server error in between: ask to retry.
		return errorf(http.StatusConflict, "idempotency_in_progress", "a request with this Idempotency-Key is being processed; retry shortly")
	}
	if err != nil {
		return fmt.Errorf("idempotency: read key: %w", err)
	}
	if !bytes.Equal(stored, digest) {
		return errorf(http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was already used for a different request; use a new key")
	}
	if status == 0 {
		return errorf(http.StatusConflict, "idempotency_in_progress", "a request with this Idempotency-Key is being processed; retry shortly")
	}
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.Header().Set(ReplayedHeader, "true")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}
