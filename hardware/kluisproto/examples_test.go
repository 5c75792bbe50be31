package kluisproto

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// example is one worked example of firmware-protocol.md: either a message
// (Msg) to or from board Addr, or a raw frame (Raw, for requests a board
// must refuse), or a byte string that must not decode (WantErr).
type example struct {
	Addr    byte
	Msg     Message
	Raw     *Frame
	WantErr error
	// Request: the example is a request (board side parses it).
	Request bool
}

const (
	boot3 = 0x00000007
	boot5 = 0x00000012
)

var examples = map[string]example{
	"info-request":           {Addr: 3, Msg: &InfoRequest{}, Request: true},
	"info-reply":             {Addr: 3, Msg: &InfoReply{Protocol: 1, FwMajor: 1, FwMinor: 2, FwPatch: 0, Channels: 24, Caps: CapDoorSensor | CapItemSensor, Slots: 0, BootID: boot3}},
	"info-reply-automaton":   {Addr: 5, Msg: &InfoReply{Protocol: 1, FwMajor: 1, FwMinor: 0, FwPatch: 3, Channels: 1, Caps: CapDoorSensor | CapItemSensor | CapMechanism, Slots: 40, BootID: boot5}},
	"status-request":         {Addr: 3, Msg: &StatusRequest{}, Request: true},
	"status-reply":           {Addr: 3, Msg: &StatusReply{BootID: boot3, Channels: 24, Locked: 0xFFFFFF &^ (1 << 4), DoorOpen: 1 << 4, ItemPresent: 1<<0 | 1<<2 | 1<<9}},
	"unlock-request":         {Addr: 3, Msg: &UnlockRequest{Channel: 4, DurationMS: 500, ID: 0x12345678}, Request: true},
	"unlock-reply":           {Addr: 3, Msg: &UnlockReply{Channel: 4, DurationMS: 500, ID: 0x12345678}},
	"unlock-reply-repeat":    {Addr: 3, Msg: &UnlockReply{Channel: 4, DurationMS: 500, ID: 0x12345678, Repeat: true}},
	"events-request":         {Addr: 3, Msg: &EventsRequest{}, Request: true},
	"events-reply":           {Addr: 3, Msg: &EventsReply{BootID: boot3, Pending: 3, Events: []Event{{41, EvUnlocked, 4, 0}, {42, EvDoorOpened, 4, 0}, {43, EvItemRemoved, 4, 0}}}},
	"events-reply-empty":     {Addr: 3, Msg: &EventsReply{BootID: boot3}},
	"events-reply-overflow":  {Addr: 3, Msg: &EventsReply{BootID: boot3, Pending: 1, Flags: EvFlagOverflow, Events: []Event{{107, EvDoorClosed, 4, 0}}}},
	"events-reply-automaton": {Addr: 5, Msg: &EventsReply{BootID: boot5, Pending: 2, Events: []Event{{9, EvSlotPresented, ChannelNone, 17}, {10, EvHatchOpened, 0, 0}}}},
	"events-reply-fault":     {Addr: 5, Msg: &EventsReply{BootID: boot5, Pending: 1, Events: []Event{{11, EvMechanismFault, ChannelNone, FaultJam}}}},
	"ack-request":            {Addr: 3, Msg: &AckRequest{BootID: boot3, Seq: 43}, Request: true},
	"ack-reply":              {Addr: 3, Msg: &AckReply{BootID: boot3, Pending: 0}},
	"watchdog-request":       {Addr: 3, Msg: &WatchdogRequest{TimeoutS: 10}, Request: true},
	"watchdog-reply":         {Addr: 3, Msg: &WatchdogReply{BootID: boot3, TimeoutS: 10}},
	"relock-all-request":     {Addr: 3, Msg: &RelockAllRequest{}, Request: true},
	"relock-all-reply":       {Addr: 3, Msg: &RelockAllReply{}},
	"present-request":        {Addr: 5, Msg: &PresentRequest{Slot: 17, ID: 0x0000A001}, Request: true},
	"present-reply":          {Addr: 5, Msg: &PresentReply{Slot: 17, ID: 0x0000A001}},
	"present-reply-repeat":   {Addr: 5, Msg: &PresentReply{Slot: 17, ID: 0x0000A001, Repeat: true}},
	"hatch-request":          {Addr: 5, Msg: &HatchRequest{}, Request: true},
	"hatch-reply":            {Addr: 5, Msg: &HatchReply{Locked: true, ItemAtHatch: true, Slot: 17}},
	"hatch-reply-busy":       {Addr: 5, Msg: &HatchReply{Locked: true, Busy: true, Slot: SlotNone}},
	"hatch-reply-fault":      {Addr: 5, Msg: &HatchReply{Locked: true, Fault: true, Slot: SlotNone, FaultCode: FaultJam}},

	"unlock-request-corrupt":   {WantErr: ErrBadCRC},
	"nak-bad-crc":              {Addr: 3, Msg: &Nak{Cmd: CmdUnlock, Code: CodeBadCRC}},
	"unknown-command-request":  {Addr: 3, Raw: &Frame{Addr: 3, Cmd: 0x42}, Request: true, WantErr: CodeUnknownCmd},
	"nak-unknown-command":      {Addr: 3, Msg: &Nak{Cmd: 0x42, Code: CodeUnknownCmd}},
	"bad-length-request":       {Addr: 3, Raw: &Frame{Addr: 3, Cmd: CmdUnlock, Payload: []byte{0x04, 0xF4, 0x01, 0x78, 0x56, 0x34}}, Request: true, WantErr: CodeBadLength},
	"nak-bad-length":           {Addr: 3, Msg: &Nak{Cmd: CmdUnlock, Code: CodeBadLength}},
	"unlock-request-channel48": {Addr: 3, Msg: &UnlockRequest{Channel: 47, DurationMS: 500, ID: 0x12345679}, Request: true},
	"nak-out-of-range":         {Addr: 3, Msg: &Nak{Cmd: CmdUnlock, Code: CodeOutOfRange}},
	"nak-bad-argument":         {Addr: 3, Msg: &Nak{Cmd: CmdUnlock, Code: CodeBadArgument}},
	"nak-busy":                 {Addr: 3, Msg: &Nak{Cmd: CmdUnlock, Code: CodeBusy, Arg: 5}},
	"nak-fault":                {Addr: 5, Msg: &Nak{Cmd: CmdPresent, Code: CodeFault, Arg: FaultJam}},
	"nak-boot-mismatch":        {Addr: 3, Msg: &Nak{Cmd: CmdAck, Code: CodeBootMismatch}},

	"info-reply-boot-check":    {Addr: 3, Msg: &InfoReply{Protocol: 1, FwMajor: 1, FwMinor: 3, FwPatch: 0, Channels: 24, Caps: CapDoorSensor | CapItemSensor | CapBootCheck, Slots: 0, BootID: boot3}},
	"unlock-request-boot":      {Addr: 3, Msg: &UnlockRequest{Channel: 4, DurationMS: 500, ID: 0x12345678, BootID: boot3}, Request: true},
	"present-request-boot":     {Addr: 5, Msg: &PresentRequest{Slot: 17, ID: 0x0000A001, BootID: boot5}, Request: true},
	"nak-stale-boot":           {Addr: 3, Msg: &Nak{Cmd: CmdUnlock, Code: CodeStaleBoot}},
	"unlock-request-boot-zero": {Addr: 3, Raw: &Frame{Addr: 3, Cmd: CmdUnlock, Payload: []byte{0x04, 0xF4, 0x01, 0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0}}, Request: true, WantErr: CodeBadArgument},
	"oversize-frame":           {WantErr: ErrOversize},
	"resync-stream":            {Addr: 3, Msg: &InfoRequest{}, Request: true},
}

// corrupt returns the unlock request with its last CRC byte flipped.
func corruptUnlock() []byte {
	b, _ := EncodeMessage(3, examples["unlock-request"].Msg)
	b[len(b)-1] ^= 0x01
	return b
}

func exampleBytes(t testing.TB, name string, ex example) []byte {
	t.Helper()
	switch {
	case name == "unlock-request-corrupt":
		return corruptUnlock()
	case name == "oversize-frame":
		return []byte{SOF, 0x03, CmdStatus | ReplyBit, 0x80}
	case name == "resync-stream":
		b, _ := EncodeMessage(3, &InfoRequest{})
		return append([]byte{0x00, 0xFF, SOF, 0x1F, 0x90}, b...)
	case ex.Raw != nil:
		b, err := ex.Raw.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := EncodeMessage(ex.Addr, ex.Msg)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

func spacedHex(b []byte) string {
	s := strings.ToUpper(hex.EncodeToString(b))
	var out []string
	for i := 0; i < len(s); i += 2 {
		out = append(out, s[i:i+2])
	}
	return strings.Join(out, " ")
}

// TestPrintExamples prints every example's bytes (KLUIS_PRINT=1) for
// writing firmware-protocol.md.
func TestPrintExamples(t *testing.T) {
	if os.Getenv("KLUIS_PRINT") == "" {
		t.Skip("set KLUIS_PRINT=1")
	}
	names := make([]string, 0, len(examples))
	for n := range examples {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("%-26s %s\n", n, spacedHex(exampleBytes(t, n, examples[n])))
	}
}

var hexLine = regexp.MustCompile(`^([0-9A-F]{2})( [0-9A-F]{2})*$`)

// docExamples reads the ```kluis blocks of firmware-protocol.md: a line
// "# name: text" starts an example, the hex lines that follow are its bytes.
func docExamples(t *testing.T) map[string][]byte {
	t.Helper()
	f, err := os.Open("../../firmware-protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	in := false
	name := ""
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "```kluis":
			in, name = true, ""
		case in && line == "```":
			in = false
		case in && strings.HasPrefix(line, "# "):
			n, _, _ := strings.Cut(strings.TrimPrefix(line, "# "), ":")
			name = strings.TrimSpace(n)
			if _, dup := out[name]; dup {
				t.Errorf("line %d: example %q twice", ln, name)
			}
			out[name] = nil
		case in && line != "":
			if name == "" || !hexLine.MatchString(line) {
				t.Fatalf("line %d: not an example line: %q", ln, line)
			}
			b, _ := hex.DecodeString(strings.ReplaceAll(line, " ", ""))
			out[name] = append(out[name], b...)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDocExamples checks every worked example of firmware-protocol.md byte
// for byte against the codec, both ways, and that the document and this
// table list the same examples.
func TestDocExamples(t *testing.T) {
	doc := docExamples(t)
	for name := range doc {
		if _, ok := examples[name]; !ok {
			t.Errorf("firmware-protocol.md has example %q the tests do not know", name)
		}
	}
	for name, ex := range examples {
		t.Run(name, func(t *testing.T) {
			got, ok := doc[name]
			if !ok {
				t.Fatalf("example missing from firmware-protocol.md")
			}
			want := exampleBytes(t, name, ex)
			if !bytes.Equal(got, want) {
				t.Fatalf("document:\n  %s\ncodec:\n  %s", spacedHex(got), spacedHex(want))
			}
			if name == "resync-stream" {
				var d Decoder
				d.Write(got)
				f, ok := d.Next()
				if !ok || f.Addr != 3 || f.Cmd != CmdInfo || len(f.Payload) != 0 {
					t.Fatalf("Decoder: %v %v", f, ok)
				}
				if _, ok := d.Next(); ok || d.Buffered() != 0 {
					t.Fatal("more than one frame")
				}
				if st := d.Stats(); st.Oversize != 1 || st.Frames != 1 || st.Garbage != 1 {
					t.Fatalf("stats %+v", st)
				}
				return
			}
			f, n, err := Decode(got)
			if ex.WantErr == ErrBadCRC || ex.WantErr == ErrOversize {
				if !errors.Is(err, ex.WantErr) {
					t.Fatalf("Decode err = %v, want %v", err, ex.WantErr)
				}
				return
			}
			if err != nil || n != len(got) {
				t.Fatalf("Decode: n=%d err=%v", n, err)
			}
			if f.Addr != ex.Addr {
				t.Fatalf("addr %d, want %d", f.Addr, ex.Addr)
			}
			var m Message
			if ex.Request {
				m, err = ParseRequest(f)
			} else {
				m, err = ParseReply(f)
			}
			if ex.WantErr != nil {
				if !errors.Is(err, ex.WantErr) {
					t.Fatalf("parse err = %v, want %v", err, ex.WantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !reflect.DeepEqual(m, ex.Msg) {
				t.Fatalf("parsed %#v, want %#v", m, ex.Msg)
			}
		})
	}
}

func TestCRCCheckValue(t *testing.T) {
	if got := CRC16([]byte("123456789")); got != 0x4B37 {
		t.Fatalf("CRC16(123456789) = %#04x, want 0x4B37", got)
	}
	// The check value must also be in the document.
	b, err := os.ReadFile("../../firmware-protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("0x4B37")) {
		t.Fatal("firmware-protocol.md does not state the check value 0x4B37")
	}
}
