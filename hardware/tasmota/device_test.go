package tasmota

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

var uniq atomic.Int64

// uniqueTopic returns a module topic no other test (or test run) uses.
func uniqueTopic(t *testing.T, name string) string {
	return fmt.Sprintf("kluistest-%d-%d-%d-%s", os.Getpid(), time.Now().UnixNano(), uniq.Add(1), name)
}

// device emulates one Tasmota module on the real broker, following the
// Kluis mapping in doc.go.
type device struct {
	t         *testing.T
	topic     string
	relays    int
	automaton bool
	client    mqtt.Client

	mu        sync.Mutex
	power     map[int]bool
	pulseTime map[int]int
	sw        map[int]bool
	powerOn   map[int]int // POWERn ON commands received
	powerOff  map[int]int
	// commands counts every command received and qos1 those that arrived
	// at QoS 1 (the device subscribes at QoS 1: a command arrives at the
	// QoS it was published with).
	commands, qos1 int
	// autoOpen: a locker door springs open when its lock is pulsed.
	autoOpen bool
	// ignorePulseTime: the module does not answer PulseTime commands.
	ignorePulseTime bool
	// faultOnPresent: the carousel reports a fault instead of arriving.
	faultOnPresent bool
	// silentOn: POWERn ON switches the relay without any report (the
	// module's answers are lost), and the pulse does not end by itself.
	silentOn bool
	// dropOffs: the next dropOffs POWERn OFF commands are lost on the way.
	dropOffs int
	// holdOffReports, when set, holds the report of every POWERn OFF
	// until it is closed.
	holdOffReports chan struct{}
	// switching: every POWERn ON and OFF the module carried out, in order
	// ("1 ON", "1 OFF").
	switching []string
	// onCommand, when set, sees every command before the module acts on
	// it (on the device's message goroutine: the module waits for it).
	onCommand func(cmd, payload string)
}

func newDevice(t *testing.T, topic string, relays int, automaton bool) *device {
	t.Helper()
	return newDeviceWill(t, topic, relays, automaton, true)
}

// newDeviceWill is newDevice with or without the LWT Offline last will.
func newDeviceWill(t *testing.T, topic string, relays int, automaton, will bool) *device {
	t.Helper()
	dev := &device{
		t: t, topic: topic, relays: relays, automaton: automaton,
		power: map[int]bool{}, pulseTime: map[int]int{}, sw: map[int]bool{},
		powerOn: map[int]int{}, powerOff: map[int]int{},
	}
	nsw := 2 * relays
	if automaton {
		nsw = 4
	}
	for i := 1; i <= nsw; i++ {
		dev.sw[i] = false
	}
	opts := mqtt.NewClientOptions().AddBroker(testenv.BrokerURL()).
		SetClientID("dev-" + topic).
		SetCleanSession(true).
		SetAutoReconnect(false)
	if will {
		opts.SetWill("tele/"+topic+"/LWT", "Offline", 1, true)
	}
	dev.client = mqtt.NewClient(opts)
	tok := dev.client.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect to %s: %v", testenv.BrokerURL(), tok.Error())
	}
	sub := dev.client.Subscribe("cmnd/"+topic+"/+", 1, dev.handle)
	if !sub.WaitTimeout(10*time.Second) || sub.Error() != nil {
		t.Fatalf("device subscribe: %v", sub.Error())
	}
	dev.lwt("Online")
	t.Cleanup(func() {
		// Clear the retained LWT so the broker keeps nothing of the test.
		tok := dev.client.Publish("tele/"+topic+"/LWT", 1, true, []byte{})
		tok.WaitTimeout(5 * time.Second)
		dev.client.Disconnect(250)
	})
	return dev
}

func (dev *device) pub(suffix string, payload string) {
	dev.client.Publish("stat/"+dev.topic+"/"+suffix, 1, false, payload)
}

func (dev *device) lwt(s string) {
	tok := dev.client.Publish("tele/"+dev.topic+"/LWT", 1, true, s)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		dev.t.Errorf("publish LWT: %v", tok.Error())
	}
}

func (dev *device) raw(suffix, payload string) {
	tok := dev.client.Publish(suffix, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		dev.t.Errorf("publish %s: %v", suffix, tok.Error())
	}
}

func onOff(b bool) string {
	if b {
		return "ON"
	}
	return "OFF"
}

// setSwitch changes a switch and reports it like SetOption114 1 does.
func (dev *device) setSwitch(n int, on bool) {
	dev.mu.Lock()
	dev.sw[n] = on
	dev.mu.Unlock()
	dev.pub("RESULT", fmt.Sprintf(`{"Switch%d":{"Action":"%s"}}`, n, onOff(on)))
}

// setSwitchQuiet changes a switch without telling anyone (it is seen only
// through Status 10).
func (dev *device) setSwitchQuiet(n int, on bool) {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	dev.sw[n] = on
}

// setPowerQuiet changes a relay without telling anyone (it is seen only
// through a POWERn query).
func (dev *device) setPowerQuiet(n int, on bool) {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	dev.power[n] = on
}

func (dev *device) setPower(n int, on bool) {
	dev.mu.Lock()
	dev.power[n] = on
	dev.mu.Unlock()
	dev.pub("RESULT", fmt.Sprintf(`{"POWER%d":"%s"}`, n, onOff(on)))
	dev.pub("POWER"+strconv.Itoa(n), onOff(on))
}

func (dev *device) handle(_ mqtt.Client, m mqtt.Message) {
	cmd := m.Topic()[strings.LastIndexByte(m.Topic(), '/')+1:]
	payload := strings.TrimSpace(string(m.Payload()))
	dev.mu.Lock()
	dev.commands++
	if m.Qos() > 0 {
		dev.qos1++
	}
	hook := dev.onCommand
	dev.mu.Unlock()
	if hook != nil {
		hook(cmd, payload)
	}
	switch {
	case strings.EqualFold(cmd, "Status") && payload == "10":
		dev.mu.Lock()
		sns := map[string]any{"Time": "2026-01-01T00:00:00"}
		for n, on := range dev.sw {
			sns["Switch"+strconv.Itoa(n)] = onOff(on)
		}
		dev.mu.Unlock()
		b, _ := json.Marshal(map[string]any{"StatusSNS": sns})
		dev.pub("STATUS10", string(b))
	case strings.HasPrefix(cmd, "PulseTime"):
		n, err := strconv.Atoi(strings.TrimPrefix(cmd, "PulseTime"))
		v, err2 := strconv.Atoi(payload)
		if err != nil || err2 != nil {
			return
		}
		dev.mu.Lock()
		ignore := dev.ignorePulseTime
		if !ignore {
			dev.pulseTime[n] = v
		}
		dev.mu.Unlock()
		if !ignore {
			dev.pub("RESULT", fmt.Sprintf(`{"PulseTime%d":{"Set":%d,"Remaining":%d}}`, n, v, v))
		}
	case strings.HasPrefix(cmd, "POWER"):
		n, err := strconv.Atoi(strings.TrimPrefix(cmd, "POWER"))
		if err != nil {
			return
		}
		if payload == "" {
			// a query: Tasmota reports the relay's state
			dev.mu.Lock()
			on := dev.power[n]
			dev.mu.Unlock()
			dev.setPower(n, on)
			return
		}
		on := payload == "ON"
		dev.mu.Lock()
		if !on && dev.dropOffs > 0 {
			dev.dropOffs--
			dev.mu.Unlock()
			return
		}
		if on {
			dev.powerOn[n]++
		} else {
			dev.powerOff[n]++
		}
		dev.switching = append(dev.switching, fmt.Sprintf("%d %s", n, onOff(on)))
		pt, silent, hold := dev.pulseTime[n], dev.silentOn, dev.holdOffReports
		dev.mu.Unlock()
		switch {
		case on && silent:
			dev.setPowerQuiet(n, true)
			return
		case !on && hold != nil:
			dev.setPowerQuiet(n, false)
			go func() {
				<-hold
				dev.setPower(n, false)
			}()
			return
		}
		dev.setPower(n, on)
		if !on {
			return
		}
		if pt > 0 {
			time.AfterFunc(PulseTimeDuration(pt), func() { dev.setPower(n, false) })
		}
		dev.react(n)
	}
}

// react is the physical world's answer to a relay switching on.
func (dev *device) react(n int) {
	dev.mu.Lock()
	autoOpen, fault := dev.autoOpen, dev.faultOnPresent
	dev.mu.Unlock()
	if !dev.automaton {
		if autoOpen {
			dev.setSwitch(n, true)
		}
		return
	}
	if n < 2 {
		if autoOpen {
			dev.setSwitch(swHatchOpen, true)
		}
		return
	}
	go func() {
		dev.setSwitch(swBusy, true)
		time.Sleep(50 * time.Millisecond)
		if fault {
			dev.setSwitch(swFault, true)
		}
		dev.setSwitch(swBusy, false)
		if !fault {
			dev.setSwitch(swItem, true)
		}
	}()
}

func (dev *device) onCount(n int) int {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	return dev.powerOn[n]
}

// qos returns how many commands arrived, and how many of them at QoS 1.
func (dev *device) qos() (commands, qos1 int) {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	return dev.commands, dev.qos1
}

func (dev *device) offCount(n int) int {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	return dev.powerOff[n]
}

func (dev *device) pulseTimeOf(n int) int {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	return dev.pulseTime[n]
}

// lastSwitching returns what the module last did to relay n ("ON", "OFF"
// or "" for nothing) and how many times it did anything to it.
func (dev *device) lastSwitching(n int) (last string, count int) {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	p := strconv.Itoa(n) + " "
	for _, s := range dev.switching {
		if strings.HasPrefix(s, p) {
			last = strings.TrimPrefix(s, p)
			count++
		}
	}
	return last, count
}
