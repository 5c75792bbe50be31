package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
)

func hostPort(t *testing.T) []string {
	t.Helper()
	u, err := url.Parse(testenv.BrokerURL())
	if err != nil {
		t.Fatal(err)
	}
	return []string{"-h", u.Hostname(), "-p", u.Port()}
}

func mqttPub(t *testing.T, topic, payload string, extra ...string) {
	t.Helper()
	args := append(hostPort(t), "-t", topic)
	if payload == "" {
		args = append(args, "-n")
	} else {
		args = append(args, "-m", payload)
	}
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mosquitto_pub", args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %v: %v %s", args, err, out)
	}
}

// subscriber is a mosquitto_sub process printing "topic payload" lines.
type subscriber struct {
	lines chan string
}

func startSub(t *testing.T, topics ...string) *subscriber {
	t.Helper()
	args := append(hostPort(t), "-v", "-W", "60")
	for _, tp := range topics {
		args = append(args, "-t", tp)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "mosquitto_sub", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	s := &subscriber{lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	return s
}

// expect waits until every wanted line was seen (in any order), failing
// after 15 s. Other lines are skipped.
func (s *subscriber) expect(t *testing.T, want ...string) {
	t.Helper()
	left := map[string]int{}
	for _, w := range want {
		left[w]++
	}
	deadline := time.After(15 * time.Second)
	var seen []string
	for len(left) > 0 {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("subscriber ended; missing %v; seen %q", left, seen)
			}
			seen = append(seen, l)
			if left[l] > 0 {
				left[l]--
				if left[l] == 0 {
					delete(left, l)
				}
			}
		case <-deadline:
			t.Fatalf("missing %v; seen %q", left, seen)
		}
	}
}

// next returns the next line with the given prefix.
func (s *subscriber) next(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatal("subscriber ended")
			}
			if strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			}
		case <-deadline:
			t.Fatalf("no line starting %q", prefix)
		}
	}
}

func TestTasmotaAnswersMosquittoClients(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Fatalf("mosquitto clients are needed: %v", err)
	}
	topic := fmt.Sprintf("kluis-sim-test-%d", time.Now().UnixNano())
	t.Cleanup(func() { mqttPub(t, "tele/"+topic+"/LWT", "", "-r") })
	sub := startSub(t, "stat/"+topic+"/#", "tele/"+topic+"/#")
	// the subscription is live once a probe comes back
	for i := 0; ; i++ {
		mqttPub(t, "stat/"+topic+"/probe", "p")
		select {
		case l := <-sub.lines:
			if l == "stat/"+topic+"/probe p" {
				goto subscribed
			}
		case <-time.After(500 * time.Millisecond):
		}
		if i > 20 {
			t.Fatal("mosquitto_sub never subscribed")
		}
	}
subscribed:
	r := startSim(t, "tasmota", "--broker", testenv.BrokerURL(), "--topic", topic, "--relays", "4", "--http", "127.0.0.1:0")
	sub.expect(t, "tele/"+topic+"/LWT Online")

	st := "stat/" + topic + "/"
	mqttPub(t, "cmnd/"+topic+"/PulseTime1", "5")
	sub.expect(t, st+`RESULT {"PulseTime1":{"Set":5,"Remaining":0}}`)
	mqttPub(t, "cmnd/"+topic+"/PulseTime1", "")
	sub.expect(t, st+`RESULT {"PulseTime1":{"Set":5,"Remaining":0}}`)

	mqttPub(t, "cmnd/"+topic+"/POWER1", "ON")
	sub.expect(t, st+`RESULT {"POWER1":"ON"}`, st+"POWER1 ON",
		st+`RESULT {"Switch1":{"Action":"ON"}}`,       // the door sprang open
		st+`RESULT {"POWER1":"OFF"}`, st+"POWER1 OFF") // the pulse ended by itself

	mqttPub(t, "cmnd/"+topic+"/POWER2", "")
	sub.expect(t, st+`RESULT {"POWER2":"OFF"}`, st+"POWER2 OFF")
	mqttPub(t, "cmnd/"+topic+"/Foo", "1")
	sub.expect(t, st+`RESULT {"Command":"Unknown"}`)
	mqttPub(t, "cmnd/"+topic+"/POWER9", "ON")
	sub.expect(t, st+`RESULT {"Command":"Unknown"}`)

	// a person puts an item behind the open door 1: item sensor 1 is Switch5
	ctl(t, r.Control, "channel", "sim", "0", "put", "label=ID card 1")
	sub.expect(t, st+`RESULT {"Switch5":{"Action":"ON"}}`)

	mqttPub(t, "cmnd/"+topic+"/Status", "10")
	var s10 struct {
		StatusSNS map[string]string
	}
	if err := json.Unmarshal([]byte(sub.next(t, st+"STATUS10 ")), &s10); err != nil {
		t.Fatal(err)
	}
	if s10.StatusSNS["Time"] == "" || s10.StatusSNS["Switch1"] != "ON" || s10.StatusSNS["Switch2"] != "OFF" ||
		s10.StatusSNS["Switch5"] != "ON" || s10.StatusSNS["Switch8"] != "OFF" || len(s10.StatusSNS) != 9 {
		t.Fatalf("STATUS10 %v", s10.StatusSNS)
	}

	// only the one pulse asked for reached a lock
	var pulses []struct{ Board, Channel int }
	if err := json.Unmarshal(ctl(t, r.Control, "pulses", "sim"), &pulses); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pulses) != "[{0 0}]" {
		t.Fatalf("pulses %v", pulses)
	}

	// the offline fault: Offline, then back Online
	ctl(t, r.Control, "set-faults", "sim", `{"offline":true}`)
	sub.expect(t, "tele/"+topic+"/LWT Offline")
	mqttPub(t, "cmnd/"+topic+"/POWER2", "ON") // unheard while offline
	ctl(t, r.Control, "set-faults", "sim", `{"offline":false}`)
	sub.expect(t, "tele/"+topic+"/LWT Online")
	mqttPub(t, "cmnd/"+topic+"/POWER3", "")
	sub.expect(t, st+`RESULT {"POWER3":"OFF"}`)
	if err := json.Unmarshal(ctl(t, r.Control, "pulses", "sim"), &pulses); err != nil {
		t.Fatal(err)
	}
	if len(pulses) != 1 {
		t.Fatalf("a command sent while offline pulsed: %v", pulses)
	}
}
