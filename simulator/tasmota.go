package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TasmotaOptions configure one emulated Tasmota relay module: one board of
// a device.
type TasmotaOptions struct {
	// Broker is the MQTT URL; default tcp://127.0.0.1:1883.
	Broker string
	// Topic is the module's %topic%; required.
	Topic string
	// Board is the device board this module drives; default 0.
	Board int
	// ClientID; default "kluis-sim-<topic>".
	ClientID string
	// Logger; default discards.
	Logger *slog.Logger
	// ClearRetainedOnClose: Close removes the retained LWT instead of
	// leaving "Offline" (tests with throw-away topics).
	ClearRetainedOnClose bool
}

// TasmotaModule answers Tasmota commands on an MQTT broker for one board.
//
// Locker board with N channels: POWER(i+1) is channel i's lock, Switch(i+1)
// its door contact (ON = open), Switch(N+i+1) its item sensor (ON =
// present). Automaton board: POWER1 is the hatch lock, POWER(s+2) a
// momentary trigger that brings slot s to the hatch; Switch1 hatch open,
// Switch2 mechanism busy, Switch3 item at hatch, Switch4 mechanism fault.
type TasmotaModule struct {
	dev    *Device
	board  int
	topic  string
	o      TasmotaOptions
	log    *slog.Logger
	relays int

	mu        sync.Mutex
	client    mqtt.Client
	power     []bool
	pulseSet  []int
	pulseEnd  []time.Time
	pulseGen  []int
	unsub     func()
	closed    bool
	ready     chan struct{}
	readyOnce *sync.Once
	netCh     chan bool // offline/online transitions, in order
	stop      chan struct{}
}

// ServeTasmota connects the module and starts answering. It returns once
// the module is subscribed and has announced itself online.
func ServeTasmota(ctx context.Context, dev *Device, o TasmotaOptions) (*TasmotaModule, error) {
	if o.Broker == "" {
		o.Broker = "tcp://127.0.0.1:1883"
	}
	if o.Topic == "" || strings.ContainsAny(o.Topic, "/+#") {
		return nil, fmt.Errorf("tasmota topic %q must be non-empty without / + #: %w", o.Topic, ErrBadInput)
	}
	if o.Board < 0 || o.Board >= dev.NumBoards() {
		return nil, fmt.Errorf("board %d: %w", o.Board, ErrNoSuchChannel)
	}
	if o.ClientID == "" {
		o.ClientID = "kluis-sim-" + o.Topic
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	n := dev.NumChannels()
	if dev.Kind() == Automaton {
		n = 1 + dev.Options().Slots
	}
	m := &TasmotaModule{dev: dev, board: o.Board, topic: o.Topic, o: o, relays: n,
		log:   o.Logger.With("part", "simulator-tasmota", "topic", o.Topic),
		power: make([]bool, n), pulseSet: make([]int, n), pulseEnd: make([]time.Time, n), pulseGen: make([]int, n),
		netCh: make(chan bool, 64), stop: make(chan struct{})}
	go m.network()
	m.unsub = dev.Subscribe(m.onChange)
	if err := m.connect(ctx); err != nil {
		m.unsub()
		close(m.stop)
		return nil, err
	}
	return m, nil
}

// Topic returns the module's topic.
func (m *TasmotaModule) Topic() string { return m.topic }

// Relays returns the number of relays.
func (m *TasmotaModule) Relays() int { return m.relays }

func (m *TasmotaModule) connect(ctx context.Context) error {
	ready := make(chan struct{})
	once := &sync.Once{}
	lwt := "tele/" + m.topic + "/LWT"
	opts := mqtt.NewClientOptions().AddBroker(m.o.Broker).SetClientID(m.o.ClientID).
		SetWill(lwt, "Offline", 1, true).SetAutoReconnect(true).SetCleanSession(true).
		SetConnectTimeout(5 * time.Second).SetMaxReconnectInterval(2 * time.Second).
		SetOrderMatters(true)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		t := c.Subscribe("cmnd/"+m.topic+"/#", 1, m.onMessage)
		t.WaitTimeout(5 * time.Second)
		if t.Error() != nil {
			m.log.Warn("subscribe", "err", t.Error())
			return
		}
		c.Publish(lwt, 1, true, "Online").WaitTimeout(5 * time.Second)
		once.Do(func() { close(ready) })
	})
	c := mqtt.NewClient(opts)
	m.mu.Lock()
	m.client = c
	m.ready = ready
	m.readyOnce = once
	m.mu.Unlock()
	t := c.Connect()
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		c.Disconnect(0)
		return fmt.Errorf("tasmota %s: connect %s: %v: %w", m.topic, m.o.Broker, t.Error(), errors.New("broker unreachable"))
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		c.Disconnect(0)
		return ctx.Err()
	case <-time.After(10 * time.Second):
		c.Disconnect(0)
		return fmt.Errorf("tasmota %s: not subscribed in time", m.topic)
	}
}

// Close publishes Offline and disconnects.
func (m *TasmotaModule) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	c := m.client
	m.mu.Unlock()
	m.unsub()
	close(m.stop)
	if c != nil && c.IsConnected() {
		payload := "Offline"
		if m.o.ClearRetainedOnClose {
			payload = ""
		}
		c.Publish("tele/"+m.topic+"/LWT", 1, true, payload).WaitTimeout(2 * time.Second)
		c.Disconnect(250)
	}
	return nil
}

func (m *TasmotaModule) publish(sub, payload string) {
	m.mu.Lock()
	c := m.client
	m.mu.Unlock()
	if c == nil || !c.IsConnectionOpen() {
		return
	}
	c.Publish("stat/"+m.topic+"/"+sub, 0, false, payload)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func onOff(b bool) string {
	if b {
		return "ON"
	}
	return "OFF"
}

// switches returns the module's switch states, Switch1 first.
func (m *TasmotaModule) switches() []bool {
	if m.dev.Kind() == Automaton {
		h, err := m.dev.Hatch(m.board)
		if err != nil {
			return nil
		}
		return []bool{h.Open, h.Busy, h.ItemAtHatch, h.Fault}
	}
	rs, err := m.dev.Readings(m.board)
	if err != nil {
		return nil
	}
	out := make([]bool, 2*len(rs))
	for i, r := range rs {
		out[i] = r.DoorOpen
		out[len(rs)+i] = r.ItemPresent
	}
	return out
}

func (m *TasmotaModule) onChange(c Change) {
	switch c.Kind {
	case ModuleOffline, ModuleOnline:
		select {
		case m.netCh <- c.Kind == ModuleOnline:
		default:
			m.log.Warn("too many online/offline changes queued")
		}
		return
	}
	if c.Board != m.board {
		return
	}
	var k int
	var on bool
	sw := m.switches()
	if sw == nil {
		return
	}
	if m.dev.Kind() == Automaton {
		switch c.Kind {
		case "hatch_opened", "hatch_closed":
			k = 1
		case MechanismBusy, MechanismIdle:
			k = 2
		case "item_placed", "item_removed":
			k = 3
		case "mechanism_fault", FaultCleared:
			k = 4
		default:
			return
		}
	} else {
		n := m.dev.NumChannels()
		switch c.Kind {
		case "door_opened", "door_closed":
			k = c.Channel + 1
		case "item_placed", "item_removed":
			k = n + c.Channel + 1
		default:
			return
		}
	}
	switch c.Kind {
	case "hatch_opened", "door_opened", "item_placed", MechanismBusy, "mechanism_fault":
		on = true
	}
	_ = sw
	m.publish("RESULT", fmt.Sprintf(`{"Switch%d":{"Action":"%s"}}`, k, onOff(on)))
}

func (m *TasmotaModule) goOffline() {
	m.mu.Lock()
	c := m.client
	m.client = nil
	m.mu.Unlock()
	if c == nil {
		return
	}
	c.Publish("tele/"+m.topic+"/LWT", 1, true, "Offline").WaitTimeout(2 * time.Second)
	c.Disconnect(100)
	m.log.Info("module offline")
}

func (m *TasmotaModule) goOnline() {
	m.mu.Lock()
	if m.closed || m.client != nil {
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := m.connect(ctx); err != nil {
		m.log.Warn("back online", "err", err)
		return
	}
	m.mu.Lock()
	closed, c := m.closed, m.client
	m.mu.Unlock()
	if closed && c != nil {
		c.Disconnect(100)
	}
}

// network carries out offline/online transitions in order, away from the
// device's change delivery and paho's handlers.
func (m *TasmotaModule) network() {
	for {
		select {
		case <-m.stop:
			return
		case online := <-m.netCh:
			if online {
				m.goOnline()
			} else {
				m.goOffline()
			}
		}
	}
}

func (m *TasmotaModule) onMessage(_ mqtt.Client, msg mqtt.Message) {
	cmd := strings.TrimPrefix(msg.Topic(), "cmnd/"+m.topic+"/")
	payload := strings.TrimSpace(string(msg.Payload()))
	if len(payload) > 256 || len(cmd) > 64 {
		m.publish("RESULT", `{"Command":"Unknown"}`)
		return
	}
	lc := strings.ToLower(cmd)
	switch {
	case strings.HasPrefix(lc, "power"):
		if n, ok := relayIndex(lc[len("power"):], m.relays); ok {
			m.powerCmd(n, payload)
			return
		}
	case strings.HasPrefix(lc, "pulsetime"):
		if n, ok := relayIndex(lc[len("pulsetime"):], m.relays); ok {
			m.pulseTime(n, payload)
			return
		}
	case lc == "status":
		if payload == "10" {
			m.status10()
			return
		}
	}
	m.publish("RESULT", `{"Command":"Unknown"}`)
}

// relayIndex parses "" (relay 1) or "1".."n" into a 0-based index.
func relayIndex(s string, n int) (int, bool) {
	if s == "" {
		return 0, true
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 1 || i > n || s[0] == '0' || s[0] == '+' {
		return 0, false
	}
	return i - 1, true
}

// pulseDuration decodes Tasmota's PulseTime value.
func pulseDuration(v int) time.Duration {
	if v <= 0 {
		return 0
	}
	if v <= 111 {
		return time.Duration(v) * 100 * time.Millisecond
	}
	return time.Duration(v-100) * time.Second
}

func pulseEncode(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	if d <= 11100*time.Millisecond {
		return int((d + 99*time.Millisecond) / (100 * time.Millisecond))
	}
	return int((d+999*time.Millisecond)/time.Second) + 100
}

func (m *TasmotaModule) powerCmd(i int, payload string) {
	name := "POWER" + strconv.Itoa(i+1)
	m.mu.Lock()
	cur := m.power[i]
	m.mu.Unlock()
	var want bool
	switch strings.ToUpper(payload) {
	case "":
		m.reportPower(i, cur)
		return
	case "ON", "1":
		want = true
	case "OFF", "0":
		want = false
	case "TOGGLE", "2":
		want = !cur
	default:
		m.publish("RESULT", `{"Command":"Error"}`)
		return
	}
	_ = name
	if m.dev.Kind() == Automaton && i > 0 {
		// momentary trigger: present slot i-1, relay falls back at once
		if want {
			if err := m.dev.Present(m.board, i-1, 0, ProtoTasmota); err != nil {
				m.log.Info("present refused", "slot", i-1, "err", err)
			}
			m.reportPower(i, true)
			m.reportPower(i, false)
		} else {
			m.reportPower(i, false)
		}
		return
	}
	m.setRelay(i, want)
}

func (m *TasmotaModule) setRelay(i int, on bool) {
	m.mu.Lock()
	m.pulseGen[i]++
	gen := m.pulseGen[i]
	pt := pulseDuration(m.pulseSet[i])
	m.power[i] = on
	if on && pt > 0 {
		m.pulseEnd[i] = m.dev.Clock().Now().Add(pt)
	} else {
		m.pulseEnd[i] = time.Time{}
	}
	m.mu.Unlock()
	if on {
		d := pt
		if d <= 0 {
			d = time.Minute // a relay left ON: the simulator caps the coil at a minute
		}
		if err := m.dev.Pulse(PulseRequest{Board: m.board, Channel: i, Duration: d, Via: ProtoTasmota}); err != nil {
			m.log.Info("lock refused", "relay", i+1, "err", err)
		}
		if pt > 0 {
			m.dev.Clock().AfterFunc(pt, func() {
				m.mu.Lock()
				if m.pulseGen[i] != gen || !m.power[i] {
					m.mu.Unlock()
					return
				}
				m.power[i] = false
				m.pulseEnd[i] = time.Time{}
				m.mu.Unlock()
				m.reportPower(i, false)
			})
		}
	} else {
		_ = m.dev.Release(m.board, i)
	}
	m.reportPower(i, on)
}

func (m *TasmotaModule) reportPower(i int, on bool) {
	name := "POWER" + strconv.Itoa(i+1)
	m.publish("RESULT", fmt.Sprintf(`{"%s":"%s"}`, name, onOff(on)))
	m.publish(name, onOff(on))
}

func (m *TasmotaModule) pulseTime(i int, payload string) {
	if payload != "" {
		v, err := strconv.Atoi(payload)
		if err != nil || v < 0 || v > 64900 {
			m.publish("RESULT", `{"Command":"Error"}`)
			return
		}
		m.mu.Lock()
		m.pulseSet[i] = v
		m.mu.Unlock()
	}
	m.mu.Lock()
	set := m.pulseSet[i]
	rem := 0
	if !m.pulseEnd[i].IsZero() {
		rem = pulseEncode(m.pulseEnd[i].Sub(m.dev.Clock().Now()))
	}
	m.mu.Unlock()
	m.publish("RESULT", fmt.Sprintf(`{"PulseTime%d":{"Set":%d,"Remaining":%d}}`, i+1, set, rem))
}

func (m *TasmotaModule) status10() {
	var b strings.Builder
	fmt.Fprintf(&b, `{"StatusSNS":{"Time":%q`, m.dev.Clock().Now().Format("2006-01-02T15:04:05"))
	for k, on := range m.switches() {
		fmt.Fprintf(&b, `,"Switch%d":"%s"`, k+1, onOff(on))
	}
	b.WriteString("}}")
	m.publish("STATUS10", b.String())
}

// Power returns relay i's (0-based) state as the module reports it.
func (m *TasmotaModule) Power(i int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i < 0 || i >= len(m.power) {
		return false
	}
	return m.power[i]
}
