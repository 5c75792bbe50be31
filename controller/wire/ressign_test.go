package wire

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"kluis/controller/pickupcode"
)

// resRoundTrip sends m through Encode and Decode, as the broker carries it.
func resRoundTrip(t testing.TB, m Message) Message {
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
	// The same answer signed in a group of three ("KR2.").
	grouped := *good
	var leaves []*ResponseLeaf
	for i, r := range []*VerifyResponse{{ID: "req-0", Result: VerifyWrongCode}, &grouped, {ID: "req-2", Result: VerifyWrongCode}} {
		l, err := PrepareResponse([]string{"locker-2", "locker-1", "locker-1"}[i], r, now.Add(ResponseTTL))
		if err != nil {
			f.Fatal(err)
		}
		leaves = append(leaves, l)
	}
	if err := SignResponseGroup(priv, leaves); err != nil {
		f.Fatal(err)
	}
	groupedBytes, err := Encode(&grouped)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(groupedBytes)
	f.Add([]byte(`{"v":1,"id":"req-1","result":"ok","document_id":"doc-1","addr":{"board":0,"channel":4},"sig":"` + grouped.Sig + `"}`))
	f.Add([]byte(`{"v":1,"id":"req-1","result":"ok","document_id":"doc-1","addr":{"board":0,"channel":3},"sig":"KR2.e30.AA.AAAA"}`))
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

// signGroup signs answers for the devices devs (one answer each, request
// ids req-0, req-1, ...) in one group and returns them as they come off
// the wire.
func signGroup(t testing.TB, priv ed25519.PrivateKey, devs []string, exp time.Time) []*VerifyResponse {
	t.Helper()
	var leaves []*ResponseLeaf
	var out []*VerifyResponse
	for i, dev := range devs {
		r := &VerifyResponse{ID: "req-" + strconv.Itoa(i), Result: VerifyOK, DocumentID: "doc-" + strconv.Itoa(i), Addr: &Address{Board: 0, Channel: i % 16}}
		l, err := PrepareResponse(dev, r, exp)
		if err != nil {
			t.Fatal(err)
		}
		leaves, out = append(leaves, l), append(out, r)
	}
	if err := SignResponseGroup(priv, leaves); err != nil {
		t.Fatal(err)
	}
	for i, r := range out {
		out[i] = resRoundTrip(t, r).(*VerifyResponse)
	}
	return out
}

func TestResponseGroupSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	exp := now.Add(ResponseTTL)
	// Every size up to the bound: each answer passes for its device and
	// request, and for no other request.
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, MaxResponseGroup} {
		devs := make([]string, n)
		for i := range devs {
			devs[i] = "locker-" + strconv.Itoa(i%3)
		}
		for i, r := range signGroup(t, priv, devs, exp) {
			if !strings.HasPrefix(r.Sig, ResponseGroupSigPrefix) || len(r.Sig) > MaxResponseSig {
				t.Fatalf("group of %d: sig %q", n, r.Sig)
			}
			if err := VerifyResponseSig(pub, devs[i], r.ID, r, now); err != nil {
				t.Fatalf("group of %d, answer %d: %v", n, i, err)
			}
			if err := VerifyResponseSig(pub, devs[i], "req-x", r, now); !errors.Is(err, ErrResponseOtherRequest) {
				t.Fatalf("group of %d, answer %d for another request: %v", n, i, err)
			}
		}
	}
	if err := SignResponseGroup(priv, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an empty group signed: %v", err)
	}
	many := make([]*ResponseLeaf, MaxResponseGroup+1)
	for i := range many {
		l, err := PrepareResponse("locker-1", &VerifyResponse{ID: "r" + strconv.Itoa(i), Result: VerifyWrongCode}, exp)
		if err != nil {
			t.Fatal(err)
		}
		many[i] = l
	}
	if err := SignResponseGroup(priv, many); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a group over MaxResponseGroup signed: %v", err)
	}

	g := signGroup(t, priv, []string{"locker-1", "locker-1", "locker-2", "locker-1", "locker-1"}, exp)
	other := signGroup(t, otherPriv, []string{"locker-1"}, exp)[0]
	kr1 := &VerifyResponse{ID: "req-0", Result: VerifyOK, DocumentID: "doc-0", Addr: &Address{Board: 0, Channel: 0}}
	if err := SignResponse(priv, "locker-1", kr1, exp); err != nil {
		t.Fatal(err)
	}
	parts := func(s string) []string { return strings.Split(strings.TrimPrefix(s, ResponseGroupSigPrefix), ".") }
	join := func(p ...string) string { return ResponseGroupSigPrefix + strings.Join(p, ".") }
	b64 := base64.RawURLEncoding
	proof := func(s string) []byte {
		b, err := b64.DecodeString(parts(s)[1])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withProof := func(s string, edit func([]byte) []byte) string {
		p := parts(s)
		return join(p[0], b64.EncodeToString(edit(proof(s))), p[2])
	}
	a := parts(g[0].Sig)
	root := func() []byte { // g's root, folded as the device does
		cl, _ := b64.DecodeString(a[0])
		cur := leafHash(cl)
		pr := proof(g[0].Sig)
		for d := 0; d < (len(pr)-1)/32; d++ {
			var sib [32]byte
			copy(sib[:], pr[1+32*d:])
			if int(pr[0])>>d&1 == 1 {
				cur = nodeHash(&sib, &cur)
			} else {
				cur = nodeHash(&cur, &sib)
			}
		}
		return cur[:]
	}()
	type tc struct {
		name string
		ans  *VerifyResponse
		sig  string
		dev  string
		req  string
		at   time.Time
		want error
	}
	for _, x := range []tc{
		{"forged path: a sibling changed", g[0], withProof(g[0].Sig, func(p []byte) []byte { p[5] ^= 1; return p }), "locker-1", "req-0", now, ErrBadResponseSig},
		{"forged path: the index changed", g[0], withProof(g[0].Sig, func(p []byte) []byte { p[0] = 1; return p }), "locker-1", "req-0", now, ErrBadResponseSig},
		{"index beyond the path", g[0], withProof(g[0].Sig, func(p []byte) []byte { p[0] = 8; return p }), "locker-1", "req-0", now, ErrBadResponseSig},
		{"path cut short", g[0], withProof(g[0].Sig, func(p []byte) []byte { return p[:len(p)-32] }), "locker-1", "req-0", now, ErrBadResponseSig},
		{"path with a ragged end", g[0], withProof(g[0].Sig, func(p []byte) []byte { return p[:len(p)-1] }), "locker-1", "req-0", now, ErrBadResponseSig},
		{"path longer than the bound", g[0], withProof(g[0].Sig, func(p []byte) []byte {
			p[0] = 0
			return append(p, make([]byte, 32*(maxResponseDepth+1-(len(p)-1)/32))...)
		}), "locker-1", "req-0", now, ErrBadResponseSig},
		{"swapped leaf: another answer's claims on this path", g[1], join(parts(g[1].Sig)[0], a[1], a[2]), "locker-1", "req-1", now, ErrBadResponseSig},
		{"swapped leaf: this answer under another's sig", g[0], g[1].Sig, "locker-1", "req-0", now, ErrResponseOtherRequest},
		{"the root signed by another key", other, other.Sig, "locker-1", "req-0", now, ErrBadResponseSig},
		{"the root's signature from another group", g[0], join(a[0], a[1], parts(other.Sig)[2]), "locker-1", "req-0", now, ErrBadResponseSig},
		{"another device's answer in the group", g[2], g[2].Sig, "locker-1", "req-2", now, ErrResponseOtherDevice},
		{"changed answer", &VerifyResponse{ID: "req-0", Result: VerifyOK, DocumentID: "doc-0", Addr: &Address{Board: 0, Channel: 9}}, g[0].Sig, "locker-1", "req-0", now, ErrBadResponseSig},
		{"expired beyond the skew", g[0], g[0].Sig, "locker-1", "req-0", exp.Add(CommandSkew), ErrResponseExpired},
		{"valid too long", g[0], g[0].Sig, "locker-1", "req-0", exp.Add(-CommandSkew - MaxResponseLifetime - time.Second), ErrBadResponseSig},
		{"a KR2 signature under the KR1 prefix", g[0], ResponseSigPrefix + strings.TrimPrefix(g[0].Sig, ResponseGroupSigPrefix), "locker-1", "req-0", now, ErrBadResponseSig},
		{"a KR2 root's signature as a KR1 signature of the root", g[0], ResponseSigPrefix + b64.EncodeToString(root) + "." + a[2], "locker-1", "req-0", now, ErrBadResponseSig},
		{"a KR1 signature under the KR2 prefix", kr1, ResponseGroupSigPrefix + strings.TrimPrefix(kr1.Sig, ResponseSigPrefix), "locker-1", "req-0", now, ErrBadResponseSig},
		{"a KR1 signature as a KR2 group of one", kr1, join(parts(strings.Replace(kr1.Sig, ResponseSigPrefix, ResponseGroupSigPrefix, 1))[0], b64.EncodeToString([]byte{0}),
			parts(strings.Replace(kr1.Sig, ResponseSigPrefix, ResponseGroupSigPrefix, 1))[1]), "locker-1", "req-0", now, ErrBadResponseSig},
		{"oversize", g[0], join(a[0], a[1]+strings.Repeat("A", MaxResponseSig), a[2]), "locker-1", "req-0", now, ErrBadResponseSig},
		{"non-canonical base64", g[0], join(a[0]+"=", a[1], a[2]), "locker-1", "req-0", now, ErrBadResponseSig},
		{"a part more", g[0], join(a[0], a[1], a[2], a[2]), "locker-1", "req-0", now, ErrBadResponseSig},
		{"a part less", g[0], join(a[0], a[2]), "locker-1", "req-0", now, ErrBadResponseSig},
	} {
		t.Run(x.name, func(t *testing.T) {
			r := *x.ans
			r.Sig = x.sig
			if err := VerifyResponseSig(pub, x.dev, x.req, &r, x.at); !errors.Is(err, x.want) {
				t.Fatalf("got %v, want %v", err, x.want)
			}
		})
	}
	// The genuine ones still pass, KR1 included, and within the skew.
	for _, r := range []*VerifyResponse{g[0], g[1], g[3], g[4]} {
		if err := VerifyResponseSig(pub, "locker-1", r.ID, r, exp.Add(CommandSkew-time.Second)); err != nil {
			t.Fatalf("%s: %v", r.ID, err)
		}
	}
	if err := VerifyResponseSig(pub, "locker-2", "req-2", g[2], now); err != nil {
		t.Fatal(err)
	}
	if err := VerifyResponseSig(pub, "locker-1", "req-0", kr1, now); err != nil {
		t.Fatal(err)
	}
	// A group's root signature is neither a command's nor a QR token.
	c := signedOpen(t, priv, "locker-1", now)
	c.Sig = g[0].Sig
	if err := VerifyCommand(pub, "locker-1", c, now); !errors.Is(err, ErrBadCommandSig) {
		t.Fatalf("group signature accepted for a command: %v", err)
	}
	if _, err := pickupcode.VerifyToken(pub, g[0].Sig, "locker-1", now); !errors.Is(err, pickupcode.ErrWrongCode) {
		t.Fatalf("group signature accepted as a QR token: %v", err)
	}
}

// BenchmarkSignResponseGroup is the backend's cost per answer in a group
// of 4 (the 8-device bench's batch).
func BenchmarkSignResponseGroup(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	exp := time.Now().Add(ResponseTTL)
	for b.Loop() {
		signGroup(b, priv, []string{"kortrijk-stadhuis-1", "kortrijk-stadhuis-2", "kortrijk-stadhuis-3", "kortrijk-stadhuis-4"}, exp)
	}
}

// BenchmarkVerifyResponseGroupSig is what checking a "KR2." answer (a
// group of 16) adds on the device.
func BenchmarkVerifyResponseGroupSig(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	devs := make([]string, 16)
	for i := range devs {
		devs[i] = "kortrijk-stadhuis-1"
	}
	r := signGroup(b, priv, devs, now.Add(ResponseTTL))[5]
	for b.Loop() {
		if err := VerifyResponseSig(pub, "kortrijk-stadhuis-1", r.ID, r, now); err != nil {
			b.Fatal(err)
		}
	}
}
