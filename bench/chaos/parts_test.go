package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"kluis/backend/notify"
	"kluis/backend/notify/mailread"
	"kluis/deploy/dev/testenv"
)

// The SMTP gateway stores what the backend's SMTP sender sends, byte for
// byte as mailread reads it, and refuses or delays on command.
func TestSMTPGateway(t *testing.T) {
	g, err := NewSMTPGateway(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	addr := strings.TrimSuffix(strings.TrimPrefix(g.URL(), "smtp://"), "?plain=1")
	s := &notify.SMTP{Addr: addr, AllowPlain: true, Timeout: 5 * time.Second}
	msg := "To: holder@example.org\r\nSubject: test\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n.leading dot\r\nbody\r\n"
	ctx := context.Background()
	if err := s.SendMail(ctx, "kluis@example.org", []string{"holder@example.org"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	mb := &mailbox{dir: g.Dir}
	got, err := mb.to("holder@example.org")
	if err != nil || len(got) != 1 || !strings.Contains(got[0].Text, ".leading dot") {
		t.Fatalf("stored %+v (%v)", got, err)
	}
	g.SetMode(GatewayFailing, 0)
	if err := s.SendMail(ctx, "kluis@example.org", []string{"holder@example.org"}, []byte(msg)); err == nil {
		t.Fatal("a failing gateway accepted the message")
	}
	g.SetMode(GatewaySlow, 300*time.Millisecond)
	t0 := time.Now()
	if err := s.SendMail(ctx, "kluis@example.org", []string{"holder@example.org"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if time.Since(t0) < 300*time.Millisecond {
		t.Fatal("the slow gateway answered at once")
	}
	if all, _ := mailread.ReadDir(g.Dir); len(all) != 2 {
		t.Fatalf("%d messages stored, want 2 (the refused one is not)", len(all))
	}
}

// The SMS gateway takes {"to","text"} and refuses in failing mode.
func TestSMSGateway(t *testing.T) {
	g, err := NewSMSGateway()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	post := func() int {
		b, _ := json.Marshal(map[string]string{"to": "+32470000000", "text": "hallo"})
		resp, err := testenv.HTTPClient().Post(g.URL(), "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(); c != http.StatusOK {
		t.Fatalf("status %d", c)
	}
	g.SetMode(GatewayFailing, 0)
	if c := post(); c != http.StatusServiceUnavailable {
		t.Fatalf("failing gateway answered %d", c)
	}
	if got := g.Texts(); len(got) != 1 || got[0].To != "+32470000000" {
		t.Fatalf("texts %+v", got)
	}
}

// A pulse belongs to a grant of its lock that covers its time, with a
// little slack either side; nothing else covers it.
func TestLedger(t *testing.T) {
	var l ledger
	g := l.open("kb1", 0, 3, "pickup")
	time.Sleep(20 * time.Millisecond)
	l.close(g)
	now := time.Now()
	if len(l.covering("kb1", 0, 3, now)) != 1 {
		t.Fatal("a pulse just after the grant is not covered")
	}
	if len(l.covering("kb1", 0, 4, now)) != 0 || len(l.covering("kr1", 0, 3, now)) != 0 {
		t.Fatal("another lock is covered")
	}
	if len(l.covering("kb1", 0, 3, now.Add(2*pulseSlack))) != 0 {
		t.Fatal("a pulse long after the grant is covered")
	}
	if len(l.covering("kb1", 0, 3, g.from.Add(-2*pulseSlack))) != 0 {
		t.Fatal("a pulse long before the grant is covered")
	}
	// A load asked for 3 s before its compartment was known covers the
	// pulse in between, not one before it was asked for.
	asked := time.Now().Add(-3 * time.Second)
	ld := l.openSince("kb1", 0, 7, "load", asked)
	l.close(ld)
	if len(l.covering("kb1", 0, 7, asked.Add(time.Second))) != 1 {
		t.Fatal("a pulse after the load was asked for is not covered")
	}
	if len(l.covering("kb1", 0, 7, asked.Add(-2*pulseSlack))) != 0 {
		t.Fatal("a pulse before the load was asked for is covered")
	}
}

// The fault plan strikes every kind once before any kind twice, the same
// for the same seed, and a night of a longer run is that night of a
// shorter one with the same faults a night (what TestGauntletEmbedded
// relies on).
func TestFaultPlan(t *testing.T) {
	cfg := Config{Seed: 42, Nights: 2}
	plan := FaultPlan(cfg)
	if len(plan) != 2 || len(plan[0]) != 7 || len(plan[1]) != 7 {
		t.Fatalf("plan %v: want 2 nights of 7 faults (14 kinds)", plan)
	}
	seen := map[string]bool{}
	for _, night := range plan {
		for _, k := range night {
			if seen[k] {
				t.Fatalf("plan %v: %s twice before every kind once", plan, k)
			}
			seen[k] = true
		}
	}
	if len(seen) != len(AllFaults()) {
		t.Fatalf("plan %v covers %d kinds, want %d", plan, len(seen), len(AllFaults()))
	}
	one := FaultPlan(Config{Seed: 42, Nights: 1, FaultsPerNight: 7})
	if !slices.Equal(one[0], plan[0]) {
		t.Fatalf("night 1 alone %v, of two nights %v", one[0], plan[0])
	}
	if other := FaultPlan(Config{Seed: 43, Nights: 2}); slices.Equal(other[0], plan[0]) && slices.Equal(other[1], plan[1]) {
		t.Fatalf("seeds 42 and 43 plan the same faults %v", plan)
	}
}

// A world refuses an unknown broker mode and replicas on the embedded
// broker (each would be a broker of its own) before it starts anything.
func TestStartRefusesBadBroker(t *testing.T) {
	ctx := context.Background()
	if _, err := Start(ctx, t, Options{Broker: "emqx"}); err == nil || !strings.Contains(err.Error(), "mosquitto-tls") {
		t.Fatalf("unknown broker: %v", err)
	}
	if _, err := Start(ctx, t, Options{Broker: BrokerEmbedded, Backends: 2}); err == nil || !strings.Contains(err.Error(), "one backend") {
		t.Fatalf("two backends on the embedded broker: %v", err)
	}
}

// A long run registers thousands of holders: none may be born in the
// future (the API refuses it; seed 20261206102 stopped at night 61, past
// its 753rd document), and the first 600 keep the dates earlier runs had, so
// their seeds replay unchanged.
func TestBirthDateNeverInTheFuture(t *testing.T) {
	today := time.Now().UTC().Format(time.DateOnly)
	for seq := 1; seq <= 10000; seq++ {
		b := birthDate(seq)
		if b >= today || b < "1950-01-01" {
			t.Fatalf("document %d: holder born %s (today %s)", seq, b, today)
		}
	}
	if got, want := birthDate(265), time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 37*265).Format(time.DateOnly); got != want {
		t.Fatalf("document 265: %s, want %s as before", got, want)
	}
}
