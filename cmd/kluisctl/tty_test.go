package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"kluis/backend/auth"
)

// A password or staff PIN typed at a terminal is not shown: kluisctl read
// it as a plain stdin line, so the terminal echoed it (found with a real
// pseudo-terminal: "kluisctl login" showed the password as it was typed
// and left it in the scroll-back of a counter's PC, for whoever stands
// behind the clerk or scrolls up later). Read from a terminal, the
// secrets of login, password, kiosk-pin, tokens create, users add and
// users update -kiosk-pin are read with the echo off; piped in they are
// one stdin line, as before (the other tests).
func TestSecretsTypedAtATerminalAreNotShown(t *testing.T) {
	h := newHarness(t)
	admin := h.tokens[auth.RoleAdmin]
	session := h.session(auth.RoleStaff)
	for _, c := range []struct {
		name    string
		token   string
		typed   []string
		args    []string
		success string
	}{
		{"login", "", []string{"password-of-staff"}, []string{"login", "cli-staff"}, "export KLUIS_TOKEN=kls_"},
		{"kiosk-pin", session, []string{"password-of-staff", "73915286"}, []string{"kiosk-pin"}, ""},
		{"tokens create", session, []string{"password-of-staff"}, []string{"tokens", "create", "nightly"}, "kls_"},
		{"users add", admin, []string{"a long new password"}, []string{"users", "add", "-username", "tty-user", "-role", "staff"}, "tty-user"},
		{"users update -kiosk-pin", admin, []string{"48207316"}, []string{"users", "update", "2", "-kiosk-pin"}, ""},
		{"password", session, []string{"password-of-staff", "a new long password 1"}, []string{"password"}, "password changed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs, screen := h.kctlOnTerminal(t, c.token, c.typed, c.args...)
			require.Equal(t, 0, code, "%s: %s", c.name, errs)
			assert.Contains(t, out, c.success)
			for _, secret := range c.typed {
				assert.NotContains(t, screen, secret, "%s: the terminal showed what was typed", c.name)
			}
		})
	}
}

// kctlOnTerminal runs kluisctl in-process with a pseudo-terminal as its
// stdin, types each line of typed when the terminal's echo is off (the
// prompt was printed and the secret is being read), and returns what the
// terminal showed.
func (h *harness) kctlOnTerminal(t *testing.T, token string, typed []string, args ...string) (int, string, string, string) {
	t.Helper()
	master, tty, err := pty.Open()
	require.NoError(t, err)
	defer master.Close()
	defer tty.Close()
	env := map[string]string{"KLUIS_URL": h.url, "KLUIS_TOKEN": token}
	var screen bytes.Buffer
	var screenMu sync.Mutex
	read := make(chan struct{})
	go func() {
		defer close(read)
		b := make([]byte, 1024)
		for {
			n, err := master.Read(b)
			screenMu.Lock()
			screen.Write(b[:n])
			screenMu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	var out bytes.Buffer
	errs := &promptWriter{prompts: make(chan struct{}, 8)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, tty, &out, errs, func(k string) string { return env[k] }) }()
	for _, line := range typed {
		select {
		case <-errs.prompts:
		case code := <-done:
			return code, out.String(), errs.String(), ""
		case <-ctx.Done():
			t.Fatalf("%v: no prompt for a secret", args)
		}
		// The prompt is written just before the read: wait (3 s at
		// most) for the reader to turn the terminal's echo off; with it
		// left on, as before, the line is typed after the wait and
		// echoed.
		echoOff(tty, 3*time.Second)
		_, err := io.WriteString(master, line+"\n")
		require.NoError(t, err)
	}
	var code int
	select {
	case code = <-done:
	case <-ctx.Done():
		t.Fatalf("%v: did not end", args)
	}
	time.Sleep(100 * time.Millisecond) // the echo, if any, reaches the master
	tty.Close()
	master.Close()
	<-read
	screenMu.Lock()
	defer screenMu.Unlock()
	return code, out.String(), errs.String(), screen.String()
}

// echoOff waits until tty's echo is off, or for at most limit.
func echoOff(tty *os.File, limit time.Duration) {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS); err == nil && tio.Lflag&unix.ECHO == 0 {
			return
		}
	}
}

// promptWriter is kluisctl's stderr: it signals each prompt (a line that
// asks for a password or PIN and ends with ": ").
type promptWriter struct {
	mu      sync.Mutex
	b       strings.Builder
	prompts chan struct{}
}

var promptLine = regexp.MustCompile(`(?i)(password|PIN)[^\n]*: $`)

func (w *promptWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if promptLine.Match(p) {
		w.prompts <- struct{}{}
	}
	return len(p), nil
}

func (w *promptWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
