package api

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
)

const (
	defaultLimit = 50
	maxLimit     = 200
)

// Page is the envelope of every list response.
type Page[T any] struct {
	// Items are this page's entries.
	Items []T `json:"items"`
	// NextCursor fetches the next page; empty on the last page.
	NextCursor string `json:"next_cursor"`
	// Next is the URL of the next page; empty on the last page.
	Next string `json:"next,omitempty"`
}

// pageParams reads limit and cursor; the cursor is returned decoded.
func pageParams(r *http.Request) (limit int, cursor string, err error) {
	q := r.URL.Query()
	limit = defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return 0, "", errorf(http.StatusBadRequest, "invalid_limit", "limit must be a whole number from 1 to %d", maxLimit)
		}
		limit = n
	}
	if v := q.Get("cursor"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(b) == 0 || !strings.HasPrefix(string(b), "c1:") {
			return 0, "", errorf(http.StatusBadRequest, "invalid_cursor", "the cursor is not one this server handed out")
		}
		cursor = strings.TrimPrefix(string(b), "c1:")
	}
	return limit, cursor, nil
}

// cursorInt reads a numeric keyset cursor (0 when absent).
func cursorInt(cursor string) (int64, error) {
	if cursor == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "invalid_cursor", "the cursor is not one this server handed out")
	}
	return n, nil
}

// pageInt is pageParams with a numeric cursor (0 when absent).
func pageInt(r *http.Request) (limit int, pos int64, err error) {
	limit, cur, err := pageParams(r)
	if err != nil {
		return 0, 0, err
	}
	pos, err = cursorInt(cur)
	if err != nil {
		return 0, 0, err
	}
	return limit, pos, nil
}

// encodeCursor makes an opaque cursor from a position.
func encodeCursor(pos string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("c1:" + pos))
}

// newPage builds the envelope; next is the raw position of the next page
// ("" when this is the last one).
func newPage[T any](r *http.Request, items []T, next string) Page[T] {
	if items == nil {
		items = []T{}
	}
	p := Page[T]{Items: items}
	if next != "" {
		p.NextCursor = encodeCursor(next)
		q := r.URL.Query()
		q.Set("cursor", p.NextCursor)
		p.Next = r.URL.Path + "?" + q.Encode()
	}
	return p
}
