package auth

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestClientSource(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, c := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"peer only", "192.0.2.7:4321", nil, nil, "192.0.2.7"},
		{"untrusted peer: header ignored", "192.0.2.7:4321", []string{"203.0.113.1"}, proxies, "192.0.2.7"},
		{"no proxies configured: header ignored", "10.1.2.3:80", []string{"203.0.113.1"}, nil, "10.1.2.3"},
		{"one proxy", "10.1.2.3:80", []string{"203.0.113.1"}, proxies, "203.0.113.1"},
		{"client-written left part ignored", "10.1.2.3:80", []string{"1.1.1.1, 203.0.113.1"}, proxies, "203.0.113.1"},
		{"proxy chain", "10.1.2.3:80", []string{"198.51.100.4, 203.0.113.1, 10.9.9.9"}, proxies, "203.0.113.1"},
		{"several headers", "10.1.2.3:80", []string{"198.51.100.4", "203.0.113.1"}, proxies, "203.0.113.1"},
		{"garbage stops the walk", "10.1.2.3:80", []string{"203.0.113.1, nonsense"}, proxies, "10.1.2.3"},
		{"empty header", "10.1.2.3:80", []string{""}, proxies, "10.1.2.3"},
		{"IPv6 per /64", "[2001:db8:1:2:aaaa::1]:443", nil, nil, "2001:db8:1:2::/64"},
		{"IPv6 via proxy", "[fd00::1]:443", []string{"2001:db8:1:2:bbbb::9"}, proxies, "2001:db8:1:2::/64"},
		{"4in6 peer", "[::ffff:192.0.2.7]:1", nil, nil, "192.0.2.7"},
		{"unparsable peer", "pipe", nil, nil, "unknown"},
	} {
		r := httptest.NewRequest("POST", "/api/v1/sessions", nil)
		r.RemoteAddr = c.remote
		for _, h := range c.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		assert.Equal(t, c.want, ClientSource(r, c.trusted), c.name)
	}
}

func TestBackoffGrowsToAMinute(t *testing.T) {
	assert.Zero(t, backoff(freeFailures-1))
	assert.Equal(t, time.Second, backoff(freeFailures))
	assert.Equal(t, 2*time.Second, backoff(freeFailures+1))
	assert.Equal(t, 32*time.Second, backoff(freeFailures+5))
	assert.Equal(t, time.Minute, backoff(freeFailures+6))
	assert.Equal(t, time.Minute, backoff(keepUserFailures))
	assert.Equal(t, time.Minute, backoff(1000))
}

func TestParseTrustedProxies(t *testing.T) {
	ps, err := ParseTrustedProxies(" 10.0.0.5, 10.1.2.3/16 ,fd00::/8,::ffff:192.0.2.1,")
	assert.NoError(t, err)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32"), netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("192.0.2.1/32")}, ps)
	ps, err = ParseTrustedProxies("")
	assert.NoError(t, err)
	assert.Empty(t, ps)
	for _, bad := range []string{"proxy.example", "10.0.0.0/33", "10.0.0"} {
		_, err := ParseTrustedProxies(bad)
		assert.Error(t, err, bad)
	}
}

// The login limits table of docs/security.md says what the code does.
func TestSecurityDocMatchesLoginLimits(t *testing.T) {
	b, err := os.ReadFile("../../docs/security.md")
	if !assert.NoError(t, err) {
		return
	}
	doc := string(b)
	for _, want := range []string{
		fmt.Sprintf("| per username and client address | %d failures in %d min:", maxSourceFailures, int(loginWindow.Minutes())),
		fmt.Sprintf("| per username, all addresses | from %d failures in %d min: each attempt waits %d s", freeFailures, int(loginWindow.Minutes()), int(firstBackoff.Seconds())),
		fmt.Sprintf("at most %d s |", int(maxBackoff.Seconds())),
		fmt.Sprintf("in the last %d days (at most %d per user)", int(knownFor.Hours()/24), maxKnownPerUser),
	} {
		assert.Contains(t, doc, want)
	}
}
