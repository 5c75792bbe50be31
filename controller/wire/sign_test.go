package wire

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"kluis/controller/pickupcode"
)

func signedOpen(t *testing.T, priv ed25519.PrivateKey, device string, issued time.Time) Command {
	t.Helper()
	c := Command{ID: NewID(issued), Kind: CmdOpen, Issued: issued, Expires: issued.Add(15 * time.Second),
		Addr: &Address{Board: 0, Channel: 3}, Reason: "ticket 4711", By: "user:7"}
	if err := SignCommand(priv, device, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// roundTrip sends c through Encode and Decode, as the broker carries it.
func roundTrip(t *testing.T, c Command) Command {
	t.Helper()
	b, err := Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeKind(KindCommand, b)
	if err != nil {
		t.Fatal(err)
	}
	return *m.(*Command)
}

func TestCommandSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	_ = otherPub
	now := time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	good := roundTrip(t, signedOpen(t, priv, "locker-1", now))
	if err := VerifyCommand(pub, "locker-1", good, now); err != nil {
		t.Fatalf("a signed command decoded from the wire: %v", err)
	}

	sync := Command{ID: "sync-1", Kind: CmdCodeSync, Issued: now, Expires: now.Add(5 * time.Minute),
		Codes: &CodeSync{Version: 3, Full: true, Entries: []CodeEntry{{DocumentID: "doc-1", Addr: Address{Board: 0, Channel: 1},
			Expires: now.Add(48 * time.Hour), PINHash: "argon2id$t=2,m=19456,p=1$c2FsdA$dmVy", SecondFactor: true}}}}
	if err := SignCommand(priv, "locker-1", &sync); err != nil {
		t.Fatal(err)
	}
	if err := VerifyCommand(pub, "locker-1", roundTrip(t, sync), now); err != nil {
		t.Fatalf("a signed code sync: %v", err)
	}

	tok, err := pickupcode.SignToken(priv, pickupcode.Claims{CodeID: pickupcode.FormatCodeID(make([]byte, 16)), DeviceID: "locker-1",
		Expires: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name string
		edit func(c *Command)
		dev  string
		pub  ed25519.PublicKey
		at   time.Time
		want error
	}
	for _, x := range []tc{
		{"unsigned", func(c *Command) { c.Sig = "" }, "locker-1", pub, now, ErrUnsigned},
		{"no key on the device", func(*Command) {}, "locker-1", nil, now, ErrUnsigned},
		{"other key", func(c *Command) {
			*c = signedOpen(t, otherPriv, "locker-1", now)
		}, "locker-1", pub, now, ErrBadCommandSig},
		{"other door", func(c *Command) { c.Addr = &Address{Board: 0, Channel: 4} }, "locker-1", pub, now, ErrBadCommandSig},
		{"other id", func(c *Command) { c.ID = "cmd-replayed-under-a-new-id" }, "locker-1", pub, now, ErrBadCommandSig},
		{"longer expiry", func(c *Command) { c.Expires = c.Expires.Add(time.Hour) }, "locker-1", pub, now, ErrBadCommandSig},
		{"other kind", func(c *Command) { c.Kind = CmdClearLockout; c.Addr = nil }, "locker-1", pub, now, ErrBadCommandSig},
		{"a QR token as signature", func(c *Command) { c.Sig = tok }, "locker-1", pub, now, ErrBadCommandSig},
		{"signature of another command", func(c *Command) { c.Sig = sync.Sig }, "locker-1", pub, now, ErrBadCommandSig},
		{"other device", func(*Command) {}, "locker-2", pub, now, ErrOtherDevice},
		{"expired beyond the skew", func(*Command) {}, "locker-1", pub, now.Add(15*time.Second + CommandSkew), ErrCommandExpired},
		{"issued in the future beyond the skew", func(*Command) {}, "locker-1", pub, now.Add(-CommandSkew - time.Second), ErrCommandNotYetValid},
		{"truncated signature", func(c *Command) { c.Sig = c.Sig[:len(c.Sig)-2] }, "locker-1", pub, now, ErrBadCommandSig},
	} {
		t.Run(x.name, func(t *testing.T) {
			c := good
			x.edit(&c)
			err := VerifyCommand(x.pub, x.dev, c, x.at)
			if !errors.Is(err, x.want) {
				t.Fatalf("got %v, want %v", err, x.want)
			}
		})
	}
	// Within the tolerance either way the command is good.
	if err := VerifyCommand(pub, "locker-1", good, now.Add(15*time.Second+CommandSkew-time.Millisecond)); err != nil {
		t.Fatalf("device clock ahead within the skew: %v", err)
	}
	if err := VerifyCommand(pub, "locker-1", good, now.Add(-CommandSkew)); err != nil {
		t.Fatalf("device clock behind within the skew: %v", err)
	}
	// A command signature is no QR token.
	if _, err := pickupcode.VerifyToken(pub, good.Sig, "locker-1", now); !errors.Is(err, pickupcode.ErrWrongCode) {
		t.Fatalf("command signature accepted as a QR token: %v", err)
	}
	// The backend never signs a command valid for long.
	long := Command{ID: "cmd-long", Kind: CmdOpen, Issued: now, Expires: now.Add(MaxCommandLifetime + time.Second), Addr: &Address{}}
	if err := SignCommand(priv, "locker-1", &long); !errors.Is(err, ErrInvalid) {
		t.Fatalf("long-lived command signed: %v", err)
	}
}

// The reason of a command_refused event is one of a bounded set, whatever
// the device wrote: anything unknown is "other", never the text itself.
func TestCommandRefusalReason(t *testing.T) {
	for detail, want := range map[string]string{
		"open: no sig: wire: command not signed":                                   RefusedUnsigned,
		"code_sync: claims unreadable: wire: command signature invalid":            RefusedBadSignature,
		`open: signed for device "k2": wire: command signed for another device`:    RefusedOtherDevice,
		"open: expired at 2026-12-06T10:00:00Z: wire: command expired":             RefusedExpired,
		"open: valid for 2h0m0s, at most 1h0m0s: " + ErrCommandNotYetValid.Error(): RefusedNotYetValid,
		"open: " + CommandDuplicateWhy:                                             RefusedDuplicate,
		"open: duplicate: already carried out, or not":                             RefusedOther,
		"open: no sig: wire: command not sig":                                      RefusedOther,
		"":                                                                         RefusedOther,
		"drop table; {device=\"x\"}":                                               RefusedOther,
	} {
		if got := CommandRefusalReason(detail); got != want {
			t.Errorf("CommandRefusalReason(%q) = %q, want %q", detail, got, want)
		}
	}
	seen := map[string]bool{}
	for _, r := range CommandRefusalReasons() {
		if seen[r] {
			t.Errorf("reason %q listed twice", r)
		}
		seen[r] = true
	}
	if len(seen) != 7 {
		t.Errorf("reasons: %v", CommandRefusalReasons())
	}
}
