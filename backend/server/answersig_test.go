package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/deviceops"
	"kluis/backend/server"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// answerRig is a backend with four devices (k1 to k4), each with a loaded
// document whose code answers a QR token the test signed itself, and each
// device connected over the embedded broker.
type answerRig struct {
	s      *backend
	db     *pgx.Conn
	devs   []*fakeDevice
	tokens map[string]string // device: its code's QR token
	codes  map[string][]byte // device: its code's id
}

func newAnswerRig(t *testing.T, o server.Options) *answerRig {
	t.Helper()
	ctx := context.Background()
	r := &answerRig{s: startBackend(t, o), tokens: map[string]string{}, codes: map[string][]byte{}}
	r.s.waitLink()
	var err error
	r.db, err = pgx.Connect(ctx, r.s.Options.DatabaseURL)
	require.NoError(t, err)
	t.Cleanup(func() { r.db.Close(context.Background()) })
	r.s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	for i := 1; i <= 4; i++ {
		dev := fmt.Sprintf("k%d", i)
		r.s.call("POST", "/api/v1/devices", map[string]any{"id": dev, "site_id": "kortrijk", "kind": "locker",
			"compartments": []map[string]any{{"board": 0, "channel": i, "size": "M", "height_cm": 100}}}, 201)
		doc := r.s.call("POST", "/api/v1/documents", map[string]any{"kind": "passport", "number": fmt.Sprintf("EP%07d", i),
			"holder_first_name": "Jan", "holder_last_name": "Peeters", "holder_birth_date": "1980-01-02",
			"language": "nl", "email": "jan@example.be", "site_id": "kortrijk"}, 201)
		id := doc["id"].(string)
		r.s.call("POST", "/api/v1/documents/"+id+"/reserve", map[string]any{"device_id": dev}, 200)
		r.s.call("POST", "/api/v1/documents/"+id+"/load", nil, 200)
		// The code's token went to the holder: the test signs one of its
		// own for the code and keeps its digest in the row, as Issue does.
		var code []byte
		var exp time.Time
		require.NoError(t, r.db.QueryRow(ctx, `SELECT id, expires_at FROM codes WHERE document_id = $1 AND used_at IS NULL AND revoked_at IS NULL`,
			id).Scan(&code, &exp))
		tok, err := pickupcode.SignToken(r.s.Options.Keys.Signing, pickupcode.Claims{Version: 1, CodeID: pickupcode.FormatCodeID(code),
			DeviceID: dev, Expires: exp.Unix()})
		require.NoError(t, err)
		_, err = r.db.Exec(ctx, `UPDATE codes SET token_digest = $2 WHERE id = $1`, code, r.s.Options.Keys.TokenDigest(tok))
		require.NoError(t, err)
		r.tokens[dev], r.codes[dev] = tok, code
		pw := r.s.call("POST", "/api/v1/devices/"+dev+"/mqtt-password", nil, 201)["password"].(string)
		r.devs = append(r.devs, connectDevice(t, r.s.Broker, dev, pw))
	}
	return r
}

// round makes every device's code unused again and has the four devices
// present their QR tokens at once; it returns each device's answer. In
// every even round k2's code stays used (pending: a refusal decided in the
// batch) and k3 presents k1's token (wrong_device, decided before any
// batch).
func (r *answerRig) round(t *testing.T, n int) map[string]wire.VerifyResponse {
	t.Helper()
	for dev, c := range r.codes {
		if dev == "k2" && n%2 == 0 {
			continue
		}
		_, err := r.db.Exec(context.Background(), `UPDATE codes SET used_at = NULL WHERE id = $1`, c)
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	for _, d := range r.devs {
		tok := r.tokens[d.id]
		if d.id == "k3" && n%2 == 1 {
			tok = r.tokens["k1"]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.publish(wire.KindVerifyReq, &wire.VerifyRequest{ID: fmt.Sprintf("r%d-%s", n, d.id), At: time.Now().UTC(),
				Method: wire.MethodQR, Token: tok})
		}()
	}
	wg.Wait()
	out := map[string]wire.VerifyResponse{}
	for _, d := range r.devs {
		id := fmt.Sprintf("r%d-%s", n, d.id)
		testenv.Eventually(t, "the answer "+id, func() bool {
			for _, b := range d.received(wire.KindVerifyRes) {
				var v wire.VerifyResponse
				if json.Unmarshal(b, &v) == nil && v.ID == id {
					out[d.id] = v
					return true
				}
			}
			return false
		})
	}
	return out
}

// check checks each answer of round n as kluisd does (for its own device
// and request), and that none of them holds for another device or another
// request; it returns the answers in the group form.
func (r *answerRig) check(t *testing.T, n int, answers map[string]wire.VerifyResponse) (kr2 []string) {
	t.Helper()
	pub, now := r.s.Options.Keys.Public(), time.Now()
	for dev, a := range answers {
		id := fmt.Sprintf("r%d-%s", n, dev)
		require.NoError(t, wire.VerifyResponseSig(pub, dev, id, &a, now), "%s's answer to %s (%.12s...)", dev, id, a.Sig)
		want := wire.VerifyOK
		switch {
		case dev == "k2" && n%2 == 0:
			want = wire.VerifyPending // used, the document still in its compartment
		case dev == "k3" && n%2 == 1:
			want = wire.VerifyWrongCode // another device's token: wrong_device, shown as a wrong code
		}
		assert.Equal(t, want, a.Result, "%s in round %d", dev, n)
		for other, b := range answers {
			if other == dev {
				continue
			}
			assert.ErrorIs(t, wire.VerifyResponseSig(pub, other, id, &a, now), wire.ErrResponseOtherDevice, "%s's answer for %s", dev, other)
			// Another device's answer of the same batch, under this
			// device's request id: refused (its claims name the other
			// request, or its sum another answer).
			swapped := b
			swapped.ID = id
			assert.Error(t, wire.VerifyResponseSig(pub, dev, id, &swapped, now), "%s's answer taken for %s's", other, dev)
		}
		assert.ErrorIs(t, wire.VerifyResponseSig(pub, dev, fmt.Sprintf("r%d-%s", n+1, dev), &a, now), wire.ErrResponseOtherRequest)
		forged := a
		forged.Result, forged.DocumentID, forged.Addr = wire.VerifyOK, "00000000-0000-4000-8000-000000000000", &wire.Address{Channel: 1}
		assert.ErrorIs(t, wire.VerifyResponseSig(pub, dev, id, &forged, now), wire.ErrBadResponseSig)
		if strings.HasPrefix(a.Sig, wire.ResponseGroupSigPrefix) {
			kr2 = append(kr2, dev)
		} else {
			require.True(t, strings.HasPrefix(a.Sig, wire.ResponseSigPrefix), a.Sig)
		}
	}
	return kr2
}

// metric reads a counter's value from /metrics (0 when absent).
func (s *backend) metric(name string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`).FindStringSubmatch(s.metrics())
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// With -answer-signature kr2 the answers of one verify batch share one
// "KR2." signature, and over the real broker every device's answer holds
// for its own device and request only (kluisd's check); a device listed
// as KR1-only (k4) gets "KR1." answers although it is in the same batches.
func TestBatchAnswersSignedTogether(t *testing.T) {
	r := newAnswerRig(t, server.Options{AnswerSignature: deviceops.AnswerKR2, AnswerSignatureKR1Devices: []string{"k4"}})
	together := map[string]bool{}
	for n := 1; n <= 30 && len(together) < 2; n++ {
		for _, dev := range r.check(t, n, r.round(t, n)) {
			together[dev] = true
		}
	}
	assert.GreaterOrEqual(t, len(together), 2, "answers signed together: %v", together)
	assert.False(t, together["k4"], "k4 is KR1-only")
	sigs := r.s.metric(`kluis_device_answer_signatures_total{form="kr2"}`)
	signed := r.s.metric(`kluis_device_answers_signed_total{form="kr2"}`)
	assert.Positive(t, sigs)
	assert.GreaterOrEqual(t, signed, 2*sigs, "at least two answers a group signature")
}

// By default (no -answer-signature) every answer is "KR1.", also when a
// batch holds several: a fleet with older kluisd never receives "KR2.".
func TestAnswersSignedAloneByDefault(t *testing.T) {
	r := newAnswerRig(t, server.Options{})
	batched := func() bool { // a batch held more than one verification
		return r.s.metric("kluis_codes_verify_batched_total") > r.s.metric(`kluis_codes_verify_batches_total{outcome="ok"}`)
	}
	for n := 1; n <= 30 && !batched(); n++ {
		assert.Empty(t, r.check(t, n, r.round(t, n)), "round %d", n)
	}
	require.True(t, batched(), "no batch held two verifications")
	assert.Zero(t, r.s.metric(`kluis_device_answer_signatures_total{form="kr2"}`))
}
