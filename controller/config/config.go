// Package config loads and validates kluisd's YAML configuration. Unknown
// fields are rejected and every validation error names the field it is about,
// so a technician editing /etc/kluis/kluisd.yaml on site sees what is wrong.
package config

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/hardware"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("config: invalid")

// Device kinds.
const (
	KindLocker    = "locker"
	KindAutomaton = "automaton"
)

// Hardware driver names.
const (
	DriverKluis   = "kluis"
	DriverKerong  = "kerong-cu16"
	DriverTasmota = "tasmota"
	// DriverSimFile is a file-backed test driver used by crash tests; it
	// is accepted only when AllowTestDrivers is set by the caller.
	DriverSimFile = "simfile"
)

// Config is the whole kluisd configuration.
type Config struct {
	// DeviceID names this device on the wire (kluis/v1/dev/{device_id}/...).
	DeviceID string `yaml:"device_id"`
	// Site is the city-hall location, e.g. "kortrijk-stadhuis".
	Site string `yaml:"site"`
	// Kind is "locker" or "automaton".
	Kind string `yaml:"kind"`
	// MQTT is the link to the backend.
	MQTT MQTT `yaml:"mqtt"`
	// Hardware selects and configures the lock-board driver.
	Hardware Hardware `yaml:"hardware"`
	// Compartments maps compartment numbers (as people count, from 1) to
	// hardware channels (lockers) or carousel slots (automatons).
	Compartments []Compartment `yaml:"compartments"`
	// Pulse is how long a lock is energised; default 500ms.
	Pulse time.Duration `yaml:"pulse"`
	// Timeouts of the pickup flow.
	Timeouts Timeouts `yaml:"timeouts"`
	// Lockout limits wrong PINs at the kiosk (QR codes are never limited:
	// they cannot be guessed).
	Lockout Lockout `yaml:"lockout"`
	// JournalDir holds the durable journal; default /var/lib/kluisd.
	JournalDir string `yaml:"journal_dir"`
	// Kiosk is the local kiosk API and scanner.
	Kiosk Kiosk `yaml:"kiosk"`
	// MetricsListen serves /metrics and /healthz; loopback only; default
	// 127.0.0.1:9108; "off" disables it.
	MetricsListen string `yaml:"metrics_listen"`
	// MetricsMaxConnections caps the connections the metrics listener
	// holds open (past it: 503 with Retry-After); default 16, 1-10000.
	MetricsMaxConnections int `yaml:"metrics_max_connections"`
	// Offline verification material.
	Offline Offline `yaml:"offline"`
	// Layout is the front of a locker as the kiosk screen draws it;
	// optional (see ResolvedLayout for the default).
	Layout *Layout `yaml:"layout"`
}

// MQTT configures the broker connection.
type MQTT struct {
	// URL like tcp://broker:1883 or ssl://broker:8883.
	URL string `yaml:"url"`
	// Username and password are the per-device credentials. Prefer
	// PasswordFile so the secret is not in the config file.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// CAFile is a PEM file of the CA certificates that may sign the
	// broker's certificate (an ssl, tls, mqtts or wss URL); only they are
	// trusted then. Without it a TLS URL trusts the system's CAs.
	CAFile string `yaml:"ca_file"`
	// ClientID defaults to the user name (the device id without one). A
	// broker with use_username_as_clientid (deploy/mosquitto) uses the
	// user name whatever is sent, so with a user name the client id must
	// be it, or "{username}.{suffix}" (which the embedded broker accepts).
	ClientID string `yaml:"client_id"`
	// ResendAfter republishes an event not yet acknowledged after this
	// long (also at every reconnect); default 30s, 1s-10m.
	ResendAfter time.Duration `yaml:"resend_after"`
	// HeartbeatEvery is the heartbeat interval; default 30s, 1s-10m.
	HeartbeatEvery time.Duration `yaml:"heartbeat_every"`
	// KeepAlive is the MQTT keep-alive kluisd asks for; default 30s,
	// whole seconds 5s-300s (the brokers refuse more). It bounds how
	// soon the broker gives a silent device up (1.5 keep-alives) and how
	// soon kluisd gives a silent broker up (docs/kluisd.md, "Keep-alive
	// and dead connections").
	KeepAlive time.Duration `yaml:"keepalive"`
	// Pace and AlarmPace bound the sending of the outbox's events and of
	// its alarms (docs/kluisd.md, "Sending the outbox"); left out: the
	// link's defaults, under kluis-backend's default budgets. Set them
	// lower when the backend's budgets are lower, higher only with higher
	// budgets (kluis-bench tap runs both unthrottled).
	Pace      Pace `yaml:"pace"`
	AlarmPace Pace `yaml:"alarm_pace"`
}

// Pace is a window of events in flight and a token bucket of rate
// publications a second, burst at once (controller/link.Pace).
type Pace struct {
	Window int     `yaml:"window"`
	Rate   float64 `yaml:"rate"`
	Burst  int     `yaml:"burst"`
}

func (p Pace) validate(field string) error {
	if p == (Pace{}) {
		return nil
	}
	if p.Window < 1 || p.Window > 100000 {
		return bad(field+".window", "%d must be between 1 and 100000", p.Window)
	}
	if !(p.Rate > 0) || p.Rate > 1e9 {
		return bad(field+".rate", "%v must be above 0 (events a second)", p.Rate)
	}
	if p.Burst < 1 {
		return bad(field+".burst", "%d must be at least 1", p.Burst)
	}
	return nil
}

// Hardware configures the driver.
type Hardware struct {
	// Driver is kluis, kerong-cu16 or tasmota.
	Driver string `yaml:"driver"`
	// Serial is used by the kluis and kerong-cu16 drivers.
	Serial BusSerial `yaml:"serial"`
	// Boards lists the board addresses the device must have; a board in
	// this list that Describe does not find raises an alarm and its
	// channels are not used. Default: every board named in compartments.
	Boards []int `yaml:"boards"`
	// Tasmota is used by the tasmota driver.
	Tasmota Tasmota `yaml:"tasmota"`
	// SimFile is the state file of the simfile test driver.
	SimFile string `yaml:"simfile"`
	// HatchChannel is the channel of an automaton board's hatch lock;
	// default 0.
	HatchChannel int `yaml:"hatch_channel"`
}

// Serial is a serial line.
type Serial struct {
	Port string `yaml:"port"`
	Baud int    `yaml:"baud"`
}

// BusSerial is the serial line to the lock boards: the port and how long
// the driver waits for a board before it counts the board as offline.
type BusSerial struct {
	Serial `yaml:",inline"`
	// Timeout is how long the driver waits for a board's answer to one
	// request; default the driver's (kluis 200ms, kerong-cu16 300ms). At
	// least a board's longest reply at the baud rate
	// (MinSerialTimeout), at most 2s.
	Timeout time.Duration `yaml:"timeout"`
	// Retries is how many times a request without a valid answer is sent
	// again (byte for byte; kerong-cu16 repeats status reads only, never
	// an unlock) before the board is reported offline; default 2 (three
	// attempts), 0-5. Timeout times (Retries+1) is at most 5s.
	Retries *int `yaml:"retries"`
}

// Bounds of hardware.serial.timeout and .retries. A board that does not
// answer holds the half-duplex line for Timeout x (Retries+1) (the other
// boards are not polled meanwhile) every time it is tried; maxSerialSilence
// keeps that to half of the Kluis boards' default 10 s watchdog, so one
// dead board cannot starve the others into relocking.
const (
	maxSerialTimeout = 2 * time.Second
	maxSerialRetries = 5
	maxSerialSilence = 5 * time.Second
)

// Driver defaults of hardware.serial (hardware/kluisbus, hardware/kerong).
const (
	defaultKluisTimeout  = 200 * time.Millisecond
	defaultKerongTimeout = 300 * time.Millisecond
	defaultSerialRetries = 2
)

// MinSerialTimeout is the shortest hardware.serial.timeout at baud: a
// board's longest reply must fit (firmware-protocol.md, section 6: 10 ms
// turnaround + 70 characters + 20 ms, 103 ms at 9600 baud), and never
// under 50 ms.
func MinSerialTimeout(baud int) time.Duration {
	if baud <= 0 {
		return 50 * time.Millisecond
	}
	d := 30*time.Millisecond + time.Duration(70*10*float64(time.Second)/float64(baud))
	return max(d.Round(time.Millisecond), 50*time.Millisecond)
}

// Tasmota configures relay modules on an MQTT broker of the device's own
// network (never kluis-backend's: its embedded broker refuses the client id
// and gives a device user no Tasmota topics, and a broker taking the user
// name as client id, deploy/mosquitto, would have the link and the relay
// connection of one device take each other over).
type Tasmota struct {
	// Broker URL of the relay modules' broker; required for driver tasmota.
	Broker string `yaml:"broker"`
	// Username and PasswordFile are the credentials on that broker, if it
	// asks for any (none by default: not those of mqtt).
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// ClientID defaults to mqtt.client_id with "-tasmota" appended.
	ClientID string `yaml:"client_id"`
	// Modules are the Tasmota devices, one per board.
	Modules []TasmotaModule `yaml:"modules"`
}

// TasmotaModule is one Tasmota device standing for one board.
type TasmotaModule struct {
	// Topic is the device's %topic% (cmnd/<topic>/...).
	Topic string `yaml:"topic"`
	// Relays is the number of relays (locks; on an automaton the hatch
	// lock plus one relay per slot).
	Relays int `yaml:"relays"`
	// Board is the board number the module stands for.
	Board int `yaml:"board"`
}

// Compartment maps a compartment to hardware.
type Compartment struct {
	// Number as people count, from 1.
	Number int `yaml:"number"`
	// Board address (from 0).
	Board int `yaml:"board"`
	// Channel on the board (from 0), lockers only.
	Channel int `yaml:"channel"`
	// Slot on the carousel (from 0), automatons only.
	Slot int `yaml:"slot"`
}

// Addr returns the lock address of a locker compartment.
func (c Compartment) Addr() hardware.Address {
	return hardware.Address{Board: c.Board, Channel: c.Channel}
}

// Timeouts of the pickup flow.
type Timeouts struct {
	// DoorOpenDetect: a pulsed door not seen open by then is
	// OPEN_NOT_DETECTED; default 10s.
	DoorOpenDetect time.Duration `yaml:"door_open_detect"`
	// DoorLeftOpen: an open door raises an alarm after this; default 2m.
	DoorLeftOpen time.Duration `yaml:"door_left_open"`
	// Grace: a code whose item was not taken stays valid this long;
	// default 10m.
	Grace time.Duration `yaml:"grace"`
	// Verify: how long to wait for the backend's verify answer before
	// verifying offline; default 4s.
	Verify time.Duration `yaml:"verify"`
	// Present: how long an automaton may take to present a slot; default
	// 30s.
	Present time.Duration `yaml:"present"`
	// OpenRetries: extra pulses with the same command id after
	// OPEN_NOT_DETECTED, only on hardware that deduplicates ids; default
	// 1, at most 3.
	OpenRetries *int `yaml:"open_retries"`
	// ResumeWindow: after a restart, an unfinished pulse younger than this
	// is re-sent with the same id on deduplicating hardware; default 30s.
	ResumeWindow time.Duration `yaml:"resume_window"`
	// Session: the kiosk screen returns to idle after this; default 2m.
	Session time.Duration `yaml:"session"`
	// BoardUnreachable: a board the driver reports offline raises the
	// board_unreachable alarm only when it is still offline after this
	// long (a single failed exchange on a noisy line is no outage; its
	// compartments are refused meanwhile all the same); default 30s.
	BoardUnreachable time.Duration `yaml:"board_unreachable"`
}

// Lockout limits wrong PINs at the kiosk, online and offline: the burst
// limit (MaxFailures within Window lock PIN entry for Duration) and the
// daily cap (DailyMaxFailures within any DailyWindow lock PIN entry until
// the oldest leaves the window). The defaults are the backend's
// (pickupcode.DefaultConfig: 5 in 15m, 15m; 50 in 24h). The daily cap may
// only be set to values that keep docs/security.md's guessing bound below
// 1e-4 (pickupcode.Config.CheckBound); the burst limit is not part of the
// bound. QR codes are never counted or locked.
type Lockout struct {
	MaxFailures      int           `yaml:"max_failures"`
	Window           time.Duration `yaml:"window"`
	Duration         time.Duration `yaml:"duration"`
	DailyMaxFailures int           `yaml:"daily_max_failures"`
	DailyWindow      time.Duration `yaml:"daily_window"`
}

// Limits returns the attempt limits as pickupcode's Config (the PIN length,
// per-code limit and document kinds are the shared defaults).
func (l Lockout) Limits() pickupcode.Config {
	c := pickupcode.DefaultConfig()
	c.DeviceMaxFailures, c.DeviceWindow, c.DeviceLockout = l.MaxFailures, l.Window, l.Duration
	c.DailyMaxFailures, c.DailyWindow = l.DailyMaxFailures, l.DailyWindow
	return c
}

// Kiosk configures the local kiosk API and barcode scanner.
type Kiosk struct {
	// Listen address, loopback only; default 127.0.0.1:8088.
	Listen string `yaml:"listen"`
	// Scanner is an optional serial barcode scanner (one code per line).
	Scanner Serial `yaml:"scanner"`
	// DefaultLang is nl, fr, en or de; default nl.
	DefaultLang string `yaml:"default_lang"`
	// StaffIdle logs a staff member out of the kiosk after this long
	// without a staff action; default 2m, 1s-1h.
	StaffIdle time.Duration `yaml:"staff_idle"`
	// MaxConnections caps the connections the kiosk listener holds open
	// (past it: 503 with Retry-After, the screen retries); default 128,
	// 8-10000.
	MaxConnections int `yaml:"max_connections"`
	// DisplayName is this machine's name on every kiosk screen, as the
	// citizen's e-mail and letter name it (the backend's device name,
	// copied by hand: nothing in the MQTT contract carries it to the
	// device), e.g. "Stadhuis Kortrijk, automaat 2"; default the
	// device_id. At most 60 characters, none of them control or
	// invisible.
	DisplayName string `yaml:"display_name"`
	// CounterHours are the counter's opening hours, shown on the screens
	// that send a citizen to the counter; optional (without them those
	// screens give the help line alone). Keys mon-sun, each a list of
	// "HH:MM-HH:MM" (24 h clock, ascending, not overlapping, at most 4); a
	// day left out or with an empty list is closed.
	CounterHours map[string][]string `yaml:"counter_hours"`
	// CounterClosed are the dates the counter is closed although
	// CounterHours say open (public holidays), "YYYY-MM-DD"; optional,
	// only with CounterHours, at most 366, none twice. The screens with
	// the hours then say "The counter is closed on 25/12. It opens again
	// on Monday 28/12 at 08:30." while such a date comes before the next
	// opening.
	CounterClosed []string `yaml:"counter_closed"`
}

// Offline configures offline verification.
type Offline struct {
	// PublicKeyFile holds the backend's Ed25519 public key for QR tokens
	// (32 raw bytes, hex or base64 text).
	PublicKeyFile string `yaml:"public_key_file"`
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	c, err := Parse(b, ParseOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseOptions adjust Parse.
type ParseOptions struct {
	// AllowTestDrivers accepts the simfile driver.
	AllowTestDrivers bool
}

// Parse decodes YAML strictly, fills defaults and validates.
func Parse(b []byte, o ParseOptions) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config: empty document: %w", ErrInvalid)
		}
		return nil, fmt.Errorf("config: %v%s: %w", err, quoteLines(b, err.Error()), ErrInvalid)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: more than one YAML document: %w", ErrInvalid)
	}
	c.fillDefaults()
	if err := c.Validate(o); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) fillDefaults() {
	if c.Pulse == 0 {
		c.Pulse = 500 * time.Millisecond
	}
	t := &c.Timeouts
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.DoorOpenDetect, 10*time.Second)
	def(&t.DoorLeftOpen, 2*time.Minute)
	def(&t.Grace, 10*time.Minute)
	def(&t.Verify, 4*time.Second)
	def(&t.Present, 30*time.Second)
	def(&t.ResumeWindow, 30*time.Second)
	def(&t.Session, 2*time.Minute)
	def(&t.BoardUnreachable, 30*time.Second)
	if t.OpenRetries == nil {
		one := 1
		t.OpenRetries = &one
	}
	lim := pickupcode.DefaultConfig()
	if c.Lockout.MaxFailures == 0 {
		c.Lockout.MaxFailures = lim.DeviceMaxFailures
	}
	def(&c.Lockout.Window, lim.DeviceWindow)
	def(&c.Lockout.Duration, lim.DeviceLockout)
	if c.Lockout.DailyMaxFailures == 0 {
		c.Lockout.DailyMaxFailures = lim.DailyMaxFailures
	}
	def(&c.Lockout.DailyWindow, lim.DailyWindow)
	if c.JournalDir == "" {
		c.JournalDir = "/var/lib/kluisd"
	}
	if c.Kiosk.Listen == "" {
		c.Kiosk.Listen = "127.0.0.1:8088"
	}
	if c.Kiosk.DefaultLang == "" {
		c.Kiosk.DefaultLang = "nl"
	}
	def(&c.Kiosk.StaffIdle, 2*time.Minute)
	if c.Kiosk.DisplayName == "" {
		c.Kiosk.DisplayName = c.DeviceID
	}
	if c.Kiosk.MaxConnections == 0 {
		c.Kiosk.MaxConnections = 128
	}
	if c.MetricsMaxConnections == 0 {
		c.MetricsMaxConnections = 16
	}
	if c.Kiosk.Scanner.Port != "" && c.Kiosk.Scanner.Baud == 0 {
		c.Kiosk.Scanner.Baud = 9600
	}
	if c.MetricsListen == "" {
		c.MetricsListen = "127.0.0.1:9108"
	}
	if c.MQTT.ResendAfter == 0 {
		c.MQTT.ResendAfter = 30 * time.Second
	}
	if c.MQTT.HeartbeatEvery == 0 {
		c.MQTT.HeartbeatEvery = 30 * time.Second
	}
	if c.MQTT.KeepAlive == 0 {
		c.MQTT.KeepAlive = 30 * time.Second
	}
	if c.MQTT.ClientID == "" {
		c.MQTT.ClientID = cmp.Or(c.MQTT.Username, c.DeviceID)
	}
	if c.Hardware.Serial.Port != "" && c.Hardware.Serial.Baud == 0 {
		c.Hardware.Serial.Baud = 9600
	}
	switch c.Hardware.Driver {
	case DriverKluis:
		def(&c.Hardware.Serial.Timeout, defaultKluisTimeout)
	case DriverKerong:
		def(&c.Hardware.Serial.Timeout, defaultKerongTimeout)
	}
	if c.Hardware.Serial.Retries == nil {
		r := defaultSerialRetries
		c.Hardware.Serial.Retries = &r
	}
	if c.Hardware.Driver == DriverTasmota && c.Hardware.Tasmota.ClientID == "" {
		c.Hardware.Tasmota.ClientID = c.MQTT.ClientID + "-tasmota"
	}
	if len(c.Hardware.Boards) == 0 {
		seen := map[int]bool{}
		for _, cp := range c.Compartments {
			if !seen[cp.Board] {
				seen[cp.Board] = true
				c.Hardware.Boards = append(c.Hardware.Boards, cp.Board)
			}
		}
	}
}

var lineRE = regexp.MustCompile(`line (\d+):`)

// quoteLines quotes the source lines a YAML error refers to, so the message
// names the field even where yaml.v3 gives only a line number.
func quoteLines(src []byte, msg string) string {
	lines := strings.Split(string(src), "\n")
	var out []string
	for _, m := range lineRE.FindAllStringSubmatch(msg, 5) {
		var n int
		if _, err := fmt.Sscan(m[1], &n); err != nil || n < 1 || n > len(lines) {
			continue
		}
		l := strings.TrimSpace(lines[n-1])
		if k, _, ok := strings.Cut(l, ":"); ok {
			l = k // the field name only: the value may be a secret
		}
		out = append(out, fmt.Sprintf("line %d field %q", n, l))
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, "; ") + ")"
}

// validID reports whether id is 1-64 of a-z, 0-9, '-' or '_', not starting
// with '-' or '_' (what ^[a-z0-9][a-z0-9_-]{0,63}$ matches: written out,
// because compiling that expression, 64 nested repetitions, cost every
// kluisd start 0.4 ms and 757 allocations in package init).
func validID(id string) bool {
	if len(id) < 1 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

func bad(field, format string, args ...any) error {
	return fmt.Errorf("config: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalid)
}

// Validate checks every field; the error names the first bad one.
func (c *Config) Validate(o ParseOptions) error {
	if !validID(c.DeviceID) {
		return bad("device_id", "%q must be 1-64 of a-z, 0-9, '-' or '_' (it is part of MQTT topics)", c.DeviceID)
	}
	if c.Site == "" {
		return bad("site", "must be set")
	}
	if c.Kind != KindLocker && c.Kind != KindAutomaton {
		return bad("kind", "%q must be %q or %q", c.Kind, KindLocker, KindAutomaton)
	}
	if err := c.MQTT.validate(); err != nil {
		return err
	}
	if u := c.MQTT.Username; u != "" && u != c.DeviceID {
		// The broker knows a device by its user name: Mosquitto's ACL
		// (%u) and the embedded broker give it kluis/v1/dev/<user name>/
		// only, so any other name connects and has every event, heartbeat
		// and verification silently dropped.
		return bad("mqtt.username", "%q must be the device id %q: the broker lets a device use kluis/v1/dev/<user name>/ only", u, c.DeviceID)
	}
	if err := c.validateHardware(o); err != nil {
		return err
	}
	if c.Pulse < 50*time.Millisecond || c.Pulse > 5*time.Second {
		return bad("pulse", "%v must be between 50ms and 5s", c.Pulse)
	}
	t := c.Timeouts
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"timeouts.door_open_detect", t.DoorOpenDetect}, {"timeouts.door_left_open", t.DoorLeftOpen},
		{"timeouts.grace", t.Grace}, {"timeouts.verify", t.Verify}, {"timeouts.present", t.Present},
		{"timeouts.resume_window", t.ResumeWindow}, {"timeouts.session", t.Session},
		{"timeouts.board_unreachable", t.BoardUnreachable},
		{"lockout.window", c.Lockout.Window}, {"lockout.duration", c.Lockout.Duration},
		{"lockout.daily_window", c.Lockout.DailyWindow},
	} {
		if d.v < 0 {
			return bad(d.name, "%v must be positive", d.v)
		}
	}
	// Upper bounds: a typo such as door_left_open: 1000h silently turns an
	// alarm off, verify: 1h leaves a citizen waiting an hour; each bound is
	// far above any sensible setting.
	for _, d := range []struct {
		name string
		v    time.Duration
		max  time.Duration
	}{
		{"timeouts.door_open_detect", t.DoorOpenDetect, 2 * time.Minute},
		{"timeouts.door_left_open", t.DoorLeftOpen, time.Hour},
		{"timeouts.grace", t.Grace, 24 * time.Hour},
		{"timeouts.verify", t.Verify, wire.MaxVerifyWait}, // the backend's bound on a request's age follows it
		{"timeouts.present", t.Present, 5 * time.Minute},
		{"timeouts.resume_window", t.ResumeWindow, 10 * time.Minute},
		{"timeouts.session", t.Session, time.Hour},
		{"timeouts.board_unreachable", t.BoardUnreachable, time.Hour},
	} {
		if d.v > d.max {
			return bad(d.name, "%v must be at most %v", d.v, d.max)
		}
	}
	if *t.OpenRetries < 0 || *t.OpenRetries > 3 {
		return bad("timeouts.open_retries", "%d must be 0-3", *t.OpenRetries)
	}
	if err := c.Lockout.validate(); err != nil {
		return err
	}
	if !filepath.IsAbs(c.JournalDir) {
		return bad("journal_dir", "%q must be an absolute path", c.JournalDir)
	}
	if err := loopback("kiosk.listen", c.Kiosk.Listen); err != nil {
		return err
	}
	switch c.Kiosk.DefaultLang {
	case "nl", "fr", "en", "de":
	default:
		return bad("kiosk.default_lang", "%q must be nl, fr, en or de", c.Kiosk.DefaultLang)
	}
	if c.Kiosk.StaffIdle < time.Second || c.Kiosk.StaffIdle > time.Hour {
		return bad("kiosk.staff_idle", "%v must be between 1s and 1h", c.Kiosk.StaffIdle)
	}
	if c.Kiosk.MaxConnections < 8 || c.Kiosk.MaxConnections > 10000 {
		return bad("kiosk.max_connections", "%d must be between 8 and 10000", c.Kiosk.MaxConnections)
	}
	if err := validDisplayName(c.Kiosk.DisplayName); err != nil {
		return bad("kiosk.display_name", "%v", err)
	}
	if _, err := c.Kiosk.OpeningHours(); err != nil {
		return err
	}
	if _, err := c.Kiosk.ClosedDates(); err != nil {
		return err
	}
	if c.MetricsMaxConnections < 1 || c.MetricsMaxConnections > 10000 {
		return bad("metrics_max_connections", "%d must be between 1 and 10000", c.MetricsMaxConnections)
	}
	if c.Timeouts.Session < time.Second {
		return bad("timeouts.session", "%v must be at least 1s", c.Timeouts.Session)
	}
	if _, err := c.ResolvedLayout(); err != nil {
		return err
	}
	if c.MetricsListen != "off" {
		if err := loopback("metrics_listen", c.MetricsListen); err != nil {
			return err
		}
		if sameListener(c.MetricsListen, c.Kiosk.Listen) {
			return bad("metrics_listen", "%q is kiosk.listen's address: give each its own port", c.MetricsListen)
		}
	}
	if p := c.Kiosk.Scanner.Port; p != "" {
		if p == c.Hardware.Serial.Port {
			return bad("kiosk.scanner.port", "%q is the lock boards' line (hardware.serial.port)", p)
		}
		if !standardBaud(c.Kiosk.Scanner.Baud) {
			return bad("kiosk.scanner.baud", "%d is not a standard baud rate", c.Kiosk.Scanner.Baud)
		}
	}
	return nil
}

// sameListener reports whether two loopback listen addresses (validated)
// would take the same port: the same port, not 0, on the same host or on
// localhost and a loopback address.
func sameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	if na == 0 || na != nb {
		return false
	}
	return ha == hb || ha == "localhost" || hb == "localhost"
}

func standardBaud(b int) bool {
	switch b {
	case 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200:
		return true
	}
	return false
}

func (l Lockout) validate() error {
	if l.MaxFailures < 1 || l.MaxFailures > 100 {
		return bad("lockout.max_failures", "%d must be 1-100", l.MaxFailures)
	}
	if l.Duration > 24*time.Hour {
		return bad("lockout.duration", "%v must be at most 24h", l.Duration)
	}
	if l.Window > l.DailyWindow {
		return bad("lockout.window", "%v must not be longer than lockout.daily_window (%v)", l.Window, l.DailyWindow)
	}
	if l.DailyMaxFailures < 1 {
		return bad("lockout.daily_max_failures", "%d must be at least 1", l.DailyMaxFailures)
	}
	if err := l.Limits().CheckBound(); err != nil {
		return bad("lockout.daily_max_failures", "%d in lockout.daily_window %v breaks the guessing bound (docs/security.md): %v",
			l.DailyMaxFailures, l.DailyWindow, strings.TrimSuffix(err.Error(), ": "+pickupcode.ErrInvalid.Error()))
	}
	return nil
}

// brokerURL parses and checks the broker URL raw of field; creds names the
// fields that carry the credentials instead.
func brokerURL(field, raw, creds string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return nil, bad(field, "%q must be a URL like tcp://host:1883", raw)
	}
	switch u.Scheme {
	case "tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss":
	default:
		return nil, bad(field, "scheme %q must be tcp, ssl, tls, mqtt, mqtts, ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return nil, bad(field, "%q has no host", raw)
	}
	if u.User != nil {
		return nil, bad(field, "must not carry credentials; use %s", creds)
	}
	if p := u.Port(); p != "" && !validPort(p, 1) {
		return nil, bad(field, "%q: port %q must be a number 1-65535", raw, p)
	}
	return u, nil
}

func (m MQTT) validate() error {
	u, err := brokerURL("mqtt.url", m.URL, "mqtt.username and mqtt.password_file")
	if err != nil {
		return err
	}
	if m.ResendAfter < time.Second || m.ResendAfter > 10*time.Minute {
		return bad("mqtt.resend_after", "%v must be between 1s and 10m", m.ResendAfter)
	}
	if m.HeartbeatEvery < time.Second || m.HeartbeatEvery > 10*time.Minute {
		return bad("mqtt.heartbeat_every", "%v must be between 1s and 10m", m.HeartbeatEvery)
	}
	if m.KeepAlive < 5*time.Second || m.KeepAlive > 300*time.Second || m.KeepAlive%time.Second != 0 {
		return bad("mqtt.keepalive", "%v must be whole seconds between 5s and 300s", m.KeepAlive)
	}
	if err := m.Pace.validate("mqtt.pace"); err != nil {
		return err
	}
	if err := m.AlarmPace.validate("mqtt.alarm_pace"); err != nil {
		return err
	}
	if m.Password != "" && m.PasswordFile != "" {
		return bad("mqtt.password", "set either password or password_file, not both")
	}
	if m.CAFile != "" && !tlsScheme(u.Scheme) {
		return bad("mqtt.ca_file", "is for a TLS URL (ssl, tls, mqtts or wss), not %s", u.Scheme)
	}
	if (m.Password != "" || m.PasswordFile != "") && m.Username == "" {
		return bad("mqtt.username", "must be set when a password is")
	}
	if m.Username != "" && m.ClientID != m.Username && !strings.HasPrefix(m.ClientID, m.Username+".") {
		return bad("mqtt.client_id", "%q must be the user name %q (or %q.<suffix>): the broker takes the user name as client id",
			m.ClientID, m.Username, m.Username)
	}
	return nil
}

// validateTiming checks timeout and retries (filled by fillDefaults).
func (s BusSerial) validateTiming() error {
	if lo := MinSerialTimeout(s.Baud); s.Timeout < lo || s.Timeout > maxSerialTimeout {
		return bad("hardware.serial.timeout", "%v must be between %v (a board's longest reply at %d baud) and %v",
			s.Timeout, lo, s.Baud, maxSerialTimeout)
	}
	r := *s.Retries
	if r < 0 || r > maxSerialRetries {
		return bad("hardware.serial.retries", "%d must be 0-%d", r, maxSerialRetries)
	}
	if silence := s.Timeout * time.Duration(r+1); silence > maxSerialSilence {
		return bad("hardware.serial.timeout", "%v x %d attempts (retries %d) is %v, more than %v: a board that does not answer "+
			"would keep the line from the other boards that long every time it is tried", s.Timeout, r+1, r, silence, maxSerialSilence)
	}
	return nil
}

func (c *Config) validateHardware(o ParseOptions) error {
	h := c.Hardware
	switch h.Driver {
	case DriverKluis, DriverKerong:
		if h.Serial.Port == "" {
			return bad("hardware.serial.port", "must be set for driver %s", h.Driver)
		}
		if !standardBaud(h.Serial.Baud) {
			return bad("hardware.serial.baud", "%d is not a standard baud rate", h.Serial.Baud)
		}
		if err := h.Serial.validateTiming(); err != nil {
			return err
		}
	case DriverTasmota:
		if len(h.Tasmota.Modules) == 0 {
			return bad("hardware.tasmota.modules", "must list one module per board")
		}
		seen := map[int]bool{}
		for i, m := range h.Tasmota.Modules {
			f := fmt.Sprintf("hardware.tasmota.modules[%d]", i)
			if m.Topic == "" || strings.ContainsAny(m.Topic, "+#/ ") || len(m.Topic) > 64 {
				return bad(f+".topic", "%q must be 1-64 characters without '+', '#', '/' or spaces", m.Topic)
			}
			if m.Relays < 1 || m.Relays > hardware.MaxChannels {
				return bad(f+".relays", "%d must be 1-%d", m.Relays, hardware.MaxChannels)
			}
			if m.Board < 0 || m.Board >= hardware.MaxBoards || seen[m.Board] {
				return bad(f+".board", "%d must be 0-%d and not repeated", m.Board, hardware.MaxBoards-1)
			}
			seen[m.Board] = true
		}
		if err := h.Tasmota.validate(); err != nil {
			return err
		}
	case DriverSimFile:
		if !o.AllowTestDrivers {
			return bad("hardware.driver", "%q is a test driver", h.Driver)
		}
		if h.SimFile == "" {
			return bad("hardware.simfile", "must be set for driver simfile")
		}
	default:
		return bad("hardware.driver", "%q must be kluis, kerong-cu16 or tasmota", h.Driver)
	}
	if c.Kind == KindAutomaton && h.Driver == DriverKerong {
		return bad("hardware.driver", "an automaton needs a driver with carousel support (kluis or tasmota), not %q", h.Driver)
	}
	if h.HatchChannel < 0 || h.HatchChannel >= hardware.MaxChannels {
		return bad("hardware.hatch_channel", "%d out of range 0-%d", h.HatchChannel, hardware.MaxChannels-1)
	}
	boards := map[int]bool{}
	for i, b := range h.Boards {
		if b < 0 || b >= hardware.MaxBoards {
			return bad(fmt.Sprintf("hardware.boards[%d]", i), "%d out of range 0-%d", b, hardware.MaxBoards-1)
		}
		if boards[b] {
			return bad(fmt.Sprintf("hardware.boards[%d]", i), "board %d listed twice", b)
		}
		boards[b] = true
	}
	if len(c.Compartments) == 0 {
		return bad("compartments", "must list at least one compartment")
	}
	nums := map[int]bool{}
	places := map[[2]int]int{}
	for i, cp := range c.Compartments {
		f := fmt.Sprintf("compartments[%d]", i)
		if cp.Number < 1 || cp.Number > 9999 {
			return bad(f+".number", "%d must be 1-9999 (people count from 1)", cp.Number)
		}
		if nums[cp.Number] {
			return bad(f+".number", "compartment %d listed twice", cp.Number)
		}
		nums[cp.Number] = true
		if !boards[cp.Board] {
			return bad(f+".board", "board %d is not in hardware.boards", cp.Board)
		}
		place := cp.Channel
		if c.Kind == KindAutomaton {
			if cp.Channel != 0 {
				return bad(f+".channel", "an automaton compartment has a slot, not a channel")
			}
			if cp.Slot < 0 || cp.Slot > 999 {
				return bad(f+".slot", "%d out of range 0-999", cp.Slot)
			}
			place = cp.Slot
		} else {
			if cp.Slot != 0 {
				return bad(f+".slot", "a locker compartment has a channel, not a slot")
			}
			if err := cp.Addr().Validate(); err != nil {
				return bad(f+".channel", "%v", err)
			}
		}
		key := [2]int{cp.Board, place}
		if prev, dup := places[key]; dup {
			return bad(f, "same board and channel/slot as compartment %d", prev)
		}
		places[key] = cp.Number
	}
	return nil
}

// validPort reports whether port is a decimal number from min to 65535
// (a service name such as "http" depends on the machine's /etc/services).
func validPort(port string, min int) bool {
	if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return false
	}
	n, _ := strconv.Atoi(port)
	return n >= min && n <= 65535
}

func loopback(field, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return bad(field, "%q must be host:port", addr)
	}
	if port == "" {
		return bad(field, "%q has no port", addr)
	}
	if !validPort(port, 0) {
		return bad(field, "%q: port %q must be a number 0-65535", addr, port)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return bad(field, "%q must be a loopback address (127.0.0.1, ::1 or localhost)", addr)
	}
	return nil
}

// Compartment returns the compartment with number n.
func (c *Config) Compartment(n int) (Compartment, bool) {
	for _, cp := range c.Compartments {
		if cp.Number == n {
			return cp, true
		}
	}
	return Compartment{}, false
}

func tlsScheme(s string) bool {
	return s == "ssl" || s == "tls" || s == "mqtts" || s == "wss"
}

// MQTTTLS returns the TLS configuration of the broker connection: nil
// without ca_file (plain MQTT, or TLS trusting the system's CAs), else
// one trusting only the CAs in ca_file, TLS 1.2 at least.
func (c *Config) MQTTTLS() (*tls.Config, error) {
	if c.MQTT.CAFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.MQTT.CAFile)
	if err != nil {
		return nil, fmt.Errorf("config: mqtt.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("config: mqtt.ca_file: %s holds no PEM certificate", c.MQTT.CAFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// validate checks the relay modules' broker connection.
func (t Tasmota) validate() error {
	if t.Broker == "" {
		return bad("hardware.tasmota.broker", "must be set for driver tasmota: the URL of the relay modules' MQTT broker "+
			"on the device's own network (e.g. tcp://127.0.0.1:1883), not mqtt.url (kluis-backend's broker)")
	}
	if _, err := brokerURL("hardware.tasmota.broker", t.Broker, "hardware.tasmota.username and password_file"); err != nil {
		return err
	}
	if t.PasswordFile != "" && t.Username == "" {
		return bad("hardware.tasmota.username", "must be set when password_file is")
	}
	if len(t.ClientID) > 64 || strings.IndexFunc(t.ClientID, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		return bad("hardware.tasmota.client_id", "must be 1-64 printable ASCII characters without spaces")
	}
	return nil
}

// TasmotaPassword returns the password on the relay modules' broker from
// hardware.tasmota.password_file (trailing newline removed), "" without one.
func (c *Config) TasmotaPassword() (string, error) {
	return readSecret("hardware.tasmota.password_file", c.Hardware.Tasmota.PasswordFile)
}

// readSecret reads the secret in file path of field, trailing newline
// removed; "" without a file.
func readSecret(field, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("config: %s: %w", field, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// OfflinePublicKey reads the backend's Ed25519 public key from
// offline.public_key_file (nil without one).
func (c *Config) OfflinePublicKey() (ed25519.PublicKey, error) {
	if c.Offline.PublicKeyFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.Offline.PublicKeyFile)
	if err != nil {
		return nil, fmt.Errorf("config: offline.public_key_file: %w", err)
	}
	k, err := pickupcode.ParsePublicKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("config: offline.public_key_file %s: %w", c.Offline.PublicKeyFile, err)
	}
	return k, nil
}

// CheckFiles reads the files the configuration names (MQTT password and
// CA, the relay modules' password, the offline public key) as the start
// does, so that kluisd --check finds a missing, unreadable or malformed
// one rather than the start that follows it. Errors name the field, never
// the content.
func (c *Config) CheckFiles() error {
	if _, err := c.MQTTPassword(); err != nil {
		return err
	}
	if _, err := c.MQTTTLS(); err != nil {
		return err
	}
	if _, err := c.TasmotaPassword(); err != nil {
		return err
	}
	_, err := c.OfflinePublicKey()
	return err
}

// MQTTPassword returns the MQTT password from Password or PasswordFile
// (trailing newline removed).
func (c *Config) MQTTPassword() (string, error) {
	if c.MQTT.PasswordFile == "" {
		return c.MQTT.Password, nil
	}
	return readSecret("mqtt.password_file", c.MQTT.PasswordFile)
}
