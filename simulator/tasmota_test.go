package simulator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

type mqttLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *mqttLog) add(_ mqtt.Client, m mqtt.Message) {
	l.mu.Lock()
	l.msgs = append(l.msgs, strings.TrimPrefix(m.Topic(), "stat/")+" "+string(m.Payload()))
	l.mu.Unlock()
}

// wait waits until every wanted message arrived after position from, in
// any order, and returns the position after the last one.
func (l *mqttLog) wait(t *testing.T, from int, want ...string) {
	t.Helper()
	testenv.MustPoll(t, 15*time.Second, fmt.Sprintf("%q after message %d", want, from), func(context.Context) (bool, string, error) {
		l.mu.Lock()
		got := append([]string(nil), l.msgs[from:]...)
		l.mu.Unlock()
		left := map[string]int{}
		for _, w := range want {
			left[w]++
		}
		for _, g := range got {
			if left[g] > 0 {
				left[g]--
				if left[g] == 0 {
					delete(left, g)
				}
			}
		}
		return len(left) == 0, fmt.Sprintf("missing %v in %q", left, got), nil
	})
}

func (l *mqttLog) len() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.msgs) }

func TestTasmotaAutomatonModule(t *testing.T) {
	topic := fmt.Sprintf("kluis-sim-auto-%d", time.Now().UnixNano())
	d, err := New(Options{ID: "auto", Kind: Automaton, Slots: 5, MoveTime: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = d.Load(0, 0, 2, "ID card in slot 3")
	ctx := context.Background()
	var log mqttLog
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(testenv.BrokerURL()).SetClientID(topic + "-test"))
	if tk := cl.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer cl.Disconnect(100)
	if tk := cl.Subscribe("stat/"+topic+"/#", 1, log.add); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("subscribe: %v", tk.Error())
	}
	m, err := ServeTasmota(ctx, d, TasmotaOptions{Broker: testenv.BrokerURL(), Topic: topic, ClearRetainedOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Relays() != 6 {
		t.Fatalf("relays %d, want hatch + 5 slots", m.Relays())
	}
	pub := func(cmd, payload string) {
		cl.Publish("cmnd/"+topic+"/"+cmd, 1, false, payload).WaitTimeout(5 * time.Second)
	}
	tp := topic + "/"
	pos := log.len()
	pub("POWER4", "ON") // slot 2 to the hatch
	log.wait(t, pos, tp+`RESULT {"POWER4":"ON"}`, tp+`RESULT {"POWER4":"OFF"}`,
		tp+`RESULT {"Switch2":{"Action":"ON"}}`, tp+`RESULT {"Switch2":{"Action":"OFF"}}`,
		tp+`RESULT {"Switch3":{"Action":"ON"}}`)
	if h, _ := d.Hatch(0); h.Slot != 2 || !h.ItemAtHatch {
		t.Fatalf("hatch %+v", h)
	}
	// The slot already at the hatch: nothing moves, but the busy switch
	// still goes on and off, so a driver waiting for the cycle sees it.
	pos = log.len()
	pub("POWER4", "ON")
	log.wait(t, pos, tp+`RESULT {"POWER4":"ON"}`, tp+`RESULT {"Switch2":{"Action":"ON"}}`, tp+`RESULT {"Switch2":{"Action":"OFF"}}`)
	if h, _ := d.Hatch(0); h.Slot != 2 || h.Busy {
		t.Fatalf("hatch after presenting the slot at the hatch: %+v", h)
	}
	pos = log.len()
	pub("pulsetime1", "3")
	pub("power1", "on")
	log.wait(t, pos, tp+`RESULT {"PulseTime1":{"Set":3,"Remaining":0}}`, tp+`RESULT {"POWER1":"ON"}`,
		tp+`RESULT {"Switch1":{"Action":"ON"}}`, tp+"POWER1 OFF")
	// The item sensor's RESULT is published as soon as the item is taken:
	// mark the log before taking it.
	pos = log.len()
	item, err := d.Take(0, 0)
	if err != nil || item != "ID card in slot 3" {
		t.Fatalf("take %q %v", item, err)
	}
	pub("Status", "10")
	log.wait(t, pos, tp+"RESULT {\"Switch3\":{\"Action\":\"OFF\"}}")
	var s10 string
	testenv.EventuallyWithin(t, 15*time.Second, "a STATUS10", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		for _, x := range log.msgs[pos:] {
			if strings.HasPrefix(x, tp+"STATUS10 ") {
				s10 = x
			}
		}
		return s10 != ""
	})
	if !strings.Contains(s10, `"Switch1":"ON","Switch2":"OFF","Switch3":"OFF","Switch4":"OFF"}}`) {
		t.Fatalf("status10 %s", s10)
	}
	// the carousel does not move with the hatch open
	pub("POWER3", "ON")
	log.wait(t, pos, tp+`RESULT {"POWER3":"OFF"}`)
	if ps := d.Presents(); len(ps) != 2 || ps[0].Slot != 2 || ps[1].Slot != 2 {
		t.Fatalf("presents %+v (want slot 2 twice: the move and the one already at the hatch)", ps)
	}
	if ps := d.Pulses(); len(ps) != 1 || ps[0].Via != ProtoTasmota || ps[0].Duration != 300*time.Millisecond {
		t.Fatalf("pulses %+v", ps)
	}
}
