package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/store"
)

// Fifty staff members reserve at once on a 24-compartment device: exactly 24
// get a compartment, each a different one, and the other 26 get a clear 409
// no_compartment; nothing else (no 5xx).
func TestFiftyConcurrentReservationsOverHTTP(t *testing.T) {
	e := newEnv(t)
	e.setupSite(24)
	const n = 50
	docs := make([]store.Document, n)
	tokens := make([]string, n)
	for i := range docs {
		docs[i] = e.register(fmt.Sprintf("591-%07d-%02d", i, i%100))
		tokens[i] = e.freshToken(auth.RoleStaff)
	}
	type result struct {
		status int
		body   []byte
		err    error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			js, _ := json.Marshal(map[string]string{"device_id": "kortrijk-1"})
			req, err := http.NewRequestWithContext(ctx, "POST", e.http.URL+"/api/v1/documents/"+docs[i].ID+"/reserve", bytes.NewReader(js))
			if err != nil {
				results[i].err = err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tokens[i])
			res, err := e.http.Client().Do(req)
			if err != nil {
				results[i].err = err
				return
			}
			defer res.Body.Close()
			results[i].body, results[i].err = io.ReadAll(res.Body)
			results[i].status = res.StatusCode
		}()
	}
	close(start)
	wg.Wait()

	ok, conflict := 0, 0
	used := map[int64]string{}
	for i, r := range results {
		require.NoError(t, r.err, "request %d", i)
		rr := resp{status: r.status, body: r.body}
		switch r.status {
		case http.StatusOK:
			ok++
			var d store.Document
			rr.decode(t, &d)
			require.Equal(t, "reserved", string(d.State))
			require.NotZero(t, d.CompartmentID)
			prev, dup := used[d.CompartmentID]
			require.False(t, dup, "compartment %d given to %s and %s", d.CompartmentID, prev, d.ID)
			used[d.CompartmentID] = d.ID
		case http.StatusConflict:
			conflict++
			require.Equal(t, "no_compartment", rr.errCode(), string(r.body))
		default:
			t.Fatalf("request %d: status %d: %s", i, r.status, r.body)
		}
	}
	require.Equal(t, 24, ok)
	require.Equal(t, 26, conflict)

	r := e.do("GET", "/api/v1/documents?state=reserved&limit=100", e.tokens[auth.RoleStaff], nil)
	require.Equal(t, 200, r.status, string(r.body))
	var page struct {
		Items []store.Document `json:"items"`
	}
	r.decode(t, &page)
	require.Len(t, page.Items, 24, "the database agrees")
}
