package systemtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
)

// TestBrokerTLS runs deploy/mosquitto's configuration with its TLS
// listener (a CA and broker certificate made by the test): kluis-backend
// (-mqtt-url ssl://..., MQTT_CA_FILE) and kluisd (mqtt.ca_file) connect over
// it trusting that CA only, and a pickup verifies online over TLS. A
// kluisd without the CA (trusting the system's CAs) is refused by its own
// TLS check: it stays disconnected and the broker logs its alert.
func TestBrokerTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: starts Mosquitto, the backend, the simulator and kluisd")
	}
	parallelWorld(t)
	w, mosq := newMosquittoWorldWith(t, mosquittoWorldOptions{tls: true})
	locker := w.nodes[lockerID]
	fail := func() {
		t.Logf("--- kluisd ---\n%s\n--- kluis-backend ---\n%s\n--- mosquitto ---\n%s",
			locker.proc.Tail(3000), w.backend.Tail(3000), mosq.Log())
	}
	defer func() {
		if t.Failed() {
			fail()
		}
	}()

	d := w.register("driving_licence", lockerID)
	w.load(d)
	online := func() float64 {
		v, _ := locker.kluisd.Metric(context.Background(), "kluisd_verifications_total", `result="ok",source="online"`)
		return v
	}
	before := online()
	w.collect(d, map[string]string{"qr": d.mail.QR})
	if got := online(); got != before+1 {
		t.Fatalf("online verifications %v -> %v: the pickup was not verified by the backend over TLS", before, got)
	}
	w.waitBacklogEmpty(locker)

	// The same kluisd without ca_file trusts the system's CAs only.
	locker.proc.Stop(10 * time.Second)
	conf, err := os.ReadFile(locker.configPath)
	if err != nil {
		t.Fatal(err)
	}
	without := strings.Replace(string(conf), "  ca_file: "+w.mqttCA+"\n", "", 1)
	if without == string(conf) {
		t.Fatal("the kluisd configuration has no ca_file line")
	}
	if err := os.WriteFile(locker.configPath, []byte(without), 0o600); err != nil {
		t.Fatal(err)
	}
	w.startKluisd(locker)
	testenv.MustPoll(t, 30*time.Second, "kluisd refuses the broker's certificate (the broker logs the alert)", func(ctx context.Context) (bool, string, error) {
		h, err := locker.kluisd.Health(ctx)
		if err == nil && h.MQTTConnected {
			t.Fatalf("kluisd without the CA connected: %+v", h)
		}
		return strings.Contains(mosq.Log(), "alert bad certificate"), fmt.Sprintf("%+v", h), err
	})
	time.Sleep(2 * time.Second)
	if h, err := locker.kluisd.Health(context.Background()); err != nil || h.MQTTConnected {
		t.Fatalf("kluisd without the CA: %+v (%v)", h, err)
	}

	// With the CA again it connects and works.
	locker.proc.Stop(10 * time.Second)
	if err := os.WriteFile(locker.configPath, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	w.startKluisd(locker)
	w.waitConnected(locker)
	d2 := w.register("driving_licence", lockerID)
	w.load(d2)
	w.collect(d2, map[string]string{"pin": d2.mail.PIN, "birth_date": d2.birth})
}
