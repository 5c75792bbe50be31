package simulator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
)

func call(t *testing.T, method, url string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := testenv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestExampleFleetAndControlAPI(t *testing.T) {
	cfg, err := LoadConfig("testdata/fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Devices) != 4 || cfg.Devices[0].Items[1].Label == "" || cfg.Devices[1].Stuck[0].Channel != 2 {
		t.Fatalf("config %+v", cfg)
	}
	dir := t.TempDir()
	cfg.HTTP = "127.0.0.1:0"
	cfg.Broker = testenv.BrokerURL()
	for i := range cfg.Devices {
		if cfg.Devices[i].Link != "" {
			cfg.Devices[i].Link = filepath.Join(dir, cfg.Devices[i].ID)
		}
		if cfg.Devices[i].Topic != "" {
			cfg.Devices[i].Topic = fmt.Sprintf("kluis-sim-fleet-%d", time.Now().UnixNano())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := StartFleet(ctx, cfg, FleetOptions{ClearRetained: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, ep := range f.Endpoints() {
		if ep.Hardware == ProtoTasmota {
			if len(ep.Topics) != 1 || ep.Broker == "" {
				t.Fatalf("endpoint %+v", ep)
			}
			continue
		}
		if p, err := os.Readlink(ep.Link); err != nil || p != ep.Path || !strings.HasPrefix(p, "/dev/pts/") {
			t.Fatalf("endpoint %+v: link %q %v", ep, p, err)
		}
	}
	base := "http://" + f.ControlAddr() + "/v1/devices"

	code, b := call(t, "GET", base, "")
	var list []DeviceSummary
	if code != 200 || json.Unmarshal(b, &list) != nil || len(list) != 4 || list[0].Channels != 24 || list[2].Slots != 40 {
		t.Fatalf("devices %d %s", code, b)
	}
	// a closed door refuses a take; a pulse opens it; the take returns the label
	if code, b := call(t, "POST", base+"/kortrijk-hall-a/channels/4/take", ""); code != http.StatusConflict {
		t.Fatalf("take from a closed door: %d %s", code, b)
	}
	if code, b := call(t, "POST", base+"/kortrijk-hall-a/channels/4/pulse?ms=300", ""); code != 200 {
		t.Fatalf("pulse: %d %s", code, b)
	}
	dev := f.Device("kortrijk-hall-a")
	testenv.Eventually(t, "the door of channel 4 opens", func() bool { c, _ := dev.Channel(0, 4); return c.DoorOpen })
	code, b = call(t, "POST", base+"/kortrijk-hall-a/channels/4/take", "")
	var res ActionResult
	if code != 200 || json.Unmarshal(b, &res) != nil || res.Item != "driving licence 1234567890 (Peeters)" || res.Channel.Item != "" {
		t.Fatalf("take: %d %s", code, b)
	}
	// board 1 via the query
	code, b = call(t, "POST", base+"/kortrijk-hall-a/channels/23/force?board=1", "")
	if code != 200 || json.Unmarshal(b, &res) != nil || !res.Channel.DoorOpen || res.Channel.Item == "" {
		t.Fatalf("force: %d %s", code, b)
	}
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/nope/state", "", 404},
		{"POST", "/kortrijk-hall-a/channels/99/close", "", 404},
		{"POST", "/kortrijk-hall-a/channels/x/close", "", 400},
		{"POST", "/kortrijk-hall-a/channels/1/dance", "", 400},
		{"POST", "/kortrijk-hall-a/channels/1/put?label=x", "", 409}, // closed door
		{"POST", "/kortrijk-hall-a/channels/1/put", "", 400},         // no label
		{"POST", "/kortrijk-hall-a/faults", `{"busy_prob":2}`, 400},
		{"POST", "/kortrijk-hall-a/faults", `{"bogus":1}`, 400},
		{"POST", "/kortrijk-hall-a/faults", `{"line":{"corrupt":0.01}}`, 200},
		{"POST", "/kortrijk-hall-a/boards/0/present?slot=1", "", 409}, // not an automaton
		{"POST", "/kortrijk-automaton/boards/0/present?slot=17", "", 200},
		{"POST", "/kortrijk-automaton/boards/0/present?slot=17", "", 409}, // moving
		{"POST", "/kortrijk-automaton/boards/0/present?slot=99", "", 404},
		{"POST", "/kortrijk-automaton/boards/0/reboot", "", 200},
		{"GET", "/kortrijk-hall-a/boards/0/queue", "", 200},
		{"GET", "/kortrijk-hall-b/state", "", 200},
	} {
		if code, b := call(t, c.method, base+c.path, c.body); code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, b, c.want)
		}
	}
	if got := f.Device("kortrijk-hall-a").Faults().Line.Corrupt; got != 0.01 {
		t.Fatalf("corrupt fault %v", got)
	}
	code, b = call(t, "GET", base+"/kortrijk-hall-a/pulses", "")
	var ps []Pulse
	if code != 200 || json.Unmarshal(b, &ps) != nil || len(ps) != 1 || ps[0].Channel != 4 || ps[0].Via != "api" {
		t.Fatalf("pulses %d %s", code, b)
	}
	st := f.Device("kortrijk-hall-b").State()
	if !st.Channels[2].Stuck || st.Channels[7].Item == "" {
		t.Fatalf("hall-b state %+v", st.Channels[:8])
	}
	// The watchdog fault relocks an energised lock at once and queues a
	// watchdog event.
	if code, b := call(t, "POST", base+"/kortrijk-hall-a/channels/9/pulse?ms=5000", ""); code != 200 {
		t.Fatalf("long pulse: %d %s", code, b)
	}
	if c, _ := dev.Channel(0, 9); !c.Energised {
		t.Fatalf("channel 9 not energised: %+v", c)
	}
	q0, _ := dev.Queue(0)
	if code, b := call(t, "POST", base+"/kortrijk-hall-a/boards/0/watchdog", ""); code != 200 {
		t.Fatalf("watchdog: %d %s", code, b)
	}
	if c, _ := dev.Channel(0, 9); c.Energised {
		t.Fatalf("channel 9 still energised after the watchdog: %+v", c)
	}
	q1, _ := dev.Queue(0)
	if len(q1.Events) != len(q0.Events)+1 || q1.Events[len(q1.Events)-1].Kind != WatchdogRelock {
		t.Fatalf("queue after the watchdog: %+v (before %d events)", q1.Events, len(q0.Events))
	}
}

func TestConfigRejectsBadInput(t *testing.T) {
	for _, c := range []Config{
		{Devices: []DeviceConfig{{ID: "", Hardware: "kluis"}}},
		{Devices: []DeviceConfig{{ID: "a", Hardware: "modbus"}}},
		{Devices: []DeviceConfig{{ID: "a", Hardware: "kluis"}, {ID: "a", Hardware: "kluis"}}},
		{Devices: []DeviceConfig{{ID: "a", Hardware: "kluis", Faults: Faults{RebootProb: -1}}}},
		{HTTP: "0.0.0.0:0"},
	} {
		if f, err := StartFleet(context.Background(), c, FleetOptions{}); err == nil {
			f.Close()
			t.Errorf("config %+v accepted", c)
		}
	}
	if _, err := New(Options{Channels: 49}); err == nil {
		t.Error("49 channels accepted")
	}
	if _, err := New(Options{Kind: "fridge"}); err == nil {
		t.Error("kind fridge accepted")
	}
}
