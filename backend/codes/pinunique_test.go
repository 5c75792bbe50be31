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

	"kluis/controller/pickupcode"
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

// During a PIN key rotation the unique index cannot see a PIN open on the
// device under the previous key (another digest): Issue checks it and draws
// again, so a typed PIN never finds two open codes (which could open the
// wrong compartment). Codes of both keys verify, with their date of birth.
func TestIssueRedrawsPINOpenUnderThePreviousKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pinBytes := []byte{0, 0, 0x30, 0x39} // 12345
	other := []byte{0, 0, 0x30, 0x3a}    // 12346
	r := &scripted{}
	newKeys, err := GenerateKeys()
	require.NoError(t, err)
	rotated := Keys{Signing: f.keys.Signing, PIN: newKeys.PIN, PreviousPIN: f.keys.PIN}
	var svcs []*Service
	for _, k := range []Keys{f.keys, rotated} {
		svc, err := New(Options{Pool: f.pool, Keys: k, Argon: testArgon, Clock: f.clock.Now, Rand: r,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		svcs = append(svcs, svc)
	}
	issue := func(svc *Service, n int) (string, Credentials) {
		doc, c := f.document("passport", "l2", n)
		var cr Credentials
		require.NoError(t, pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
			var err error
			cr, err = svc.Issue(context.Background(), tx, IssueRequest{DocumentID: doc, DocumentKind: "passport", BirthDate: "1990-02-28",
				DeviceID: "l2", Compartment: c, ExpiresAt: t0.Add(time.Hour)})
			return err
		}))
		return doc, cr
	}
	r.chunks = [][]byte{pinBytes}
	oldDoc, first := issue(svcs[0], 1)
	require.Equal(t, "000012345", first.PIN)
	r.chunks = [][]byte{pinBytes, other}
	newDoc, second := issue(svcs[1], 2)
	require.Equal(t, "000012346", second.PIN, "the PIN open under the previous key is drawn again")

	_, err = svcs[1].Verify(context.Background(), Attempt{DeviceID: "l2", PIN: "000012345", BirthDate: "1990-02-27"})
	require.ErrorIs(t, err, pickupcode.ErrWrongCode, "the date of birth of a code of the previous key is checked")
	res, err := svcs[1].Verify(context.Background(), Attempt{DeviceID: "l2", PIN: "000012345", BirthDate: "1990-02-28"})
	require.NoError(t, err)
	require.Equal(t, oldDoc, res.DocumentID)
	res, err = svcs[1].Verify(context.Background(), Attempt{DeviceID: "l2", PIN: "000012346", BirthDate: "1990-02-28"})
	require.NoError(t, err)
	require.Equal(t, newDoc, res.DocumentID)
}

func TestPreviousPINKeyValidated(t *testing.T) {
	k, err := GenerateKeys()
	require.NoError(t, err)
	k.PreviousPIN = k.PIN
	require.ErrorIs(t, k.Validate(), pickupcode.ErrInvalid, "the same key twice")
	k.PreviousPIN = make([]byte, 16)
	require.ErrorIs(t, k.Validate(), pickupcode.ErrInvalid, "too short")
	k.PreviousPIN = make([]byte, 32)
	require.NoError(t, k.Validate())
	require.Len(t, k.PINKeys(), 2)
}
