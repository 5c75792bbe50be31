package tasmota

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPulseTimeValue(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want int
	}{
		{time.Millisecond, 1},
		{100 * time.Millisecond, 1},
		{101 * time.Millisecond, 2},
		{500 * time.Millisecond, 5},
		{time.Second, 10},
		{11100 * time.Millisecond, 111},
		{11200 * time.Millisecond, 112}, // 12 s: the next step Tasmota has
		{12 * time.Second, 112},
		{60 * time.Second, 160},
	}
	for _, c := range cases {
		v, err := PulseTimeValue(c.d)
		require.NoError(t, err, c.d)
		assert.Equal(t, c.want, v, c.d)
		assert.GreaterOrEqual(t, PulseTimeDuration(v), c.d, "never shorter than asked")
	}
	_, err := PulseTimeValue(0)
	require.Error(t, err)
	_, err = PulseTimeValue(-time.Second)
	require.Error(t, err)
	_, err = PulseTimeValue(100000 * time.Second)
	require.Error(t, err)
	assert.Equal(t, 500*time.Millisecond, PulseTimeDuration(5))
	assert.Equal(t, 20*time.Second, PulseTimeDuration(120))
}

func TestParseResult(t *testing.T) {
	r, err := parseResult([]byte(`{"POWER2":"ON","PulseTime3":{"Set":5,"Remaining":5},"Switch12":{"Action":"OFF"},"Other":1}`))
	require.NoError(t, err)
	assert.Equal(t, map[int]bool{2: true}, r.power)
	assert.Equal(t, map[int]int{3: 5}, r.pulseTime)
	assert.Equal(t, map[int]bool{12: false}, r.switches)

	r, err = parseResult([]byte(`{"POWER":"OFF"}`))
	require.NoError(t, err)
	assert.Equal(t, map[int]bool{1: false}, r.power, "a bare POWER is POWER1")

	for _, bad := range []string{``, `null x`, `[]`, `{"POWER2":1}`, `{"POWER2":"DIM"}`, `{"PulseTime1":{}}`, `{"Switch1":{"Action":3}}`, `{"Switch1":"ON"}`} {
		_, err := parseResult([]byte(bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestParseStatus10(t *testing.T) {
	sw, err := parseStatus10([]byte(`{"StatusSNS":{"Time":"2026-01-01T00:00:00","Switch1":"ON","Switch2":"OFF","ANALOG":{"A0":3}}}`))
	require.NoError(t, err)
	assert.Equal(t, map[int]bool{1: true, 2: false}, sw)
	for _, bad := range []string{`{}`, `{"StatusSNS":{"Switch1":"HALF"}}`, `{"StatusSNS":{"Switch1":1}}`, `x`} {
		_, err := parseStatus10([]byte(bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestSplitTopic(t *testing.T) {
	p, topic, last, ok := splitTopic("stat/kluis/bank-1/POWER2")
	require.True(t, ok)
	assert.Equal(t, "stat", p)
	assert.Equal(t, "kluis/bank-1", topic)
	assert.Equal(t, "POWER2", last)
	for _, bad := range []string{"", "stat", "stat/", "stat//POWER"} {
		_, _, _, ok := splitTopic(bad)
		assert.False(t, ok, bad)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"POWER1":"ON"}`))
	f.Add([]byte(`{"PulseTime1":{"Set":5,"Remaining":5}}`))
	f.Add([]byte(`{"StatusSNS":{"Switch1":"ON"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseResult(b)
		_, _ = parseStatus10(b)
		_, _ = parseOnOff(string(b))
		_, _, _, _ = splitTopic(string(b))
	})
}
