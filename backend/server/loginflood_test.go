package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/auth"
	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/deploy/dev/testenv"
)

// apiLogin posts a login to the API as if from source (the listener
// trusts the loopback proxy's X-Forwarded-For) and returns the status,
// the error code and Retry-After.
func apiLogin(t *testing.T, b *servertest.Backend, source, user, password string) (status int, code, retry string) {
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	req, err := http.NewRequest(http.MethodPost, b.URL("/api/v1/sessions"), bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", source)
	res, err := testenv.HTTPClient().Do(req)
	if err != nil {
		t.Errorf("login %s from %s: %v", user, source, err)
		return 0, "", ""
	}
	defer res.Body.Close()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.NewDecoder(res.Body).Decode(&e)
	return res.StatusCode, e.Error.Code, res.Header.Get("Retry-After")
}

// flood sends wrong logins from n goroutines until stop is called, the
// k-th from source(k), for a username of its own, counting the answers.
type flood struct {
	mu     sync.Mutex
	counts map[string]int // "401", "429 login_busy", "429 too_many_attempts" ...
	busy   atomic.Int64
	stop   func()
	wg     sync.WaitGroup
}

func startFlood(t *testing.T, b *servertest.Backend, n int, source func(k int64) string) *flood {
	f := &flood{counts: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	var seq atomic.Int64
	for range n {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for ctx.Err() == nil {
				k := seq.Add(1)
				status, code, retry := apiLogin(t, b, source(k), fmt.Sprintf("spray%d", k), "Winter2026!")
				if status == 0 {
					return
				}
				if code == "login_busy" {
					if retry != "1" {
						t.Errorf("login_busy with Retry-After %q", retry)
					}
					f.busy.Add(1)
				}
				f.mu.Lock()
				f.counts[fmt.Sprintf("%d %s", status, code)]++
				f.mu.Unlock()
			}
		}()
	}
	f.stop = func() { cancel(); f.wg.Wait() }
	t.Cleanup(f.stop)
	return f
}

func (f *flood) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.counts)
}

// A flood of wrong logins does not queue out the staff: each source holds
// at most one place at the hashing slots and the excess is refused at once
// (429 login_busy, Retry-After: 1, not counted as a guess), so staff log
// in while it runs, over the API and the console; a staff member logging
// in from an address they used before waits in a line of their own, ahead
// of a flood from many addresses.
func TestLoginFloodDoesNotQueueOutStaff(t *testing.T) {
	b := servertest.Start(t, server.Options{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		// A check that takes a while, so that logins overlap at the slots.
		PasswordParams: auth.Params{Time: 40, MemoryKiB: 1024, Threads: 1},
	})
	ctx := context.Background()
	for _, u := range []string{"an.balie", "bo.balie", "cas.balie"} {
		require.NoError(t, b.Call(ctx, http.MethodPost, "/api/v1/users",
			map[string]string{"username": u, "password": "password of " + u, "role": "staff"}, nil))
	}
	const office = "198.51.100.20"
	status, code, _ := apiLogin(t, b, office, "an.balie", "password of an.balie")
	require.Equal(t, http.StatusCreated, status, code)

	// One address floods.
	f := startFlood(t, b, 6, func(int64) string { return "203.0.113.7" })
	testenv.Eventually(t, "the flood's excess is refused at once", func() bool { return f.busy.Load() > 0 })
	status, code, _ = apiLogin(t, b, office, "an.balie", "password of an.balie")
	require.Equal(t, http.StatusCreated, status, "a known address during the flood: %s (%s)", code, f)
	status, code, _ = apiLogin(t, b, "192.0.2.44", "bo.balie", "password of bo.balie")
	require.Equal(t, http.StatusCreated, status, "a new address during the flood: %s (%s)", code, f)
	f.stop()
	t.Logf("one address: %s", f)
	require.Positive(t, f.counts["401 invalid_credentials"], "the flood's passwords were checked, one at a time: %s", f)

	// The console answers a refusal with its login page, in the person's
	// language, and Retry-After: two logins at once from one address, the
	// second arriving while the first is checked. Each try from an
	// address and for usernames of its own, so that no limit refuses it.
	var page string
	tries := 0
	testenv.Eventually(t, "a console login refused while another from its address is checked", func() bool {
		tries++
		src := fmt.Sprintf("192.0.2.%d", 100+tries%150)
		type answer struct {
			status      int
			retry, body string
		}
		answers := make(chan answer, 2)
		for i := range 2 {
			go func() {
				status, retry, body := consoleLogin(t, b, src, fmt.Sprintf("probe%d-%d", tries, i), "not the password", "de")
				answers <- answer{status, retry, body}
			}()
		}
		busy := false
		for range 2 {
			if a := <-answers; a.status == http.StatusTooManyRequests && a.retry == "1" {
				page, busy = a.body, true
			}
		}
		return busy
	})
	require.Contains(t, page, "Gerade werden zu viele Anmeldungen geprüft")
	require.Contains(t, page, `name="password"`, "the login form, to try again")

	// Many addresses flood, more at once than the slots and the line
	// hold, each login from an address of its own (none reaches a limit).
	f = startFlood(t, b, 64, func(k int64) string { return fmt.Sprintf("10.%d.%d.%d", k>>16&255, k>>8&255, k&255) })
	testenv.Eventually(t, "the line is full: the excess is refused at once", func() bool { return f.busy.Load() > 0 })
	status, code, _ = apiLogin(t, b, office, "an.balie", "password of an.balie")
	require.Equal(t, http.StatusCreated, status, "a known address, ahead of the flood: %s (%s)", code, f)

	f.stop()
	t.Logf("many addresses: %s", f)
	status, _, _ = consoleLogin(t, b, "192.0.2.77", "cas.balie", "password of cas.balie", "de")
	require.Equal(t, http.StatusSeeOther, status, "on the console after the flood")
}

var loginToken = regexp.MustCompile(`name="login_token" value="([^"]+)"`)

// consoleLogin signs in on the console's form as if from source and
// returns the status, Retry-After and the page (status 0 after an error,
// reported; safe in any goroutine).
func consoleLogin(t *testing.T, b *servertest.Backend, source, user, password, lang string) (int, string, string) {
	hc := &http.Client{Timeout: testenv.HTTPTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := hc.Get(b.URL("/staff/login?lang=" + lang))
	if !assert.NoError(t, err) {
		return 0, "", ""
	}
	form, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := loginToken.FindSubmatch(form)
	if !assert.NotNil(t, m, string(form)) {
		return 0, "", ""
	}
	v := url.Values{"login_token": {string(m[1])}, "username": {user}, "password": {password}}
	req, err := http.NewRequest(http.MethodPost, b.URL("/staff/login?lang="+lang), strings.NewReader(v.Encode()))
	if !assert.NoError(t, err) {
		return 0, "", ""
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", source)
	for _, c := range res.Cookies() {
		req.AddCookie(c)
	}
	res, err = hc.Do(req)
	if !assert.NoError(t, err) {
		return 0, "", ""
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Retry-After"), string(body)
}
