package wire

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"kluis/controller/pickupcode"
)

// resRoundTrip sends m through Encode and Decode, as the broker carries it.
func resRoundTrip(t *testing.T, m Message) Message {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeKind(m.MessageKind(), b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestResponseSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	exp := now.Add(ResponseTTL)
	grant := func(key ed25519.PrivateKey, dev, id string) *VerifyResponse {
		r := &VerifyResponse{ID: id, Result: VerifyOK, DocumentID: "doc-1", Addr: &Address{Board: 0, Channel: 3}}
		if err := SignResponse(key, dev, r, exp); err != nil {
			t.Fatal(err)
		}
		return r
	}
	good := resRoundTrip(t, grant(priv, "locker-1", "req-1")).(*VerifyResponse)
	if err := VerifyResponseSig(pub, "locker-1", "req-1", good, now); err != nil {
		t.Fatalf("a signed grant decoded from the wire: %v", err)
	}
	sessionEnd := now.Add(8 * time.Hour)
	login := &StaffResponse{ID: "req-2", Op: StaffLogin, Result: StaffOK, Session: "s3ss10n", StaffID: "user-7",
		StaffName: "Els", Expires: &sessionEnd, Role: RoleTechnician}
	if err := SignResponse(priv, "locker-1", login, exp); err != nil {
		t.Fatal(err)
	}
	if err := VerifyResponseSig(pub, "locker-1", "req-2", resRoundTrip(t, login), now); err != nil {
		t.Fatalf("a signed staff login decoded from the wire: %v", err)
	}
	cmd := signedOpen(t, priv, "locker-1", now)
	tok, err := pickupcode.SignToken(priv, pickupcode.Claims{CodeID: pickupcode.FormatCodeID(make([]byte, 16)), DeviceID: "locker-1",
		Expires: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name string
		edit func(r *VerifyResponse)
		dev  string
		req  string
		pub  ed25519.PublicKey
		at   time.Time
		want error
	}
	for _, x := range []tc{
		{"unsigned", func(r *VerifyResponse) { r.Sig = "" }, "locker-1", "req-1", pub, now, ErrResponseUnsigned},
		{"no key on the device", func(*VerifyResponse) {}, "locker-1", "req-1", nil, now, ErrResponseUnsigned},
		{"other key", func(r *VerifyResponse) { *r = *grant(otherPriv, "locker-1", "req-1") }, "locker-1", "req-1", pub, now, ErrBadResponseSig},
		{"other door", func(r *VerifyResponse) { r.Addr = &Address{Board: 0, Channel: 4} }, "locker-1", "req-1", pub, now, ErrBadResponseSig},
		{"other document", func(r *VerifyResponse) { r.DocumentID = "doc-2" }, "locker-1", "req-1", pub, now, ErrBadResponseSig},
		{"a slot added", func(r *VerifyResponse) { r.Slot = new(int) }, "locker-1", "req-1", pub, now, ErrBadResponseSig},
		{"a denial turned into a grant", func(r *VerifyResponse) {
			d := &VerifyResponse{ID: "req-1", Result: VerifyWrongCode}
			if err := SignResponse(priv, "locker-1", d, exp); err != nil {
				t.Fatal(err)
			}
			r.Sig = d.Sig
		}, "locker-1", "req-1", pub, now, ErrBadResponseSig},
		{"another request's answer under this id", func(r *VerifyResponse) {
			*r = *grant(priv, "locker-1", "req-0")
			r.ID = "req-1"
		}, "locker-1", "req-1", pub, now, ErrResponseOtherRequest},
		{"another request's answer", func(*VerifyResponse) {}, "locker-1", "req-9", pub, now, ErrResponseOtherRequest},
		{"other device", func(*VerifyResponse) {}, "locker-2", "req-1", pub, now, ErrResponseOtherDevice},
		{"expired beyond the skew", func(*VerifyResponse) {}, "locker-1", "req-1", pub, exp.Add(CommandSkew), ErrResponseExpired},
		{"valid too long", func(*VerifyResponse) {}, "locker-1", "req-1", pub, exp.Add(-CommandSkew - MaxResponseLifetime - time.Second), ErrBadResponseSig},
		{"a command signature", func(r *VerifyResponse) { r.Sig = cmd.Sig }, "locker-1", "req-1", pub, now, ErrBadResponseSig},
		{"a QR token", func(r *VerifyResponse) { r.Sig = tok }, "locker-1", "req-1", pub, now, ErrBadResponseSig},
		{"the staff answer's signature", func(r *VerifyResponse) { r.Sig = login.Sig }, "locker-1", "req-2", pub, now, ErrBadResponseSig},
		{"truncated", func(r *VerifyResponse) { r.Sig = r.Sig[:len(r.Sig)-2] }, "locker-1", "req-1", pub, now, ErrBadResponseSig},
		{"prefix changed", func(r *VerifyResponse) { r.Sig = "KC1." + strings.TrimPrefix(r.Sig, ResponseSigPrefix) }, "locker-1", "req-1", pub, now, ErrBadResponseSig},
	} {
		t.Run(x.name, func(t *testing.T) {
			r := *good
			x.edit(&r)
			err := VerifyResponseSig(x.pub, x.dev, x.req, &r, x.at)
			if !errors.Is(err, x.want) {
				t.Fatalf("got %v, want %v", err, x.want)
			}
		})
	}
	// A staff answer changed after signing: another session, role or door.
	for name, edit := range map[string]func(r *StaffResponse){
		"role":    func(r *StaffResponse) { r.Role = RoleAdmin },
		"session": func(r *StaffResponse) { r.Session = "other" },
		"op":      func(r *StaffResponse) { r.Op = StaffTestOpen },
		"expires": func(r *StaffResponse) { e := sessionEnd.Add(time.Hour); r.Expires = &e },
	} {
		r := *login
		edit(&r)
		if err := VerifyResponseSig(pub, "locker-1", "req-2", &r, now); !errors.Is(err, ErrBadResponseSig) {
			t.Errorf("staff answer with another %s: %v", name, err)
		}
	}
	// Within the tolerance the answer is good.
	if err := VerifyResponseSig(pub, "locker-1", "req-1", good, exp.Add(CommandSkew-time.Second)); err != nil {
		t.Fatalf("device clock ahead within the skew: %v", err)
	}
	// An answer's signature is neither a command's nor a QR token.
	c := cmd
	c.Sig = good.Sig
	if err := VerifyCommand(pub, "locker-1", c, now); !errors.Is(err, ErrBadCommandSig) {
		t.Fatalf("answer signature accepted for a command: %v", err)
	}
	if _, err := pickupcode.VerifyToken(pub, good.Sig, "locker-1", now); !errors.Is(err, pickupcode.ErrWrongCode) {
		t.Fatalf("answer signature accepted as a QR token: %v", err)
	}
	// Only answers are signed this way, and only valid ones.
	if err := SignResponse(priv, "locker-1", &Ack{IDs: []string{"x"}}, exp); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an ack signed: %v", err)
	}
	if err := SignResponse(priv, "locker-1", &VerifyResponse{ID: "req-3", Result: VerifyOK}, exp); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a grant without a compartment signed: %v", err)
	}
	if err := SignResponse(priv, "bad device/id", &VerifyResponse{ID: "req-3", Result: VerifyWrongCode}, exp); err == nil {
		t.Fatal("signed for a bad device id")
	}
}

// FuzzVerifyResponseSig feeds arbitrary answers (as they come off the wire)
// to VerifyResponseSig: it never panics, and never accepts one that is not
// the signed answer byte for byte in meaning.
func FuzzVerifyResponseSig(f *testing.F) {
	seed := sha256.Sum256([]byte("kluis fuzz response signature seed"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	good := &VerifyResponse{ID: "req-1", Result: VerifyOK, DocumentID: "doc-1", Addr: &Address{Board: 0, Channel: 3}}
	if err := SignResponse(priv, "locker-1", good, now.Add(ResponseTTL)); err != nil {
		f.Fatal(err)
	}
	goodBytes, err := Encode(good)
	if err != nil {
		f.Fatal(err)
	}
	want, _ := ResponseDigest(good)
	f.Add(goodBytes)
	f.Add([]byte(`{"v":1,"id":"req-1","result":"ok","document_id":"doc-1","addr":{"board":0,"channel":4},"sig":"KR1.e30.AAAA"}`))
	f.Add([]byte(`{"v":1,"id":"req-1","result":"wrong_code","sig":"` + good.Sig + `"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := DecodeKind(KindVerifyRes, payload)
		if err != nil {
			return
		}
		if err := VerifyResponseSig(pub, "locker-1", "req-1", m, now); err != nil {
			return
		}
		got, _ := ResponseDigest(m)
		if got != want {
			t.Fatalf("accepted an answer other than the signed one: %s", payload)
		}
	})
}

// BenchmarkSignResponse is what signing adds to each answer on the
// backend's verify path (docs/performance.md).
func BenchmarkSignResponse(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	exp := time.Now().Add(ResponseTTL)
	for b.Loop() {
		r := VerifyResponse{ID: "0190f3a2-7c1e-7a3b-9d2e-3f4a5b6c7d92", Result: VerifyOK, DocumentID: "6f1c2b7e-0000-4000-8000-000000000001",
			Addr: &Address{Board: 0, Channel: 3}}
		if err := SignResponse(priv, "kortrijk-stadhuis-1", &r, exp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyResponseSig is what checking adds on the device.
func BenchmarkVerifyResponseSig(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	r := VerifyResponse{ID: "0190f3a2-7c1e-7a3b-9d2e-3f4a5b6c7d92", Result: VerifyOK, DocumentID: "6f1c2b7e-0000-4000-8000-000000000001",
		Addr: &Address{Board: 0, Channel: 3}}
	if err := SignResponse(priv, "kortrijk-stadhuis-1", &r, now.Add(ResponseTTL)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := VerifyResponseSig(pub, "kortrijk-stadhuis-1", r.ID, &r, now); err != nil {
			b.Fatal(err)
		}
	}
}
