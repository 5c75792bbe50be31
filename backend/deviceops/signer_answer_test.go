package deviceops

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/devicelink"
	"kluis/controller/wire"
)

// Every answer the signer passes on is signed for the asking device and
// request; an answer that cannot be signed (a handler bug) becomes a
// signed "unavailable", never an unsigned grant.
func TestAnswerSignerSignsEveryAnswer(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	s, err := NewAnswerSigner(AnswerSignerOptions{Key: priv, Clock: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	_, err = NewAnswerSigner(AnswerSignerOptions{})
	require.Error(t, err, "no key")

	grant := s.Verifier(devicelink.VerifierFunc(func(_ context.Context, _ string, req wire.VerifyRequest) wire.VerifyResponse {
		if req.Token == "broken" { // ok without a compartment: invalid
			return wire.VerifyResponse{Result: wire.VerifyOK}
		}
		return wire.VerifyResponse{Result: wire.VerifyOK, DocumentID: "doc-1", Addr: &wire.Address{Channel: 2}}
	}))
	r := grant.Verify(context.Background(), "locker-1", wire.VerifyRequest{ID: "req-1", Method: wire.MethodQR, Token: "K1.x"})
	require.NoError(t, wire.VerifyResponseSig(pub, "locker-1", "req-1", &r, now))
	assert.Equal(t, wire.VerifyOK, r.Result)
	assert.ErrorIs(t, wire.VerifyResponseSig(pub, "locker-1", "req-1", &r, now.Add(wire.ResponseTTL+wire.CommandSkew)), wire.ErrResponseExpired,
		"valid for wire.ResponseTTL (and the skew)")
	r = grant.Verify(context.Background(), "locker-1", wire.VerifyRequest{ID: "req-2", Method: wire.MethodQR, Token: "broken"})
	require.NoError(t, wire.VerifyResponseSig(pub, "locker-1", "req-2", &r, now))
	assert.Equal(t, wire.VerifyUnavailable, r.Result, "an invalid answer becomes unavailable")

	staff := s.Staff(devicelink.StaffHandlerFunc(func(context.Context, string, wire.StaffRequest) wire.StaffResponse {
		return wire.StaffResponse{Result: wire.StaffOK, DocumentID: "doc-2", Addr: &wire.Address{Channel: 5}}
	}))
	sr := staff.HandleStaff(context.Background(), "locker-1", wire.StaffRequest{ID: "req-3", Op: wire.StaffReserve})
	require.NoError(t, wire.VerifyResponseSig(pub, "locker-1", "req-3", &sr, now))
	assert.Equal(t, wire.StaffReserve, sr.Op, "the op is the request's")
	assert.ErrorIs(t, wire.VerifyResponseSig(pub, "locker-2", "req-3", &sr, now), wire.ErrResponseOtherDevice)
}

// Sign signs the link's own answers (a request over the device's budget)
// like the handlers' answers; it refuses what is not an answer.
func TestAnswerSignerSignsTheLinksOwnAnswers(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	s, err := NewAnswerSigner(AnswerSignerOptions{Key: priv, Clock: func() time.Time { return now }})
	require.NoError(t, err)
	r := &wire.VerifyResponse{ID: "req-1", Result: wire.VerifyUnavailable}
	require.NoError(t, s.Sign("locker-1", r))
	require.NoError(t, wire.VerifyResponseSig(pub, "locker-1", "req-1", r, now))
	assert.ErrorIs(t, wire.VerifyResponseSig(pub, "locker-2", "req-1", r, now), wire.ErrResponseOtherDevice)
	sr := &wire.StaffResponse{ID: "req-2", Op: wire.StaffLogin, Result: wire.StaffUnavailable}
	require.NoError(t, s.Sign("locker-1", sr))
	require.NoError(t, wire.VerifyResponseSig(pub, "locker-1", "req-2", sr, now))
	assert.Error(t, s.Sign("locker-1", &wire.Ack{IDs: []string{"e-1"}}), "not an answer")
}
