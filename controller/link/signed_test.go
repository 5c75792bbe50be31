package link

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/engine"
	"kluis/controller/engine/enginetest"
	"kluis/controller/journal"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// refusals records what a link reported as refused.
type refusals struct {
	mu  sync.Mutex
	got []string // kind + " " + request id
}

func (r *refusals) add(kind wire.Kind, id, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(kind)+" "+id)
}

func (r *refusals) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *refusals) has(kind wire.Kind, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.got, string(kind)+" "+id)
}

// The forgeries tried on the real broker (see responder.forge), each a
// grant of a compartment.
var forgeries = []string{"K1.unsigned", "K1.otherkey", "K1.otherdevice", "K1.otherrequest", "K1.tampered", "K1.expired", "K1.denied"}

// refusedThenCancelled runs call (a request with id) until the link has
// reported its answer refused, then ends it, and returns its error.
func refusedThenCancelled[T any](t *testing.T, rf *refusals, kind wire.Kind, id string, call func(context.Context) (T, error)) (T, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() { v, err := call(ctx); done <- result{v, err} }()
	testenv.Eventually(t, "the answer refused and reported", func() bool { return rf.has(kind, id) })
	select {
	case r := <-done:
		t.Fatalf("the request ended on a refused answer: %v %v", r.v, r.err)
	default:
	}
	cancel()
	r := <-done
	return r.v, r.err
}

// Over the real broker, the link hands over only the answer the backend
// signed for this device and request: an unsigned, otherwise signed, other
// device's, other request's, changed, expired or replayed grant, and an
// unsigned staff login, are each counted and reported, and the request
// keeps waiting for the genuine answer; without one it fails as unanswered
// (ErrResponseRefused, ErrUnavailable).
func TestAnswersRefusedUnlessSigned(t *testing.T) {
	dev := fmt.Sprintf("ls-%d", time.Now().UnixNano())
	newResponder(t, dev)
	j, _, _, err := journal.Open(journal.Options{Dir: t.TempDir(), DeviceID: dev})
	require.NoError(t, err)
	defer j.Close()
	var rf refusals
	l, stop := startLinkWith(t, Options{DeviceID: dev, Journal: j, Refused: rf.add})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	verify := func(token string) (string, wire.VerifyResponse, error) {
		id := wire.NewID(time.Now())
		res, err := l.Verify(ctx, wire.VerifyRequest{ID: id, At: time.Now().UTC(), Method: wire.MethodQR, Token: token})
		return id, res, err
	}
	refusedVerify := func(token string) (string, wire.VerifyResponse, error) {
		id := wire.NewID(time.Now())
		res, err := refusedThenCancelled(t, &rf, wire.KindVerifyRes, id, func(ctx context.Context) (wire.VerifyResponse, error) {
			return l.Verify(ctx, wire.VerifyRequest{ID: id, At: time.Now().UTC(), Method: wire.MethodQR, Token: token})
		})
		return id, res, err
	}
	_, res, err := verify("K1.good")
	require.NoError(t, err, "the genuine grant")
	require.Equal(t, wire.VerifyOK, res.Result)
	_, res, err = verify("K1.bad")
	require.NoError(t, err, "a genuine refusal")
	require.Equal(t, wire.VerifyWrongCode, res.Result)
	for _, tok := range append(slices.Clone(forgeries), "K1.replay") {
		_, res, err := refusedVerify(tok)
		require.ErrorIs(t, err, ErrResponseRefused, tok)
		require.ErrorIs(t, err, ErrUnavailable, tok)
		assert.Equal(t, wire.VerifyResponse{}, res, "%s: nothing handed over", tok)
	}
	id := wire.NewID(time.Now())
	_, err = refusedThenCancelled(t, &rf, wire.KindStaffRes, id, func(ctx context.Context) (wire.StaffResponse, error) {
		return l.Staff(ctx, wire.StaffRequest{ID: id, Op: wire.StaffLogin, At: time.Now().UTC(), PIN: "123456"})
	})
	require.ErrorIs(t, err, ErrResponseRefused, "an unsigned staff login")
	assert.Equal(t, float64(len(forgeries)+1), l.mRefused.WithLabelValues(string(wire.KindVerifyRes)).Value())
	assert.Equal(t, 1.0, l.mRefused.WithLabelValues(string(wire.KindStaffRes)).Value())
}

// A link without the backend's public key refuses every answer, the
// genuine one too: nothing online is acted on without the key.
func TestAnswersRefusedWithoutKey(t *testing.T) {
	dev := fmt.Sprintf("lk-%d", time.Now().UnixNano())
	newResponder(t, dev)
	j, _, _, err := journal.Open(journal.Options{Dir: t.TempDir(), DeviceID: dev})
	require.NoError(t, err)
	defer j.Close()
	var rf refusals
	l, stop := startLinkWith(t, Options{DeviceID: dev, Journal: j, Refused: rf.add, ResponseKey: ed25519.PublicKey{}})
	defer stop()
	id := wire.NewID(time.Now())
	_, err = refusedThenCancelled(t, &rf, wire.KindVerifyRes, id, func(ctx context.Context) (wire.VerifyResponse, error) {
		return l.Verify(ctx, wire.VerifyRequest{ID: id, At: time.Now().UTC(), Method: wire.MethodQR, Token: "K1.good"})
	})
	require.ErrorIs(t, err, ErrResponseRefused)
	require.ErrorIs(t, err, wire.ErrResponseUnsigned)
}

// verifyResult is what a request of forgedFirst ended with.
type verifyResult struct {
	res wire.VerifyResponse
	err error
}

// forgedFirst starts a link for dev and a verify request through it that
// the responder answers with an unsigned grant, and returns once the link
// has refused that grant: the request waits on (its result comes on
// done) for an answer the test publishes with r.
func forgedFirst(t *testing.T, dev string) (r *responder, rf *refusals, id string, done <-chan verifyResult) {
	t.Helper()
	r = newResponder(t, dev)
	j, _, _, err := journal.Open(journal.Options{Dir: t.TempDir(), DeviceID: dev})
	require.NoError(t, err)
	t.Cleanup(func() { j.Close() })
	rf = &refusals{}
	l, stop := startLinkWith(t, Options{DeviceID: dev, Journal: j, Refused: rf.add})
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	id = wire.NewID(time.Now())
	ch := make(chan verifyResult, 1)
	go func() {
		res, err := l.Verify(ctx, wire.VerifyRequest{ID: id, At: time.Now().UTC(), Method: wire.MethodQR, Token: "K1.unsigned"})
		ch <- verifyResult{res, err}
	}()
	testenv.Eventually(t, "the forged grant refused", func() bool { return rf.has(wire.KindVerifyRes, id) })
	return r, rf, id, ch
}

// A forged grant that reaches the device first does not push the genuine
// answer aside: it is refused and reported, and the request takes the
// backend's signed answer that follows (here a refusal).
func TestForgeryFirstThenTheGenuineAnswer(t *testing.T) {
	dev := fmt.Sprintf("lf-%d", time.Now().UnixNano())
	r, _, id, done := forgedFirst(t, dev)
	genuine := &wire.VerifyResponse{ID: id, Result: wire.VerifyWrongCode}
	require.NoError(t, wire.SignResponse(backendKey, dev, genuine, time.Now().Add(wire.ResponseTTL)))
	r.pub(wire.KindVerifyRes, genuine)
	got := <-done
	require.NoError(t, got.err)
	assert.Equal(t, wire.VerifyWrongCode, got.res.Result, "the genuine answer, not the forged grant")
}

// The whole path of a citizen's QR code on the real broker, kluisd's engine
// asking through the link: a forged grant of an existing compartment opens
// nothing and is journaled as a response_refused event for the backend's
// audit; the genuine grant then opens that compartment.
func TestForgedGrantKeepsTheDoorShut(t *testing.T) {
	dev := fmt.Sprintf("le-%d", time.Now().UnixNano())
	r := newResponder(t, dev)
	r.mu.Lock()
	r.grantAddr = &wire.Address{Board: 0, Channel: 1} // compartment 2 of the rig
	r.mu.Unlock()
	lj, _, _, err := journal.Open(journal.Options{Dir: t.TempDir(), DeviceID: dev})
	require.NoError(t, err)
	defer lj.Close()
	var eng *engine.Engine
	var engMu sync.Mutex
	l, stop := startLinkWith(t, Options{DeviceID: dev, Journal: lj, Refused: func(k wire.Kind, id, why string) {
		engMu.Lock()
		defer engMu.Unlock()
		eng.RefuseResponse(k, id, why)
	}})
	defer stop()
	rig := enginetest.Start(t, enginetest.Options{DeviceID: dev, Backend: l, Key: backendKey})
	engMu.Lock()
	eng = rig.Engine
	engMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	refusedEvents := func() []wire.Event {
		var out []wire.Event
		for _, e := range rig.Journal.Outbox() {
			var ev wire.Event
			require.NoError(t, json.Unmarshal(e.Payload, &ev))
			if ev.Kind == wire.EvResponseRefused {
				out = append(out, ev)
			}
		}
		return out
	}
	for i, tok := range forgeries {
		// The engine waits for the genuine answer (timeouts.verify, then
		// offline); the citizen walks away once the forgery is reported.
		pctx, pcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { _, err := rig.Engine.Pickup(pctx, engine.PickupRequest{QR: tok}); done <- err }()
		testenv.Eventually(t, tok+" reported", func() bool { return len(refusedEvents()) == i+1 })
		pcancel()
		require.ErrorIs(t, <-done, context.Canceled, tok)
		require.Empty(t, rig.Driver.Pulses(), "%s: no lock pulsed", tok)
		assert.Equal(t, engine.StateIdle, rig.Engine.Screen().State, "%s: the kiosk shows no opening", tok)
	}
	refused := refusedEvents()
	require.Len(t, refused, len(forgeries), "every forged grant reported")
	for _, ev := range refused {
		assert.NotEmpty(t, ev.RequestID)
		assert.Regexp(t, `^verify/res: `, ev.Detail)
	}
	// The genuine grant opens the compartment it names: the forgeries
	// above named it too.
	_, err = rig.Engine.Pickup(ctx, engine.PickupRequest{QR: "K1.good"})
	require.NoError(t, err)
	pulses, err := rig.Driver.WaitPulses(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, 1, pulses[0].Addr.Channel)
}

// An answer signed in a group with others ("KR2.", the backend's default)
// is taken like a "KR1." one; the same group's answer for another device,
// arriving first on this device's topic, is refused and reported.
func TestGroupSignedAnswer(t *testing.T) {
	dev := fmt.Sprintf("lg-%d", time.Now().UnixNano())
	r, rf, id, done := forgedFirst(t, dev)
	exp := time.Now().Add(wire.ResponseTTL)
	mine := &wire.VerifyResponse{ID: id, Result: wire.VerifyOK, DocumentID: "doc-7", Addr: &wire.Address{Board: 0, Channel: 2}}
	theirs := &wire.VerifyResponse{ID: id, Result: wire.VerifyOK, DocumentID: "doc-7", Addr: &wire.Address{Board: 0, Channel: 2}}
	third := &wire.VerifyResponse{ID: wire.NewID(time.Now()), Result: wire.VerifyWrongCode}
	var leaves []*wire.ResponseLeaf
	for i, m := range []*wire.VerifyResponse{theirs, mine, third} {
		lf, err := wire.PrepareResponse([]string{dev + "-other", dev, dev}[i], m, exp)
		require.NoError(t, err)
		leaves = append(leaves, lf)
	}
	require.NoError(t, wire.SignResponseGroup(backendKey, leaves))
	require.True(t, strings.HasPrefix(mine.Sig, wire.ResponseGroupSigPrefix))
	before := rf.count()
	r.pub(wire.KindVerifyRes, theirs)
	testenv.Eventually(t, "the other device's answer refused", func() bool { return rf.count() > before })
	r.pub(wire.KindVerifyRes, mine)
	got := <-done
	require.NoError(t, got.err)
	assert.Equal(t, wire.VerifyOK, got.res.Result)
	assert.Equal(t, "doc-7", got.res.DocumentID)
}
