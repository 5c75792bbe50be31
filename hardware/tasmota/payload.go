package tasmota

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrMalformed is wrapped when a message from a module cannot be read.
var ErrMalformed = errors.New("tasmota: malformed message")

// PulseTimeValue converts a pulse duration to Tasmota's PulseTime value:
// 1-111 are tenths of a second (0.1-11.1 s, rounded up), 112 and more are
// seconds plus 100 (12 s and longer, rounded up). It fails for durations
// that are not positive or longer than 64000 s.
func PulseTimeValue(d time.Duration) (int, error) {
	if d <= 0 {
		return 0, fmt.Errorf("tasmota: pulse duration %v must be positive", d)
	}
	tenths := int((d + 100*time.Millisecond - 1) / (100 * time.Millisecond))
	if tenths <= 111 {
		return tenths, nil
	}
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 12 {
		secs = 12
	}
	if secs > 64000 {
		return 0, fmt.Errorf("tasmota: pulse duration %v too long", d)
	}
	return secs + 100, nil
}

// PulseTimeDuration is the inverse of PulseTimeValue (0 for v <= 0).
func PulseTimeDuration(v int) time.Duration {
	switch {
	case v <= 0:
		return 0
	case v <= 111:
		return time.Duration(v) * 100 * time.Millisecond
	default:
		return time.Duration(v-100) * time.Second
	}
}

// parseOnOff reads Tasmota's ON/OFF state words.
func parseOnOff(s string) (bool, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "ON", "1":
		return true, nil
	case "OFF", "0":
		return false, nil
	}
	return false, fmt.Errorf("%w: state %q is neither ON nor OFF", ErrMalformed, truncate(s))
}

// indexed splits names like "POWER3" or "Switch12" into the index (1 for a
// bare "POWER"); ok is false when name does not start with prefix or the
// rest is not a number 1-999.
func indexed(name, prefix string) (int, bool) {
	if len(name) < len(prefix) || !strings.EqualFold(name[:len(prefix)], prefix) {
		return 0, false
	}
	rest := name[len(prefix):]
	if rest == "" {
		if strings.EqualFold(prefix, "POWER") {
			return 1, true
		}
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 || n > 999 {
		return 0, false
	}
	return n, true
}

// result is what one stat/<topic>/RESULT or STATUS10 message says.
type result struct {
	power     map[int]bool // POWERn
	switches  map[int]bool // Switchn
	pulseTime map[int]int  // PulseTimen Set
}

// parseResult reads a RESULT payload: {"POWER1":"ON"},
// {"PulseTime1":{"Set":5,"Remaining":5}}, {"Switch1":{"Action":"ON"}}.
// Keys it does not know are ignored.
func parseResult(payload []byte) (result, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		return result{}, fmt.Errorf("%w: RESULT is not a JSON object: %v", ErrMalformed, err)
	}
	r := result{power: map[int]bool{}, switches: map[int]bool{}, pulseTime: map[int]int{}}
	for k, raw := range m {
		if n, ok := indexed(k, "POWER"); ok {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return result{}, fmt.Errorf("%w: %s is not a string", ErrMalformed, k)
			}
			on, err := parseOnOff(s)
			if err != nil {
				return result{}, err
			}
			r.power[n] = on
			continue
		}
		if n, ok := indexed(k, "PulseTime"); ok {
			var pt struct {
				Set *int `json:"Set"`
			}
			if err := json.Unmarshal(raw, &pt); err != nil || pt.Set == nil {
				return result{}, fmt.Errorf("%w: %s has no Set value", ErrMalformed, k)
			}
			r.pulseTime[n] = *pt.Set
			continue
		}
		if n, ok := indexed(k, "Switch"); ok {
			var sw struct {
				Action *string `json:"Action"`
			}
			if err := json.Unmarshal(raw, &sw); err != nil || sw.Action == nil {
				return result{}, fmt.Errorf("%w: %s has no Action", ErrMalformed, k)
			}
			on, err := parseOnOff(*sw.Action)
			if err != nil {
				return result{}, err
			}
			r.switches[n] = on
		}
	}
	return r, nil
}

// parseStatus10 reads {"StatusSNS":{"Time":"...","Switch1":"ON",...}}.
func parseStatus10(payload []byte) (map[int]bool, error) {
	var m struct {
		StatusSNS map[string]json.RawMessage `json:"StatusSNS"`
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("%w: STATUS10 is not JSON: %v", ErrMalformed, err)
	}
	if m.StatusSNS == nil {
		return nil, fmt.Errorf("%w: STATUS10 without StatusSNS", ErrMalformed)
	}
	out := map[int]bool{}
	for k, raw := range m.StatusSNS {
		n, ok := indexed(k, "Switch")
		if !ok {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%w: %s is not a string", ErrMalformed, k)
		}
		on, err := parseOnOff(s)
		if err != nil {
			return nil, err
		}
		out[n] = on
	}
	return out, nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
