package simclient_test

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
	"kluis/simulator"
	"kluis/simulator/simclient"
)

// start runs a real fleet (a Kluis locker and a Kluis automaton on
// pseudo-terminals) with its control API on loopback.
func start(t *testing.T) *simclient.Client {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	f, err := simulator.StartFleet(ctx, simulator.Config{HTTP: "127.0.0.1:0", Devices: []simulator.DeviceConfig{
		{ID: "hall", Hardware: simulator.ProtoKluis, Link: filepath.Join(dir, "hall"), Channels: 4,
			Items: []simulator.ItemConfig{{Channel: 2, Label: "ID card 7"}}},
		{ID: "auto", Kind: simulator.Automaton, Hardware: simulator.ProtoKluis, Link: filepath.Join(dir, "auto"), Slots: 5,
			MoveTime: 20 * time.Millisecond, Items: []simulator.ItemConfig{{Slot: 3, Label: "licence 3"}}},
	}}, simulator.FleetOptions{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); cancel() })
	return simclient.New(f.ControlAddr(), simclient.Options{})
}

func TestEveryCallAgainstARealFleet(t *testing.T) {
	c := start(t)
	ctx := context.Background()

	devs, err := c.Devices(ctx)
	if err != nil || len(devs) != 2 || devs[0].ID != "hall" || devs[0].Channels != 4 || devs[1].Slots != 5 {
		t.Fatalf("Devices = %+v, %v", devs, err)
	}
	st, err := c.State(ctx, "hall")
	if err != nil || len(st.Channels) != 4 || st.Channels[2].Item != "ID card 7" || st.Channels[2].DoorOpen {
		t.Fatalf("State = %+v, %v", st, err)
	}

	// a closed door refuses a take (409); a pulse opens it; the take answers the label
	if _, err := c.Channel(ctx, "hall", 0, 2, simclient.Take, nil); simclient.StatusOf(err) != http.StatusConflict {
		t.Fatalf("take from a closed door: %v", err)
	}
	if _, err := c.Channel(ctx, "hall", 0, 2, simclient.PulseNow, url.Values{"ms": {"300"}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the pulsed door opens", func() bool {
		tr, err := c.Truth(ctx, "hall", 0, 2)
		return err == nil && tr.DoorOpen
	})
	res, err := c.Channel(ctx, "hall", 0, 2, simclient.Take, nil)
	if err != nil || res.Item != "ID card 7" || res.Channel.Item != "" {
		t.Fatalf("take = %+v, %v", res, err)
	}
	if res, err := c.Channel(ctx, "hall", 0, 2, simclient.Put, url.Values{"label": {"returned"}}); err != nil || res.Channel.Item != "returned" {
		t.Fatalf("put = %+v, %v", res, err)
	}
	if res, err := c.Channel(ctx, "hall", 0, 2, simclient.Close, nil); err != nil || res.Channel.DoorOpen {
		t.Fatalf("close = %+v, %v", res, err)
	}
	ps, err := c.Pulses(ctx, "hall")
	if err != nil || len(ps) != 1 || ps[0].Channel != 2 || ps[0].Duration != 300*time.Millisecond {
		t.Fatalf("Pulses = %+v, %v", ps, err)
	}
	if q, err := c.Queue(ctx, "hall", 0); err != nil || len(q.Events) == 0 || q.BootID == 0 {
		t.Fatalf("Queue = %+v, %v", q, err)
	}
	if l, err := c.Line(ctx, "hall"); err != nil || l.Frames != 0 {
		t.Fatalf("Line = %+v, %v (nobody wrote to the line)", l, err)
	}

	// faults: set, read back; bad input is refused with the API's message
	set, err := c.SetFaults(ctx, "hall", simulator.Faults{BusyProb: 0.5})
	if err != nil || set.BusyProb != 0.5 {
		t.Fatalf("SetFaults = %+v, %v", set, err)
	}
	if f, err := c.Faults(ctx, "hall"); err != nil || f.BusyProb != 0.5 {
		t.Fatalf("Faults = %+v, %v", f, err)
	}
	if _, err := c.SetFaults(ctx, "hall", simulator.Faults{BusyProb: 2}); simclient.StatusOf(err) != http.StatusBadRequest {
		t.Fatalf("a probability of 2: %v", err)
	}

	// the automaton: present a slot, read the carousel and the command
	st, err = c.Board(ctx, "auto", 0, simclient.PresentSlot, url.Values{"slot": {"3"}})
	if err != nil || len(st.Mechanisms) != 1 {
		t.Fatalf("present = %+v, %v", st, err)
	}
	testenv.Eventually(t, "slot 3 at the hatch", func() bool {
		st, err := c.State(ctx, "auto")
		return err == nil && st.Mechanisms[0].AtHatch == 3 && !st.Mechanisms[0].Busy
	})
	if pr, err := c.Presents(ctx, "auto"); err != nil || len(pr) != 1 || pr[0].Slot != 3 {
		t.Fatalf("Presents = %+v, %v", pr, err)
	}
	before, _ := c.State(ctx, "auto")
	after, err := c.Board(ctx, "auto", 0, simclient.Reboot, nil)
	if err != nil || after.Boards[0].BootID == before.Boards[0].BootID {
		t.Fatalf("reboot kept boot id %d: %v", before.Boards[0].BootID, err)
	}
}

func TestErrorsNameTheRequestAndStatus(t *testing.T) {
	c := start(t)
	ctx := context.Background()
	_, err := c.State(ctx, "no/such device")
	if simclient.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("unknown device: %v", err)
	}
	if got := err.Error(); got == "" || !contains(got, "/v1/devices/no%2Fsuch%20device/state") || !contains(got, "404") {
		t.Fatalf("error %q does not name the escaped path and status", got)
	}
	if _, err := c.Truth(ctx, "hall", 0, 9); err == nil {
		t.Fatal("the truth of an absent channel")
	}
	if _, err := c.Line(ctx, "nope"); simclient.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("line of an unknown device: %v", err)
	}
	// nobody listens: the error is not a status
	dead := simclient.New("127.0.0.1:1", simclient.Options{HTTP: &http.Client{Timeout: 2 * time.Second}})
	if _, err := dead.Devices(ctx); err == nil || simclient.StatusOf(err) != 0 {
		t.Fatalf("a dead address: %v", err)
	}
}

func TestNewTakesAnAddressOrAURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7070":         "http://127.0.0.1:7070",
		"http://127.0.0.1:7070/": "http://127.0.0.1:7070",
	} {
		if got := simclient.New(in, simclient.Options{}).Base(); got != want {
			t.Errorf("New(%q).Base() = %q, want %q", in, got, want)
		}
	}
	if got := simclient.DevicePath("a b", "boards", "0", "queue"); got != "/v1/devices/a%20b/boards/0/queue" {
		t.Errorf("DevicePath = %q", got)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
