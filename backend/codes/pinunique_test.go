package codes

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// scripted serves the queued chunks, one per Read, then falls back to a
// counter stream.
type scripted struct {
	mu     sync.Mutex
	chunks [][]byte
	n      byte
}

func (s *scripted) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.chunks) > 0 && len(s.chunks[0]) == len(p) {
		c := s.chunks[0]
		s.chunks = s.chunks[1:]
		return copy(p, c), nil
	}
	for i := range p {
		s.n++
		p[i] = s.n
	}
	return len(p), nil
}

// A PIN already open on the device is drawn again: Issue draws another.
func TestIssueRedrawsCollidingPIN(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pinBytes := []byte{0, 0, 0x30, 0x39} // 12345
	other := []byte{0, 0, 0x30, 0x3a}    // 12346
	r := &scripted{}
	svc, err := New(Options{Pool: f.pool, Keys: f.keys, Argon: testArgon, Clock: f.clock.Now, Rand: r,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	issue := func(n int) Credentials {
		doc, c := f.document("driving_licence", "l2", n)
		var cr Credentials
		require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
			var err error
			cr, err = svc.Issue(context.Background(), tx, IssueRequest{DocumentID: doc, DocumentKind: "driving_licence",
				DeviceID: "l2", Compartment: c, ExpiresAt: t0.Add(time.Hour)})
			return err
		}))
		return cr
	}
	r.chunks = [][]byte{pinBytes}
	first := issue(1)
	require.Equal(t, "000012345", first.PIN)
	r.chunks = [][]byte{pinBytes, other}
	second := issue(2)
	require.Equal(t, "000012346", second.PIN)
	_, err = svc.Verify(context.Background(), Attempt{DeviceID: "l2", PIN: "000012345", BirthDate: "2000-01-01"})
	require.NoError(t, err)
	_, err = svc.Verify(context.Background(), Attempt{DeviceID: "l2", PIN: "000012346", BirthDate: "2000-01-01"})
	require.NoError(t, err)
}
