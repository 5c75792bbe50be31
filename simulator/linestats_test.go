package simulator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"
	"kluis/hardware/kluisproto"
)

// lineFile opens the slave end of a device's line like a master would.
func lineFile(t *testing.T, link string) *os.File {
	t.Helper()
	f, err := os.OpenFile(link, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// readN reads n bytes within a generous bound.
func readN(t *testing.T, f *os.File, n int) []byte {
	t.Helper()
	_ = f.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// Garbage, an oversized length, a damaged frame, frames for other
// addresses, a reply and a cut-off frame reach a Kluis device over its pty:
// each is counted in the line's statistics (also on the control API), none
// is answered or acted on, and the next request is answered.
func TestKluisLineStatsCountBadInput(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	link := filepath.Join(t.TempDir(), "tty")
	fl, err := StartFleet(ctx, Config{HTTP: "127.0.0.1:0", Devices: []DeviceConfig{
		{ID: "k", Hardware: ProtoKluis, Link: link, Boards: 2, Channels: 8}}}, FleetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	f := lineFile(t, link)
	badCRC := request(t, 7, &kluisproto.UnlockRequest{Channel: 1, DurationMS: 500, ID: 5})
	badCRC[len(badCRC)-1] ^= 0xFF
	var in []byte
	in = append(in, 0x00, 0xFF, 0x13)                               // garbage
	in = append(in, kluisproto.SOF, 0x01, 0x82, 0x99)               // LEN 0x99 > 64
	in = append(in, badCRC...)                                      // damaged (for board 7: no NAK)
	in = append(in, request(t, 9, &kluisproto.InfoRequest{})...)    // another address
	in = append(in, request(t, 1, &kluisproto.RelockAllReply{})...) // a reply
	in = append(in, unhex(t, "A5 01 03 07 04")...)                  // cut off...
	if _, err := f.Write(in); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // ...by the silence after it
	if _, err := f.Write(request(t, 1, &kluisproto.StatusRequest{})); err != nil {
		t.Fatal(err)
	}
	reply := readN(t, f, kluisproto.MinFrame+23)
	if fr, _, err := kluisproto.Decode(reply); err != nil || fr.Cmd != kluisproto.CmdStatus|kluisproto.ReplyBit || fr.Addr != 1 {
		t.Fatalf("status reply % X: %v", reply, err)
	}
	st := fl.Line("k").Stats()
	want := LineStats{Frames: 3, Garbage: 1, BadFrames: 1, Oversize: 1, Truncated: 1, Ignored: 2}
	if st != want {
		t.Fatalf("line stats %+v, want %+v", st, want)
	}
	if ps := fl.Device("k").Pulses(); len(ps) != 0 {
		t.Fatalf("pulses %+v from bad input", ps)
	}
	resp, err := testenv.HTTPClient().Get("http://" + fl.ControlAddr() + "/v1/devices/k/line")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got LineStats
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK || got != want {
		t.Fatalf("GET line: %d %+v %v", resp.StatusCode, got, err)
	}
}

// The same for a Kerong CU16 device: garbage, a bad sum, an unknown
// command and an absent board are counted and not answered.
func TestKerongLineStatsCountBadInput(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := New(Options{Boards: 1, Channels: 16})
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "tty")
	l, err := ServeSerial(ctx, d, SerialOptions{Protocol: ProtoKerong, Link: link})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f := lineFile(t, link)
	var in []byte
	in = append(in, 0xFF, 0x13)                   // garbage
	in = append(in, 0x02, 0x00, 0x31, 0x03, 0x37) // an unlock with a bad sum
	in = append(in, KerongFrame(0x00, 0x40)...)   // unknown command
	in = append(in, KerongFrame(0x40, 0x31)...)   // unlock on absent board 4
	in = append(in, KerongFrame(0x00, KerongCmdStatus)...)
	if _, err := f.Write(in); err != nil {
		t.Fatal(err)
	}
	if reply := readN(t, f, 9); reply[2] != KerongRspStatus {
		t.Fatalf("status reply % X", reply)
	}
	want := LineStats{Frames: 3, Garbage: 1, BadFrames: 1, Ignored: 2}
	if st := l.Stats(); st != want {
		t.Fatalf("line stats %+v, want %+v", st, want)
	}
	if ps := d.Pulses(); len(ps) != 0 {
		t.Fatalf("pulses %+v from bad input", ps)
	}
}
