package link

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/controller/engine"
	"kluis/controller/engine/enginetest"
	"kluis/controller/journal"
	"kluis/controller/wire"
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

func (r *refusals) has(kind wire.Kind, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.got, string(kind)+" "+id)
}

// The forgeries tried on the real broker (see responder.forge), each a
// grant of a compartment.
var forgeries = []string{"K1.unsigned", "K1.otherkey", "K1.otherdevice", "K1.otherrequest", "K1.tampered", "K1.expired", "K1.denied"}

// Over the real broker, the link hands over only the answer the backend
// signed for this device and request: an unsigned, otherwise signed, other
// device's, other request's, changed, expired or replayed grant, and an
// unsigned staff login, fail the request as unanswered
// (ErrResponseRefused, ErrUnavailable), each counted and reported.
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
	_, res, err := verify("K1.good")
	require.NoError(t, err, "the genuine grant")
	require.Equal(t, wire.VerifyOK, res.Result)
	_, res, err = verify("K1.bad")
	require.NoError(t, err, "a genuine refusal")
	require.Equal(t, wire.VerifyWrongCode, res.Result)
	for _, tok := range append(slices.Clone(forgeries), "K1.replay") {
		id, res, err := verify(tok)
		require.ErrorIs(t, err, ErrResponseRefused, tok)
		require.ErrorIs(t, err, ErrUnavailable, tok)
		assert.Equal(t, wire.VerifyResponse{}, res, "%s: nothing handed over", tok)
		assert.True(t, rf.has(wire.KindVerifyRes, id), "%s reported", tok)
	}
	id := wire.NewID(time.Now())
	_, err = l.Staff(ctx, wire.StaffRequest{ID: id, Op: wire.StaffLogin, At: time.Now().UTC(), PIN: "123456"})
	require.ErrorIs(t, err, ErrResponseRefused, "an unsigned staff login")
	assert.True(t, rf.has(wire.KindStaffRes, id))
	assert.Equal(t, float64(len(forgeries)+1), testutil.ToFloat64(l.mRefused.WithLabelValues(string(wire.KindVerifyRes))))
	assert.Equal(t, 1.0, testutil.ToFloat64(l.mRefused.WithLabelValues(string(wire.KindStaffRes))))
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := wire.NewID(time.Now())
	_, err = l.Verify(ctx, wire.VerifyRequest{ID: id, At: time.Now().UTC(), Method: wire.MethodQR, Token: "K1.good"})
	require.ErrorIs(t, err, ErrResponseRefused)
	require.ErrorIs(t, err, wire.ErrResponseUnsigned)
	assert.True(t, rf.has(wire.KindVerifyRes, id))
}

// The whole path of a citizen's QR code on the real broker, kluisd's engine
// asking through the link: a forged grant of an existing compartment opens
// nothing (the engine checks offline, finds nothing, the kiosk says so) and
// is journaled as a response_refused event for the backend's audit; the
// genuine grant then opens that compartment.
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
	for _, tok := range forgeries {
		sc, err := rig.Engine.Pickup(ctx, engine.PickupRequest{QR: tok})
		require.NoError(t, err, tok)
		assert.Contains(t, []string{engine.StateWrongCode, engine.StateError}, sc.State, "%s: the kiosk shows no opening", tok)
		require.Empty(t, rig.Driver.Pulses(), "%s: no lock pulsed", tok)
	}
	var refused []wire.Event
	for _, e := range rig.Journal.Outbox() {
		var ev wire.Event
		require.NoError(t, json.Unmarshal(e.Payload, &ev))
		if ev.Kind == wire.EvResponseRefused {
			refused = append(refused, ev)
		}
	}
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
