package wire

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/hardware"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// samples returns one valid message of every kind.
func samples() []Message {
	return []Message{
		&Presence{State: Online, At: ptr(t0), Software: "kluisd 1.0"},
		&Heartbeat{At: t0, UptimeS: 12, Backlog: 3, OfflineCache: 40, CacheVersion: 7,
			Boards: []BoardHealth{{Address: 0, Online: true, Firmware: "1.2"}},
			Doors:  []hardware.ChannelState{{Addr: Address{Board: 0, Channel: 3}, Locked: true}}},
		&Event{ID: NewID(t0), Kind: EvPickupCompleted, At: t0, Addr: &Address{Board: 1, Channel: 2},
			DocumentID: "doc-1", Method: MethodQR},
		&Ack{IDs: []string{"a", "b"}},
		&Command{ID: "c1", Kind: CmdOpen, Issued: t0, Expires: t0.Add(time.Minute), Addr: &Address{Channel: 5}, Reason: "ticket 7"},
		&CommandResult{ID: "c1", Status: StatusDone, At: t0},
		&VerifyRequest{ID: "r1", At: t0, Method: MethodPIN, PIN: "123456", BirthDate: "1990-02-03"},
		&VerifyResponse{ID: "r1", Result: VerifyOK, DocumentID: "doc-1", Addr: &Address{Board: 0, Channel: 0}},
		&StaffRequest{ID: "s1", Op: StaffReserve, At: t0, Session: "sess", DocumentNumber: "591-1234567-89"},
		&StaffResponse{ID: "s1", Op: StaffLogin, Result: StaffOK, Session: "sess", StaffID: "u7", StaffName: "An", Expires: ptr(t0.Add(time.Hour))},
	}
}

func TestRoundTripEveryKind(t *testing.T) {
	seen := map[Kind]bool{}
	for _, m := range samples() {
		b, err := Encode(m)
		require.NoError(t, err, m.MessageKind())
		topic, err := TopicFor("dev-1", m.MessageKind())
		require.NoError(t, err)
		tp, got, err := Decode(topic, b)
		require.NoError(t, err, string(b))
		assert.Equal(t, Topic{Device: "dev-1", Kind: m.MessageKind()}, tp)
		assert.Equal(t, m, got)
		seen[m.MessageKind()] = true
	}
	for _, k := range Kinds() {
		assert.True(t, seen[k], "no sample of %s", k)
	}
}

func TestTopics(t *testing.T) {
	s, err := TopicFor("kortrijk-01", KindVerifyReq)
	require.NoError(t, err)
	assert.Equal(t, "kluis/v1/dev/kortrijk-01/verify/req", s)
	tp, err := ParseTopic(s)
	require.NoError(t, err)
	assert.Equal(t, Topic{Device: "kortrijk-01", Kind: KindVerifyReq}, tp)
	assert.Equal(t, "$share/kluis-backend/kluis/v1/dev/+/event", SharedSubscription(BackendShareGroup, KindEvent))

	for _, bad := range []string{"", "kluis/v1/dev", "kluis/v1/dev/a", "kluis/v1/dev/a/nope", "kluis/v2/dev/a/event",
		"kluis/v1/dev/+/event", "kluis/v1/dev/a/b/event", "kluis/v1/dev//event", "kluis/v1/dev/a/event/x",
		"kluis/v1/dev/" + strings.Repeat("a", 64) + "/event"} {
		_, err := ParseTopic(bad)
		assert.ErrorIs(t, err, ErrTopic, bad)
	}
	_, err = TopicFor("a/b", KindEvent)
	assert.ErrorIs(t, err, ErrTopic)
	_, err = TopicFor("a", Kind("x"))
	assert.ErrorIs(t, err, ErrTopic)
	assert.True(t, KindPresence.Retained())
	assert.False(t, KindEvent.Retained())
	assert.Equal(t, byte(0), KindHeartbeat.QoS())
	for _, k := range DeviceKinds() {
		assert.True(t, k.FromDevice())
	}
	for _, k := range BackendKinds() {
		assert.False(t, k.FromDevice())
	}
	assert.Len(t, Kinds(), len(DeviceKinds())+len(BackendKinds()))
}

func TestDecodeRejects(t *testing.T) {
	const ev = "kluis/v1/dev/d1/event"
	cases := []struct {
		name, topic, payload string
		want                 error
	}{
		{"no version", ev, `{"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrVersion},
		{"version 2", ev, `{"v":2,"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrVersion},
		{"version string", ev, `{"v":"1","id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrVersion},
		{"unknown field", ev, `{"v":1,"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1},"x":1}`, ErrInvalid},
		{"unknown nested field", ev, `{"v":1,"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1,"x":1}}`, ErrInvalid},
		{"missing id", ev, `{"v":1,"kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrInvalid},
		{"null id", ev, `{"v":1,"id":null,"kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrInvalid},
		{"missing addr", ev, `{"v":1,"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z"}`, ErrInvalid},
		{"addr without channel", ev, `{"v":1,"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0}}`, ErrInvalid},
		{"addr out of range", ev, `{"v":1,"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":48}}`, ErrInvalid},
		{"wrong type", ev, `{"v":1,"id":7,"kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrInvalid},
		{"float channel", ev, `{"v":1,"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1.5}}`, ErrInvalid},
		{"bad time", ev, `{"v":1,"id":"e1","kind":"door_opened","at":"yesterday","addr":{"board":0,"channel":1}}`, ErrInvalid},
		{"unknown kind", ev, `{"v":1,"id":"e1","kind":"exploded","at":"2026-01-01T00:00:00Z"}`, ErrInvalid},
		{"bad id chars", ev, `{"v":1,"id":"e 1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrInvalid},
		{"pickup without document", ev, `{"v":1,"id":"e1","kind":"pickup_completed","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrInvalid},
		{"alarm without alarm kind", ev, `{"v":1,"id":"e1","kind":"alarm","at":"2026-01-01T00:00:00Z"}`, ErrInvalid},
		{"board alarm without board", ev, `{"v":1,"id":"e1","kind":"alarm","alarm":"board_unreachable","at":"2026-01-01T00:00:00Z"}`, ErrInvalid},
		{"trailing data", ev, `{"v":1,"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}} {}`, ErrInvalid},
		{"array", ev, `[1]`, ErrInvalid},
		{"null", ev, `null`, ErrInvalid},
		{"empty", ev, ``, ErrInvalid},
		{"not json", ev, `{"v":1,`, ErrInvalid},
		{"oversized", ev, `{"v":1,"detail":"` + strings.Repeat("x", 17<<10) + `"}`, ErrTooLarge},
		{"bad topic", "kluis/v1/dev/d1/nope", `{"v":1}`, ErrTopic},
		{"empty ack", "kluis/v1/dev/d1/ack", `{"v":1,"ids":[]}`, ErrInvalid},
		{"heartbeat missing backlog", "kluis/v1/dev/d1/heartbeat", `{"v":1,"at":"2026-01-01T00:00:00Z","uptime_s":1,"offline_cache":0}`, ErrInvalid},
		{"expired before issued", "kluis/v1/dev/d1/cmd", `{"v":1,"id":"c","kind":"open","issued":"2026-01-01T00:01:00Z","expires":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrInvalid},
		{"open without addr", "kluis/v1/dev/d1/cmd", `{"v":1,"id":"c","kind":"open","issued":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z"}`, ErrInvalid},
		{"code sync without full", "kluis/v1/dev/d1/cmd", `{"v":1,"id":"c","kind":"code_sync","issued":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z","codes":{"version":1,"entries":[]}}`, ErrInvalid},
		{"entry without hash", "kluis/v1/dev/d1/cmd", `{"v":1,"id":"c","kind":"code_sync","issued":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z","codes":{"version":1,"full":true,"entries":[{"document_id":"d","addr":{"board":0,"channel":0},"expires":"2026-01-02T00:00:00Z"}]}}`, ErrInvalid},
		{"upper-case device", "kluis/v1/dev/Dev1/event", `{"v":1}`, ErrTopic},
		{"device starting with dash", "kluis/v1/dev/-d/event", `{"v":1}`, ErrTopic},
		{"pin letters", "kluis/v1/dev/d1/verify/req", `{"v":1,"id":"r","at":"2026-01-01T00:00:00Z","method":"pin","pin":"12ab"}`, ErrInvalid},
		{"qr without token", "kluis/v1/dev/d1/verify/req", `{"v":1,"id":"r","at":"2026-01-01T00:00:00Z","method":"qr"}`, ErrInvalid},
		{"bad birth date", "kluis/v1/dev/d1/verify/req", `{"v":1,"id":"r","at":"2026-01-01T00:00:00Z","method":"pin","pin":"1234","birth_date":"3/2/1990"}`, ErrInvalid},
		{"ok without addr", "kluis/v1/dev/d1/verify/res", `{"v":1,"id":"r","result":"ok","document_id":"d"}`, ErrInvalid},
		{"refusal with document", "kluis/v1/dev/d1/verify/res", `{"v":1,"id":"r","result":"expired","document_id":"d"}`, ErrInvalid},
		{"unknown result", "kluis/v1/dev/d1/verify/res", `{"v":1,"id":"r","result":"maybe"}`, ErrInvalid},
		{"login with both", "kluis/v1/dev/d1/staff/req", `{"v":1,"id":"s","op":"login","at":"2026-01-01T00:00:00Z","badge":"b","pin":"1234"}`, ErrInvalid},
		{"NUL in detail", ev, `{"v":1,"id":"e1","kind":"door_opened","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1},"detail":"a\u0000b"}`, ErrInvalid},
		{"presence unknown state", "kluis/v1/dev/d1/presence", `{"v":1,"state":"asleep"}`, ErrInvalid},
		{"test_open without addr", "kluis/v1/dev/d1/staff/req", `{"v":1,"id":"s","op":"test_open","at":"2026-01-01T00:00:00Z","session":"x"}`, ErrInvalid},
		{"test_open without session", "kluis/v1/dev/d1/staff/req", `{"v":1,"id":"s","op":"test_open","at":"2026-01-01T00:00:00Z","addr":{"board":0,"channel":1}}`, ErrInvalid},
		{"addr on a reserve", "kluis/v1/dev/d1/staff/req", `{"v":1,"id":"s","op":"reserve","at":"2026-01-01T00:00:00Z","session":"x","document_number":"591","addr":{"board":0,"channel":1}}`, ErrInvalid},
		{"unknown staff role", "kluis/v1/dev/d1/staff/res", `{"v":1,"id":"s","op":"login","result":"ok","session":"x","staff_id":"7","expires":"2026-01-01T00:15:00Z","role":"root"}`, ErrInvalid},
		{"clear_lockout without by", "kluis/v1/dev/d1/cmd", `{"v":1,"id":"c","kind":"clear_lockout","issued":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z","reason":"r"}`, ErrInvalid},
		{"clear_lockout without reason", "kluis/v1/dev/d1/cmd", `{"v":1,"id":"c","kind":"clear_lockout","issued":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z","by":"user:7"}`, ErrInvalid},
		{"clear_lockout with addr", "kluis/v1/dev/d1/cmd", `{"v":1,"id":"c","kind":"clear_lockout","issued":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z","by":"user:7","reason":"r","addr":{"board":0,"channel":1}}`, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, m, err := Decode(c.topic, []byte(c.payload))
			require.Error(t, err)
			assert.Nil(t, m)
			assert.True(t, errors.Is(err, c.want), "got %v, want %v", err, c.want)
		})
	}
}

func TestDecodeAcceptsMinimal(t *testing.T) {
	for topic, payload := range map[string]string{
		"kluis/v1/dev/d1/presence":   `{"v":1,"state":"offline"}`,
		"kluis/v1/dev/d1/event":      `{"v":1,"id":"e1","kind":"alarm","alarm":"board_unreachable","board":0,"at":"2026-01-01T00:00:00Z"}`,
		"kluis/v1/dev/d1/heartbeat":  `{"v":1,"at":"2026-01-01T00:00:00Z","uptime_s":0,"backlog":0,"offline_cache":0}`,
		"kluis/v1/dev/d1/verify/res": `{"v":1,"id":"r","result":"device_locked_out","retry_after_s":300}`,
		"kluis/v1/dev/d1/cmd":        `{"v":1,"id":"c","kind":"code_sync","issued":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:01:00Z","codes":{"version":1,"full":true,"entries":[]}}`,
		"kluis/v1/dev/d_2/cmdres":    `{"v":1,"id":"c","status":"expired","at":"2026-01-01T00:00:00Z"}`,
		"kluis/v1/dev/d4/staff/req":  `{"v":1,"id":"s","op":"test_open","at":"2026-01-01T00:00:00Z","session":"x","addr":{"board":0,"channel":1}}`,
		"kluis/v1/dev/d4/staff/res":  `{"v":1,"id":"s","op":"login","result":"ok","session":"x","staff_id":"7","expires":"2026-01-01T00:15:00Z","role":"technician"}`,
		"kluis/v1/dev/d3/cmd":        `{"v":1,"id":"c","kind":"clear_lockout","issued":"2026-01-01T00:00:00Z","expires":"2026-01-01T00:00:15Z","by":"user:7","reason":"citizen at the counter"}`,
	} {
		_, _, err := Decode(topic, []byte(payload))
		assert.NoError(t, err, topic)
	}
}

func TestEncodeValidates(t *testing.T) {
	_, err := Encode(&Event{ID: "e1", Kind: EvDoorOpened, At: t0})
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = Encode(nil)
	assert.ErrorIs(t, err, ErrInvalid)
	e := &Event{ID: "e1", Kind: EvDoorOpened, At: t0, Addr: &Address{}}
	b, err := Encode(e)
	require.NoError(t, err)
	assert.Equal(t, 1, e.V)
	assert.Contains(t, string(b), `"v":1`)
}

func TestSecretsNotLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("verify", "req", VerifyRequest{ID: "r1", Method: MethodPIN, PIN: "918273", BirthDate: "1990-02-03"})
	log.Info("staff", "req", StaffRequest{ID: "s1", Op: StaffLogin, Badge: "BADGE-SECRET", PIN: "55443"})
	log.Info("staff", "res", StaffResponse{ID: "s1", Op: StaffLogin, Session: "SESSION-SECRET"})
	out := buf.String()
	for _, secret := range []string{"918273", "1990-02-03", "BADGE-SECRET", "55443", "SESSION-SECRET"} {
		assert.NotContains(t, out, secret)
	}
	assert.Contains(t, out, "r1")
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		id := NewID(t0.Add(time.Duration(i) * time.Millisecond))
		require.NoError(t, ValidID(id))
		require.Len(t, id, 36)
		assert.Equal(t, byte('7'), id[14], id)
		assert.False(t, seen[id])
		seen[id] = true
		assert.Greater(t, id, prev, "ids from later times sort later")
		prev = id
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range samples() {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(m.MessageKind()), b)
	}
	f.Add("event", []byte(`{"v":1,"addr":{"board":0}}`))
	f.Add("cmd", []byte(`{"v":1,"codes":{"entries":[{"addr":null}]}}`))
	f.Fuzz(func(t *testing.T, kind string, payload []byte) {
		topic := Root + "/fz/" + kind
		tp, m, err := Decode(topic, payload)
		if err != nil {
			if m != nil {
				t.Fatal("message with error")
			}
			return
		}
		if tp.Kind != m.MessageKind() {
			t.Fatalf("topic kind %s, message kind %s", tp.Kind, m.MessageKind())
		}
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		if _, _, err := Decode(topic, b); err != nil {
			t.Fatalf("re-encoded message does not decode: %v\n%s", err, b)
		}
	})
}
