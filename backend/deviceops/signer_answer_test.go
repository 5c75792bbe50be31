package deviceops

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/store/storetest"
	"kluis/controller/pickupcode"
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

// In the kr2 form SealBatch signs a batch's answers together (groups of at
// most wire.MaxResponseGroup, never a group of one), each holding for its
// own device and request only; a KR1-only device's answer, a lone answer
// and every answer in the kr1 form are left unsigned, for the request's
// own "KR1." signature.
func TestSealBatchSignsTogether(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	kr2, err := NewAnswerSigner(AnswerSignerOptions{Key: priv, Clock: clock, Form: AnswerKR2, KR1Devices: []string{"old-1"}})
	require.NoError(t, err)
	kr1, err := NewAnswerSigner(AnswerSignerOptions{Key: priv, Clock: clock})
	require.NoError(t, err)
	_, err = NewAnswerSigner(AnswerSignerOptions{Key: priv, Form: "kr3"})
	require.Error(t, err)

	batch := func(n int, devices ...string) ([]codes.Decided, []*answerSeal) {
		var ds []codes.Decided
		var seals []*answerSeal
		for i := range n {
			dev := fmt.Sprintf("locker-%d", i)
			if i < len(devices) {
				dev = devices[i]
			}
			a := &answerSeal{device: dev, id: fmt.Sprintf("req-%d", i)}
			d := codes.Decided{Attempt: codes.Attempt{DeviceID: dev, Seal: a},
				Result: codes.Result{DocumentID: fmt.Sprintf("doc-%d", i), Board: 0, Channel: i % 16}}
			if i%3 == 2 {
				d.Result, d.Err = codes.Result{}, &codes.Denial{Err: pickupcode.ErrAlreadyCollected, Pending: true}
			}
			ds, seals = append(ds, d), append(seals, a)
		}
		return ds, seals
	}

	ds, seals := batch(5, "locker-0", "old-1")
	kr1.SealBatch(ds)
	for _, a := range seals {
		assert.Empty(t, a.res.Sig, "the kr1 form signs nothing together")
	}
	kr2.SealBatch(ds)
	assert.Empty(t, seals[1].res.Sig, "old-1 gets KR1 only")
	for i, a := range seals {
		if i == 1 {
			continue
		}
		require.True(t, strings.HasPrefix(a.res.Sig, wire.ResponseGroupSigPrefix), a.res.Sig)
		assert.Equal(t, a.id, a.res.ID)
		require.NoError(t, wire.VerifyResponseSig(pub, a.device, a.id, &a.res, now))
		want := wire.VerifyOK
		if i%3 == 2 {
			want = wire.VerifyPending
		}
		assert.Equal(t, want, a.res.Result)
		for j, b := range seals {
			if j != i && j != 1 {
				assert.ErrorIs(t, wire.VerifyResponseSig(pub, b.device, a.id, &a.res, now), wire.ErrResponseOtherDevice)
				assert.ErrorIs(t, wire.VerifyResponseSig(pub, a.device, b.id, &a.res, now), wire.ErrResponseOtherRequest)
			}
		}
	}

	ds, seals = batch(2, "locker-0", "old-1")
	kr2.SealBatch(ds)
	assert.Empty(t, seals[0].res.Sig, "alone in its batch but for a KR1-only device: KR1")

	// 65 answers: a group of 63 and one of 2, no group of one.
	ds, seals = batch(wire.MaxResponseGroup + 1)
	kr2.SealBatch(ds)
	groups := map[string]int{}
	for _, a := range seals {
		require.NoError(t, wire.VerifyResponseSig(pub, a.device, a.id, &a.res, now))
		groups[a.res.Sig[strings.LastIndexByte(a.res.Sig, '.'):]]++
	}
	assert.ElementsMatch(t, []int{wire.MaxResponseGroup - 1, 2}, slices.Collect(maps.Values(groups)))

	// The Verifier wrapper passes a batch-signed answer on as it is and
	// signs any other answer alone.
	pass := kr2.Verifier(devicelink.VerifierFunc(func(_ context.Context, _ string, req wire.VerifyRequest) wire.VerifyResponse {
		if req.ID == seals[0].id {
			return seals[0].res
		}
		return wire.VerifyResponse{Result: wire.VerifyWrongCode}
	}))
	r := pass.Verify(context.Background(), seals[0].device, wire.VerifyRequest{ID: seals[0].id})
	assert.Equal(t, seals[0].res.Sig, r.Sig)
	r = pass.Verify(context.Background(), "locker-9", wire.VerifyRequest{ID: "other"})
	require.True(t, strings.HasPrefix(r.Sig, wire.ResponseSigPrefix), r.Sig)
	require.NoError(t, wire.VerifyResponseSig(pub, "locker-9", "other", &r, now))
	// A batch-signed answer handed back for another request is signed again, for that request.
	wrong := kr2.Verifier(devicelink.VerifierFunc(func(context.Context, string, wire.VerifyRequest) wire.VerifyResponse { return seals[1].res }))
	r = wrong.Verify(context.Background(), seals[1].device, wire.VerifyRequest{ID: "req-x"})
	require.NoError(t, wire.VerifyResponseSig(pub, seals[1].device, "req-x", &r, now))
}

// BenchmarkAnswerSigner signs the answers of a verify batch of 4 (8 busy
// devices: docs/performance.md, "Fourteenth pass"): kr1 each alone, as the
// request's Verifier wrapper does, kr2 together (SealBatch). ns/op is per
// batch of 4 answers.
func BenchmarkAnswerSigner(b *testing.B) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(b, err)
	const n = 4
	batch := func() ([]codes.Decided, []*answerSeal) {
		ds, seals := make([]codes.Decided, n), make([]*answerSeal, n)
		for i := range n {
			seals[i] = &answerSeal{device: fmt.Sprintf("kiosk-%03d", i), id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}
			ds[i] = codes.Decided{Attempt: codes.Attempt{DeviceID: seals[i].device, Seal: seals[i]},
				Result: codes.Result{DocumentID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", Board: 1, Channel: i}}
		}
		return ds, seals
	}
	for _, form := range []AnswerForm{AnswerKR1, AnswerKR2} {
		s, err := NewAnswerSigner(AnswerSignerOptions{Key: priv, Form: form})
		require.NoError(b, err)
		b.Run(string(form), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ds, seals := batch()
				s.SealBatch(ds)
				for i, a := range seals {
					if a.res.Sig == "" { // kr1: each alone
						a.res = verifyAnswer(ds[i].Result, ds[i].Err, time.Time{})
						a.res.ID = a.id
						if err := s.Sign(a.device, &a.res); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
		})
	}
}

// BenchmarkSealBatchGoroutine is SealBatch of a kr2 batch of 4 as the
// verify batcher runs it: in a goroutine of its own per batch (fresh: its
// stack grows for the signature and the JSON every time, as before the
// sixteenth pass) or handed to one long-lived goroutine (warm: what the
// batch's leader does now). cpu-ns/op is the process's CPU per batch
// (getrusage).
//
//	go test -run XXX -bench SealBatchGoroutine -benchmem ./backend/deviceops/
func BenchmarkSealBatchGoroutine(b *testing.B) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(b, err)
	s, err := NewAnswerSigner(AnswerSignerOptions{Key: priv, Form: AnswerKR2})
	require.NoError(b, err)
	const n = 4
	batch := func() []codes.Decided {
		ds := make([]codes.Decided, n)
		for i := range n {
			ds[i] = codes.Decided{Attempt: codes.Attempt{DeviceID: fmt.Sprintf("kiosk-%03d", i),
				Seal: &answerSeal{device: fmt.Sprintf("kiosk-%03d", i), id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}},
				Result: codes.Result{DocumentID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", Board: 1, Channel: i}}
		}
		return ds
	}
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := storetest.ProcessCPU(b)
		for b.Loop() {
			done := make(chan struct{})
			ds := batch()
			go func() { s.SealBatch(ds); close(done) }()
			<-done
		}
		b.ReportMetric(float64(storetest.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	})
	b.Run("warm", func(b *testing.B) {
		q, done := make(chan []codes.Decided), make(chan struct{})
		go func() {
			for ds := range q {
				s.SealBatch(ds)
				done <- struct{}{}
			}
		}()
		defer close(q)
		b.ReportAllocs()
		cpu0 := storetest.ProcessCPU(b)
		for b.Loop() {
			q <- batch()
			<-done
		}
		b.ReportMetric(float64(storetest.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	})
}
