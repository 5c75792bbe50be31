package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/pickupcode"
)

const good = `
device_id: kortrijk-1
site: kortrijk-stadhuis
kind: locker
mqtt:
  url: tcp://127.0.0.1:1883
  username: kortrijk-1
  password: s3cret
hardware:
  driver: kluis
  serial: {port: /dev/ttyUSB0, baud: 19200}
  boards: [0, 1]
compartments:
  - {number: 1, board: 0, channel: 0}
  - {number: 2, board: 0, channel: 1}
  - {number: 17, board: 1, channel: 0}
pulse: 300ms
timeouts:
  door_open_detect: 5s
journal_dir: /var/lib/kluisd
kiosk:
  listen: 127.0.0.1:8088
`

func TestParseGood(t *testing.T) {
	c, err := Parse([]byte(good), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, "kortrijk-1", c.DeviceID)
	require.Equal(t, 300*time.Millisecond, c.Pulse)
	require.Equal(t, 5*time.Second, c.Timeouts.DoorOpenDetect)
	require.Equal(t, 2*time.Minute, c.Timeouts.DoorLeftOpen, "default")
	require.Equal(t, 1, *c.Timeouts.OpenRetries)
	require.Equal(t, "kortrijk-1", c.MQTT.ClientID, "the client id is the user name")
	require.Equal(t, 30*time.Second, c.MQTT.ResendAfter, "default")
	require.Equal(t, 30*time.Second, c.MQTT.HeartbeatEvery, "default")
	require.Equal(t, 30*time.Second, c.MQTT.KeepAlive, "default")
	require.Zero(t, c.MQTT.Pace, "left out: the link's defaults")

	paced, err := Parse([]byte(strings.Replace(good, "  password: s3cret", "  password: s3cret\n  pace: {window: 1000, rate: 1e6, burst: 1000000}\n  alarm_pace: {window: 5, rate: 0.5, burst: 5}", 1)), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, Pace{Window: 1000, Rate: 1e6, Burst: 1000000}, paced.MQTT.Pace)
	require.Equal(t, Pace{Window: 5, Rate: 0.5, Burst: 5}, paced.MQTT.AlarmPace)
	cp, ok := c.Compartment(17)
	require.True(t, ok)
	require.Equal(t, 1, cp.Addr().Board)
	pw, err := c.MQTTPassword()
	require.NoError(t, err)
	require.Equal(t, "s3cret", pw)
}

func TestParseErrorsNameTheField(t *testing.T) {
	cases := []struct{ from, to, field string }{
		{"device_id: kortrijk-1", "device_id: Kortrijk 1", "device_id"},
		{"kind: locker", "kind: fridge", "kind"},
		{"username: kortrijk-1", "username: kortrijk-1\n  client_id: kortrijk-2", "mqtt.client_id"},
		{"username: kortrijk-1", "username: kortrijk-1\n  client_id: kluisd-kortrijk-1", "mqtt.client_id"},
		// The broker's ACL gives a device user only kluis/v1/dev/<user>/:
		// another user name would connect and have every event dropped.
		{"username: kortrijk-1", "username: kortrijk-2", "mqtt.username"},
		{"username: kortrijk-1", "username: Kortrijk-1", "mqtt.username"},
		{"url: tcp://127.0.0.1:1883", "url: http://x", "mqtt.url"},
		{"url: tcp://127.0.0.1:1883", "url: tcp://u:p@x:1883", "mqtt.url"},
		{"driver: kluis", "driver: magic", "hardware.driver"},
		{"driver: kluis", "driver: simfile", "hardware.driver"},
		{"baud: 19200", "baud: 12345", "hardware.serial.baud"},
		{"{number: 2, board: 0, channel: 1}", "{number: 1, board: 0, channel: 1}", "compartments[1].number"},
		{"{number: 2, board: 0, channel: 1}", "{number: 2, board: 0, channel: 0}", "compartments[1]"},
		{"{number: 17, board: 1, channel: 0}", "{number: 17, board: 5, channel: 0}", "compartments[2].board"},
		{"{number: 17, board: 1, channel: 0}", "{number: 17, board: 1, channel: 48}", "compartments[2].channel"},
		{"{number: 17, board: 1, channel: 0}", "{number: 0, board: 1, channel: 0}", "compartments[2].number"},
		{"pulse: 300ms", "pulse: 10s", "pulse"},
		{"listen: 127.0.0.1:8088", "listen: 0.0.0.0:8088", "kiosk.listen"},
		{"listen: 127.0.0.1:8088", "listen: 192.168.1.5:8088", "kiosk.listen"},
		{"journal_dir: /var/lib/kluisd", "journal_dir: var/lib", "journal_dir"},
		{"door_open_detect: 5s", "door_open_detect: -5s", "timeouts.door_open_detect"},
		{"door_open_detect: 5s", "door_open_detect: soon", "door_open_detect"},
		// Upper bounds: a typo must not turn an alarm off or leave a
		// citizen waiting.
		{"door_open_detect: 5s", "door_open_detect: 3m", "timeouts.door_open_detect"},
		{"door_open_detect: 5s", "door_open_detect: 5s\n  door_left_open: 1000h", "timeouts.door_left_open"},
		{"door_open_detect: 5s", "door_open_detect: 5s\n  grace: 1000000h", "timeouts.grace"},
		{"door_open_detect: 5s", "door_open_detect: 5s\n  verify: 1h", "timeouts.verify"},
		{"door_open_detect: 5s", "door_open_detect: 5s\n  present: 6m", "timeouts.present"},
		{"door_open_detect: 5s", "door_open_detect: 5s\n  resume_window: 11m", "timeouts.resume_window"},
		{"door_open_detect: 5s", "door_open_detect: 5s\n  session: 2h", "timeouts.session"},
		{"door_open_detect: 5s", "door_open_detect: 5s\n  board_unreachable: 2h", "timeouts.board_unreachable"},
		{"pulse: 300ms", "pulse: 300ms\ncolour: red", "colour"},
		{"  password: s3cret", "  password: s3cret\n  password_file: /x", "mqtt.password"},
		{"  password: s3cret", "  password: s3cret\n  resend_after: 10ms", "mqtt.resend_after"},
		{"  password: s3cret", "  password: s3cret\n  heartbeat_every: 1h", "mqtt.heartbeat_every"},
		{"  password: s3cret", "  password: s3cret\n  keepalive: 4s", "mqtt.keepalive"},
		{"  password: s3cret", "  password: s3cret\n  keepalive: 301s", "mqtt.keepalive"},
		{"  password: s3cret", "  password: s3cret\n  keepalive: 30500ms", "mqtt.keepalive"},
		{"  password: s3cret", "  password: s3cret\n  pace: {window: 0, rate: 8, burst: 200}", "mqtt.pace.window"},
		{"  password: s3cret", "  password: s3cret\n  pace: {window: 100, burst: 200}", "mqtt.pace.rate"},
		{"  password: s3cret", "  password: s3cret\n  alarm_pace: {window: 20, rate: 1, burst: 0}", "mqtt.alarm_pace.burst"},
		{"  password: s3cret", "  password: s3cret\n  ca_file: /etc/kluis/ca.crt", "mqtt.ca_file"},
		// Addresses the daemon could never listen on or dial: refused by
		// --check rather than by the start that follows it.
		{"listen: 127.0.0.1:8088", "listen: 127.0.0.1:99999", "kiosk.listen"},
		{"listen: 127.0.0.1:8088", "listen: 127.0.0.1:-1", "kiosk.listen"},
		{"listen: 127.0.0.1:8088", "listen: 127.0.0.1:kiosk", "kiosk.listen"},
		{"listen: 127.0.0.1:8088", "listen: 127.0.0.1:8088\nmetrics_listen: 127.0.0.1:70000", "metrics_listen"},
		{"listen: 127.0.0.1:8088", "listen: 127.0.0.1:8088\nmetrics_listen: 127.0.0.1:8088", "metrics_listen"},
		{"url: tcp://127.0.0.1:1883", "url: tcp://127.0.0.1:99999", "mqtt.url"},
		{"url: tcp://127.0.0.1:1883", "url: tcp://127.0.0.1:mqtt", "mqtt.url"},
		// The scanner on the lock boards' line would read (and take) the
		// boards' answers.
		{"listen: 127.0.0.1:8088", "listen: 127.0.0.1:8088\n  scanner: {port: /dev/ttyUSB0}", "kiosk.scanner.port"},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			in := strings.Replace(good, tc.from, tc.to, 1)
			require.NotEqual(t, good, in, "test case must change the input")
			_, err := Parse([]byte(in), ParseOptions{})
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalid), "%v", err)
			require.Contains(t, err.Error(), tc.field)
			require.NotContains(t, err.Error(), "s3cret", "secrets never in errors")
		})
	}
}

// The serial line's response timeout and retries: the drivers' defaults
// when left out (the production behaviour unchanged), a wider value where
// a board may be slow to answer (a simulator on a loaded machine), and a
// clear error naming the field for values a board's line cannot honour.
func TestSerialTimeoutAndRetries(t *testing.T) {
	c, err := Parse([]byte(good), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, 200*time.Millisecond, c.Hardware.Serial.Timeout, "kluis driver's default")
	require.Equal(t, 2, *c.Hardware.Serial.Retries, "default: three attempts")
	kerong, err := Parse([]byte(strings.Replace(good, "driver: kluis", "driver: kerong-cu16", 1)), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, 300*time.Millisecond, kerong.Hardware.Serial.Timeout, "kerong-cu16 driver's default")

	set := func(extra string) string {
		return strings.Replace(good, "serial: {port: /dev/ttyUSB0, baud: 19200}", "serial: {port: /dev/ttyUSB0, baud: 19200, "+extra+"}", 1)
	}
	wide, err := Parse([]byte(set("timeout: 1s, retries: 3")), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, time.Second, wide.Hardware.Serial.Timeout)
	require.Equal(t, 3, *wide.Hardware.Serial.Retries)
	none, err := Parse([]byte(set("retries: 0")), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, 0, *none.Hardware.Serial.Retries, "0 is no retry, not the default")

	require.Equal(t, 103*time.Millisecond, MinSerialTimeout(9600), "firmware-protocol.md section 6")
	require.Equal(t, 66*time.Millisecond, MinSerialTimeout(19200))
	require.Equal(t, 50*time.Millisecond, MinSerialTimeout(115200), "never under 50ms")
	for _, tc := range []struct{ extra, field, says string }{
		{"timeout: 60ms", "hardware.serial.timeout", "66ms"},
		{"timeout: 3s", "hardware.serial.timeout", "2s"},
		{"timeout: -1s", "hardware.serial.timeout", "between"},
		{"timeout: soon", "serial", "time.Duration"},
		{"retries: -1", "hardware.serial.retries", "0-5"},
		{"retries: 6", "hardware.serial.retries", "0-5"},
		{"timeout: 2s, retries: 2", "hardware.serial.timeout", "6s"},
		{"timeouts: 1s", "timeouts", "not found"},
	} {
		t.Run(tc.extra, func(t *testing.T) {
			_, err := Parse([]byte(set(tc.extra)), ParseOptions{})
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorContains(t, err, tc.field)
			require.ErrorContains(t, err, tc.says)
		})
	}
	// The scanner's line has no such settings.
	_, err = Parse([]byte(strings.Replace(good, "  listen: 127.0.0.1:8088", "  listen: 127.0.0.1:8088\n  scanner: {port: /dev/ttyACM0, timeout: 1s}", 1)), ParseOptions{})
	require.ErrorIs(t, err, ErrInvalid)
}

func TestAutomaton(t *testing.T) {
	in := strings.Replace(good, "kind: locker", "kind: automaton", 1)
	in = strings.NewReplacer("{number: 1, board: 0, channel: 0}", "{number: 1, board: 0, slot: 0}",
		"{number: 2, board: 0, channel: 1}", "{number: 2, board: 0, slot: 1}",
		"{number: 17, board: 1, channel: 0}", "{number: 17, board: 1, slot: 0}").Replace(in)
	c, err := Parse([]byte(in), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, KindAutomaton, c.Kind)
	_, err = Parse([]byte(strings.Replace(in, "driver: kluis", "driver: kerong-cu16", 1)), ParseOptions{})
	require.ErrorContains(t, err, "hardware.driver")
	_, err = Parse([]byte(strings.Replace(in, "{number: 2, board: 0, slot: 1}", "{number: 2, board: 0, slot: 0}", 1)), ParseOptions{})
	require.ErrorContains(t, err, "compartments[1]")
}

func TestTasmota(t *testing.T) {
	in := strings.Replace(good, "  driver: kluis\n  serial: {port: /dev/ttyUSB0, baud: 19200}\n",
		"  driver: tasmota\n  tasmota:\n    broker: tcp://192.0.2.7:1883\n    modules:\n      - {topic: kluis-bank-a, relays: 8, board: 0}\n      - {topic: kluis-bank-b, relays: 8, board: 1}\n", 1)
	require.NotEqual(t, good, in)
	c, err := Parse([]byte(in), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, "tcp://192.0.2.7:1883", c.Hardware.Tasmota.Broker)
	require.Equal(t, c.MQTT.ClientID+"-tasmota", c.Hardware.Tasmota.ClientID, "the default client id")
	require.Empty(t, c.Hardware.Tasmota.Username, "not the credentials of mqtt")
	pw, err := c.TasmotaPassword()
	require.NoError(t, err)
	require.Empty(t, pw)
	require.Len(t, c.Hardware.Tasmota.Modules, 2)

	// No default broker: kluis-backend's (mqtt.url) cannot carry relay modules.
	_, err = Parse([]byte(strings.Replace(in, "    broker: tcp://192.0.2.7:1883\n", "", 1)), ParseOptions{})
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "hardware.tasmota.broker")
	require.ErrorContains(t, err, "must be set for driver tasmota")
	_, err = Parse([]byte(strings.Replace(in, "tcp://192.0.2.7:1883", "tcp://u:p@192.0.2.7:1883", 1)), ParseOptions{})
	require.ErrorContains(t, err, "hardware.tasmota.broker")
	_, err = Parse([]byte(strings.Replace(in, "tcp://192.0.2.7:1883", "http://192.0.2.7", 1)), ParseOptions{})
	require.ErrorContains(t, err, "hardware.tasmota.broker")

	// Own credentials and client id.
	pwf := filepath.Join(t.TempDir(), "tasmota-pw")
	require.NoError(t, os.WriteFile(pwf, []byte("relay-secret\n"), 0o600))
	own := strings.Replace(in, "    broker: tcp://192.0.2.7:1883\n",
		"    broker: tcp://192.0.2.7:1883\n    username: relays\n    password_file: "+pwf+"\n    client_id: kluisd-relays\n", 1)
	c, err = Parse([]byte(own), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, "relays", c.Hardware.Tasmota.Username)
	require.Equal(t, "kluisd-relays", c.Hardware.Tasmota.ClientID)
	pw, err = c.TasmotaPassword()
	require.NoError(t, err)
	require.Equal(t, "relay-secret", pw)
	_, err = Parse([]byte(strings.Replace(own, "    username: relays\n", "", 1)), ParseOptions{})
	require.ErrorContains(t, err, "hardware.tasmota.username")
	_, err = Parse([]byte(strings.Replace(own, "client_id: kluisd-relays", "client_id: \"a b\"", 1)), ParseOptions{})
	require.ErrorContains(t, err, "hardware.tasmota.client_id")
	require.NoError(t, os.Remove(pwf))
	c, err = Parse([]byte(own), ParseOptions{})
	require.NoError(t, err)
	_, err = c.TasmotaPassword()
	require.ErrorContains(t, err, "hardware.tasmota.password_file")
	_, err = Parse([]byte(strings.Replace(in, "topic: kluis-bank-b", "topic: kluis/#", 1)), ParseOptions{})
	require.ErrorContains(t, err, "hardware.tasmota.modules[1].topic")
	_, err = Parse([]byte(strings.Replace(in, "relays: 8, board: 1", "relays: 0, board: 1", 1)), ParseOptions{})
	require.ErrorContains(t, err, "hardware.tasmota.modules[1].relays")
}

func TestGarbageNeverPanics(t *testing.T) {
	for _, in := range []string{"", "---", "[1,2", "device_id: [", "\x00\xff", "a: b\n---\nc: d", good + "\n---\n" + good} {
		_, err := Parse([]byte(in), ParseOptions{})
		require.Error(t, err, "%q", in)
	}
}

func TestLoadAndPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pw, []byte("from-file\n"), 0o600))
	in := strings.Replace(good, "  password: s3cret", "  password_file: "+pw, 1)
	p := filepath.Join(dir, "kluisd.yaml")
	require.NoError(t, os.WriteFile(p, []byte(in), 0o600))
	c, err := Load(p)
	require.NoError(t, err)
	got, err := c.MQTTPassword()
	require.NoError(t, err)
	require.Equal(t, "from-file", got)
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml")
}

// kluisd --check reads the files the configuration names (CheckFiles), as
// the start does: a missing or unreadable password, CA or public key file,
// or a public key that is not one, is an error naming the field, never
// "valid" followed by a daemon that refuses to start.
func TestCheckFilesNamesTheField(t *testing.T) {
	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "qr.pub")
	require.NoError(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o600))
	pw := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pw, []byte("s3cret\n"), 0o600))
	garbage := filepath.Join(dir, "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("s3cret, not a key\n"), 0o600))
	missing := filepath.Join(dir, "missing")
	withKey := good + "offline:\n  public_key_file: " + keyFile + "\n"
	c, err := Parse([]byte(withKey), ParseOptions{})
	require.NoError(t, err)
	require.NoError(t, c.CheckFiles(), "files present and well formed")
	k, err := c.OfflinePublicKey()
	require.NoError(t, err)
	require.Equal(t, pub, k)

	cases := []struct{ name, in, field string }{
		{"key missing", good + "offline:\n  public_key_file: " + missing + "\n", "offline.public_key_file"},
		{"key garbage", good + "offline:\n  public_key_file: " + garbage + "\n", "offline.public_key_file"},
		{"key a directory", good + "offline:\n  public_key_file: " + dir + "\n", "offline.public_key_file"},
		{"password missing", strings.Replace(withKey, "  password: s3cret", "  password_file: "+missing, 1), "mqtt.password_file"},
		{"ca missing", strings.Replace(strings.Replace(withKey, "  password: s3cret", "  password_file: "+pw+"\n  ca_file: "+missing, 1),
			"tcp://", "ssl://", 1), "mqtt.ca_file"},
		{"ca garbage", strings.Replace(strings.Replace(withKey, "  password: s3cret", "  password_file: "+pw+"\n  ca_file: "+garbage, 1),
			"tcp://", "ssl://", 1), "mqtt.ca_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in), ParseOptions{})
			require.NoError(t, err, "the file is read by CheckFiles, not by Parse")
			err = c.CheckFiles()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.field)
			require.NotContains(t, err.Error(), "s3cret", "secrets never in errors")
		})
	}
}

// mqtt.ca_file: only that CA is trusted for a TLS URL; a file without a
// certificate is refused when kluisd starts.
func TestCAFile(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	in := strings.Replace(good, "url: tcp://127.0.0.1:1883", "url: ssl://127.0.0.1:8883\n  ca_file: "+ca, 1)
	c, err := Parse([]byte(in), ParseOptions{})
	require.NoError(t, err)
	_, err = c.MQTTTLS()
	require.ErrorContains(t, err, "mqtt.ca_file", "missing file")
	require.NoError(t, os.WriteFile(ca, []byte("not a certificate\n"), 0o600))
	_, err = c.MQTTTLS()
	require.ErrorContains(t, err, "no PEM certificate")
	require.NoError(t, os.WriteFile(ca, []byte(testCA(t)), 0o600))
	tc, err := c.MQTTTLS()
	require.NoError(t, err)
	require.NotNil(t, tc.RootCAs)
	require.Len(t, tc.RootCAs.Subjects(), 1) //nolint:staticcheck // one certificate in the pool
	c, err = Parse([]byte(good), ParseOptions{})
	require.NoError(t, err)
	tc, err = c.MQTTTLS()
	require.NoError(t, err)
	require.Nil(t, tc, "no ca_file: paho's default")
}

// testCA is a self-signed CA certificate in PEM made with crypto/x509.
func testCA(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Kluis test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("kind: automaton"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, ParseOptions{AllowTestDrivers: true})
		if err == nil && c.Validate(ParseOptions{AllowTestDrivers: true}) != nil {
			t.Fatal("parsed config does not validate")
		}
	})
}

// kluisd applies the backend's PIN limits by default (the ones
// docs/security.md computes its bound with) and refuses a daily cap that
// breaks the bound.
func TestLockoutLimitsKeepTheBound(t *testing.T) {
	c, err := Parse([]byte(good), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, pickupcode.DefaultConfig(), c.Lockout.Limits(), "the defaults are the shared limits")
	require.NoError(t, c.Lockout.Limits().CheckBound())
	require.Less(t, c.Lockout.Limits().BruteForceBound(pickupcode.BoundPeriod, pickupcode.MaxActiveCodesPerDevice), 1e-4)

	with := func(lockout string) (*Config, error) {
		return Parse([]byte(strings.Replace(good, "journal_dir:", "lockout: "+lockout+"\njournal_dir:", 1)), ParseOptions{})
	}
	c, err = with("{max_failures: 3, window: 10m, duration: 2s, daily_max_failures: 69}")
	require.NoError(t, err, "69 failed PINs a day keep the bound (9.94e-5)")
	require.Equal(t, 69, c.Lockout.Limits().DailyMaxFailures)
	require.Equal(t, 24*time.Hour, c.Lockout.Limits().DailyWindow)
	for lockout, field := range map[string]string{
		"{daily_max_failures: 70}":                     "lockout.daily_max_failures",
		"{daily_window: 12h}":                          "lockout.daily_max_failures",
		"{daily_max_failures: 2000, daily_window: 1h}": "lockout.daily_max_failures",
		"{daily_max_failures: -1}":                     "lockout.daily_max_failures",
		"{daily_window: -1h}":                          "lockout.daily_window",
		"{window: 25h}":                                "lockout.window",
		"{duration: 48h}":                              "lockout.duration",
		"{max_failures: 0, window: 1m, duration: 1m, daily_max_failures: 50, daily_window: 24h, extra: 1}": "extra",
	} {
		_, err := with(lockout)
		require.ErrorIs(t, err, ErrInvalid, lockout)
		require.ErrorContains(t, err, field, lockout)
	}
	_, err = with("{daily_max_failures: 70}")
	require.ErrorContains(t, err, "1.01e-04", "the error says what the bound would be")
}

// docs/security.md's bound for a device offline for the whole period uses
// kluisd's own limits, and the numbers in it are the ones they give.
func TestOfflineBoundInSecurityDoc(t *testing.T) {
	raw, err := os.ReadFile("../../docs/security.md")
	require.NoError(t, err)
	doc := string(raw)
	c, err := Parse([]byte(good), ParseOptions{})
	require.NoError(t, err)
	lim := c.Lockout.Limits()
	guesses := lim.MaxFailedGuesses(pickupcode.BoundPeriod) + 1
	p := lim.BruteForceBound(pickupcode.BoundPeriod, pickupcode.MaxActiveCodesPerDevice)
	require.Less(t, p, pickupcode.BoundTarget)
	require.Contains(t, doc, fmt.Sprintf("P ≤ %d × %d / 10^%d = **%s** (offline)", guesses, pickupcode.MaxActiveCodesPerDevice,
		lim.PINDigits, sci(p)))
	require.Contains(t, doc, fmt.Sprintf("at most 30 × %d = %d in\n  the 30 days", lim.DailyMaxFailures, guesses-1))
	// What the burst limit alone allowed.
	burstOnly := lim
	burstOnly.DailyMaxFailures, burstOnly.DailyWindow = lim.DeviceMaxFailures, lim.DeviceWindow
	require.Contains(t, doc, fmt.Sprintf("%d × %d / 10^%d = %s, above the target", burstOnly.MaxFailedGuesses(pickupcode.BoundPeriod)+1,
		pickupcode.MaxActiveCodesPerDevice, lim.PINDigits, sci(burstOnly.BruteForceBound(pickupcode.BoundPeriod, pickupcode.MaxActiveCodesPerDevice))))
	// The largest daily cap the configuration accepts.
	most := lim
	for most.DailyMaxFailures = lim.DailyMaxFailures; most.CheckBound() == nil; most.DailyMaxFailures++ {
	}
	most.DailyMaxFailures--
	require.Contains(t, doc, fmt.Sprintf("at most %d failures in 24 h\n  (%s)", most.DailyMaxFailures,
		sci(most.BruteForceBound(pickupcode.BoundPeriod, pickupcode.MaxActiveCodesPerDevice))))
}

// sci writes p as docs/security.md does: 7.20e-5.
func sci(p float64) string {
	exp := int(math.Floor(math.Log10(p)))
	return fmt.Sprintf("%.2fe%d", p/math.Pow(10, float64(exp)), exp)
}

// validID accepts exactly what ^[a-z0-9][a-z0-9_-]{0,63}$ matches (the
// expression it replaces): edge cases and random strings over an alphabet
// with the characters around the allowed ranges.
func TestValidIDMatchesTheExpression(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	cases := []string{"", "a", "0", "-", "_", "a-", "a_", "-a", "_a", "A", "kortrijk-1", "Kortrijk 1", "é", "a\n", "a\x00",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65), "a" + strings.Repeat("-", 63), "a" + strings.Repeat("_", 64)}
	const alphabet = "az09_-az09_-az09_-az09_-az09_-`{/:@[AZ .\x00" // mostly allowed characters
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.IntN(70))
		for k := range b {
			b[k] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		require.Equal(t, re.MatchString(c), validID(c), "%q", c)
	}
}

// kiosk.display_name names the machine on the screen (default its
// device_id); kiosk.counter_hours are optional, checked span by span.
func TestKioskDisplayNameAndCounterHours(t *testing.T) {
	c, err := Parse([]byte(good), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, "kortrijk-1", c.Kiosk.DisplayName, "default: the device_id")
	h, err := c.Kiosk.OpeningHours()
	require.NoError(t, err)
	require.Nil(t, h, "no hours configured")

	kiosk := func(extra string) string {
		return strings.Replace(good, "  listen: 127.0.0.1:8088", "  listen: 127.0.0.1:8088\n"+extra, 1)
	}
	c, err = Parse([]byte(kiosk("  display_name: \"Stadhuis Kortrijk, automaat 2\"\n  counter_hours:\n    mon: [08:30-12:30, 13:30-16:00]\n    sat: [\"09:00-12:00\"]\n    sun: []")), ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, "Stadhuis Kortrijk, automaat 2", c.Kiosk.DisplayName)
	h, err = c.Kiosk.OpeningHours()
	require.NoError(t, err)
	require.Equal(t, [][]Span{{{510, 750}, {810, 960}}, nil, nil, nil, nil, {{540, 720}}, nil}, h)
	require.Equal(t, "13:30-16:00", h[0][1].String())

	for _, tc := range []struct{ extra, field string }{
		{"  display_name: \"  \"", "kiosk.display_name"},
		{"  display_name: \"" + strings.Repeat("x", 61) + "\"", "kiosk.display_name"},
		{"  display_name: \"Stadhuis\\u202eKortrijk\"", "kiosk.display_name"},
		{"  display_name: \"Stadhuis\\nKortrijk\"", "kiosk.display_name"},
		{"  counter_hours: {maandag: [08:30-12:30]}", "kiosk.counter_hours"},
		{"  counter_hours: {mon: [8:30-12:30]}", "kiosk.counter_hours.mon[0]"},
		{"  counter_hours: {mon: [08:30-12:30, 13:30-25:00]}", "kiosk.counter_hours.mon[1]"},
		{"  counter_hours: {tue: [12:30-08:30]}", "kiosk.counter_hours.tue[0]"},
		{"  counter_hours: {wed: [08:30-12:30, 12:00-16:00]}", "kiosk.counter_hours.wed[1]"},
		{"  counter_hours: {fri: [08:30 12:30]}", "kiosk.counter_hours.fri[0]"},
		{"  counter_hours: {sun: [01:00-02:00, 03:00-04:00, 05:00-06:00, 07:00-08:00, 09:00-10:00]}", "kiosk.counter_hours.sun"},
	} {
		_, err := Parse([]byte(kiosk(tc.extra)), ParseOptions{})
		require.ErrorIs(t, err, ErrInvalid, tc.extra)
		require.Contains(t, err.Error(), tc.field, tc.extra)
	}
}

// kiosk.counter_closed lists the dates the counter is closed although its
// weekly hours say open (holidays): YYYY-MM-DD (quoted or not), sorted on
// reading; a bad date, a date twice, too many, or closed dates without
// counter_hours are refused with the field named.
func TestKioskCounterClosedDates(t *testing.T) {
	kiosk := func(extra string) string {
		return strings.Replace(good, "  listen: 127.0.0.1:8088", "  listen: 127.0.0.1:8088\n"+extra, 1)
	}
	const hours = "  counter_hours: {mon: [08:30-12:30]}\n"
	c, err := Parse([]byte(good), ParseOptions{})
	require.NoError(t, err)
	d, err := c.Kiosk.ClosedDates()
	require.NoError(t, err)
	require.Nil(t, d, "none configured")
	c, err = Parse([]byte(kiosk(hours+"  counter_closed: [2026-12-26, \"2026-12-25\", 2027-01-01]")), ParseOptions{})
	require.NoError(t, err)
	d, err = c.Kiosk.ClosedDates()
	require.NoError(t, err)
	day := func(s string) time.Time { v, _ := time.Parse(time.DateOnly, s); return v }
	require.Equal(t, []time.Time{day("2026-12-25"), day("2026-12-26"), day("2027-01-01")}, d)

	many := make([]string, MaxClosedDates+1)
	for i := range many {
		many[i] = day("2026-01-01").AddDate(0, 0, i).Format(time.DateOnly)
	}
	for _, tc := range []struct{ extra, field, says string }{
		{"  counter_closed: [2026-12-25]", "kiosk.counter_closed", "needs kiosk.counter_hours"},
		{hours + "  counter_closed: [25/12]", "kiosk.counter_closed[0]", "YYYY-MM-DD"},
		{hours + "  counter_closed: [2026-12-25, 2026-02-30]", "kiosk.counter_closed[1]", "YYYY-MM-DD"},
		{hours + "  counter_closed: [\"2026-12-25 \", 26-12-2026]", "kiosk.counter_closed[1]", "YYYY-MM-DD"},
		{hours + "  counter_closed: [2026-12-25, 2027-01-01, 2026-12-25]", "kiosk.counter_closed[2]", "listed twice"},
		{hours + "  counter_closed: [" + strings.Join(many, ", ") + "]", "kiosk.counter_closed", "at most 366"},
	} {
		_, err := Parse([]byte(kiosk(tc.extra)), ParseOptions{})
		require.ErrorIs(t, err, ErrInvalid, tc.extra)
		require.Contains(t, err.Error(), tc.field+": ", tc.extra)
		require.Contains(t, err.Error(), tc.says, tc.extra)
	}
}
