package cli

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"kluis/backend/pgtest"
)

// The new user's password typed at a terminal is not shown: useradd read
// it as a plain stdin line, so the terminal echoed it and kept it in the
// scroll-back (found with a real pseudo-terminal, as kluisctl's). Piped
// in it is one stdin line, as before (TestUseraddAndToken).
func TestUseraddPasswordTypedAtATerminalIsNotShown(t *testing.T) {
	db := pgtest.NewDatabase(t)
	master, tty, err := pty.Open()
	require.NoError(t, err)
	defer master.Close()
	defer tty.Close()
	screen := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(master) // until the terminal closes (EIO)
		screen <- string(b)
	}()
	vars := map[string]string{"DATABASE_URL": db, "KLUIS_INSECURE_FAST_HASH": "1", "KLUIS_LOG_LEVEL": "warn"}
	e, out, errb := testEnv(vars)
	e.Stdin = tty
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"useradd", "-username", "an", "-role", "staff"}, e) }()
	// Wait (5 s at most) for the echo to go off; left on, as before, the
	// line typed after the wait is echoed.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS); err == nil && tio.Lflag&unix.ECHO == 0 {
			break
		}
	}
	_, err = io.WriteString(master, "counter password 1\n")
	require.NoError(t, err)
	select {
	case code := <-done:
		require.Equal(t, 0, code, errb.String())
	case <-ctx.Done():
		t.Fatal("useradd did not end")
	}
	assert.Contains(t, out.String(), "created user an")
	time.Sleep(100 * time.Millisecond) // the echo, if any, reaches the master
	require.NoError(t, tty.Close())
	assert.NotContains(t, <-screen, "counter password 1", "the terminal showed the password")
}
