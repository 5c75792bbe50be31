package systemtest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"kluis/backend/api/apiclient"
	"kluis/controller/engine"
	"kluis/deploy/dev/testenv"
)

// TestOfflineCodeAfterConsoleSwap is scenario (a) of docs/security.md
// "Offline codes and the compartment's contents" with the real parts
// (kluis-backend on PostgreSQL with its embedded broker, kluisd, kluis-sim
// on a pty): document A is loaded at the kiosk and its codes reach the
// device's offline cache; an admin opens A's compartment remotely from the
// API (as the console does), takes A out and puts B in; the backend then
// goes away before any code sync (the counter's bookkeeping happens at the
// console later). A's QR and PIN at the kiosk, offline, must keep the door
// shut (before the fix the QR opened it and B could be taken), say
// out_of_order, and the refusal must reach the backend's audit trail as
// device.offline_code_refused once the link is back.
func TestOfflineCodeAfterConsoleSwap(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: starts the backend, the simulator and kluisd")
	}
	parallelWorld(t)
	w := newWorldWith(t, worldOptions{lockerOnly: true})
	locker := w.nodes[lockerID]
	ctx := context.Background()

	a := w.register("eid", lockerID)
	w.load(a)
	testenv.MustPoll(t, 30*time.Second, "A in the offline cache", func(context.Context) (bool, string, error) {
		return locker.inOfflineCache(a.ID), "", nil
	})
	board, ch, _ := a.place()

	// The admin's remote open: A out, B in, door shut.
	p0 := w.pulseCount(lockerID)
	if err := w.admin.Do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/devices/%s/compartments/%d/open", lockerID, a.comp.Number),
		map[string]string{"reason": "take back A, load B"}, nil); err != nil {
		t.Fatal(err)
	}
	w.waitDoor(lockerID, board, ch, true)
	w.exactlyOnePulse(lockerID, p0, board, ch)
	time.Sleep(humanPause)
	if got := w.act(lockerID, board, ch, "take", nil).Item; got != a.label {
		t.Fatalf("took %q, want %q", got, a.label)
	}
	time.Sleep(humanPause)
	w.act(lockerID, board, ch, "put", url.Values{"label": {"document B"}})
	time.Sleep(humanPause)
	w.act(lockerID, board, ch, "close", nil)
	w.waitAudit(lockerID, "device.door_closed", "")
	w.waitBacklogEmpty(locker)

	// The device loses the backend before any sync about the swap.
	w.killBackend()
	p1 := w.pulseCount(lockerID)
	for _, req := range []map[string]string{{"qr": a.mail.QR}, {"pin": a.mail.PIN, "birth_date": a.birth}} {
		// busy while the remote open's operation is still ending (the
		// code was accepted then; the door stays shut while busy).
		var s engine.Screen
		testenv.MustPoll(t, 30*time.Second, "the remote open ended", func(context.Context) (bool, string, error) {
			s = w.kioskPost(locker, "/kiosk/v1/pickup", req)
			return s.State != "busy", s.State, nil
		})
		if s.State == "need_birth_date" {
			t.Fatalf("kiosk asks for the date of birth although it was given: %s", s.Message)
		}
		if s.State != "out_of_order" {
			t.Fatalf("A's code offline after the swap (%v): kiosk shows %s (%s), want out_of_order and a shut door",
				keysOf(req), s.State, s.Message)
		}
	}
	w.noPulse(lockerID, p1)
	truth, err := w.sim.Truth(ctx, lockerID, board, ch)
	if err != nil || truth.Item != "document B" || truth.DoorOpen {
		t.Fatalf("compartment after A's offline attempts: %+v (%v), want B behind a shut door", truth, err)
	}

	// Back online: both refusals audited.
	w.restartBackend()
	testenv.MustPoll(t, 30*time.Second, "two offline_code_refused audited", func(ctx context.Context) (bool, string, error) {
		recs, err := w.admin.Audit(ctx, apiclient.AuditQuery{Subject: "device:" + lockerID, Max: maxAudit})
		if err != nil {
			return false, "", err
		}
		n := 0
		for _, r := range recs {
			if r.Action == "device.offline_code_refused" && r.Details["document"] == a.ID {
				n++
			}
		}
		return n == 2, fmt.Sprint(n), nil
	})
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
